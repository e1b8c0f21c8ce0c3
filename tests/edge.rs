//! A server behind a load balancer, on real loopback sockets: the health check answered on
//! the WebSocket port (plain and TLS), draining (503 with `Retry-After` for new upgrades
//! while existing peers keep echoing), `stop()` closing with 1001; the client's real
//! address through a PROXY header (v1, v2 IPv4 and IPv6, written by hand from the
//! specification by a relay playing the balancer) and through `X-Forwarded-For` /
//! `Forwarded`, and what is refused or ignored (untrusted peers, forged entries, bad,
//! partial or oversized headers); the same on a `WebSocketMultiplayerPeer` server.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
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

// ----- the client's real address: PROXY headers -----

/// Warnings and errors logged by wspeer in this test binary (tests run in parallel: each
/// looks for its own connection's address).
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            LOGGED.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static CAPTURE: Capture = Capture;
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Warn);
}

/// The logged line that mentions `needle`, if any.
fn logged(needle: &str) -> Option<String> {
    LOGGED
        .lock()
        .unwrap()
        .iter()
        .find(|line| line.contains(needle))
        .cloned()
}

/// A v1 header, by hand (PROXY protocol specification, section 2.1).
fn v1_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header (command 1) for TCP over `source`'s family, by hand (section 2.2):
/// signature, version/command, family/protocol, length, addresses, ports.
fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (family, mut addresses) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (0x11, [s.octets(), d.octets()].concat()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (0x21, [s.octets(), d.octets()].concat()),
        _ => panic!("one family for both addresses"),
    };
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&destination.port().to_be_bytes());
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x21, family]);
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(&addresses);
    out
}

/// A v2 `LOCAL` header: the balancer's own connection, no addresses.
fn v2_local() -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

/// A one-connection TCP relay playing the load balancer: it accepts a client, connects to
/// `upstream`, writes `header` (in pieces of `piece` bytes, each flushed on its own), then
/// copies both ways until either side ends. Returns the address clients connect to.
fn balancer(upstream: SocketAddr, header: Vec<u8>, piece: usize) -> SocketAddr {
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = front.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((client, _)) = front.accept() else {
            return;
        };
        let mut server = TcpStream::connect(upstream).expect("the server");
        server.set_nodelay(true).unwrap();
        for chunk in header.chunks(piece) {
            server.write_all(chunk).unwrap();
            server.flush().unwrap();
            if piece < header.len() {
                thread::sleep(Duration::from_millis(2));
            }
        }
        let (mut client_in, mut server_out) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up = thread::spawn(move || {
            let _ = std::io::copy(&mut client_in, &mut server_out);
            let _ = server_out.shutdown(std::net::Shutdown::Write);
        });
        let (mut server_in, mut client_out) = (server, client);
        let _ = std::io::copy(&mut server_in, &mut client_out);
        let _ = client_out.shutdown(std::net::Shutdown::Write);
        let _ = up.join();
    });
    address
}

fn behind_proxy(protocol: ProxyProtocol, trusted: &[&str]) -> ServerConfig {
    ServerConfig {
        proxy_protocol: Some(protocol),
        trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
        ..ServerConfig::default()
    }
}

/// A client through `front` (the relay), connected, echoing once; its id on the server.
fn connect_through(
    server: &mut WebSocketServer,
    front: SocketAddr,
    scheme: &str,
    tls: Option<TlsOptions>,
) -> (WebSocketPeer, i32) {
    let host = if scheme == "wss" {
        format!("localhost:{}", front.port())
    } else {
        front.to_string()
    };
    let target = format!("{scheme}://{host}/");
    let (mut client, id) = connect_to(server, WebSocketPeer::new(), &target, tls);
    echoes(server, &mut client, id, "through the balancer");
    (client, id)
}

fn client_addr() -> SocketAddr {
    "203.0.113.9:4711".parse().unwrap()
}

