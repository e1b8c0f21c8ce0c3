//! Real TLS (wss://) on loopback, with a CA and leaf certificates made by rcgen at test time.
// Needs a built-in crypto provider (the default `tls-ring` feature, or `tls-aws-lc-rs`).
#![cfg(any(feature = "tls-ring", feature = "tls-aws-lc-rs"))]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
// Through the re-export: the rustls wspeer is built with.
use wspeer::rustls::{self, CertificateError};
use wspeer::*;

// ----- helpers -----

/// Waits until the server has reported `count` `DataReceived` events for `id`.
fn server_receives(
    server: &mut WebSocketServer,
    client: &mut WebSocketPeer,
    id: i32,
    count: usize,
    what: &str,
) {
    let mut events = Vec::new();
    run_until(server, &mut [client], &mut events, what, |_, _, ev| {
        ev.iter()
            .filter(|e| **e == ServerEvent::DataReceived { id })
            .count()
            >= count
    });
}

/// Text one way, text back: proves an open connection really carries data.
fn exchange(server: &mut WebSocketServer, client: &mut WebSocketPeer, id: i32, text: &str) {
    client.send_text(text).expect("client send_text");
    server_receives(server, client, id, 1, "the server receives the text");
    let peer = server.get_peer(id).expect("connected peer");
    let packet = peer.recv().expect("a packet");
    assert_eq!(packet.as_text(), Some(text));
    peer.send_text(&format!("re: {text}"))
        .expect("server send_text");
    let mut events = Vec::new();
    run_until(
        server,
        &mut [client],
        &mut events,
        "the client receives the reply",
        |_, c, _| c[0].get_available_packet_count() >= 1,
    );
    let reply = client.recv().expect("a reply");
    assert_eq!(reply.as_text(), Some(format!("re: {text}").as_str()));
}

/// Polls until the client is `Closed` and the server reported `ClientDisconnected` for `id`.
/// Returns the server's events and the close code the server-side peer ended with.
fn run_until_closed(
    server: &mut WebSocketServer,
    client: &mut WebSocketPeer,
    id: i32,
) -> (Vec<ServerEvent>, Option<i32>) {
    let mut events = Vec::new();
    let mut server_code = None;
    run_until(
        server,
        &mut [client],
        &mut events,
        "both sides closed",
        |s, c, ev| {
            let gone = ev
                .iter()
                .any(|e| matches!(e, ServerEvent::ClientDisconnected { id: i, .. } if *i == id));
            if gone && server_code.is_none() {
                // The peer stays reachable until the next poll after its disconnect event.
                server_code = s.get_peer(id).map(|p| p.get_close_code());
            }
            gone && c[0].get_ready_state() == State::Closed
        },
    );
    (events, server_code)
}

/// Starts a wss connection that the client must refuse during the TLS handshake.
fn connect_expecting_rejection(server: &mut WebSocketServer, tls: TlsOptions) -> WebSocketPeer {
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&wss_url(server, "/"), Some(tls))
        .expect("connect_to_url");
    let mut events = Vec::new();
    run_until(
        server,
        &mut [&mut client],
        &mut events,
        "the client rejects the certificate and the server drops the handshake",
        |s, c, _| c[0].get_ready_state() == State::Closed && s.pending_count() == 0,
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ServerEvent::ClientConnected { .. })),
        "a rejected connection must never open: {events:?}"
    );
    assert_eq!(server.peer_count(), 0);
    assert_eq!(client.get_close_code(), -1);
    assert_eq!(client.get_available_packet_count(), 0);
    client
}

/// The TLS error a rejected client ended with, and its Display text.
fn tls_error(client: &WebSocketPeer) -> (&rustls::Error, String) {
    match client.get_last_error() {
        Some(e @ Error::Tls(inner)) => (inner, e.to_string()),
        other => panic!("expected Error::Tls, got {other:?}"),
    }
}

fn assert_unknown_issuer(client: &WebSocketPeer) {
    let (inner, text) = tls_error(client);
    assert!(
        matches!(
            inner,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "expected UnknownIssuer, got {inner:?}"
    );
    assert!(text.contains("unknown issuer"), "message: {text}");
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((j * 131 + seed * 17) % 251) as u8)
        .collect()
}

