//! TLS misuse on loopback: expired, not-yet-valid, wrong-host, unknown-CA and self-signed
//! certificates, a TLS alert in the middle of an open connection, plain HTTP to a wss port
//! and TLS to a ws port. Each must end quickly on both sides with an error that says what
//! happened: the client's in `get_last_error()`, the server's in its log (a failed
//! handshake never becomes a peer) or in the peer's `get_last_error()` once open.

// Needs a built-in crypto provider (the default `tls-ring` feature, or `tls-aws-lc-rs`).
#![cfg(any(feature = "tls-ring", feature = "tls-aws-lc-rs"))]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use wspeer::rustls::{self, CertificateError};
use wspeer::*;

// ----- the server's log -----

/// Collects wspeer's log records: a handshake that fails never becomes a peer, so the log
/// is where the server side says why.
struct Capture;

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The tests share the global log: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("wspeer") {
            LOG.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn serial() -> MutexGuard<'static, ()> {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).expect("logger");
        log::set_max_level(log::LevelFilter::Debug);
    });
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    LOG.lock().unwrap_or_else(|e| e.into_inner()).clear();
    guard
}

fn server_log_line(needle: &str) -> String {
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    log.iter()
        .find(|l| l.contains(needle))
        .cloned()
        .unwrap_or_else(|| panic!("the server never logged {needle:?}; log: {log:#?}"))
}

// ----- certificates -----

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// A CA and a leaf for `names` whose parameters `tweak` may change (validity dates);
/// `self_signed` makes the leaf its own issuer, with no CA.
fn pki(
    names: &[&str],
    tweak: impl FnOnce(&mut rcgen::CertificateParams),
    self_signed: bool,
) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wspeer misuse CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    tweak(&mut params);
    let leaf = if self_signed {
        params.self_signed(&leaf_key).unwrap()
    } else {
        params.signed_by(&leaf_key, &issuer).unwrap()
    };
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