#[test]
fn proxy_v1_and_v2_report_the_clients_address() {
    let v6_client = SocketAddr::from(("2001:db8::9".parse::<Ipv6Addr>().unwrap(), 4711));
    let v6_server = SocketAddr::from((Ipv6Addr::LOCALHOST, 9));
    let cases = [
        (
            ProxyProtocol::V1,
            v1_header(client_addr(), "10.0.0.1:80".parse().unwrap()),
            client_addr(),
        ),
        (
            ProxyProtocol::V1OrV2,
            v1_header(v6_client, v6_server),
            v6_client,
        ),
        (
            ProxyProtocol::V2,
            v2_header(client_addr(), "10.0.0.1:80".parse().unwrap()),
            client_addr(),
        ),
        (
            ProxyProtocol::V1OrV2,
            v2_header(v6_client, v6_server),
            v6_client,
        ),
    ];
    for (protocol, header, expected) in cases {
        let mut server = server_with(behind_proxy(protocol, &["127.0.0.1"]));
        let front = balancer(server.local_addr().unwrap(), header, usize::MAX);
        let (_client, id) = connect_through(&mut server, front, "ws", None);
        assert_eq!(
            server.get_peer_address(id),
            Some(expected.ip()),
            "{protocol:?}"
        );
        assert_eq!(server.get_peer_port(id), Some(expected.port()));
        let socket = server.get_socket_peer_address(id).unwrap();
        assert_eq!(
            socket.ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "the balancer's"
        );
        assert_ne!(socket, expected);
        let peer = server.get_peer(id).unwrap();
        assert_eq!(peer.get_connected_host(), Some(expected.ip()));
        assert_eq!(peer.get_socket_peer_address(), Some(socket));
    }
}

#[test]
fn a_proxy_header_in_pieces_then_tls() {
    let pki = pki_for(&["localhost"]);
    // Dual-stack "*": the balancer's IPv4 address arrives as ::ffff:127.0.0.1 and must
    // match the IPv4 entry.
    let mut server = WebSocketServer::with_config(behind_proxy(ProxyProtocol::V2, &["127.0.0.1"]));
    server.set_tls_options(Some(pki.server_options())).unwrap();
    server.listen_on("*", 0).unwrap();
    let port = server.local_addr().unwrap().port();
    let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let header = v2_header(client_addr(), "10.0.0.1:443".parse().unwrap());
    let front = balancer(upstream, header, 1);
    let (mut client, id) = connect_through(&mut server, front, "wss", Some(pki.client_options()));
    assert_eq!(server.get_peer_address(id), Some(client_addr().ip()));
    assert_eq!(server.get_peer_port(id), Some(4711));
    echoes(&mut server, &mut client, id, "still TLS");
}

#[test]
fn a_v2_local_header_keeps_the_sockets_address() {
    let mut server = server_with(behind_proxy(ProxyProtocol::V1OrV2, &["127.0.0.0/8"]));
    let front = balancer(server.local_addr().unwrap(), v2_local(), usize::MAX);
    let (_client, id) = connect_through(&mut server, front, "ws", None);
    let socket = server.get_socket_peer_address(id).unwrap();
    assert_eq!(server.get_peer_address(id), Some(socket.ip()));
    assert_eq!(server.get_peer_port(id), Some(socket.port()));
}

/// Sends `bytes` straight to the server (no balancer) and polls it until the server
/// closes the connection; returns what the server sent before (nothing, for a refusal).
fn refused(server: &mut WebSocketServer, bytes: &[u8], then_wait: bool) -> (Vec<u8>, SocketAddr) {
    let mut tcp = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    let local = tcp.local_addr().unwrap();
    tcp.write_all(bytes).unwrap();
    if !then_wait {
        tcp.shutdown(std::net::Shutdown::Write).unwrap();
    }
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let _ = tcp.read_to_end(&mut got);
        got
    });
    let mut events = Vec::new();
    run_until(
        server,
        &mut [],
        &mut events,
        "the connection closed",
        |s, _, _| reader.is_finished() && s.pending_count() == 0,
    );
    assert!(events.is_empty(), "no peer, no event: {events:?}");
    assert_eq!(server.peer_count(), 0);
    (reader.join().unwrap(), local)
}

