//! Baseline: fastwebsockets' own `echo_server` example (hyper upgrade, `FragmentCollector`,
//! `unconstrained` task), on a current-thread or a multi-thread tokio runtime; over TLS
//! (wss) with `--cert/--key`, the way fastwebsockets' own `tls_server` example does it
//! (tokio-rustls in front of hyper).
//!
//! ```text
//! fws_echo [--port 9080] [--bind 127.0.0.1] [--runtime current|multi] [--workers N]
//!          [--cert cert.pem --key key.pem]
//! ```
//! TCP_NODELAY is set on every connection, as wspeer does by default. The TLS settings are
//! wspeer's (`TlsOptions::server`): rustls with the ring provider, its safe default
//! protocol versions, no client authentication, one certificate chain. Over TLS, vectored
//! writes are off as in fastwebsockets' `tls_server` example (header and payload then go
//! out in one TLS record instead of one each).

use std::sync::Arc;

use fastwebsockets::{OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wspeer_bench::Flags;

async fn handle_client(fut: upgrade::UpgradeFut, writev: bool) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_writev(writev);
    let mut ws = fastwebsockets::FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => {
                ws.write_frame(frame).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
    writev: bool,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        let _ = tokio::task::unconstrained(handle_client(fut, writev)).await;
    });
    Ok(response)
}

/// Serves one connection (plain TCP, or a TLS stream with `writev` false) with hyper and
/// the upgrade.
async fn serve<S>(io: S, writev: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let conn_fut = http1::Builder::new()
        .serve_connection(io, service_fn(move |req| server_upgrade(req, writev)))
        .with_upgrades();
    let _ = conn_fut.await;
}

/// The TLS acceptor of `--cert` / `--key`: the same rustls configuration as wspeer's
/// `TlsOptions::server`.
fn tls_acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, String> {
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert}: {e:?}"))?;
    let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| format!("{key}: {e:?}"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate/key pair: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn main() -> Result<(), String> {
    let flags = Flags::parse(&[])?;
    flags.check_known(&[
        "--port",
        "--bind",
        "--runtime",
        "--workers",
        "--cert",
        "--key",
    ])?;
    let port: u16 = flags.value("--port", 9080)?;
    let bind = flags.get("--bind").unwrap_or("127.0.0.1").to_string();
    let tls = match (flags.get("--cert"), flags.get("--key")) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    let runtime = wspeer_bench::tokio_runtime(&flags, "current")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind((bind.as_str(), port))
            .await
            .map_err(|e| format!("Unable to start server: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        println!("Listening on {scheme}://{addr}");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match &tls {
                None => {
                    tokio::spawn(serve(stream, true));
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, false).await;
                        }
                    });
                }
            }
        }
    })
}
