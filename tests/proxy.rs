//! Clients through an HTTP proxy (`CONNECT`): a real tinyproxy (Debian package `tinyproxy`,
//! installed by tests/setup-system.sh) on loopback, with its own configuration per test.
mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::godot::free_port;
use common::*;
use wspeer::*;

/// A tinyproxy in the foreground on 127.0.0.1, killed (and its directory removed) on drop.
struct Tinyproxy {
    port: u16,
    log: String,
    _child: KillOnDrop,
    _dir: TempDir,
}

impl Tinyproxy {
    /// Allows `CONNECT` only to `ports` (tinyproxy's own restriction), and requires
    /// `auth` (user, password) when given.
    fn start(ports: &[u16], auth: Option<(&str, &str)>) -> Tinyproxy {
        let dir = TempDir::new("tinyproxy");
        let log = dir.0.join("tinyproxy.log").to_string_lossy().into_owned();
        // tinyproxy has no "port 0": take one that was free a moment ago, and retry if
        // another process got it first.
        for _ in 0..5 {
            let port = free_port();
            let mut conf = format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nMaxClients 20\n\
                 LogLevel Info\nLogFile \"{log}\"\n"
            );
            for p in ports {
                conf.push_str(&format!("ConnectPort {p}\n"));
            }
            if let Some((user, password)) = auth {
                conf.push_str(&format!("BasicAuth {user} {password}\n"));
            }
            let conf = dir.write("tinyproxy.conf", &conf);
            let child = Command::new("tinyproxy")
                .args(["-d", "-c", &conf])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tinyproxy (Debian package tinyproxy: run tests/setup-system.sh)");
            let mut child = KillOnDrop(child);
            let start = Instant::now();
            while start.elapsed() < TIMEOUT {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Tinyproxy {
                        port,
                        log,
                        _child: child,
                        _dir: dir,
                    };
                }
                if child.0.try_wait().expect("try_wait").is_some() {
                    break; // most likely the port was taken: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "tinyproxy did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A client through `proxy` to `url`, polled with the server until open; returns it and
/// its server id.
fn open_through(
    server: &mut WebSocketServer,
    proxy: Proxy,
    url: &str,
    tls: Option<TlsOptions>,
) -> (WebSocketPeer, i32) {
    let mut client = WebSocketPeer::new();
    client.set_proxy(Some(proxy));
    client.connect_to_url(url, tls).expect("connect_to_url");
    let mut events = Vec::new();
    run_until(
        server,
        &mut [&mut client],
        &mut events,
        "client open through the proxy",
        |_, c, ev| {
            assert_ne!(
                c[0].get_ready_state(),
                State::Closed,
                "closed: {:?}",
                c[0].get_last_error()
            );
            c[0].get_ready_state() == State::Open
                && ev
                    .iter()
                    .any(|e| matches!(e, ServerEvent::ClientConnected { .. }))
        },
    );
    let id = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::ClientConnected { id, .. } => Some(*id),
            _ => None,
        })
        .expect("connected event");
    (client, id)
}

/// Text to the server and its echo back, through the tunnel.
fn round_trip(server: &mut WebSocketServer, client: &mut WebSocketPeer, id: i32, text: &str) {
    client.send_text(text).expect("send_text");
    let mut events = Vec::new();
    run_until(
        server,
        &mut [client],
        &mut events,
        "data at the server",
        |_, _, ev| ev.contains(&ServerEvent::DataReceived { id }),
    );
    let peer = server.get_peer(id).expect("peer");
    let packet = peer.recv().expect("a packet");
    assert_eq!(packet.as_text(), Some(text));
    peer.send_packet(&packet).expect("echo");
    run_until(server, &mut [client], &mut events, "the echo", |_, c, _| {
        c[0].get_available_packet_count() > 0
    });
    assert_eq!(client.recv().expect("echo").as_text(), Some(text));
}

/// Polls `client` alone until it is closed; returns the error it ended with.
fn closed_error(client: &mut WebSocketPeer, within: Duration) -> String {
    let start = Instant::now();
    while client.get_ready_state() != State::Closed {
        assert!(start.elapsed() < within, "not closed within {within:?}");
        client.poll();
        std::thread::sleep(Duration::from_millis(1));
    }
    client
        .get_last_error()
        .map(ToString::to_string)
        .expect("an error")
}

#[test]
fn ws_through_tinyproxy() {
    let mut server = server();
    let server_port = server.local_addr().unwrap().port();
    let proxy = Tinyproxy::start(&[server_port], None);
    let target = url(&server, "/game?room=1");
    let (mut client, id) = open_through(
        &mut server,
        Proxy::new(format!("http://{}", proxy.address())),
        &target,
        None,
    );
    // The socket goes to the proxy; the server saw the request the client made.
    assert_eq!(client.get_connected_port(), proxy.port);
    let request = server
        .get_peer(id)
        .unwrap()
        .get_handshake_request()
        .unwrap();
    assert_eq!(
        (request.path.as_str(), request.query.as_deref()),
        ("/game", Some("room=1"))
    );
    round_trip(&mut server, &mut client, id, "through the proxy");
    let big = "x".repeat(60_000); // many TCP segments through tinyproxy
    round_trip(&mut server, &mut client, id, &big);
    assert!(
        proxy.log().contains(&format!("127.0.0.1:{server_port}")),
        "tinyproxy's log does not show the CONNECT: {}",
        proxy.log()
    );
}

#[test]
fn wss_through_tinyproxy_verifies_the_target_not_the_proxy() {
    // The certificate names only "localhost": TLS (SNI and verification) is end to end
    // with the target, through the tunnel, and tinyproxy resolves the name.
    let pki = pki_for(&["localhost"]);
    let mut server = tls_server_with(ServerConfig::default(), &pki);
    let server_port = server.local_addr().unwrap().port();
    let proxy = Tinyproxy::start(&[server_port], None);
    let (mut client, id) = open_through(
        &mut server,
        Proxy::new(proxy.address()),
        &format!("wss://localhost:{server_port}/"),
        Some(pki.client_options()),
    );
    assert_eq!(client.get_connected_port(), proxy.port);
    round_trip(&mut server, &mut client, id, "secret through the proxy");
}

#[test]
fn basic_auth_given_works_and_wrong_or_missing_is_refused() {
    let mut server = server();
    let server_port = server.local_addr().unwrap().port();
    let proxy = Tinyproxy::start(&[server_port], Some(("gamer", "s3cret")));
    let target = url(&server, "/");

    // In the URL, and set apart.
    let (mut client, id) = open_through(
        &mut server,
        Proxy::new(format!("http://gamer:s3cret@{}", proxy.address())),
        &target,
        None,
    );
    round_trip(&mut server, &mut client, id, "authorized");
    let (mut client, id) = open_through(
        &mut server,
        Proxy::new(proxy.address()).with_basic_auth("gamer", "s3cret"),
        &target,
        None,
    );
    round_trip(&mut server, &mut client, id, "authorized again");

    // tinyproxy 1.11 answers a CONNECT without credentials "407 Proxy Authentication
    // Required" and one with wrong credentials "401 Unauthorized"; either way the error
    // carries the proxy's status line.
    for (proxy_setting, expected) in [
        (
            Proxy::new(proxy.address()).with_basic_auth("gamer", "wrong"),
            401,
        ),
        (Proxy::new(proxy.address()), 407),
    ] {
        let mut client = WebSocketPeer::new();
        client.set_proxy(Some(proxy_setting));
        client.connect_to_url(&target, None).unwrap();
        let why = closed_error(&mut client, TIMEOUT);
        let Some(Error::ProxyRefused { status, reason, .. }) = client.get_last_error() else {
            panic!("expected ProxyRefused: {why}");
        };
        assert_eq!(*status, expected, "{why}");
        assert!(!reason.is_empty(), "{why}");
        assert_eq!(
            why,
            format!(
                "proxy {} refused CONNECT 127.0.0.1:{server_port}: {status} {reason}",
                proxy.address()
            )
        );
        assert_eq!(client.get_close_code(), -1);
    }
}

#[test]
fn a_port_the_proxy_does_not_allow_fails_with_its_403() {
    let mut server = server();
    let server_port = server.local_addr().unwrap().port();
    let allowed = free_port();
    let proxy = Tinyproxy::start(&[allowed], None);
    let mut client = WebSocketPeer::new();
    client.set_proxy(Some(Proxy::new(proxy.address())));
    client.connect_to_url(&url(&server, "/"), None).unwrap();
    let why = closed_error(&mut client, TIMEOUT);
    server.poll();
    assert_eq!(server.peer_count() + server.pending_count(), 0);
    match client.get_last_error() {
        Some(Error::ProxyRefused {
            proxy: p,
            target,
            status,
            ..
        }) => {
            assert_eq!(p, &proxy.address());
            assert_eq!(target, &format!("127.0.0.1:{server_port}"));
            assert_eq!(*status, 403);
        }
        other => panic!("expected ProxyRefused, got {other:?}"),
    }
    assert!(
        why.contains("refused CONNECT") && why.contains("403"),
        "{why}"
    );
}

#[test]
fn no_proxy_listening_fails_cleanly_and_quickly() {
    let nothing = free_port();
    let mut client = WebSocketPeer::new();
    client.config_mut().connect_timeout = Duration::from_secs(5);
    client.set_proxy(Some(Proxy::new(format!("127.0.0.1:{nothing}"))));
    let start = Instant::now();
    client
        .connect_to_url("ws://example.invalid:9/", None)
        .unwrap();
    let why = closed_error(&mut client, Duration::from_secs(5));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(client.get_last_error(), Some(Error::Connect(_))),
        "{why}"
    );
    assert!(why.contains(&format!("proxy 127.0.0.1:{nothing}")), "{why}");
}

