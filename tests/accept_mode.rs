//! Deciding upgrades before `101` (`ServerConfig::decide_upgrades`) on real loopback
//! sockets: a token in the query, an Origin allow-list, a decision taken frames later, an
//! undecided request timing out, and the same on a `WebSocketMultiplayerPeer` server.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::multiplayer::{Node, listening, tick, wait_for};
use common::*;
use wspeer::*;

fn deciding() -> ServerConfig {
    ServerConfig {
        decide_upgrades: true,
        ..ServerConfig::default()
    }
}

/// The token a request carries in its query string (`?token=...`).
fn token(request: &HandshakeRequest) -> Option<&str> {
    request
        .query
        .as_deref()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// Polls `server` and `clients` until an `UpgradeRequested` arrives; returns its fields.
fn next_request(
    server: &mut WebSocketServer,
    clients: &mut [&mut WebSocketPeer],
) -> (i32, HandshakeRequest, SocketAddr) {
    let mut events = Vec::new();
    run_until(
        server,
        clients,
        &mut events,
        "an upgrade request",
        |_, _, ev| {
            ev.iter()
                .any(|e| matches!(e, ServerEvent::UpgradeRequested { .. }))
        },
    );
    events
        .into_iter()
        .find_map(|e| match e {
            ServerEvent::UpgradeRequested {
                id,
                request,
                address,
            } => Some((id, request, address)),
            _ => None,
        })
        .unwrap()
}

/// A raw upgrade request for `target` with extra header lines.
fn raw_request(addr: SocketAddr, target: &str, extra: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    tcp
}

/// Polls `server` while reading `tcp` to its end; returns everything read.
fn read_to_end(server: &mut WebSocketServer, tcp: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        server.poll();
        while server.pop_event().is_some() {}
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed: {e}; read so far {got:?}"),
        }
        assert!(start.elapsed() < TIMEOUT, "no end; read so far {got:?}");
    }
}

#[test]
fn a_token_in_the_query_is_accepted() {
    let mut config = deciding();
    config.peer.supported_protocols = vec!["game".into()];
    let mut server = server_with(config);
    let mut client = WebSocketPeer::new();
    client.set_supported_protocols(&["game"]);
    client
        .connect_to_url(&url(&server, "/play?room=3&token=good"), None)
        .unwrap();
    let (id, request, address) = next_request(&mut server, &mut [&mut client]);
    assert_eq!(request.path, "/play");
    assert_eq!(token(&request), Some("good"));
    assert_eq!(request.offered_protocols(), ["game"]);
    assert_eq!(address.ip(), std::net::Ipv4Addr::LOCALHOST);
    // Undecided: a pending handshake, no peer yet.
    assert!(server.get_peer(id).is_none());
    assert_eq!((server.peer_count(), server.pending_count()), (0, 1));
    assert_eq!(client.get_ready_state(), State::Connecting);

    server
        .accept_upgrade(id, None, &["X-Welcome: player"])
        .unwrap();
    assert!(matches!(
        server.accept_upgrade(id, None, &[]),
        Err(Error::NoUpgradePending)
    ));
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "connected",
        |_, c, ev| {
            c[0].get_ready_state() == State::Open
                && ev.contains(&ServerEvent::ClientConnected {
                    id,
                    protocol: "game".into(),
                })
        },
    );
    assert_eq!(client.get_selected_protocol(), "game");
    assert!(
        client
            .get_handshake_response_headers()
            .contains(&("x-welcome".into(), "player".into()))
    );
    let peer = server.get_peer(id).expect("connected after the accept");
    assert_eq!(
        peer.get_handshake_request().and_then(token),
        Some("good"),
        "the request stays readable"
    );
    peer.send_text("welcome").unwrap();
    run_clients_until(&mut [&mut client], "the message", |c| {
        c[0].get_available_packet_count() == 1
    });
    assert_eq!(client.get_packet().unwrap(), b"welcome");
}