fn tls_server(pki: &Pki) -> WebSocketServer {
    let mut server = WebSocketServer::new();
    server
        .set_tls_options(Some(
            TlsOptions::server(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
        ))
        .unwrap();
    server.listen_on("127.0.0.1", 0).unwrap();
    server
}

fn trusting(pki: &Pki) -> TlsOptions {
    TlsOptions::client_with_ca(pki.ca_pem.as_bytes()).unwrap()
}

/// Connects `scheme`://the server/ and polls both sides until the client is closed and the server has no
/// pending handshake left; returns the client and how long that took.
fn rejected(
    server: &mut WebSocketServer,
    scheme: &str,
    tls: Option<TlsOptions>,
) -> (WebSocketPeer, Duration) {
    let mut client = WebSocketPeer::new();
    let url = format!("{scheme}://{}/", server.local_addr().unwrap());
    client.connect_to_url(&url, tls).unwrap();
    let start = Instant::now();
    let mut events = Vec::new();
    run_until(
        server,
        &mut [&mut client],
        &mut events,
        "both sides give up",
        |s, c, _| c[0].get_ready_state() == State::Closed && s.pending_count() == 0,
    );
    let took = start.elapsed();
    assert!(
        events.is_empty(),
        "a rejected connection never opens: {events:?}"
    );
    assert_eq!(client.get_close_code(), -1);
    (client, took)
}

fn certificate_error(client: &WebSocketPeer) -> (CertificateError, String) {
    match client.get_last_error() {
        Some(e @ Error::Tls(rustls::Error::InvalidCertificate(cert))) => {
            (cert.clone(), e.to_string())
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

fn figure(what: &str, took: Duration, client: &str, server: &str) {
    println!(
        "FIGURE {what}: both sides done in {:.1} ms; client: {client}; server: {server}",
        took.as_secs_f64() * 1000.0
    );
}

// ----- certificates the client must refuse -----

#[test]
fn expired_certificate() {
    let _serial = serial();
    let pki = pki(
        &["127.0.0.1"],
        |p| {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        },
        false,
    );
    let mut server = tls_server(&pki);
    let (client, took) = rejected(&mut server, "wss", Some(trusting(&pki)));
    let (cert, text) = certificate_error(&client);
    assert!(
        matches!(
            cert,
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ),
        "{cert:?}"
    );
    assert!(text.contains("expired"), "{text}");
    let server_side = server_log_line("the remote sent TLS alert CertificateExpired");
    figure("expired certificate", took, &text, &server_side);
}

#[test]
fn not_yet_valid_certificate() {
    let _serial = serial();
    let pki = pki(
        &["127.0.0.1"],
        |p| {
            p.not_before = rcgen::date_time_ymd(2090, 1, 1);
            p.not_after = rcgen::date_time_ymd(2091, 1, 1);
        },
        false,
    );
    let mut server = tls_server(&pki);
    let (client, took) = rejected(&mut server, "wss", Some(trusting(&pki)));
    let (cert, text) = certificate_error(&client);
    assert!(
        matches!(
            cert,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
        ),
        "{cert:?}"
    );
    assert!(text.contains("not valid yet"), "{text}");
    // rustls answers "not valid yet" with the certificate_expired alert (RFC 8446 §6.2:
    // "expired or is not currently valid").
    let server_side = server_log_line("the remote sent TLS alert CertificateExpired");
    figure("not-yet-valid certificate", took, &text, &server_side);
}

#[test]
fn wrong_host_certificate() {
    let _serial = serial();
    let pki = pki(&["game.example"], |_| {}, false);
    let mut server = tls_server(&pki);
    let (client, took) = rejected(&mut server, "wss", Some(trusting(&pki)));
    let (cert, text) = certificate_error(&client);
    assert!(
        matches!(
            cert,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{cert:?}"
    );
    assert!(text.contains("not valid for this host name"), "{text}");
    let server_side = server_log_line("the remote sent TLS alert BadCertificate");
    figure("wrong host", took, &text, &server_side);
}

#[test]
fn unknown_ca() {
    let _serial = serial();
    let served = pki(&["127.0.0.1"], |_| {}, false);
    let mut server = tls_server(&served);
    // The client trusts only the public web roots, which never signed this CA.
    let (client, took) = rejected(&mut server, "wss", Some(TlsOptions::client().unwrap()));
    let (cert, text) = certificate_error(&client);
    assert_eq!(cert, CertificateError::UnknownIssuer);
    assert!(text.contains("unknown issuer"), "{text}");
    let server_side = server_log_line("the remote sent TLS alert UnknownCA");
    figure("unknown CA", took, &text, &server_side);
}

#[test]
fn self_signed_certificate() {
    let _serial = serial();
    let pki = pki(&["127.0.0.1"], |_| {}, true);
    let mut server = tls_server(&pki);
    // Trusting the (unrelated) CA of the bundle changes nothing: the leaf signed itself.
    let (client, took) = rejected(&mut server, "wss", Some(trusting(&pki)));
    let (cert, text) = certificate_error(&client);
    assert!(
        matches!(
            cert,
            CertificateError::UnknownIssuer | CertificateError::BadSignature
        ),
        "{cert:?}"
    );
    let server_side = server_log_line("the remote sent TLS alert");
    figure("self-signed certificate", took, &text, &server_side);
}

// ----- an alert in the middle of an open connection -----

/// A TCP proxy that flips one bit of the next server-to-client chunk once `corrupt` is
/// set: the client's TLS layer then fails to authenticate a record.
fn corrupting_proxy(upstream: SocketAddr, corrupt: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(upstream).unwrap();
        let pump = |mut from: TcpStream, mut to: TcpStream, corrupt: Option<Arc<AtomicBool>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if let Some(flag) = &corrupt {
                        if flag.swap(false, Ordering::SeqCst) {
                            buf[n - 1] ^= 0x01;
                        }
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            })
        };
        let a = pump(
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            None,
        );
        let b = pump(server, client, Some(corrupt));
        let _ = (a.join(), b.join());
    });
    addr
}

#[test]
fn tls_alert_mid_stream_closes_both_sides_uncleanly_with_the_reason() {
    let _serial = serial();
    let pki = pki(&["127.0.0.1"], |_| {}, false);
    let mut server = tls_server(&pki);
    let corrupt = Arc::new(AtomicBool::new(false));
    let proxy = corrupting_proxy(server.local_addr().unwrap(), corrupt.clone());
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&format!("wss://{proxy}/"), Some(trusting(&pki)))
        .unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "open through the proxy",
        |s, c, _| c[0].get_ready_state() == State::Open && s.peer_count() == 1,
    );
    let id = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::ClientConnected { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    // One message proves the connection; then a damaged record from the server.
    server.get_peer(id).unwrap().send_text("before").unwrap();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "first",
        |_, c, _| c[0].get_available_packet_count() == 1,
    );
    corrupt.store(true, Ordering::SeqCst);
    server.get_peer(id).unwrap().send_text("damaged").unwrap();
    let start = Instant::now();
    let mut server_error = None;
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "both sides closed",
        |s, c, ev| {
            if server_error.is_none()
                && ev.contains(&ServerEvent::ClientDisconnected {
                    id,
                    was_clean: false,
                })
            {
                server_error = s
                    .get_peer(id)
                    .and_then(|p| p.get_last_error().map(|e| e.to_string()));
            }
            c[0].get_ready_state() == State::Closed && server_error.is_some()
        },
    );
    let took = start.elapsed();
    let client_error = client.get_last_error().map(|e| e.to_string()).unwrap();
    let server_error = server_error.unwrap();
    assert_eq!(client.get_close_code(), -1);
    assert!(
        matches!(
            client.get_last_error(),
            Some(Error::Tls(rustls::Error::DecryptError))
        ),
        "{client_error}"
    );
    assert!(
        server_error.contains("BadRecordMac"),
        "the server learns why: {server_error}"
    );
    assert_eq!(client.recv().unwrap().as_text(), Some("before"));
    assert_eq!(
        client.recv(),
        None,
        "the damaged message is never delivered"
    );
    figure("TLS alert mid-stream", took, &client_error, &server_error);
}