#[test]
fn a_proxy_that_never_answers_ends_at_the_connect_timeout() {
    // Accepts, reads the CONNECT, says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = silent.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.read(&mut buf); // until the client gives up
        String::from_utf8(head).unwrap()
    });
    let mut client = WebSocketPeer::new();
    client.config_mut().connect_timeout = Duration::from_millis(500);
    client.set_proxy(Some(
        Proxy::new(address.to_string()).with_basic_auth("a", "b"),
    ));
    let start = Instant::now();
    client.connect_to_url("wss://[::1]:4433/x", None).unwrap();
    closed_error(&mut client, TIMEOUT);
    assert!(matches!(
        client.get_last_error(),
        Some(Error::ConnectTimeout)
    ));
    assert!(start.elapsed() < Duration::from_secs(3));
    let head = reader.join().unwrap();
    assert_eq!(
        head,
        "CONNECT [::1]:4433 HTTP/1.1\r\nHost: [::1]:4433\r\n\
         Proxy-Authorization: Basic YTpi\r\n\r\n"
    );
}

#[test]
fn a_bad_proxy_address_is_refused_at_connect() {
    for bad in [
        "127.0.0.1",
        "https://127.0.0.1:3128",
        "socks5://127.0.0.1:1080",
        "http://127.0.0.1:3128/path",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "::1:3128",
        "http://user@127.0.0.1:3128",
        ":3128",
    ] {
        let mut client = WebSocketPeer::new();
        client.set_proxy(Some(Proxy::new(bad)));
        match client.connect_to_url("ws://127.0.0.1:9/", None) {
            Err(Error::InvalidConfig(why)) => assert!(why.contains("proxy"), "{why}"),
            other => panic!("{bad}: {other:?}"),
        }
        assert_eq!(client.get_ready_state(), State::Closed);
    }
    // The password never shows in messages or Debug output.
    let proxy = Proxy::new("http://me:hunter2@proxy.example").with_basic_auth("me", "hunter3");
    let mut client = WebSocketPeer::new();
    client.set_proxy(Some(proxy.clone()));
    let why = client
        .connect_to_url("ws://x/", None)
        .unwrap_err()
        .to_string();
    let debug = format!("{proxy:?}");
    for text in [why, debug] {
        assert!(!text.contains("hunter"), "{text}");
    }
}