#[test]
fn a_wrong_token_is_rejected_with_401_and_a_body() {
    let mut server = server_with(deciding());
    let addr = server.local_addr().unwrap();
    let mut tcp = raw_request(addr, "/play?token=bad", "");
    let (id, request, _) = next_request(&mut server, &mut []);
    assert_eq!(token(&request), Some("bad"));
    server
        .reject_upgrade(
            id,
            401,
            &["WWW-Authenticate: Bearer", "Content-Type: text/plain"],
            b"unknown token\n",
        )
        .unwrap();
    let answer = read_to_end(&mut server, &mut tcp);
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nWWW-Authenticate: Bearer\r\n\
         Content-Type: text/plain\r\nContent-Length: 14\r\n\r\nunknown token\n"
    );
    drop(tcp);
    let start = Instant::now();
    while server.slot_count() > 0 {
        assert!(start.elapsed() < TIMEOUT, "the rejected connection lingers");
        server.poll();
        assert_eq!(server.pop_event(), None, "a rejection reports nothing more");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!((server.peer_count(), server.pending_count()), (0, 0));
    assert!(matches!(
        server.reject_upgrade(id, 401, &[], b""),
        Err(Error::PeerNotFound(i)) if i == id
    ));

    // A wspeer client sees the status and the body.
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&url(&server, "/?token=bad"), None)
        .unwrap();
    let (id, _, _) = next_request(&mut server, &mut [&mut client]);
    server
        .reject_upgrade(id, 401, &[], b"unknown token")
        .unwrap();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut Vec::new(),
        "closed",
        |_, c, _| c[0].get_ready_state() == State::Closed,
    );
    let error = client.get_last_error().expect("why").to_string();
    assert!(
        error.contains("401 Unauthorized") && error.contains("unknown token"),
        "{error}"
    );
}

#[test]
fn an_origin_allow_list() {
    const ALLOWED: [&str; 2] = ["https://game.example", "https://www.game.example"];
    let mut server = server_with(deciding());
    let mut good = WebSocketPeer::new();
    good.set_handshake_headers(&["Origin: https://game.example"]);
    good.connect_to_url(&url(&server, "/"), None).unwrap();
    let mut evil = WebSocketPeer::new();
    evil.set_handshake_headers(&["Origin: https://evil.example"]);
    evil.connect_to_url(&url(&server, "/"), None).unwrap();
    let mut events = Vec::new();
    let mut decided = 0;
    run_until(
        &mut server,
        &mut [&mut good, &mut evil],
        &mut events,
        "both decided and settled",
        |server, c, ev| {
            for event in ev.iter().skip(decided) {
                decided += 1;
                let ServerEvent::UpgradeRequested { id, request, .. } = event else {
                    continue;
                };
                if request
                    .header("origin")
                    .is_some_and(|o| ALLOWED.contains(&o))
                {
                    server.accept_upgrade(*id, None, &[]).unwrap();
                } else {
                    server
                        .reject_upgrade(*id, 403, &[], b"origin not allowed")
                        .unwrap();
                }
            }
            c[0].get_ready_state() == State::Open && c[1].get_ready_state() == State::Closed
        },
    );
    let requested = events
        .iter()
        .filter(|e| matches!(e, ServerEvent::UpgradeRequested { .. }))
        .count();
    let connected = events
        .iter()
        .filter(|e| matches!(e, ServerEvent::ClientConnected { .. }))
        .count();
    assert_eq!((requested, connected), (2, 1));
    let error = evil.get_last_error().unwrap().to_string();
    assert!(
        error.contains("403 Forbidden") && error.contains("origin not allowed"),
        "{error}"
    );
}

#[test]
fn the_decision_can_come_frames_later() {
    let mut server = server_with(deciding());
    let mut client = WebSocketPeer::new();
    client.connect_to_url(&url(&server, "/slow"), None).unwrap();
    let (id, _, _) = next_request(&mut server, &mut [&mut client]);
    // Thirty frames of an application looking the token up elsewhere.
    for _ in 0..30 {
        server.poll();
        client.poll();
        assert_eq!(server.pop_event(), None);
        assert_eq!(client.get_ready_state(), State::Connecting);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.pending_count(), 1);
    server.accept_upgrade(id, None, &[]).unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "connected",
        |_, c, ev| {
            c[0].get_ready_state() == State::Open
                && ev.contains(&ServerEvent::ClientConnected {
                    id,
                    protocol: String::new(),
                })
        },
    );
}