fn big_config() -> PeerConfig {
    PeerConfig {
        inbound_buffer_size: 16 << 20,
        outbound_buffer_size: 16 << 20,
        ..PeerConfig::default()
    }
}

// ----- 1. round trip and clean close -----

#[test]
fn wss_round_trip_and_client_initiated_close() {
    let pki = pki_for(&["127.0.0.1"]);
    let mut server = tls_server_with(ServerConfig::default(), &pki);
    let (mut client, id) = connect_with(
        &mut server,
        "/tls",
        PeerConfig::default(),
        Some(pki.client_options()),
    );
    let requested = server.get_peer(id).unwrap().get_requested_url().to_string();
    assert!(
        requested.starts_with("wss://") && requested.ends_with("/tls"),
        "{requested}"
    );

    let big = pattern(60_000, 1);
    client.send_text("héllo over TLS").unwrap();
    client.put_packet(&[0, 1, 2, 255]).unwrap();
    client.put_packet(&big).unwrap();
    server_receives(
        &mut server,
        &mut client,
        id,
        3,
        "three packets at the server",
    );
    let peer = server.get_peer(id).unwrap();
    let a = peer.recv().unwrap();
    assert_eq!((a.as_text(), a.is_text()), (Some("héllo over TLS"), true));
    let b = peer.recv().unwrap();
    assert_eq!((b.data(), b.is_text()), (&[0u8, 1, 2, 255][..], false));
    let c = peer.recv().unwrap();
    assert!(!c.is_text());
    assert!(c.data() == big.as_slice(), "60 000-byte message corrupted");
    assert!(peer.recv().is_none());

    let big_back = pattern(60_000, 2);
    peer.send_text("ünïcode back").unwrap();
    peer.put_packet(&[9, 8, 7]).unwrap();
    peer.put_packet(&big_back).unwrap();
    run_clients_until(&mut [&mut client], "three packets at the client", |c| {
        c[0].get_available_packet_count() == 3
    });
    assert_eq!(client.get_packet().unwrap(), "ünïcode back".as_bytes());
    assert!(client.was_string_packet());
    assert_eq!(client.get_packet().unwrap(), vec![9, 8, 7]);
    assert!(!client.was_string_packet());
    let got = client.get_packet().unwrap();
    assert!(!client.was_string_packet());
    assert!(got == big_back, "60 000-byte reply corrupted");

    client.close(4000, "client says bye").unwrap();
    let (events, server_code) = run_until_closed(&mut server, &mut client, id);
    assert_eq!(client.get_close_code(), 4000);
    assert_eq!(client.get_close_reason(), "client says bye");
    assert!(
        client.get_last_error().is_none(),
        "clean close left an error: {:?}",
        client.get_last_error()
    );
    assert_eq!(server_code, Some(4000));
    assert!(
        events.contains(&ServerEvent::ClientCloseRequest {
            id,
            code: 4000,
            reason: "client says bye".into()
        }),
        "{events:?}"
    );
    assert!(
        events.contains(&ServerEvent::ClientDisconnected {
            id,
            was_clean: true
        }),
        "{events:?}"
    );
}

#[test]
fn wss_server_initiated_close() {
    let pki = pki_for(&["127.0.0.1"]);
    let mut server = tls_server_with(ServerConfig::default(), &pki);
    let (mut client, id) = connect_with(
        &mut server,
        "/",
        PeerConfig::default(),
        Some(pki.client_options()),
    );
    exchange(&mut server, &mut client, id, "before the close");

    server.disconnect_peer(id, 4001, "server says bye").unwrap();
    let (events, server_code) = run_until_closed(&mut server, &mut client, id);
    assert_eq!(client.get_close_code(), 4001);
    assert_eq!(client.get_close_reason(), "server says bye");
    assert!(
        client.get_last_error().is_none(),
        "clean close left an error: {:?}",
        client.get_last_error()
    );
    assert_eq!(server_code, Some(4001));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ServerEvent::ClientCloseRequest { .. })),
        "the server started the close, the client did not request it: {events:?}"
    );
    assert!(
        events.contains(&ServerEvent::ClientDisconnected {
            id,
            was_clean: true
        }),
        "{events:?}"
    );
}

