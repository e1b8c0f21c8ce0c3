//! A server behind a load balancer, on real loopback sockets: the health check answered on
//! the WebSocket port (plain and TLS), draining (503 with `Retry-After` for new upgrades
//! while existing peers keep echoing), `stop()` closing with 1001, and the same on a
//! `WebSocketMultiplayerPeer` server.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::multiplayer::{Node, listening, wait_for, wait_joined};
use common::*;
use wspeer::rustls;
use wspeer::rustls::pki_types::pem::PemObject;
use wspeer::*;

const HEALTH: &str = "GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n";

fn with_health() -> ServerConfig {
    ServerConfig {
        health_path: Some("/healthz".into()),
        drain_retry_after: Duration::from_millis(2500),
        ..ServerConfig::default()
    }
}

/// Sends `bytes` to `addr` on another thread and reads the answer to its end (the server
/// closes after it), as a load balancer's check does.
fn plain_request(addr: SocketAddr, bytes: Vec<u8>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        tcp.write_all(&bytes).expect("write");
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).expect("read to the end");
        String::from_utf8(answer).expect("an ASCII answer")
    })
}

/// The same over TLS, trusting `ca_pem` for the name `localhost`.
fn tls_request(addr: SocketAddr, ca_pem: String, bytes: Vec<u8>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA");
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().unwrap();
        let session = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut tls = rustls::StreamOwned::new(session, tcp);
        tls.write_all(&bytes).expect("write");
        let mut answer = Vec::new();
        // The server ends with close_notify or a plain EOF: either is the end.
        match tls.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => panic!("TLS read: {e}"),
        }
        String::from_utf8(answer).expect("an ASCII answer")
    })
}

/// Polls `server` (and `clients`) until `request` finished; its answer.
fn answered(
    server: &mut WebSocketServer,
    clients: &mut [&mut WebSocketPeer],
    request: JoinHandle<String>,
) -> String {
    let mut events = Vec::new();
    run_until(server, clients, &mut events, "an HTTP answer", |_, _, _| {
        request.is_finished()
    });
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, ServerEvent::ClientConnected { .. })),
        "a health check is no peer: {events:?}"
    );
    request.join().expect("the request thread")
}

/// One echo round trip through `server` for `client` (peer `id`).
fn echoes(server: &mut WebSocketServer, client: &mut WebSocketPeer, id: i32, text: &str) {
    client.send_text(text).unwrap();
    let mut events = Vec::new();
    run_until(
        server,
        &mut [&mut *client],
        &mut events,
        "the echo",
        |server, clients, _| {
            if let Some(peer) = server.get_peer(id) {
                while let Some(packet) = peer.recv() {
                    peer.send_packet(&packet).unwrap();
                }
            }
            clients[0].get_available_packet_count() > 0
        },
    );
    assert_eq!(client.get_packet().unwrap(), text.as_bytes());
}

fn assert_serving(answer: &str) {
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
}

fn assert_draining(answer: &str, body: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    // 2.5 s, rounded up to whole seconds.
    assert!(answer.contains("\r\nRetry-After: 3\r\n"), "{answer}");
    assert!(answer.ends_with(body), "{answer}");
}

/// A new WebSocket client's attempt, polled with `server` until it ends; its error.
fn refused_upgrade(server: &mut WebSocketServer, url: &str, tls: Option<TlsOptions>) -> String {
    let mut late = WebSocketPeer::new();
    late.connect_to_url(url, tls).unwrap();
    let mut events = Vec::new();
    run_until(
        server,
        &mut [&mut late],
        &mut events,
        "the refusal",
        |_, c, _| c[0].get_ready_state() == State::Closed,
    );
    assert!(events.is_empty(), "no peer, no event: {events:?}");
    late.get_last_error().expect("an error").to_string()
}

#[test]
fn health_check_then_drain_while_a_peer_keeps_echoing() {
    let mut server = server_with(with_health());
    let addr = server.local_addr().unwrap();
    let (mut client, id) = connect(&mut server);

    let answer = answered(
        &mut server,
        &mut [&mut client],
        plain_request(addr, HEALTH.into()),
    );
    assert_serving(&answer);
    let head = "HEAD /healthz HTTP/1.1\r\nHost: lb\r\n\r\n";
    let answer = answered(
        &mut server,
        &mut [&mut client],
        plain_request(addr, head.into()),
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\n"));
    assert_eq!(server.peer_count(), 1);
    // Without a health path the balancer's check is a bad upgrade.
    let mut plain = server_with(ServerConfig::default());
    let plain_addr = plain.local_addr().unwrap();
    let answer = answered(
        &mut plain,
        &mut [],
        plain_request(plain_addr, HEALTH.into()),
    );
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );

    assert!(!server.is_draining());
    server.drain();
    assert!(server.is_draining());
    let answer = answered(
        &mut server,
        &mut [&mut client],
        plain_request(addr, HEALTH.into()),
    );
    assert_draining(&answer, "\r\n\r\ndraining\n");
    let ws = url(&server, "/");
    let error = refused_upgrade(&mut server, &ws, None);
    assert!(error.contains("503"), "{error}");
    let answer = answered(
        &mut server,
        &mut [&mut client],
        plain_request(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec(),
        ),
    );
    assert_draining(&answer, "the load balancer picks another one\n");

    // The peer that was there is untouched.
    echoes(&mut server, &mut client, id, "still here");
    assert_eq!(server.peer_count(), 1);
    assert_eq!(
        server.pending_count(),
        0,
        "health checks and refusals are gone"
    );

    // Then stop: the peer is told 1001, going away.
    server.stop();
    assert!(!server.is_draining());
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "the peer closed",
        |s, c, _| c[0].get_ready_state() == State::Closed && s.peer_count() == 0,
    );
    assert_eq!(client.get_close_code(), 1001);
    assert!(events.contains(&ServerEvent::ClientDisconnected {
        id,
        was_clean: true
    }));
}