// ----- the wrong protocol on a port -----

#[test]
fn plain_websocket_to_a_wss_port() {
    let _serial = serial();
    let pki = pki(&["127.0.0.1"], |_| {}, false);
    let mut server = tls_server(&pki);
    let (client, took) = rejected(&mut server, "ws", None);
    let text = client.get_last_error().unwrap().to_string();
    assert!(
        matches!(client.get_last_error(), Some(Error::Handshake(_))),
        "{text}"
    );
    let server_side = server_log_line("TLS error");
    figure("plain ws:// to a wss port", took, &text, &server_side);
    // The answer was a TLS alert record, not HTTP: the error should say so (use wss://).
    assert!(
        text.contains("TLS") || text.contains("wss://"),
        "the client's error does not point at TLS: {text}"
    );
}

#[test]
fn tls_to_a_plain_websocket_port() {
    let _serial = serial();
    let pki = pki(&["127.0.0.1"], |_| {}, false);
    let mut server = common::server();
    let (client, took) = rejected(&mut server, "wss", Some(trusting(&pki)));
    let text = client.get_last_error().unwrap().to_string();
    assert!(
        matches!(client.get_last_error(), Some(Error::Tls(_))),
        "{text}"
    );
    let server_side = server_log_line("refusing upgrade with 400");
    figure("wss:// to a ws port", took, &text, &server_side);
    // The answer was plain HTTP (a 400), not TLS: the error should say so (use ws://).
    assert!(
        text.contains("plain") || text.contains("not TLS") || text.contains("ws://"),
        "the client's error does not point at plain HTTP: {text}"
    );
}