// ----- 2. host name -----

#[test]
fn wrong_host_name_is_rejected_and_override_accepts_it() {
    let pki = pki_for(&["example.test"]);
    let mut server = tls_server_with(ServerConfig::default(), &pki);

    let client = connect_expecting_rejection(&mut server, pki.client_options());
    let (inner, text) = tls_error(&client);
    assert!(
        matches!(
            inner,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "expected a name mismatch, got {inner:?}"
    );
    assert!(
        text.contains("not valid for this host name"),
        "message: {text}"
    );

    let options = pki
        .client_options()
        .with_common_name_override("example.test")
        .expect("override");
    assert_eq!(options.get_common_name_override(), Some("example.test"));
    let (mut client, id) = connect_with(&mut server, "/", PeerConfig::default(), Some(options));
    exchange(&mut server, &mut client, id, "name overridden");
    client.close(1000, "").unwrap();
    let (_, server_code) = run_until_closed(&mut server, &mut client, id);
    assert_eq!((client.get_close_code(), server_code), (1000, Some(1000)));
}

// ----- 3. unknown CA -----

#[test]
fn unknown_ca_is_rejected() {
    let pki = pki_for(&["127.0.0.1"]);
    let other = pki_with_ca_name("another wspeer test CA", &["127.0.0.1"]);
    let mut server = tls_server_with(ServerConfig::default(), &pki);

    let client = connect_expecting_rejection(&mut server, other.client_options());
    assert_unknown_issuer(&client);

    // A trusted CA with the issuer's name but another key (a regenerated dev CA) is no
    // better: webpki reports the signature mismatch.
    let impostor = pki_for(&["127.0.0.1"]);
    let client = connect_expecting_rejection(&mut server, impostor.client_options());
    let (inner, _) = tls_error(&client);
    assert!(
        matches!(inner, rustls::Error::InvalidCertificate(_)),
        "expected a certificate error, got {inner:?}"
    );

    // The Mozilla roots do not know the test CA either.
    let client = connect_expecting_rejection(&mut server, TlsOptions::client().unwrap());
    assert_unknown_issuer(&client);

    // `None` means the same default for wss://.
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&wss_url(&server, "/"), None)
        .expect("connect_to_url");
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "default TLS options reject the test CA",
        |_, c, _| c[0].get_ready_state() == State::Closed,
    );
    assert_unknown_issuer(&client);

    // The server is unharmed: the right CA still gets in.
    let (mut client, id) = connect_with(
        &mut server,
        "/",
        PeerConfig::default(),
        Some(pki.client_options()),
    );
    exchange(&mut server, &mut client, id, "right CA");
}

// ----- 4. unsafe client -----

#[test]
fn unsafe_client_accepts_wrong_name_and_unknown_ca() {
    let pki = pki_for(&["example.test"]);
    let mut server = tls_server_with(ServerConfig::default(), &pki);
    let options = TlsOptions::client_unsafe().unwrap();
    assert!(options.is_unsafe_client() && !options.is_server());
    assert!(!pki.client_options().is_unsafe_client());

    let (mut client, id) = connect_with(&mut server, "/", PeerConfig::default(), Some(options));
    exchange(&mut server, &mut client, id, "unverified but encrypted");
    let payload = pattern(30_000, 3);
    client.put_packet(&payload).unwrap();
    server_receives(&mut server, &mut client, id, 1, "binary at the server");
    assert_eq!(server.get_peer(id).unwrap().get_packet().unwrap(), payload);
    client.close(1000, "ok").unwrap();
    let (_, server_code) = run_until_closed(&mut server, &mut client, id);
    assert_eq!((client.get_close_code(), server_code), (1000, Some(1000)));
}

// ----- 5. both sides flooding at once -----