#[test]
fn bad_partial_and_oversized_headers_are_refused_with_a_logged_reason() {
    capture_logs();
    let config = ServerConfig {
        max_proxy_header_bytes: 300,
        handshake_timeout: Duration::from_millis(300),
        ..behind_proxy(ProxyProtocol::V1OrV2, &["127.0.0.1"])
    };
    let mut server = server_with(config);
    // No header: HTTP straight away.
    let (answer, local) = refused(&mut server, HEALTH.as_bytes(), true);
    assert!(answer.is_empty(), "nothing sent back: {answer:?}");
    let line = logged(&local.to_string()).expect("a logged reason");
    assert!(line.contains("no PROXY header"), "{line}");
    // Garbage in the header.
    let (answer, local) = refused(&mut server, b"PROXY TCP4 1.2.3.4 nonsense 1 2\r\n", true);
    assert!(answer.is_empty());
    let line = logged(&local.to_string()).expect("a logged reason");
    assert!(line.contains("malformed PROXY v1 header"), "{line}");
    // Larger than max_proxy_header_bytes (v2 TLVs): refused from its first 16 bytes.
    let mut big = v2_header(client_addr(), "10.0.0.1:80".parse().unwrap());
    big[14..16].copy_from_slice(&1000u16.to_be_bytes());
    let (answer, local) = refused(&mut server, &big, true);
    assert!(answer.is_empty());
    let line = logged(&local.to_string()).expect("a logged reason");
    assert!(
        line.contains("more than max_proxy_header_bytes (300)"),
        "{line}"
    );
    // A header that stops halfway: the handshake timeout ends it.
    let header = v2_header(client_addr(), "10.0.0.1:80".parse().unwrap());
    let start = Instant::now();
    let (answer, local) = refused(&mut server, &header[..20], true);
    assert!(answer.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(300));
    let line = logged(&local.to_string()).expect("a logged reason");
    assert!(
        line.contains("no whole PROXY header within the handshake timeout"),
        "{line}"
    );
    // And one whose sender gives up halfway.
    let (answer, local) = refused(&mut server, &header[..20], false);
    assert!(answer.is_empty());
    let line = logged(&local.to_string()).expect("a logged reason");
    assert!(line.contains("it ended inside its PROXY header"), "{line}");
    assert_eq!(server.refused_connections(), 0, "these were trusted");
}

#[test]
fn a_proxy_header_from_an_untrusted_address_is_refused() {
    capture_logs();
    let mut server = server_with(behind_proxy(ProxyProtocol::V2, &["10.0.0.0/8", "::1"]));
    let header = v2_header(client_addr(), "10.0.0.1:80".parse().unwrap());
    let (answer, _) = refused(&mut server, &header, true);
    assert!(answer.is_empty());
    assert_eq!(server.refused_connections(), 1);
    let line = logged("not in trusted_proxies").expect("a logged reason");
    assert!(line.contains("127.0.0.1"), "{line}");
    // Through a real client too: it sees the connection end.
    let front = balancer(server.local_addr().unwrap(), header, usize::MAX);
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&format!("ws://{front}/"), None)
        .unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "refused",
        |_, c, _| c[0].get_ready_state() == State::Closed,
    );
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(server.refused_connections(), 2);
}

#[test]
fn proxy_settings_are_checked_at_listen() {
    let no_trust = ServerConfig {
        proxy_protocol: Some(ProxyProtocol::V2),
        ..ServerConfig::default()
    };
    let no_trust_forwarded = ServerConfig {
        forwarded_header: Some(ForwardedHeader::XForwardedFor),
        ..ServerConfig::default()
    };
    let too_small = ServerConfig {
        max_proxy_header_bytes: 231,
        ..behind_proxy(ProxyProtocol::V2, &["127.0.0.1"])
    };
    let too_large = ServerConfig {
        max_proxy_header_bytes: 65552,
        ..behind_proxy(ProxyProtocol::V2, &["127.0.0.1"])
    };
    for config in [no_trust, no_trust_forwarded, too_small, too_large] {
        let mut server = WebSocketServer::with_config(config);
        let result = server.listen_on("127.0.0.1", 0);
        assert!(matches!(result, Err(Error::InvalidConfig(_))), "{result:?}");
    }
    let at_limits = ServerConfig {
        max_proxy_header_bytes: 232,
        ..behind_proxy(ProxyProtocol::V2, &["127.0.0.1"])
    };
    WebSocketServer::with_config(at_limits)
        .listen_on("127.0.0.1", 0)
        .unwrap();
}