#[test]
fn an_undecided_request_ends_at_the_handshake_timeout() {
    let mut config = deciding();
    config.handshake_timeout = Duration::from_millis(300);
    let mut server = server_with(config);
    let addr = server.local_addr().unwrap();
    let mut tcp = raw_request(addr, "/", "");
    let (id, _, _) = next_request(&mut server, &mut []);
    let start = Instant::now();
    let answer = read_to_end(&mut server, &mut tcp);
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert!(start.elapsed() >= Duration::from_millis(250));
    server.poll();
    assert_eq!(server.pending_count(), 0);
    assert!(matches!(
        server.accept_upgrade(id, None, &[]),
        Err(Error::PeerNotFound(i)) if i == id
    ));
}

#[test]
fn the_default_server_answers_at_once() {
    let mut server = server();
    let (_client, id) = connect(&mut server);
    assert!(matches!(
        server.accept_upgrade(id, None, &[]),
        Err(Error::PeerNotFound(_))
    ));
}

#[test]
fn a_multiplayer_server_decides_too() {
    let mut config = MultiplayerConfig::default();
    config.websocket.decide_upgrades = true;
    let mut server = listening(WebSocketMultiplayerPeer::with_config(config));
    let base = server.url();
    let mut good = Node::new(WebSocketMultiplayerPeer::new());
    good.peer
        .create_client(&format!("{base}?token=good"), None)
        .unwrap();
    let mut bad = Node::new(WebSocketMultiplayerPeer::new());
    bad.peer
        .create_client(&format!("{base}?token=bad"), None)
        .unwrap();
    let mut decided = 0;
    let mut accepted = None;
    wait_for("both decided", || {
        tick(&mut [&mut server, &mut good, &mut bad]);
        for event in server.events.iter().skip(decided) {
            decided += 1;
            let MultiplayerEvent::UpgradeRequested { id, request, .. } = event else {
                continue;
            };
            // Not a peer before the decision.
            assert!(server.peer.get_peer(*id).is_none());
            assert!(server.peer.peer_ids().is_empty());
            if token(request) == Some("good") {
                server.peer.accept_upgrade(*id, None, &[]).unwrap();
                accepted = Some(*id);
            } else {
                server.peer.reject_upgrade(*id, 403, &[], b"no").unwrap();
            }
        }
        good.has(&MultiplayerEvent::ConnectedToServer)
            && bad.has(&MultiplayerEvent::ConnectionFailed)
    });
    let id = accepted.expect("the good client was accepted");
    wait_for("the server admits it", || {
        tick(&mut [&mut server, &mut good]);
        server.has(&MultiplayerEvent::PeerConnected(id))
    });
    assert_eq!(good.id(), id);
    assert_eq!(server.peer.peer_ids(), [id]);
    assert!(!server.events.iter().any(|e| matches!(
        e,
        MultiplayerEvent::PeerConnected(other) if *other != id
    )));
    assert!(matches!(
        good.peer.accept_upgrade(id, None, &[]),
        Err(Error::NoUpgradePending)
    ));
}

#[test]
fn decisions_work_over_tls() {
    let pki = pki_for(&["127.0.0.1"]);
    let mut server = tls_server_with(deciding(), &pki);
    let mut good = WebSocketPeer::new();
    good.connect_to_url(
        &wss_url(&server, "/?token=good"),
        Some(pki.client_options()),
    )
    .unwrap();
    let mut bad = WebSocketPeer::new();
    bad.connect_to_url(&wss_url(&server, "/?token=bad"), Some(pki.client_options()))
        .unwrap();
    let mut events = Vec::new();
    let mut decided = 0;
    run_until(
        &mut server,
        &mut [&mut good, &mut bad],
        &mut events,
        "both decided and settled",
        |server, c, ev| {
            for event in ev.iter().skip(decided) {
                decided += 1;
                if let ServerEvent::UpgradeRequested { id, request, .. } = event {
                    match token(request) {
                        Some("good") => server.accept_upgrade(*id, None, &[]).unwrap(),
                        _ => server.reject_upgrade(*id, 403, &[], b"no").unwrap(),
                    }
                }
            }
            c[0].get_ready_state() == State::Open && c[1].get_ready_state() == State::Closed
        },
    );
    let error = bad.get_last_error().unwrap().to_string();
    assert!(error.contains("403 Forbidden"), "{error}");
}
