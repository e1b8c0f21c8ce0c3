//! `TlsOptions`: the rustls configurations for wss:// clients and servers.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::Error;

/// TLS settings for `wss://`, Godot's `TLSOptions`.
///
/// Cheap to clone (the rustls configuration is shared). Client options verify the
/// server's certificate chain and host name unless made with
/// [`client_unsafe`](Self::client_unsafe).
#[derive(Clone)]
pub struct TlsOptions {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Client {
        config: Arc<ClientConfig>,
        name_override: Option<String>,
        verifies: bool,
    },
    Server {
        config: Arc<ServerConfig>,
    },
}

/// The crypto provider, passed explicitly (`ClientConfig::builder()` would panic if another
/// crate in the application enabled a second provider in rustls): ring with the `tls-ring`
/// feature (also when `tls-aws-lc-rs` is on), else aws-lc-rs with `tls-aws-lc-rs`, else
/// (`tls` alone) the process-wide default the application installed with
/// [`CryptoProvider::install_default`].
#[cfg(feature = "tls-ring")]
fn provider() -> Result<Arc<CryptoProvider>, Error> {
    Ok(Arc::new(rustls::crypto::ring::default_provider()))
}

#[cfg(all(feature = "tls-aws-lc-rs", not(feature = "tls-ring")))]
fn provider() -> Result<Arc<CryptoProvider>, Error> {
    Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

#[cfg(not(any(feature = "tls-ring", feature = "tls-aws-lc-rs")))]
fn provider() -> Result<Arc<CryptoProvider>, Error> {
    const NO_PROVIDER: &str = "TLS needs a crypto provider: enable wspeer's `tls-ring` or \
                               `tls-aws-lc-rs` feature, or install one with \
                               rustls::crypto::CryptoProvider::install_default";
    CryptoProvider::get_default()
        .cloned()
        .ok_or(Error::TlsDisabled(NO_PROVIDER))
}

/// The roots `TlsOptions::client()` trusts: those of every enabled root feature.
fn default_roots() -> Result<RootCertStore, Error> {
    #[allow(unused_mut)]
    let mut roots = RootCertStore::empty();
    #[cfg(feature = "webpki-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    #[cfg(feature = "platform-roots")]
    {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            log::warn!("platform root certificates: {error}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        log::debug!("platform root certificates: {added} trusted, {ignored} unparsable");
        if added == 0 && !cfg!(feature = "webpki-roots") {
            return Err(Error::InvalidTlsOptions(
                "no root certificate found in the operating system's store (platform-roots); \
                 trust a CA with TlsOptions::client_with_ca"
                    .into(),
            ));
        }
    }
    if roots.is_empty() {
        return Err(Error::TlsDisabled(
            "TlsOptions::client() needs trusted roots: enable wspeer's `webpki-roots` or \
             `platform-roots` feature, or trust a CA with TlsOptions::client_with_ca",
        ));
    }
    Ok(roots)
}

/// A TLS session (client or server side) over one connection.
pub(crate) type Session = rustls::Connection;

/// Whether the session's handshake resumed an earlier one.
pub(crate) fn resumed(session: &Session) -> bool {
    session.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

fn client_config(roots: RootCertStore) -> Result<ClientConfig, Error> {
    Ok(ClientConfig::builder_with_provider(provider()?)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidTlsOptions(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::InvalidTlsOptions(format!(
            "{what}: no PEM certificate found"
        )));
    }
    Ok(certs)
}

impl TlsOptions {
    /// Client options that trust the Mozilla root store (the `webpki-roots` feature, on by
    /// default) and/or the operating system's (`platform-roots`), and verify the server's
    /// host name, like Godot's `TLSOptions.client()`. With neither feature this fails with
    /// [`Error::TlsDisabled`]. Every call shares one
    /// rustls configuration, built once per process, and so its session cache: a reconnect
    /// resumes the TLS session (see [`WebSocketPeer::is_tls_session_resumed`]); it is also
    /// what `connect_to_url` uses for `wss://` without options.
    ///
    /// [`WebSocketPeer::is_tls_session_resumed`]: crate::WebSocketPeer::is_tls_session_resumed
    pub fn client() -> Result<Self, Error> {
        static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        if let Some(config) = DEFAULT.get() {
            return Ok(Self::from_client_config(config.clone()));
        }
        let config = Arc::new(client_config(default_roots()?)?);
        Ok(Self::from_client_config(
            DEFAULT.get_or_init(|| config).clone(),
        ))
    }

    /// Client options that trust only the given PEM certificate(s) (a CA or a self-signed
    /// server certificate), still verifying the host name. Godot's
    /// `TLSOptions.client(trusted_chain)`.
    pub fn client_with_ca(ca_pem: &[u8]) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        for cert in parse_certs(ca_pem, "trusted CA")? {
            roots
                .add(cert)
                .map_err(|e| Error::InvalidTlsOptions(format!("trusted CA: {e}")))?;
        }
        Ok(Self::from_client_config(Arc::new(client_config(roots)?)))
    }

    /// Client options that accept **any** certificate for any name: the connection is
    /// encrypted but not authenticated, so anyone on the path can read it. For tests and
    /// local development only. Godot's `TLSOptions.client_unsafe()`.
    pub fn client_unsafe() -> Result<Self, Error> {
        let provider = provider()?;
        let verifier = Arc::new(AcceptAnyCertificate {
            provider: provider.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(TlsOptions {
            kind: Kind::Client {
                config: Arc::new(config),
                name_override: None,
                verifies: false,
            },
        })
    }

    /// Server options from a PEM certificate chain (leaf first, then intermediates) and its
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Godot's `TLSOptions.server(key, cert)`.
    pub fn server(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let certs = parse_certs(cert_chain_pem, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| Error::InvalidTlsOptions(format!("private key: {e}")))?;
        let config = ServerConfig::builder_with_provider(provider()?)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::InvalidTlsOptions(format!("certificate/key pair: {e}")))?;
        Ok(Self::from_server_config(Arc::new(config)))
    }

    /// Client options from a rustls configuration of your own (client certificates, other
    /// root stores, ALPN...). Build it with `builder_with_provider`, not `builder()`.
    /// [`rustls`](crate::rustls) is re-exported so the versions match.
    pub fn from_client_config(config: Arc<ClientConfig>) -> Self {
        TlsOptions {
            kind: Kind::Client {
                config,
                name_override: None,
                verifies: true,
            },
        }
    }

    /// Server options from a rustls configuration of your own.
    pub fn from_server_config(config: Arc<ServerConfig>) -> Self {
        TlsOptions {
            kind: Kind::Server { config },
        }
    }

    /// Verify (and send as SNI) this name instead of the URL's host. Godot's
    /// `common_name_override`. Fails on server options or a name rustls cannot use.
    pub fn with_common_name_override(mut self, name: &str) -> Result<Self, Error> {
        ServerName::try_from(name.to_string())
            .map_err(|e| Error::InvalidTlsOptions(format!("common name override {name:?}: {e}")))?;
        match &mut self.kind {
            Kind::Client { name_override, .. } => *name_override = Some(name.to_string()),
            Kind::Server { .. } => {
                return Err(Error::InvalidTlsOptions(
                    "a common name override only applies to client options".into(),
                ));
            }
        }
        Ok(self)
    }

    /// Whether these are server options (Godot's `is_server()`).
    pub fn is_server(&self) -> bool {
        matches!(self.kind, Kind::Server { .. })
    }

    /// Whether these are client options that skip verification (Godot's
    /// `is_unsafe_client()`).
    pub fn is_unsafe_client(&self) -> bool {
        matches!(
            self.kind,
            Kind::Client {
                verifies: false,
                ..
            }
        )
    }

    /// The name verified instead of the URL's host, if any.
    pub fn get_common_name_override(&self) -> Option<&str> {
        match &self.kind {
            Kind::Client { name_override, .. } => name_override.as_deref(),
            Kind::Server { .. } => None,
        }
    }

    /// Starts a client TLS session for `host` (the URL's host, or the override).
    pub(crate) fn start_client(&self, host: &str) -> Result<Session, Error> {
        let Kind::Client {
            config,
            name_override,
            ..
        } = &self.kind
        else {
            return Err(Error::InvalidTlsOptions(
                "server options given to a client; use TlsOptions::client()".into(),
            ));
        };
        let name = name_override.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| Error::InvalidTlsOptions(format!("server name {name:?}: {e}")))?;
        Ok(rustls::ClientConnection::new(config.clone(), server_name)?.into())
    }

    /// Starts a server TLS session for one accepted connection.
    pub(crate) fn start_server(&self) -> Result<Session, Error> {
        let Kind::Server { config } = &self.kind else {
            return Err(Error::InvalidTlsOptions(
                "client options given to a server; use TlsOptions::server(cert, key)".into(),
            ));
        };
        Ok(rustls::ServerConnection::new(config.clone())?.into())
    }

    /// Fails unless these are client options.
    pub(crate) fn check_client(&self) -> Result<(), Error> {
        match self.kind {
            Kind::Client { .. } => Ok(()),
            Kind::Server { .. } => Err(Error::InvalidTlsOptions(
                "server options given to a client; use TlsOptions::client()".into(),
            )),
        }
    }

    /// Fails unless these are server options.
    pub(crate) fn check_server(&self) -> Result<(), Error> {
        match self.kind {
            Kind::Server { .. } => Ok(()),
            Kind::Client { .. } => Err(Error::InvalidTlsOptions(
                "client options given to a server; use TlsOptions::server(cert, key)".into(),
            )),
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Client {
                name_override,
                verifies,
                ..
            } => f
                .debug_struct("TlsOptions::Client")
                .field("verifies", verifies)
                .field("name_override", name_override)
                .finish(),
            Kind::Server { .. } => f.write_str("TlsOptions::Server"),
        }
    }
}

/// The verifier behind `client_unsafe`: any chain, any name. Handshake signatures are still
/// checked, so the session keys really belong to whoever presented the certificate.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "webpki-roots", feature = "platform-roots"))]
    fn client_config_of(options: &TlsOptions) -> Arc<ClientConfig> {
        match &options.kind {
            Kind::Client { config, .. } => config.clone(),
            Kind::Server { .. } => panic!("not client options"),
        }
    }

    /// `tls` alone, no provider installed: every constructor names the features to enable.
    #[cfg(not(any(feature = "tls-ring", feature = "tls-aws-lc-rs")))]
    #[test]
    fn without_a_provider_the_error_names_the_features() {
        assert!(CryptoProvider::get_default().is_none());
        let e = TlsOptions::client_unsafe().unwrap_err();
        assert!(matches!(e, Error::TlsDisabled(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("`tls-ring`") && e.contains("install_default"),
            "{e}"
        );
    }

    /// Neither `webpki-roots` nor `platform-roots`: `client()` names them.
    #[cfg(not(any(feature = "webpki-roots", feature = "platform-roots")))]
    #[test]
    fn without_roots_client_names_the_root_features() {
        let e = default_roots().unwrap_err();
        assert!(matches!(e, Error::TlsDisabled(_)), "{e:?}");
        assert!(e.to_string().contains("`webpki-roots`"), "{e}");
    }

    /// `platform-roots` alone: the system's store is read (a machine without one gets an
    /// error that says so, not an empty store that fails every handshake later).
    #[cfg(all(feature = "platform-roots", not(feature = "webpki-roots")))]
    #[test]
    fn platform_roots_come_from_the_system_store() {
        match default_roots() {
            Ok(roots) => assert!(!roots.is_empty()),
            Err(Error::InvalidTlsOptions(why)) => assert!(why.contains("operating system")),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[cfg(any(feature = "webpki-roots", feature = "platform-roots"))]
    #[test]
    fn default_client_options_share_one_config_and_its_session_cache() {
        let a = client_config_of(&TlsOptions::client().unwrap());
        let b = client_config_of(&TlsOptions::client().unwrap());
        assert!(Arc::ptr_eq(&a, &b));
    }
}