#[test]
fn simultaneous_bulk_sends_do_not_deadlock() {
    // Loopback kernel buffers absorb about 4.4 MB per direction on the test machine
    // (tcp_wmem max 4 MiB), so 50 x 64 KiB would never block a write: send 10 MiB.
    const COUNT: usize = 160;
    const SIZE: usize = 64 * 1024;
    let pki = pki_for(&["127.0.0.1"]);
    let mut server = tls_server_with(
        ServerConfig {
            peer: big_config(),
            ..ServerConfig::default()
        },
        &pki,
    );
    let (mut client, id) = connect_with(&mut server, "/", big_config(), Some(pki.client_options()));

    // Everything is queued before either side polls (reads) once.
    for i in 0..COUNT {
        client
            .put_packet(&pattern(SIZE, i))
            .unwrap_or_else(|e| panic!("client send {i}: {e}"));
        server
            .get_peer(id)
            .unwrap()
            .put_packet(&pattern(SIZE, 1000 + i))
            .unwrap_or_else(|e| panic!("server send {i}: {e}"));
    }
    let client_backlog = client.get_current_outbound_buffered_amount();
    let server_backlog = server
        .get_peer(id)
        .unwrap()
        .get_current_outbound_buffered_amount();
    // The sockets cannot have taken 10 MiB without the other side reading: both sides are
    // blocked on writes now, the situation that deadlocks rustls::StreamOwned.
    assert!(
        client_backlog > 0 && server_backlog > 0,
        "nothing left to flush (client {client_backlog}, server {server_backlog}): \
         the test did not exercise back-pressure"
    );

    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "both sides receive every message",
        |s, c, _| {
            c[0].get_available_packet_count() == COUNT
                && s.get_peer(id).unwrap().get_available_packet_count() == COUNT
        },
    );
    for i in 0..COUNT {
        let packet = client.recv().unwrap();
        assert!(!packet.is_text());
        assert!(
            packet.data() == pattern(SIZE, 1000 + i).as_slice(),
            "client: message {i} wrong or out of order"
        );
    }
    let peer = server.get_peer(id).unwrap();
    for i in 0..COUNT {
        let packet = peer.recv().unwrap();
        assert!(
            packet.data() == pattern(SIZE, i).as_slice(),
            "server: message {i} wrong or out of order"
        );
    }
    assert!(peer.recv().is_none() && client.recv().is_none());
    assert_eq!(client.get_current_outbound_buffered_amount(), 0);
    assert_eq!(
        server
            .get_peer(id)
            .unwrap()
            .get_current_outbound_buffered_amount(),
        0
    );
    client.close(1000, "done").unwrap();
    let (_, server_code) = run_until_closed(&mut server, &mut client, id);
    assert_eq!((client.get_close_code(), server_code), (1000, Some(1000)));
}

// ----- 6. standalone server side -----

#[test]
fn accept_stream_over_tls() {
    let pki = pki_for(&["127.0.0.1"]);
    let server_tls = pki.server_options();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(
            &format!("wss://127.0.0.1:{port}/standalone"),
            Some(pki.client_options()),
        )
        .unwrap();
    let start = Instant::now();
    let stream = loop {
        client.poll();
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for accept");
        std::thread::sleep(Duration::from_micros(200));
    };
    let mut peer = WebSocketPeer::new();
    peer.accept_stream(stream, Some(&server_tls)).unwrap();
    assert_eq!(peer.get_ready_state(), State::Connecting);
    run_clients_until(&mut [&mut client, &mut peer], "both open", |c| {
        c.iter().all(|p| p.get_ready_state() == State::Open)
    });
    let requested = peer.get_requested_url();
    assert!(
        requested.starts_with("wss://") && requested.ends_with("/standalone"),
        "{requested}"
    );

    client.send_text("to the standalone server").unwrap();
    peer.put_packet(&[42; 1000]).unwrap();
    run_clients_until(&mut [&mut client, &mut peer], "one packet each", |c| {
        c.iter().all(|p| p.get_available_packet_count() == 1)
    });
    let packet = peer.recv().unwrap();
    assert_eq!(packet.as_text(), Some("to the standalone server"));
    let packet = client.recv().unwrap();
    assert_eq!(
        (packet.data(), packet.is_text()),
        (&[42u8; 1000][..], false)
    );

    peer.close(1000, "standalone done").unwrap();
    run_clients_until(&mut [&mut client, &mut peer], "both closed", |c| {
        c.iter().all(|p| p.get_ready_state() == State::Closed)
    });
    assert_eq!(client.get_close_code(), 1000);
    assert_eq!(client.get_close_reason(), "standalone done");
    assert_eq!(peer.get_close_code(), 1000);
    assert!(
        client.get_last_error().is_none(),
        "{:?}",
        client.get_last_error()
    );
    assert!(
        peer.get_last_error().is_none(),
        "{:?}",
        peer.get_last_error()
    );
}

