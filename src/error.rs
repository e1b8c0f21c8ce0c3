//! The crate's one error type, with messages that say what to do.

use std::fmt;
use std::io;

/// Everything that can go wrong in wspeer.
///
/// Calls that can fail right away return `Result<_, Error>`. Failures that happen later,
/// inside `poll()` (a refused connection, a bad certificate, a protocol violation by the
/// remote), move the peer to [`State::Closed`](crate::State::Closed) and are kept for
/// [`WebSocketPeer::get_last_error`](crate::WebSocketPeer::get_last_error).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed or is missing its host.
    InvalidUrl(String),
    /// The URL's scheme is not `ws` or `wss`.
    UnsupportedScheme(String),
    /// `connect_to_url`, `accept_stream` or `listen` was called while a connection (or a
    /// listener) is still in use: close it and poll until `Closed` first.
    AlreadyInUse,
    /// Sending or reading needs an open connection.
    NotOpen,
    /// Sending would exceed `outbound_buffer_size`; nothing was queued. Retry after a few
    /// `poll()` calls have flushed data, or raise the limit.
    OutboundBufferFull {
        /// Bytes already waiting to be written to the socket.
        buffered: usize,
        /// Size of the message that was refused, framed.
        message: usize,
        /// The configured `outbound_buffer_size`.
        limit: usize,
    },
    /// Sending would exceed `max_queued_packets` outbound messages; nothing was queued.
    OutboundQueueFull {
        /// The configured `max_queued_packets`.
        limit: usize,
    },
    /// The message is larger than the peer accepts in one message (`inbound_buffer_size`
    /// of the receiving side is unknown here; this is our own `outbound_buffer_size`).
    MessageTooLarge {
        /// Size of the refused message.
        size: usize,
        /// The configured `outbound_buffer_size`.
        limit: usize,
    },
    /// Text messages must be valid UTF-8.
    InvalidUtf8,
    /// A close code that may not be sent (RFC 6455 §7.4): use 1000–1003, 1007–1013 or
    /// 3000–4999, or a negative code to abort without a close frame. In a browser
    /// (wasm32) only 1000 and 3000–4999.
    InvalidCloseCode(i32),
    /// A close reason longer than 123 bytes does not fit in a control frame.
    CloseReasonTooLong(usize),
    /// A handshake header line is not a valid `"Name: value"` HTTP header.
    InvalidHeader(String),
    /// A setting is out of its valid range.
    InvalidConfig(String),
    /// A sub-protocol name is not a valid HTTP token.
    InvalidProtocol(String),
    /// TLS options of the wrong kind (server options for a client or the reverse), or
    /// unusable certificates/keys.
    InvalidTlsOptions(String),
    /// The TLS layer failed: certificate not trusted, wrong host name, expired, alert from
    /// the remote, ... (Only with a TLS feature.)
    #[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
    Tls(rustls::Error),
    /// TLS was asked for
    #[cfg_attr(
        not(target_arch = "wasm32"),
        doc = "(`wss://`, a [`TlsOptions`](crate::TlsOptions) constructor)"
    )]
    /// but this build has no TLS, or no crypto provider or root store to use: the message
    /// names the Cargo feature to enable (`tls-ring`, `webpki-roots`, ...).
    TlsDisabled(&'static str),
    /// The host name did not resolve to any address.
    Resolve(String),
    /// Every resolved address refused or failed the TCP connection.
    Connect(String),
    /// The HTTP proxy
    #[cfg_attr(
        not(target_arch = "wasm32"),
        doc = "([`PeerConfig::proxy`](crate::PeerConfig::proxy))"
    )]
    /// answered the client's `CONNECT` with a status other than `2xx` (`403`: the proxy
    /// does not allow that host or port; `407`: credentials missing or wrong).
    ProxyRefused {
        /// The proxy, as `host:port`.
        proxy: String,
        /// What the client asked a tunnel to, as `host:port`.
        target: String,
        /// The proxy's HTTP status code.
        status: u16,
        /// The reason phrase of the proxy's status line (may be empty).
        reason: String,
    },
    /// The connection was not open within the configured time.
    ConnectTimeout,
    /// The WebSocket handshake failed (non-101 answer, sub-protocol mismatch, bad headers).
    Handshake(String),
    /// The remote sent something RFC 6455 forbids; the connection was closed with the given
    /// close code (1002 protocol error, 1007 bad UTF-8, 1009 message too big).
    Protocol {
        /// The close code sent to the remote.
        code: u16,
        /// What the remote did wrong.
        detail: String,
    },
    /// The remote did not answer a heartbeat ping within one interval.
    HeartbeatTimeout,
    /// The remote did not answer our close frame within the close timeout.
    CloseTimeout,
    /// The connection ended without a close frame (reset, EOF, or a socket error).
    ConnectionLost(String),
    /// A packet this protocol cannot carry (for example an empty RAW multiplayer packet).
    InvalidPacket(String),
    /// No peer with this id on this server.
    PeerNotFound(i32),
    /// `accept_upgrade` / `reject_upgrade` out of turn: no upgrade request waits for a
    /// decision on this connection (the server does not decide upgrades, the request is not
    /// complete yet, or it was already decided).
    NoUpgradePending,
    /// A value that cannot be encoded as a Godot Variant (a type the peer's Godot version
    /// lacks, a size beyond the format), or a packet that is not a valid one (`get_var`).
    Variant(crate::variant::VariantError),
    /// An RPC that cannot be sent: the node or method is not declared with `rpc_config`,
    /// the protocol has no RPC layer, or an argument cannot be encoded.
    Rpc(String),
    /// An authentication call out of turn: the peer is not authenticating, or this side
    /// already completed.
    Auth(String),
    #[cfg(not(target_arch = "wasm32"))]
    /// `reregister_source` / `deregister_source` with a token this server does not have
    /// registered (already deregistered, or from another server).
    SourceNotRegistered(crate::SourceToken),
    /// A socket or OS error.
    Io(io::Error),
    /// Browser (wasm32) only: messages arrived faster than the application read them, and
    /// `max_queued_packets` packets or `inbound_buffer_size` bytes already waited unread.
    /// A native peer stops reading then (TCP pushes back on the sender); a page cannot, so
    /// the connection was closed (close code 1008) instead of growing without bound.
    #[cfg(any(target_arch = "wasm32", test))]
    InboundQueueFull {
        /// Packets that were waiting unread.
        packets: usize,
        /// Their payload bytes.
        bytes: usize,
    },
    /// Browser (wasm32) only: the page's `WebSocket` refused the call (the exception's
    /// message), such as a URL the browser cannot parse.
    #[cfg(target_arch = "wasm32")]
    Browser(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Error::UnsupportedScheme(s) => {
                write!(f, "unsupported URL scheme {s:?}: use ws:// or wss://")
            }
            Error::AlreadyInUse => write!(
                f,
                "already in use: close the connection and poll until Closed before reusing it"
            ),
            Error::NotOpen => write!(f, "the connection is not open"),
            Error::OutboundBufferFull {
                buffered,
                message,
                limit,
            } => write!(
                f,
                "outbound buffer full: {buffered} bytes waiting + {message} would exceed \
                 outbound_buffer_size {limit}; nothing was queued, poll() and retry"
            ),
            Error::OutboundQueueFull { limit } => write!(
                f,
                "outbound queue full: {limit} messages (max_queued_packets) are still waiting; \
                 nothing was queued, poll() and retry"
            ),
            Error::MessageTooLarge { size, limit } => write!(
                f,
                "message of {size} bytes can never fit outbound_buffer_size {limit}: \
                 raise the limit or split the message"
            ),
            Error::InvalidUtf8 => write!(f, "text messages must be valid UTF-8"),
            #[cfg(not(target_arch = "wasm32"))]
            Error::InvalidCloseCode(c) => write!(
                f,
                "close code {c} may not be sent: use 1000-1003, 1007-1013, 3000-4999, \
                 or a negative code to abort"
            ),
            #[cfg(target_arch = "wasm32")]
            Error::InvalidCloseCode(c) => write!(
                f,
                "close code {c} may not be sent from a browser: use 1000 or 3000-4999, \
                 or a negative code to abort"
            ),
            Error::CloseReasonTooLong(n) => {
                write!(
                    f,
                    "close reason is {n} bytes; at most 123 fit in a close frame"
                )
            }
            Error::InvalidHeader(h) => {
                write!(
                    f,
                    "invalid handshake header {h:?}: expected \"Name: value\""
                )
            }
            Error::InvalidConfig(why) => write!(f, "invalid setting: {why}"),
            Error::InvalidProtocol(p) => write!(f, "invalid sub-protocol name {p:?}"),
            Error::InvalidTlsOptions(why) => write!(f, "invalid TLS options: {why}"),
            #[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
            Error::Tls(e) => write!(f, "TLS error: {}", describe_tls(e)),
            Error::TlsDisabled(why) => f.write_str(why),
            Error::Resolve(why) => write!(f, "could not resolve host: {why}"),
            Error::Connect(why) => write!(f, "could not connect: {why}"),
            Error::ProxyRefused {
                proxy,
                target,
                status,
                reason,
            } => write!(
                f,
                "proxy {proxy} refused CONNECT {target}: {status} {reason}"
            ),
            Error::ConnectTimeout => write!(f, "connection not open within the connect timeout"),
            Error::Handshake(why) => write!(f, "WebSocket handshake failed: {why}"),
            Error::Protocol { code, detail } => {
                write!(
                    f,
                    "protocol violation by the remote ({detail}); closed with {code}"
                )
            }
            Error::HeartbeatTimeout => {
                write!(f, "the remote did not answer a heartbeat ping in time")
            }
            Error::CloseTimeout => {
                write!(f, "the remote did not finish the close handshake in time")
            }
            Error::ConnectionLost(why) => write!(f, "connection lost: {why}"),
            Error::InvalidPacket(why) => write!(f, "invalid packet: {why}"),
            Error::PeerNotFound(id) => write!(f, "no peer with id {id}"),
            Error::NoUpgradePending => write!(
                f,
                "no upgrade request waits for a decision here: accept or reject after \
                 UpgradeRequested, once"
            ),
            Error::Variant(e) => write!(f, "Variant: {e}"),
            Error::Rpc(why) => write!(f, "RPC not sent: {why}"),
            Error::Auth(why) => write!(f, "authentication: {why}"),
            #[cfg(not(target_arch = "wasm32"))]
            Error::SourceNotRegistered(token) => write!(
                f,
                "{token:?} is not registered with this server (deregistered already?)"
            ),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            #[cfg(any(target_arch = "wasm32", test))]
            Error::InboundQueueFull { packets, bytes } => write!(
                f,
                "inbound queue full: {packets} packets ({bytes} bytes) waited unread, at \
                 max_queued_packets or inbound_buffer_size; a browser cannot pause reading, \
                 so the connection was closed: read every packet each frame, or raise the limits"
            ),
            #[cfg(target_arch = "wasm32")]
            Error::Browser(why) => write!(f, "the browser's WebSocket refused: {why}"),
        }
    }
}