// ----- the client's real address: forwarding headers -----

fn forwarding(header: ForwardedHeader, trusted: &[&str]) -> ServerConfig {
    ServerConfig {
        forwarded_header: Some(header),
        trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
        ..ServerConfig::default()
    }
}

/// A client connecting straight from 127.0.0.1 (the "proxy") with `header` lines.
fn connect_with_headers(server: &mut WebSocketServer, headers: &[&str]) -> (WebSocketPeer, i32) {
    let config = PeerConfig {
        handshake_headers: headers.iter().map(|h| h.to_string()).collect(),
        ..PeerConfig::default()
    };
    connect_with(server, "/", config, None)
}

#[test]
fn x_forwarded_for_names_the_client_and_its_forged_leftmost_entry_is_ignored() {
    let mut server = server_with(forwarding(ForwardedHeader::XForwardedFor, &["127.0.0.1"]));
    let (_client, id) =
        connect_with_headers(&mut server, &["X-Forwarded-For: 6.6.6.6, 203.0.113.9"]);
    assert_eq!(
        server.get_peer_address(id),
        Some("203.0.113.9".parse().unwrap())
    );
    assert_eq!(
        server.get_peer_port(id),
        Some(0),
        "X-Forwarded-For has no port"
    );
    assert_eq!(
        server.get_socket_peer_address(id).map(|a| a.ip()),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
}

#[test]
fn forwarded_quoted_ipv6_with_port() {
    let mut server = server_with(forwarding(ForwardedHeader::Forwarded, &["127.0.0.1"]));
    let (_client, id) = connect_with_headers(
        &mut server,
        &["Forwarded: for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https"],
    );
    assert_eq!(
        server.get_peer_address(id),
        Some("2001:db8:cafe::17".parse().unwrap())
    );
    assert_eq!(server.get_peer_port(id), Some(4711));
}

#[test]
fn forwarding_headers_from_an_untrusted_socket_peer_are_ignored() {
    let mut server = server_with(forwarding(ForwardedHeader::XForwardedFor, &["10.0.0.0/8"]));
    let (_client, id) = connect_with_headers(&mut server, &["X-Forwarded-For: 203.0.113.9"]);
    let socket = server.get_socket_peer_address(id).unwrap();
    assert_eq!(socket.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(server.get_peer_address(id), Some(socket.ip()));
    assert_eq!(server.get_peer_port(id), Some(socket.port()));
}

#[test]
fn a_decided_upgrade_and_a_multiplayer_server_see_the_real_client() {
    let mut server = server_with(ServerConfig {
        decide_upgrades: true,
        ..forwarding(ForwardedHeader::XForwardedFor, &["127.0.0.1"])
    });
    let mut client = WebSocketPeer::with_config(PeerConfig {
        handshake_headers: vec!["X-Forwarded-For: 203.0.113.9".into()],
        ..PeerConfig::default()
    });
    client.connect_to_url(&url(&server, "/"), None).unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "the request",
        |_, _, ev| !ev.is_empty(),
    );
    let [ServerEvent::UpgradeRequested { address, .. }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(*address, "203.0.113.9:0".parse().unwrap());

    let config = MultiplayerConfig {
        websocket: forwarding(ForwardedHeader::XForwardedFor, &["127.0.0.1"]),
        ..MultiplayerConfig::default()
    };
    let mut server = listening(WebSocketMultiplayerPeer::with_config(config));
    let mut client = Node::new(WebSocketMultiplayerPeer::with_config(MultiplayerConfig {
        websocket: ServerConfig {
            peer: PeerConfig {
                handshake_headers: vec!["X-Forwarded-For: 6.6.6.6, 198.51.100.4".into()],
                ..PeerConfig::default()
            },
            ..ServerConfig::default()
        },
        ..MultiplayerConfig::default()
    }));
    client.peer.create_client(&server.url(), None).unwrap();
    wait_joined(&mut server, &mut client);
    let id = client.id();
    assert_eq!(
        server.peer.get_peer_address(id),
        Some("198.51.100.4".parse().unwrap())
    );
    assert_eq!(server.peer.get_peer_port(id), Some(0));
    assert_eq!(
        server.peer.get_socket_peer_address(id).map(|a| a.ip()),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
}