#[test]
fn a_handshake_under_way_when_the_drain_starts_is_refused() {
    let mut server = server_with(with_health());
    let addr = server.local_addr().unwrap();
    // Half a request, then the drain, then the rest.
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .unwrap();
    let mut events = Vec::new();
    run_until(&mut server, &mut [], &mut events, "accepted", |s, _, _| {
        s.pending_count() == 1
    });
    server.drain();
    tcp.write_all(
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let reader = thread::spawn(move || {
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer
    });
    let answer = answered(&mut server, &mut [], reader);
    assert_draining(&answer, "the load balancer picks another one\n");
}

#[test]
fn draining_with_decided_upgrades_and_tls() {
    let pki = pki_for(&["localhost"]);
    let mut server = tls_server_with(
        ServerConfig {
            decide_upgrades: true,
            ..with_health()
        },
        &pki,
    );
    let addr = server.local_addr().unwrap();
    let wss = wss_url(&server, "/").replace("127.0.0.1", "localhost");

    let health = tls_request(addr, pki.ca_pem.clone(), HEALTH.into());
    assert_serving(&answered(&mut server, &mut [], health));

    // A request reported before the drain stays the application's to accept.
    let mut early = WebSocketPeer::new();
    early
        .connect_to_url(&wss, Some(pki.client_options()))
        .unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut early],
        &mut events,
        "the request",
        |_, _, ev| {
            ev.iter()
                .any(|e| matches!(e, ServerEvent::UpgradeRequested { .. }))
        },
    );
    let Some(ServerEvent::UpgradeRequested { id, .. }) = events.pop() else {
        panic!("{events:?}")
    };
    server.drain();
    server.accept_upgrade(id, None, &[]).unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut early],
        &mut events,
        "accepted while draining",
        |_, c, _| c[0].get_ready_state() == State::Open,
    );
    echoes(&mut server, &mut early, id, "over TLS");

    // New ones are refused before the application is asked.
    let error = refused_upgrade(&mut server, &wss, Some(pki.client_options()));
    assert!(error.contains("503"), "{error}");
    let health = tls_request(addr, pki.ca_pem.clone(), HEALTH.into());
    assert_draining(
        &answered(&mut server, &mut [&mut early], health),
        "\r\n\r\ndraining\n",
    );
}

#[test]
fn an_invalid_health_path_is_refused_at_listen() {
    for path in ["healthz", "/health z", "/h?x", "/h#x", "/h\n"] {
        let mut server = WebSocketServer::with_config(ServerConfig {
            health_path: Some(path.into()),
            ..ServerConfig::default()
        });
        assert!(
            matches!(
                server.listen_on("127.0.0.1", 0),
                Err(Error::InvalidConfig(_))
            ),
            "{path:?}"
        );
    }
}

#[test]
fn a_multiplayer_server_drains_too() {
    let config = MultiplayerConfig {
        websocket: with_health(),
        ..MultiplayerConfig::default()
    };
    let mut idle = WebSocketMultiplayerPeer::with_config(config.clone());
    assert!(matches!(idle.drain(), Err(Error::NotOpen)));
    assert!(!idle.is_draining());

    let mut server = listening(WebSocketMultiplayerPeer::with_config(config.clone()));
    let addr = server.peer.local_addr().unwrap();
    let mut client = Node::new(WebSocketMultiplayerPeer::new());
    client.peer.create_client(&server.url(), None).unwrap();
    wait_joined(&mut server, &mut client);

    server.peer.drain().unwrap();
    assert!(server.peer.is_draining());
    let health = plain_request(addr, HEALTH.into());
    wait_for("the health check", || {
        server.tick();
        client.tick();
        health.is_finished()
    });
    assert_draining(&health.join().unwrap(), "\r\n\r\ndraining\n");

    // The admitted client still plays.
    client.peer.set_target_peer(1);
    client.peer.put_packet(b"move").unwrap();
    wait_for("the packet", || {
        server.tick();
        client.tick();
        server.got(client.id(), b"move")
    });
    // A new one does not get in.
    let mut late = Node::new(WebSocketMultiplayerPeer::new());
    late.peer.create_client(&server.url(), None).unwrap();
    let start = Instant::now();
    wait_for("the late client refused", || {
        server.tick();
        late.tick();
        late.has(&MultiplayerEvent::ConnectionFailed)
    });
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "refused, not timed out"
    );
    assert_eq!(server.peer.peer_ids(), vec![client.id()]);
}
