//! Interop with the Godot 3.2.3 engine, headless (Debian `godot3-server`; installed by
//! `tests/interop/setup.sh`): GDScript `WebSocketClient` against a wspeer server and
//! GDScript `WebSocketServer` against a wspeer client. The script both sides run is
//! described in `tests/interop/harness.rs`; the peer is `tests/interop/godot/peer.gd`.
//! Run alone: `cargo test --test interop_godot`.
//!
//! Godot 3's `WebSocketMultiplayerPeer` buffers default to 64 KiB each way, which cannot
//! hold a message of 64 KiB or more: the full-size cells raise them with
//! `set_buffers(512, 1024, 512, 1024)`; one cell keeps the defaults and stays at
//! 65 535 bytes; one test shows what the defaults do to larger messages.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use wspeer::{State, TlsOptions, WebSocketPeer};

const INSTALL: &str = "apt-get install -y godot3-server";
/// Up to 200 000 bytes: needs `set_buffers` raised. No empty message: Godot 3.2.3 never
/// sends one (see `godot_limits_with_default_buffers`).
const GODOT_SIZES: &[usize] = &[1, 125, 126, 127, 1000, 65535, 65536, 65537, 200_000];
/// What Godot 3's default 64 KiB buffers hold.
const DEFAULT_BUFFER_SIZES: &[usize] = &[1, 125, 126, 127, 1000, 65535];
const BUFFERS_KB: usize = 512;
/// Godot 3.2.3 sends its close reason with the C string's terminating NUL byte
/// (`wslay_event_queue_close(..., cs.ptr(), cs.size())`): wspeer reports it as received.
const GODOT_PEER_CLOSE_REASON: &str = "peer bye ✓\0";

/// Starts `godot3-server --path tests/interop/godot -s peer.gd <args>`, with its user
/// data in `home` and a locale Godot knows (it reads `LANG` itself; the system need not
/// have the locale: `C.UTF-8` makes Godot print locale errors).
fn godot(args: &[String], home: &TempDir) -> PeerProcess {
    let mut command = Command::new("godot3-server");
    command
        .arg("--path")
        .arg(interop_dir().join("godot"))
        .args(["-s", "peer.gd"])
        .args(args)
        .env("LANG", "en_US.UTF-8")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_CACHE_HOME", home.path());
    PeerProcess::spawn("godot3-server", command, INSTALL)
}

/// Starts Godot as a server (`args` without the port) on a port that was free a moment
/// ago (Godot 3.2.3's `WebSocketServer` cannot listen on port 0 and tell the port it got);
/// tries again with another port if that one was taken in between.
fn godot_server(args: &[String], home: &TempDir) -> (PeerProcess, u16) {
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut all = args.to_vec();
        all.push(format!("--wsp-port={port}"));
        let mut peer = godot(&all, home);
        match peer.try_wait_line("READY ", Duration::from_secs(20)) {
            Some(ready) if ready == port.to_string() => return (peer, port),
            Some(other) => panic!("godot3-server: READY {other}, expected {port}"),
            None if peer.wait_output("listen(", Duration::from_millis(500)) => continue,
            None => panic!(
                "godot3-server exited before listening\n--- output ---\n{}",
                peer.output()
            ),
        }
    }
    panic!("godot3-server could not listen on a free port three times");
}

fn godot_args(role: &str, sizes: &[usize], buffers_kb: usize) -> Vec<String> {
    vec![
        format!("--wsp-role={role}"),
        format!("--wsp-sizes={}", sizes_arg(sizes)),
        format!("--wsp-buffers-kb={buffers_kb}"),
    ]
}

/// A test CA and a leaf for 127.0.0.1 that both rustls and Godot 3.2.3's mbedTLS accept:
/// mbedTLS (2.16) matches the host only against dNSName entries, never iPAddress ones, so
/// the leaf names 127.0.0.1 both ways.
fn godot_pki(dir: &TempDir) -> PkiFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wspeer test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf params");
    leaf_params
        .subject_alt_names
        .push(SanType::DnsName("127.0.0.1".try_into().expect("dNSName")));
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let (ca_pem, cert_pem, key_pem) = (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem());
    PkiFiles {
        ca: dir.write("ca.pem", &ca_pem),
        cert: dir.write("cert.pem", &cert_pem),
        key: dir.write("key.pem", &key_pem),
        ca_pem,
        cert_pem,
        key_pem,
    }
}

fn wspeer_server(sizes: &[usize], buffers_kb: usize, tls: bool) {
    let home = TempDir::new("godot");
    let pki = godot_pki(&home);
    let server_tls = tls.then(|| {
        TlsOptions::server(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).expect("server TLS")
    });
    let mut server = cell_server(server_tls);
    let mut args = godot_args("client", sizes, buffers_kb);
    args.push(format!("--wsp-url={}", base_url(&server, tls)));
    if tls {
        args.push(format!("--wsp-ca={}", pki.ca.display()));
    }
    let mut peer = godot(&args, &home);
    let logs = drive_server(
        &mut server,
        &mut peer,
        sizes,
        false,
        GODOT_PEER_CLOSE_REASON,
    );
    let cell = format!(
        "godot client -> wspeer server ({})",
        if tls { "wss" } else { "ws" }
    );
    print_logs(&cell, &logs, &peer);
}