/// Spells out the common certificate failures in words a user can act on.
#[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
fn describe_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => "certificate signed by an unknown issuer (not in the trusted \
                                 roots; trust its CA with TlsOptions::client_with_ca)"
                .into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("certificate not valid for this host name ({cert:?})")
            }
            C::Expired | C::ExpiredContext { .. } => format!("certificate expired ({cert:?})"),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("certificate not valid yet ({cert:?})")
            }
            C::Revoked => "certificate revoked".into(),
            C::BadSignature => "certificate signature does not verify against the trusted CA \
                                of that name (was the CA regenerated? trust the current one)"
                .into(),
            C::BadEncoding => format!("malformed certificate ({cert:?})"),
            other => format!("invalid certificate: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!("the remote sent TLS alert {alert:?}"),
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the other side does not speak TLS (a plain ws:// server, or plain HTTP sent to \
             a wss:// port)"
                .into()
        }
        other => other.to_string(),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
            Error::Tls(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Variant(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    #[cfg(any(not(feature = "tls"), target_arch = "wasm32"))]
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }

    #[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
    fn from(e: io::Error) -> Self {
        // rustls failures travel through `io::Error` inside the stream layer; surface them.
        if !e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            return Error::Io(e);
        }
        let kind = e.kind();
        match e
            .into_inner()
            .map(|inner| inner.downcast::<rustls::Error>())
        {
            Some(Ok(tls)) => Error::Tls(*tls),
            Some(Err(other)) => Error::Io(io::Error::new(kind, other)),
            None => Error::Io(kind.into()),
        }
    }
}

impl From<crate::variant::VariantError> for Error {
    fn from(e: crate::variant::VariantError) -> Self {
        Error::Variant(e)
    }
}

#[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Tls(e)
    }
}