// ----- 7. misuse -----

fn assert_invalid_options<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::InvalidTlsOptions(why)) => assert!(!why.is_empty(), "{what}: empty reason"),
        other => panic!("{what}: expected InvalidTlsOptions, got {other:?}"),
    }
}

#[test]
fn option_kind_misuse_and_bad_pem() {
    let pki = pki_for(&["127.0.0.1"]);
    let server_tls = pki.server_options();
    let client_tls = pki.client_options();
    assert!(server_tls.is_server() && !client_tls.is_server());

    // Server options for a client.
    let mut client = WebSocketPeer::new();
    assert_invalid_options(
        client.connect_to_url("wss://127.0.0.1:9/", Some(server_tls.clone())),
        "connect_to_url with server options",
    );
    assert_eq!(client.get_ready_state(), State::Closed);

    // Client options for a server; the refused call keeps the previous (good) options.
    let mut server = tls_server_with(ServerConfig::default(), &pki);
    assert_invalid_options(
        server.set_tls_options(Some(client_tls.clone())),
        "set_tls_options with client options",
    );
    let (mut ok_client, id) = connect_with(
        &mut server,
        "/",
        PeerConfig::default(),
        Some(client_tls.clone()),
    );
    exchange(&mut server, &mut ok_client, id, "still wss");

    // Client options for accept_stream.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _outgoing = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let mut peer = WebSocketPeer::new();
    assert_invalid_options(
        peer.accept_stream(accepted, Some(&client_tls)),
        "accept_stream with client options",
    );
    assert_eq!(peer.get_ready_state(), State::Closed);

    // Unusable PEM.
    assert_invalid_options(
        TlsOptions::server(b"not a certificate", b"not a key"),
        "garbage cert and key",
    );
    assert_invalid_options(
        TlsOptions::server(pki.cert_pem.as_bytes(), b"not a key"),
        "garbage key",
    );
    assert_invalid_options(
        TlsOptions::server(b"", pki.key_pem.as_bytes()),
        "empty certificate chain",
    );
    let other = pki_for(&["127.0.0.1"]);
    assert_invalid_options(
        TlsOptions::server(pki.cert_pem.as_bytes(), other.key_pem.as_bytes()),
        "key of another certificate",
    );
    assert_invalid_options(
        TlsOptions::client_with_ca(b"-----BEGIN CERTIFICATE-----\ngarbage\n"),
        "garbage CA",
    );
    assert_invalid_options(TlsOptions::client_with_ca(b""), "empty CA");
    assert_invalid_options(
        server_tls.with_common_name_override("example.test"),
        "common name override on server options",
    );
}

#[test]
fn a_reconnect_with_the_same_options_resumes_the_tls_session() {
    let pki = pki_for(&["127.0.0.1"]);
    let mut server = tls_server_with(ServerConfig::default(), &pki);
    let options = pki.client_options();
    let mut resumed = Vec::new();
    for _ in 0..2 {
        let (mut client, id) = connect_with(
            &mut server,
            "/",
            PeerConfig::default(),
            Some(options.clone()),
        );
        // A message both ways, so the client has read the server's session ticket.
        exchange(&mut server, &mut client, id, "ticket?");
        resumed.push((
            client.is_tls_session_resumed(),
            server.get_peer(id).unwrap().is_tls_session_resumed(),
        ));
        client.close(1000, "").unwrap();
        run_until_closed(&mut server, &mut client, id);
        assert!(!client.is_tls_session_resumed());
    }
    assert_eq!(resumed, [(false, false), (true, true)]);
    // Different options are a different session cache: a full handshake again.
    let other = pki.client_options();
    let (client, _) = connect_with(&mut server, "/", PeerConfig::default(), Some(other));
    assert!(!client.is_tls_session_resumed());
}