fn wspeer_client(sizes: &[usize], buffers_kb: usize, tls: bool) {
    let home = TempDir::new("godot");
    let pki = godot_pki(&home);
    let mut args = godot_args("server", sizes, buffers_kb);
    if tls {
        args.push(format!("--wsp-cert={}", pki.cert.display()));
        args.push(format!("--wsp-key={}", pki.key.display()));
    }
    let (mut peer, port) = godot_server(&args, &home);
    let (base, client_tls) = if tls {
        let options = TlsOptions::client_with_ca(pki.ca_pem.as_bytes()).expect("client TLS");
        (format!("wss://127.0.0.1:{port}/"), Some(options))
    } else {
        (format!("ws://127.0.0.1:{port}/"), None)
    };
    let logs = drive_client(&base, client_tls, &mut peer, sizes, GODOT_PEER_CLOSE_REASON);
    let cell = format!(
        "wspeer client -> godot server ({})",
        if tls { "wss" } else { "ws" }
    );
    print_logs(&cell, &logs, &peer);
}

#[test]
fn wspeer_server_godot_client_ws() {
    wspeer_server(GODOT_SIZES, BUFFERS_KB, false);
}

#[test]
fn wspeer_server_godot_client_wss() {
    wspeer_server(GODOT_SIZES, BUFFERS_KB, true);
}

#[test]
fn wspeer_client_godot_server_ws() {
    wspeer_client(GODOT_SIZES, BUFFERS_KB, false);
}

#[test]
fn wspeer_client_godot_server_wss() {
    wspeer_client(GODOT_SIZES, BUFFERS_KB, true);
}

#[test]
fn wspeer_client_godot_server_ws_default_buffers() {
    wspeer_client(DEFAULT_BUFFER_SIZES, 0, false);
}

/// Polls `client` until `done` (bounded).
fn poll_until(
    client: &mut WebSocketPeer,
    peer: &PeerProcess,
    what: &str,
    done: impl Fn(&WebSocketPeer) -> bool,
) {
    let start = Instant::now();
    while !done(client) {
        client.poll();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}; state {:?}, close {} {:?}, error {:?}\n--- godot output ---\n{}",
            client.get_ready_state(),
            client.get_close_code(),
            client.get_close_reason(),
            client.get_last_error(),
            peer.output()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Godot 3.2.3's `WebSocketServer` with its default buffers, as a plain echo server probed
/// by a wspeer client, pinning down the differences listed in docs/interop.md:
/// - an empty message is received, but `put_packet` of 0 bytes sends nothing (returns OK);
/// - 65 535 bytes is the largest message the default 64 KiB input buffer takes;
/// - a 65 536-byte message is dropped with "Buffer payload full! Dropping data." (nothing is
///   delivered, the connection stays open);
/// - from 65 537 bytes Godot closes the connection with 1009, which wspeer reports cleanly.
#[test]
fn godot_limits_with_default_buffers() {
    let home = TempDir::new("godot");
    let (mut peer, port) = godot_server(&["--wsp-role=echo".to_string()], &home);
    let mut client = WebSocketPeer::with_config(peer_config());
    client.set_supported_protocols(&OFFERED);
    client
        .connect_to_url(&format!("ws://127.0.0.1:{port}/"), None)
        .expect("connect_to_url");
    poll_until(&mut client, &peer, "open", |c| {
        c.get_ready_state() == State::Open
    });
    let line = Duration::from_secs(10);

    // Empty messages arrive, but their echoes are never sent: "after" comes back first.
    client.send_text("").unwrap();
    client.put_packet(&[]).unwrap();
    client.send_text("after").unwrap();
    poll_until(&mut client, &peer, "the echo of \"after\"", |c| {
        c.get_available_packet_count() > 0
    });
    assert_eq!(peer.wait_line("packet 0 ", line), "text 0");
    assert_eq!(peer.wait_line("packet 1 ", line), "binary 0");
    let first = client.recv().unwrap();
    assert_eq!(
        (first.as_text(), first.is_text()),
        (Some("after"), true),
        "Godot sent something for an empty message"
    );

    // 65 535 bytes: echoed intact.
    let biggest = payload(Kind::Binary, 65535, 7);
    client.put_packet(&biggest).unwrap();
    poll_until(&mut client, &peer, "the 65535-byte echo", |c| {
        c.get_available_packet_count() > 0
    });
    let echo = client.recv().unwrap();
    assert!(!echo.is_text());
    assert!(echo.data() == biggest.as_slice(), "65535-byte echo differs");

    // 65 536 bytes: dropped by Godot; the connection goes on.
    client.put_packet(&payload(Kind::Binary, 65536, 8)).unwrap();
    client.put_packet(b"z").unwrap();
    poll_until(&mut client, &peer, "the echo of \"z\"", |c| {
        c.get_available_packet_count() > 0
    });
    assert_eq!(client.get_packet().unwrap(), b"z");
    assert_eq!(peer.wait_line("packet 4 ", line), "binary 1");
    assert!(
        peer.wait_output("Buffer payload full! Dropping data.", line),
        "{}",
        peer.output()
    );

    // 65 537 bytes: Godot closes with 1009 (message too big).
    client.put_packet(&payload(Kind::Binary, 65537, 9)).unwrap();
    poll_until(&mut client, &peer, "Godot's close", |c| {
        c.get_ready_state() == State::Closed
    });
    assert_eq!(
        client.get_close_code(),
        1009,
        "{:?}",
        client.get_last_error()
    );
    assert_eq!(client.get_available_packet_count(), 0);
    println!(
        "godot default buffers: close {} {:?}",
        client.get_close_code(),
        client.get_close_reason()
    );
}
