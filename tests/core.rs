//! The core contract on real loopback sockets: round trips, limits, closes, timeouts,
//! sub-protocols, headers, back-pressure, id lifecycle and non-blocking resolution.

#![allow(clippy::field_reassign_with_default)] // configs read best as "defaults, then this change"

mod common;
mod rawws;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use wspeer::*;

fn events_until(
    server: &mut WebSocketServer,
    clients: &mut [&mut WebSocketPeer],
    what: &str,
    done: impl Fn(&[ServerEvent]) -> bool,
) -> Vec<ServerEvent> {
    let mut events = Vec::new();
    run_until(server, clients, &mut events, what, |_, _, ev| done(ev));
    events
}

fn disconnected(id: i32) -> impl Fn(&[ServerEvent]) -> bool {
    move |ev| {
        ev.iter()
            .any(|e| matches!(e, ServerEvent::ClientDisconnected { id: i, .. } if *i == id))
    }
}

/// Polls the server at a fixed (possibly future) instant until `done`.
fn server_at_until(
    server: &mut WebSocketServer,
    now: Instant,
    what: &str,
    mut done: impl FnMut(&mut WebSocketServer, &[ServerEvent]) -> bool,
) -> Vec<ServerEvent> {
    let start = Instant::now();
    let mut events = Vec::new();
    loop {
        server.poll_at(now);
        events.extend(server.events());
        if done(server, &events) {
            return events;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out waiting for: {what}; events: {events:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A hand-driven client, upgraded on a helper thread while this thread polls the server;
/// returns it with the id the server gave it.
fn raw_client(server: &mut WebSocketServer) -> (rawws::RawConn, i32) {
    let addr = server.local_addr().unwrap();
    let upgrading = std::thread::spawn(move || rawws::RawConn::connect_with(addr, "/", ""));
    let start = Instant::now();
    while !upgrading.is_finished() {
        server.poll();
        assert!(start.elapsed() < TIMEOUT, "raw upgrade stalled");
        std::thread::sleep(Duration::from_micros(200));
    }
    let conn = upgrading.join().unwrap().0;
    let events = server_at_until(server, Instant::now(), "raw client connected", |_, ev| {
        connected_id(ev).is_some()
    });
    (conn, connected_id(&events).unwrap())
}

fn connected_id(events: &[ServerEvent]) -> Option<i32> {
    events.iter().find_map(|e| match e {
        ServerEvent::ClientConnected { id, .. } => Some(*id),
        _ => None,
    })
}

#[test]
fn server_initiated_close_carries_code_and_reason() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);
    server.disconnect_peer(id, 4001, "srv bye").unwrap();
    let events = events_until(
        &mut server,
        &mut [&mut client],
        "disconnect",
        disconnected(id),
    );
    run_clients_until(&mut [&mut client], "client closed", |c| {
        c[0].get_ready_state() == State::Closed
    });
    assert_eq!(client.get_close_code(), 4001);
    assert_eq!(client.get_close_reason(), "srv bye");
    assert!(client.get_last_error().is_none());
    assert!(events.contains(&ServerEvent::ClientDisconnected {
        id,
        was_clean: true
    }));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ServerEvent::ClientCloseRequest { .. })),
        "a close we started is not the client's request: {events:?}"
    );
}

#[test]
fn abort_is_unclean_on_both_sides() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);
    client.close(-1, "").unwrap();
    assert_eq!(
        client.get_ready_state(),
        State::Closed,
        "abort is immediate"
    );
    assert_eq!(client.get_close_code(), -1);
    let events = events_until(&mut server, &mut [], "disconnect", disconnected(id));
    assert!(events.contains(&ServerEvent::ClientDisconnected {
        id,
        was_clean: false
    }));
    assert_eq!(server.get_peer(id).unwrap().get_close_code(), -1);
    assert!(matches!(
        server.get_peer(id).unwrap().get_last_error(),
        Some(Error::ConnectionLost(_))
    ));
}

#[test]
fn packets_stay_readable_after_the_close() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);
    for text in ["one", "two", "three"] {
        server.get_peer(id).unwrap().send_text(text).unwrap();
    }
    server.disconnect_peer(id, 1000, "done").unwrap();
    events_until(
        &mut server,
        &mut [&mut client],
        "disconnect",
        disconnected(id),
    );
    run_clients_until(&mut [&mut client], "closed", |c| {
        c[0].get_ready_state() == State::Closed
    });
    let got: Vec<String> = client
        .packets()
        .map(|p| p.as_text().unwrap().to_string())
        .collect();
    assert_eq!(got, ["one", "two", "three"]);

    // Server side: unread packets survive the ClientDisconnected event until the next poll.
    let (mut client, id) = connect(&mut server);
    client.send_text("a").unwrap();
    client.send_text("b").unwrap();
    client.close(1000, "").unwrap();
    let mut events = Vec::new();
    let start = Instant::now();
    while !disconnected(id)(&events) {
        server.poll();
        client.poll();
        // Only look at events; do not touch the peer until it has disconnected.
        events.extend(server.events());
        assert!(start.elapsed() < TIMEOUT);
    }
    let peer = server
        .get_peer(id)
        .expect("still there until the next poll");
    assert_eq!(peer.get_ready_state(), State::Closed);
    assert_eq!(peer.get_available_packet_count(), 2);
    assert_eq!(peer.get_packet().unwrap(), b"a");
    server.poll();
    assert!(server.get_peer(id).is_none(), "removed by the next poll");
}

#[test]
fn message_at_the_limit_passes_and_over_it_closes_1009() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);
    let exact = vec![7u8; DEFAULT_BUFFER_SIZE];
    server.get_peer(id).unwrap().put_packet(&exact).unwrap();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut Vec::new(),
        "exact",
        |_, c, _| c[0].get_available_packet_count() == 1,
    );
    assert_eq!(client.get_packet().unwrap(), exact);

    // Server to client, one byte over the client's limit (the server has no byte limit).
    let mut config = ServerConfig::default();
    config.peer.outbound_buffer_size = 0;
    let mut server = server_with(config);
    let (mut client, id) = connect(&mut server);
    server
        .get_peer(id)
        .unwrap()
        .put_packet(&vec![1u8; DEFAULT_BUFFER_SIZE + 1])
        .unwrap();
    let events = events_until(&mut server, &mut [&mut client], "1009", disconnected(id));
    run_clients_until(&mut [&mut client], "closed", |c| {
        c[0].get_ready_state() == State::Closed
    });
    assert_eq!(client.get_close_code(), 1009);
    assert_eq!(client.get_close_reason(), "Message too big");
    assert!(matches!(
        client.get_last_error(),
        Some(Error::Protocol { code: 1009, .. })
    ));
    assert_eq!(
        client.get_available_packet_count(),
        0,
        "nothing partial delivered"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ServerEvent::ClientCloseRequest { code: 1009, .. }))
    );

    // Client to server: the server's peer closes with 1009.
    let mut server = common::server();
    let mut config = PeerConfig::default();
    config.outbound_buffer_size = 0;
    let (mut client, id) = connect_with(&mut server, "/", config, None);
    client
        .put_packet(&vec![2u8; DEFAULT_BUFFER_SIZE + 1])
        .unwrap();
    events_until(
        &mut server,
        &mut [&mut client],
        "disconnect",
        disconnected(id),
    );
    assert_eq!(server.get_peer(id).unwrap().get_close_code(), 1009);
    run_clients_until(&mut [&mut client], "closed", |c| {
        c[0].get_ready_state() == State::Closed
    });
    assert_eq!(client.get_close_code(), 1009);
}

#[test]
fn send_refuses_bad_input_and_oversized_messages() {
    let mut peer = WebSocketPeer::new();
    assert!(matches!(peer.send_text("early"), Err(Error::NotOpen)));
    let mut server = server();
    let (mut client, _) = connect(&mut server);
    assert!(matches!(
        client.send(&[0xC3, 0x28], WriteMode::Text),
        Err(Error::InvalidUtf8)
    ));
    let too_big = vec![0u8; DEFAULT_BUFFER_SIZE + 1];
    assert!(matches!(
        client.put_packet(&too_big),
        Err(Error::MessageTooLarge { size, limit: DEFAULT_BUFFER_SIZE }) if size == too_big.len()
    ));
    assert_eq!(client.get_current_outbound_buffered_amount(), 0);
    assert!(matches!(
        client.close(1005, ""),
        Err(Error::InvalidCloseCode(1005))
    ));
    assert_eq!(
        client.get_ready_state(),
        State::Open,
        "a refused close changes nothing"
    );
}

#[test]
fn close_timeout_ends_a_peer_that_never_answers() {
    let mut server = server();
    let (mut silent, id) = raw_client(&mut server);
    server.disconnect_peer(id, 1000, "bye").unwrap();
    server.poll();
    let frame = silent.expect_frame("close frame");
    assert_eq!(frame.close_code().map(|(code, _)| code), Some(1000));
    assert_eq!(
        server.get_peer(id).unwrap().get_ready_state(),
        State::Closing
    );
    // The remote never answers: one poll past close_timeout ends it, uncleanly.
    let later = Instant::now() + PeerConfig::default().close_timeout + Duration::from_millis(10);
    let events = server_at_until(&mut server, later, "timeout", |_, ev| disconnected(id)(ev));
    assert!(events.contains(&ServerEvent::ClientDisconnected {
        id,
        was_clean: false
    }));
    assert!(matches!(
        server.get_peer(id).unwrap().get_last_error(),
        Some(Error::CloseTimeout)
    ));
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let mut server = server();
    let (mut stream, _) = raw_client(&mut server);
    stream.send(&rawws::client(rawws::OP_PING, b"are you there"));
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let _ = tx.send(stream.read_frame().ok());
    });
    let start = Instant::now();
    let frame = loop {
        server.poll();
        if let Ok(frame) = rx.try_recv() {
            break frame.expect("pong");
        }
        assert!(start.elapsed() < TIMEOUT, "no pong");
        std::thread::sleep(Duration::from_millis(1));
    };
    reader.join().unwrap();
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (0xA, &b"are you there"[..])
    );
    assert!(frame.mask.is_none());
}

/// The server's heartbeat through its timer heap, on real sockets but simulated time: each
/// round polls once just past an interval, so no wall-clock window decides the outcome.
/// (The heartbeat rules themselves are unit-tested in `src/proto/tests.rs`.)
#[test]
fn heartbeat_keeps_a_live_peer_and_drops_a_silent_one() {
    let interval = Duration::from_secs(1);
    let mut config = ServerConfig::default();
    config.peer.heartbeat_interval = interval;
    let mut server = server_with(config);
    let (mut live, live_id) = raw_client(&mut server);
    let (mut silent, silent_id) = raw_client(&mut server);
    // Both peers opened before this instant, so their first ping is due by t0 + interval.
    let t0 = Instant::now();
    for round in 1..=3u32 {
        server.poll_at(t0 + interval * round + Duration::from_millis(1));
        let events: Vec<ServerEvent> = server.events().collect();
        let silent_gone = events.contains(&ServerEvent::ClientDisconnected {
            id: silent_id,
            was_clean: false,
        });
        assert_eq!(silent_gone, round == 2, "round {round}: {events:?}");
        assert!(
            !disconnected(live_id)(&events),
            "live peer dropped in round {round}"
        );
        if round == 1 {
            let ping = silent.expect_frame("the silent peer's first ping");
            assert_eq!(ping.opcode, rawws::OP_PING);
        }
        let ping = live.expect_frame(&format!("ping {round}"));
        assert_eq!(ping.opcode, rawws::OP_PING, "round {round}");
        // Loopback delivers the pong before `send` returns: the next poll reads it before
        // its timer fires.
        live.send(&rawws::client(rawws::OP_PONG, &ping.payload));
    }
    assert!(matches!(
        server.get_peer(live_id).map(|p| p.get_ready_state()),
        Some(State::Open)
    ));
}

/// A client's heartbeat really pings, survives while answered, and drops an unanswering
/// server at the second interval; with the default settings no ping is ever sent.
#[test]
fn heartbeat_is_off_by_default_and_settable_on_clients() {
    assert_eq!(PeerConfig::default().heartbeat_interval, Duration::ZERO);
    for interval in [Duration::ZERO, Duration::from_millis(500)] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = PeerConfig::default();
        config.heartbeat_interval = interval;
        let mut client = WebSocketPeer::with_config(config);
        client
            .connect_to_url(&format!("ws://{addr}/"), None)
            .unwrap();
        let t0 = Instant::now();
        let accepting = std::thread::spawn(move || rawws::RawConn::accept(&listener));
        let start = Instant::now();
        while !accepting.is_finished() {
            client.poll_at(t0);
            assert!(start.elapsed() < TIMEOUT, "the client never connected");
            std::thread::sleep(Duration::from_micros(200));
        }
        let (mut server_side, request) = accepting.join().unwrap();
        server_side.send(&rawws::RawConn::response_101(&request));
        let start = Instant::now();
        while client.get_ready_state() != State::Open {
            client.poll_at(t0);
            assert!(start.elapsed() < TIMEOUT, "the client never opened");
            std::thread::sleep(Duration::from_micros(200));
        }
        if interval.is_zero() {
            client.poll_at(t0 + Duration::from_secs(3600));
            server_side.expect_silence(Duration::from_millis(100), "no heartbeat by default");
            assert_eq!(client.get_ready_state(), State::Open);
            continue;
        }
        client.poll_at(t0 + interval + Duration::from_millis(1));
        let ping = server_side.expect_frame("the client's first ping");
        assert_eq!(ping.opcode, rawws::OP_PING);
        assert!(ping.mask.is_some(), "client frames are masked");
        server_side.send(&rawws::server(rawws::OP_PONG, &ping.payload));
        client.poll_at(t0 + interval * 2 + Duration::from_millis(1));
        assert_eq!(
            client.get_ready_state(),
            State::Open,
            "answered: still open"
        );
        let ping = server_side.expect_frame("the client's second ping");
        assert_eq!(ping.opcode, rawws::OP_PING);
        // Not answered this time: the next interval drops the connection.
        client.poll_at(t0 + interval * 3 + Duration::from_millis(1));
        assert_eq!(client.get_ready_state(), State::Closed);
        assert!(matches!(
            client.get_last_error(),
            Some(Error::HeartbeatTimeout)
        ));
        assert_eq!(client.get_close_code(), -1);
    }
}

/// Per-peer statistics on real sockets, both sides: the server's heartbeat times its pings
/// with the `now` given to `poll_at` (so each sample is exactly the simulated delay before
/// the pong was read), the client measures with `send_ping`, and the message and byte
/// counters of each side match what the other saw.
#[test]
fn stats_show_rtt_and_traffic_on_both_sides() {
    // Long enough that no real-time ping fires while the messages go back and forth.
    let interval = Duration::from_secs(60);
    let mut config = ServerConfig::default();
    config.peer.heartbeat_interval = interval;
    let mut server = server_with(config);
    let (mut client, id) = connect(&mut server);
    assert_eq!(client.get_stats().rtt, None, "nothing measured yet");
    let client_start = client.get_stats();
    let server_start = server.get_peer(id).unwrap().get_stats();
    assert!(client_start.bytes_sent > 0 && client_start.bytes_sent == server_start.bytes_received);
    assert!(server_start.bytes_sent > 0 && server_start.bytes_sent == client_start.bytes_received);
    assert_eq!(
        client_start.messages_sent + client_start.messages_received,
        0
    );

    // Three messages, echoed.
    let messages = ["one", "three", "fifteen"];
    for text in messages {
        client.send_text(text).unwrap();
    }
    let mut echoed = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut Vec::new(),
        "echoes",
        |server, c, _| {
            let peer = server.get_peer(id).unwrap();
            while let Some(packet) = peer.recv() {
                peer.send_packet(&packet).unwrap();
            }
            echoed.extend(c[0].packets());
            echoed.len() == messages.len()
        },
    );

    // Three heartbeat rounds in simulated time: the ping goes out at `ping_at`, the pong is
    // read at `ping_at + delay`.
    let t0 = Instant::now();
    let delays = [25, 35, 45].map(Duration::from_millis);
    for (round, delay) in (1..).zip(delays) {
        let ping_at = t0 + interval * round + Duration::from_millis(1);
        server.poll_at(ping_at);
        let start = Instant::now();
        loop {
            client.poll();
            server.poll_at(ping_at + delay);
            if server.get_peer(id).unwrap().get_stats().rtt_samples == u64::from(round) {
                break;
            }
            assert!(start.elapsed() < TIMEOUT, "no pong in round {round}");
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(server.get_peer(id).unwrap().get_stats().rtt, Some(delay));
    }
    // The client, whose heartbeat is off, asks for one measurement.
    client.send_ping().unwrap();
    let last = t0 + interval * 3 + Duration::from_millis(100);
    let start = Instant::now();
    while client.get_stats().rtt.is_none() {
        server.poll_at(last);
        client.poll();
        assert!(start.elapsed() < TIMEOUT, "no pong for the client's ping");
        std::thread::sleep(Duration::from_micros(200));
    }

    let client_stats = client.get_stats();
    let server_stats = server.get_peer(id).unwrap().get_stats();
    // RFC 6298 over 25, 35 and 45 ms: SRTT 25 → 26.25 → 28.59375 ms, RTTVAR 12.5 →
    // 11.875 → 13.59375 ms.
    assert_eq!(server_stats.rtt, Some(Duration::from_millis(45)));
    assert_eq!(
        server_stats.smoothed_rtt,
        Some(Duration::from_nanos(28_593_750))
    );
    assert_eq!(
        server_stats.rtt_variation,
        Some(Duration::from_nanos(13_593_750))
    );
    assert_eq!(server_stats.rtt_samples, 3);
    assert_eq!(client_stats.rtt_samples, 1);
    assert!(client_stats.rtt.unwrap() < TIMEOUT);
    assert_eq!(client_stats.smoothed_rtt, client_stats.rtt);

    let payload: u64 = messages.iter().map(|m| m.len() as u64).sum();
    for stats in [client_stats, server_stats] {
        assert_eq!((stats.messages_sent, stats.messages_received), (3, 3));
        assert_eq!(stats.payload_bytes_sent, payload);
        assert_eq!(stats.payload_bytes_received, payload);
    }
    // Everything sent has been read: each side's bytes out are the other's bytes in.
    assert_eq!(client_stats.bytes_sent, server_stats.bytes_received);
    assert_eq!(server_stats.bytes_sent, client_stats.bytes_received);
    // Since the upgrade, frame by frame. Client frames carry a 4-byte mask: three texts
    // (2 + 4 + payload), three pongs and one ping (2 + 4 + 8 each). Server frames: three
    // echoes (2 + payload), three pings and one pong (2 + 8 each).
    assert_eq!(
        client_stats.bytes_sent - client_start.bytes_sent,
        3 * 6 + payload + 4 * 14
    );
    assert_eq!(
        server_stats.bytes_sent - server_start.bytes_sent,
        3 * 2 + payload + 4 * 10
    );
}

#[test]
fn handshake_timeout_drops_a_connection_that_never_upgrades() {
    let mut server = server();
    let mut idle = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
    idle.set_read_timeout(Some(TIMEOUT)).unwrap();
    server_at_until(&mut server, Instant::now(), "pending", |s, _| {
        s.pending_count() == 1
    });
    let later =
        Instant::now() + ServerConfig::default().handshake_timeout + Duration::from_millis(10);
    let events = server_at_until(&mut server, later, "dropped", |s, _| s.pending_count() == 0);
    assert!(
        events.is_empty(),
        "a peer that never connected raises no event: {events:?}"
    );
    // The server closed the socket: an orderly EOF (read returns 0). A read timeout
    // (WouldBlock/TimedOut) or a reset is a failure here, not a close.
    let mut buf = [0u8; 16];
    match idle.read(&mut buf) {
        Ok(0) => {}
        other => panic!("expected EOF from the server's close, got {other:?}"),
    }
    server.poll();
    assert_eq!(server.slot_count(), 0);
}

/// Godot's `handshake_timeout` setter refuses `<= 0`; a zero timeout would fail every
/// handshake at once, so it cannot get in through any door.
#[test]
fn a_zero_handshake_timeout_is_refused_everywhere() {
    let mut server = WebSocketServer::new();
    assert!(matches!(
        server.set_handshake_timeout(Duration::ZERO),
        Err(Error::InvalidConfig(_))
    ));
    assert_eq!(
        server.get_handshake_timeout(),
        ServerConfig::default().handshake_timeout,
        "a refused value leaves the previous one"
    );
    server
        .set_handshake_timeout(Duration::from_millis(500))
        .unwrap();
    assert_eq!(server.get_handshake_timeout(), Duration::from_millis(500));

    let mut zero = ServerConfig::default();
    zero.handshake_timeout = Duration::ZERO;
    assert!(matches!(
        WebSocketServer::try_with_config(zero.clone()),
        Err(Error::InvalidConfig(_))
    ));
    let build = std::panic::AssertUnwindSafe(|| WebSocketServer::with_config(zero));
    let panic = std::panic::catch_unwind(build).unwrap_err();
    let message = panic.downcast_ref::<String>().expect("a formatted panic");
    assert!(message.contains("handshake_timeout"), "{message}");

    // Through config_mut, before listening: listen refuses it.
    server.config_mut().handshake_timeout = Duration::ZERO;
    assert!(matches!(
        server.listen_on("127.0.0.1", 0),
        Err(Error::InvalidConfig(_))
    ));
    assert!(!server.is_listening());
}

#[test]
fn client_connect_timeout_covers_a_server_that_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&format!("ws://{addr}/"), None)
        .unwrap();
    let (_held, _) = listener.accept().unwrap();
    for _ in 0..20 {
        client.poll();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(client.get_ready_state(), State::Connecting);
    client.poll_at(Instant::now() + PeerConfig::default().connect_timeout);
    assert_eq!(client.get_ready_state(), State::Closed);
    assert!(matches!(
        client.get_last_error(),
        Some(Error::ConnectTimeout)
    ));
    assert_eq!(client.get_close_code(), -1);
}

#[test]
fn subprotocol_is_chosen_in_client_order_and_mismatch_is_rejected() {
    let mut config = ServerConfig::default();
    config.peer.supported_protocols = vec!["b".into(), "c".into()];
    let mut server = server_with(config);
    let mut client_config = PeerConfig::default();
    client_config.supported_protocols = vec!["a".into(), "c".into(), "b".into()];
    let mut client = WebSocketPeer::with_config(client_config);
    client.connect_to_url(&url(&server, "/"), None).unwrap();
    let events = events_until(&mut server, &mut [&mut client], "connect", |ev| {
        connected_id(ev).is_some()
    });
    assert!(matches!(&events[0], ServerEvent::ClientConnected { protocol, .. } if protocol == "c"));
    run_clients_until(&mut [&mut client], "open", |c| {
        c[0].get_ready_state() == State::Open
    });
    assert_eq!(client.get_selected_protocol(), "c");

    for offered in [vec!["x".to_string()], vec![]] {
        let mut client_config = PeerConfig::default();
        client_config.supported_protocols = offered.clone();
        let mut client = WebSocketPeer::with_config(client_config);
        client.connect_to_url(&url(&server, "/"), None).unwrap();
        let mut events = Vec::new();
        run_until(
            &mut server,
            &mut [&mut client],
            &mut events,
            "rejected",
            |_, c, _| c[0].get_ready_state() == State::Closed,
        );
        assert!(events.is_empty(), "{events:?}");
        let error = client.get_last_error().expect("an error").to_string();
        assert!(error.contains("400"), "offered {offered:?}: {error}");
    }
}

#[test]
fn custom_headers_travel_both_ways_and_the_request_is_visible() {
    let mut config = ServerConfig::default();
    config.peer.handshake_headers = vec!["X-Server: two".into()];
    let mut server = server_with(config);
    let mut client_config = PeerConfig::default();
    client_config.handshake_headers = vec!["X-Client: one".into(), "Cookie: token=abc".into()];
    let (client, id) = connect_with(&mut server, "/room/7?team=blue", client_config, None);
    let port = server.local_addr().unwrap().port();
    let peer = server.get_peer(id).unwrap();
    let request = peer.get_handshake_request().expect("request recorded");
    assert_eq!(request.path, "/room/7");
    assert_eq!(request.query.as_deref(), Some("team=blue"));
    assert_eq!(request.header("x-client"), Some("one"));
    assert_eq!(request.header("COOKIE"), Some("token=abc"));
    assert_eq!(
        peer.get_requested_url(),
        format!("ws://127.0.0.1:{port}/room/7?team=blue")
    );
    assert!(
        client
            .get_handshake_response_headers()
            .iter()
            .any(|(n, v)| n == "x-server" && v == "two"),
        "{:?}",
        client.get_handshake_response_headers()
    );

    let mut bad = WebSocketPeer::new();
    bad.set_handshake_headers(&["no colon here"]);
    assert!(matches!(
        bad.connect_to_url(&url(&server, "/"), None),
        Err(Error::InvalidHeader(_))
    ));
}

#[test]
fn slow_reader_receives_10000_messages_complete_and_in_order() {
    const COUNT: usize = 10_000;
    let mut server = server();
    let mut config = PeerConfig::default();
    config.max_queued_packets = 16;
    let (mut client, id) = connect_with(&mut server, "/", config, None);
    let mut next_to_send = 0;
    let mut received = 0;
    let mut full_errors = 0;
    let start = Instant::now();
    while received < COUNT {
        server.poll();
        let peer = server.get_peer(id).unwrap();
        while next_to_send < COUNT {
            let message = format!("{next_to_send:06}:{}", "x".repeat(next_to_send % 3000));
            match peer.send_text(&message) {
                Ok(()) => next_to_send += 1,
                Err(Error::OutboundBufferFull { .. } | Error::OutboundQueueFull { .. }) => {
                    full_errors += 1;
                    break;
                }
                Err(e) => panic!("send: {e}"),
            }
        }
        client.poll();
        assert!(
            client.get_available_packet_count() <= 16,
            "inbound queue over its limit"
        );
        // A slow game: five messages per frame.
        for packet in client.packets().take(5) {
            let text = packet.as_text().unwrap();
            let expected = format!("{received:06}:{}", "x".repeat(received % 3000));
            assert_eq!(text, expected);
            received += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stalled at {received}"
        );
    }
    assert!(full_errors > 0, "the test never filled the outbound buffer");
    assert_eq!(client.get_ready_state(), State::Open);
}

#[test]
fn server_side_back_pressure_loses_nothing() {
    const COUNT: usize = 3_000;
    let mut config = ServerConfig::default();
    config.peer.max_queued_packets = 8;
    let mut server = server_with(config);
    let (mut client, id) = connect(&mut server);
    let mut sent = 0;
    let mut received = Vec::with_capacity(COUNT);
    let start = Instant::now();
    while received.len() < COUNT {
        while sent < COUNT {
            match client.put_packet(&(sent as u32).to_le_bytes()) {
                Ok(()) => sent += 1,
                Err(Error::OutboundBufferFull { .. } | Error::OutboundQueueFull { .. }) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        client.poll();
        server.poll();
        let _ = server.events().count();
        let peer = server.get_peer(id).unwrap();
        assert!(peer.get_available_packet_count() <= 8);
        if let Some(packet) = peer.get_packet() {
            received.push(u32::from_le_bytes(packet.try_into().unwrap()));
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stalled at {}",
            received.len()
        );
    }
    assert!(received.iter().enumerate().all(|(i, v)| i as u32 == *v));
}

#[test]
fn outbound_limits_fail_cleanly_and_queue_nothing() {
    let mut server = server();
    let (mut stream, id) = raw_client(&mut server);
    let peer = server.get_peer(id).unwrap();
    let message = vec![0xAB; 16 * 1024];
    let mut accepted = 0;
    let error = loop {
        match peer.put_packet(&message) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10_000, "never refused");
    };
    let before = peer.get_current_outbound_buffered_amount();
    assert!(
        matches!(
            error,
            Error::OutboundBufferFull {
                limit: DEFAULT_BUFFER_SIZE,
                ..
            }
        ),
        "{error}"
    );
    assert!(before > 0 && before <= DEFAULT_BUFFER_SIZE);
    assert!(matches!(
        peer.put_packet(&message),
        Err(Error::OutboundBufferFull { .. })
    ));
    assert_eq!(
        peer.get_current_outbound_buffered_amount(),
        before,
        "nothing half-queued"
    );

    // Every accepted message arrives intact once the client reads.
    let reader = std::thread::spawn(move || {
        let mut frames = 0;
        while frames < accepted {
            let frame = stream.expect_frame("echo");
            assert_eq!(frame.payload, vec![0xAB; 16 * 1024]);
            frames += 1;
        }
        frames
    });
    let start = Instant::now();
    while !reader.is_finished() {
        server.poll();
        assert!(start.elapsed() < TIMEOUT);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(reader.join().unwrap(), accepted);
    assert_eq!(
        server
            .get_peer(id)
            .unwrap()
            .get_current_outbound_buffered_amount(),
        0
    );
}

#[test]
fn outbound_packet_count_limit() {
    let mut config = ServerConfig::default();
    config.peer.outbound_buffer_size = 0;
    config.peer.max_queued_packets = 4;
    let mut server = server_with(config);
    let (_stream, id) = raw_client(&mut server);
    let peer = server.get_peer(id).unwrap();
    let message = vec![1u8; 1024 * 1024];
    let mut accepted = 0;
    let error = loop {
        match peer.put_packet(&message) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "never refused");
    };
    assert!(
        matches!(error, Error::OutboundQueueFull { limit: 4 }),
        "{error}"
    );
    assert!(accepted >= 4);
}

#[test]
fn a_thousand_connect_disconnect_cycles_leave_no_slot_and_reuse_no_id() {
    let mut server = server();
    let mut ids = HashSet::new();
    for cycle in 0..1000 {
        let (mut client, id) = connect(&mut server);
        assert!(ids.insert(id), "id {id} reused in cycle {cycle}");
        assert!(id >= 2);
        match cycle % 3 {
            0 => client.close(1000, "").unwrap(),
            1 => client.close(-1, "").unwrap(),
            _ => server.disconnect_peer(id, 1001, "").unwrap(),
        }
        events_until(
            &mut server,
            &mut [&mut client],
            "disconnect",
            disconnected(id),
        );
    }
    server.poll();
    assert_eq!(server.peer_count(), 0);
    assert_eq!(server.pending_count(), 0);
    assert_eq!(server.slot_count(), 0);
}

#[test]
fn resolving_a_host_name_never_blocks_poll() {
    let mut server = server();
    let port = server.local_addr().unwrap().port();
    let (release, gate) = mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let mut config = PeerConfig::default();
    // The lookup waits until the test lets it go: poll() must keep returning meanwhile.
    config.resolver = Some(Resolver::new(move |host, port| {
        let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(20));
        std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map(|a| a.collect())
    }));
    let mut client = WebSocketPeer::with_config(config);
    client
        .connect_to_url(&format!("ws://localhost:{port}/"), None)
        .unwrap();
    // Each poll() returns at once while the lookup is held. Measured here (debug build, 2
    // shared cores): the slowest of 100 takes about 0.012 ms. The 5 ms bound leaves room
    // for one lost scheduler slice; a poll that waited on the lookup takes its 20 s.
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let start = Instant::now();
        client.poll();
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(5),
            "poll() blocked for {took:?} while the lookup was pending"
        );
        slowest = slowest.max(took);
        server.poll();
        assert_eq!(client.get_ready_state(), State::Connecting);
    }
    println!("slowest poll() during the lookup: {slowest:?}");
    release.send(()).unwrap();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut Vec::new(),
        "open",
        |_, c, _| c[0].get_ready_state() == State::Open,
    );
    assert_eq!(
        client.get_connected_host(),
        Some("127.0.0.1".parse().unwrap())
    );

    // The OS resolver, for real.
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&format!("ws://localhost:{port}/"), None)
        .unwrap();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut Vec::new(),
        "open",
        |_, c, _| c[0].get_ready_state() == State::Open,
    );
}

#[test]
fn every_resolved_address_is_tried_in_turn() {
    let mut server = server();
    let good = server.local_addr().unwrap();
    let closed: SocketAddr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut config = PeerConfig::default();
    config.resolver = Some(Resolver::new(move |_, _| Ok(vec![closed, closed, good])));
    let mut client = WebSocketPeer::with_config(config.clone());
    client.connect_to_url("ws://game.example/", None).unwrap();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut Vec::new(),
        "open",
        |_, c, _| c[0].get_ready_state() == State::Open,
    );
    assert_eq!(client.get_connected_port(), good.port());

    config.resolver = Some(Resolver::new(move |_, _| Ok(vec![closed])));
    let mut client = WebSocketPeer::with_config(config);
    client.connect_to_url("ws://game.example/", None).unwrap();
    run_clients_until(&mut [&mut client], "failed", |c| {
        c[0].get_ready_state() == State::Closed
    });
    assert!(
        matches!(client.get_last_error(), Some(Error::Connect(_))),
        "{:?}",
        client.get_last_error()
    );
}

#[test]
fn bad_urls_fail_at_once() {
    let mut peer = WebSocketPeer::new();
    assert!(matches!(
        peer.connect_to_url("http://x/", None),
        Err(Error::UnsupportedScheme(_))
    ));
    assert!(matches!(
        peer.connect_to_url("", None),
        Err(Error::InvalidUrl(_))
    ));
    assert_eq!(peer.get_ready_state(), State::Closed);
    peer.connect_to_url("ws://127.0.0.1:9/", None).unwrap();
    assert!(matches!(
        peer.connect_to_url("ws://127.0.0.1:9/", None),
        Err(Error::AlreadyInUse)
    ));
    peer.close(1000, "").unwrap();
    assert_eq!(
        peer.get_ready_state(),
        State::Closed,
        "closing while connecting abandons it"
    );
}

#[test]
fn stop_closes_every_peer_with_1001() {
    let mut server = server();
    let (mut a, _) = connect(&mut server);
    let (mut b, _) = connect(&mut server);
    let addr = server.local_addr().unwrap();
    server.stop();
    assert!(!server.is_listening());
    let start = Instant::now();
    while server.peer_count() > 0
        || a.get_ready_state() != State::Closed
        || b.get_ready_state() != State::Closed
    {
        server.poll();
        a.poll();
        b.poll();
        assert!(start.elapsed() < TIMEOUT);
    }
    assert_eq!((a.get_close_code(), b.get_close_code()), (1001, 1001));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
}

#[test]
fn refused_connections_are_closed_at_once() {
    // Set before listening, it holds from the first connection.
    let mut server = WebSocketServer::new();
    server.set_refuse_new_connections(true);
    server.listen_on("127.0.0.1", 0).unwrap();
    let mut client = WebSocketPeer::new();
    client.connect_to_url(&url(&server, "/"), None).unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "refused",
        |_, c, _| c[0].get_ready_state() == State::Closed,
    );
    assert!(events.is_empty());
    assert_eq!(server.refused_connections(), 1);
    server.set_refuse_new_connections(false);
    connect(&mut server);
}

#[test]
fn standalone_accept_stream_and_many_objects_in_one_thread() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&format!("ws://{addr}/x"), None)
        .unwrap();
    let mut other_server = server();
    let (mut other_client, other_id) = connect(&mut other_server);
    let (stream, _) = listener.accept().unwrap();
    let mut accepted = WebSocketPeer::new();
    accepted.accept_stream(stream, None).unwrap();
    run_clients_until(&mut [&mut client, &mut accepted], "both open", |c| {
        c.iter().all(|p| p.get_ready_state() == State::Open)
    });
    assert_eq!(accepted.get_requested_url(), format!("ws://{addr}/x"));
    client.send_text("to accepted").unwrap();
    other_client.send_text("to server").unwrap();
    run_clients_until(&mut [&mut client, &mut accepted], "delivered", |c| {
        c[1].get_available_packet_count() == 1
    });
    assert_eq!(accepted.get_packet().unwrap(), b"to accepted");
    let events = events_until(&mut other_server, &mut [&mut other_client], "data", |ev| {
        ev.iter()
            .any(|e| matches!(e, ServerEvent::DataReceived { .. }))
    });
    assert!(events.contains(&ServerEvent::DataReceived { id: other_id }));
    assert_eq!(
        other_server
            .get_peer(other_id)
            .unwrap()
            .get_packet()
            .unwrap(),
        b"to server"
    );
}

#[test]
fn no_delay_is_on_and_can_be_turned_off() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);
    assert!(PeerConfig::default().no_delay);
    // Read back from the sockets themselves (getsockopt TCP_NODELAY), both ends.
    assert!(client.is_no_delay().unwrap(), "client socket");
    let accepted = server.get_peer(id).unwrap();
    assert!(accepted.is_no_delay().unwrap(), "accepted socket");
    accepted.set_no_delay(false).unwrap();
    assert!(!accepted.is_no_delay().unwrap(), "accepted socket");
    client.set_no_delay(false).unwrap();
    assert!(!client.is_no_delay().unwrap(), "client socket");
    client.set_no_delay(true).unwrap();
    assert!(client.is_no_delay().unwrap(), "client socket");

    // PeerConfig::no_delay = false reaches the socket from the start.
    let mut config = PeerConfig::default();
    config.no_delay = false;
    let (client, _) = connect_with(&mut server, "/", config, None);
    assert!(!client.is_no_delay().unwrap(), "configured off");
    // No socket, no answer.
    assert!(matches!(
        WebSocketPeer::new().is_no_delay(),
        Err(Error::NotOpen)
    ));
}

#[test]
fn plain_http_request_is_answered_400_and_closed() {
    let mut server = server();
    let mut stream = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let end = stream.read_to_end(&mut all);
        (all, end)
    });
    let start = Instant::now();
    while !reader.is_finished() {
        server.poll();
        assert!(start.elapsed() < TIMEOUT);
        std::thread::sleep(Duration::from_millis(1));
    }
    let (answer, end) = reader.join().unwrap();
    // Ok = the stream ended with the server's FIN; a timeout or reset is an error here.
    assert!(end.is_ok(), "the server did not close the socket: {end:?}");
    let answer = String::from_utf8_lossy(&answer);
    // The whole answer, then the server's FIN (read_to_end returned): a 400 status line
    // (RFC 6455 §4.2.1: a request that is not a valid upgrade gets an HTTP error).
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "expected a 400 status line, got {answer:?}"
    );
    assert!(answer.contains("\r\n\r\n"), "a complete head: {answer:?}");
    server_at_until(&mut server, Instant::now(), "slot freed", |s, _| {
        s.slot_count() == 0
    });
    assert_eq!((server.pending_count(), server.slot_count()), (0, 0));
}

#[test]
fn pending_handshake_limit_refuses_the_excess() {
    let mut config = ServerConfig::default();
    config.max_pending_handshakes = 2;
    let mut server = server_with(config);
    let addr = server.local_addr().unwrap();
    let mut idle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    server_at_until(&mut server, Instant::now(), "refusals", |s, _| {
        s.refused_connections() == 2
    });
    assert_eq!(server.pending_count(), 2);
    // The refused two were closed at once; the pending two are still open.
    let mut closed = 0;
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 1];
        if let Ok(0) = stream.read(&mut buf) {
            closed += 1;
        }
    }
    assert_eq!(closed, 2);
    // A finished handshake frees a place.
    let later = Instant::now() + Duration::from_secs(4);
    server_at_until(&mut server, later, "expired", |s, _| s.pending_count() == 0);
    connect(&mut server);
}

/// Connections waiting in the accept queue of the IPv4 listener at `addr`: the `rx_queue`
/// column of its LISTEN row in /proc/net/tcp (Linux reports the accept backlog there).
fn accept_queue_len(addr: SocketAddr) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else {
        panic!("an IPv4 listener")
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx_queue:rx_queue ...; st 0A = LISTEN
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")).then(|| {
            let rx = fields[4].split(':').nth(1).expect("tx:rx");
            u32::from_str_radix(rx, 16).expect("hex rx_queue")
        })
    })
}

#[test]
fn accepts_per_poll_are_bounded() {
    let mut config = ServerConfig::default();
    config.max_accepts_per_poll = 1;
    let mut server = server_with(config);
    let addr = server.local_addr().unwrap();
    let _waiting: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    // Wait until the kernel has all three in the listener's accept queue, then one per poll.
    let start = Instant::now();
    while accept_queue_len(addr) != Some(3) {
        assert!(
            start.elapsed() < TIMEOUT,
            "accept queue: {:?}",
            accept_queue_len(addr)
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    for expected in 1..=3 {
        server.poll();
        assert_eq!(server.pending_count(), expected);
    }
}

#[test]
fn listen_on_every_interface_accepts_ipv4_and_ipv6() {
    let mut server = WebSocketServer::new();
    server.listen(0).unwrap();
    let port = server.local_addr().unwrap().port();
    for host in ["127.0.0.1", "[::1]"] {
        if host == "[::1]" && std::net::TcpListener::bind("[::1]:0").is_err() {
            // This machine has no IPv6 loopback: the IPv4 check above still ran.
            continue;
        }
        let mut client = WebSocketPeer::new();
        client
            .connect_to_url(&format!("ws://{host}:{port}/"), None)
            .unwrap();
        run_until(
            &mut server,
            &mut [&mut client],
            &mut Vec::new(),
            host,
            |_, c, _| c[0].get_ready_state() == State::Open,
        );
    }
    assert!(matches!(server.listen(0), Err(Error::AlreadyInUse)));
    let mut other = WebSocketServer::new();
    assert!(matches!(
        other.listen_on("not an ip", 0),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn handshake_size_limits_are_configurable_and_answered_431() {
    let mut config = ServerConfig::default();
    config.peer.max_handshake_headers = 8;
    config.peer.max_handshake_bytes = 1024;
    let mut server = server_with(config);
    for (headers, what) in [
        (
            (0..6)
                .map(|i| format!("X-Extra-{i}: v"))
                .collect::<Vec<_>>(),
            "too many headers",
        ),
        (
            vec![format!("X-Big: {}", "b".repeat(2000))],
            "too many bytes",
        ),
    ] {
        let mut client = WebSocketPeer::new();
        client.set_handshake_headers(&headers);
        client.connect_to_url(&url(&server, "/"), None).unwrap();
        let mut events = Vec::new();
        run_until(
            &mut server,
            &mut [&mut client],
            &mut events,
            what,
            |_, c, _| c[0].get_ready_state() == State::Closed,
        );
        let error = client.get_last_error().unwrap().to_string();
        assert!(error.contains("431"), "{what}: {error}");
        assert!(events.is_empty());
    }
    // Within the limits, the same server accepts.
    let mut client_config = PeerConfig::default();
    client_config.handshake_headers = vec!["X-One: 1".into()];
    connect_with(&mut server, "/", client_config, None);
}

#[test]
fn batch_writes_hold_sends_until_flush_or_poll() {
    let mut config = ServerConfig::default();
    config.peer.batch_writes = true;
    let mut server = server_with(config);
    let mut client_config = PeerConfig::default();
    client_config.batch_writes = true;
    let (mut client, id) = connect_with(&mut server, "/", client_config, None);

    let peer = server.get_peer(id).unwrap();
    peer.send_text("one").unwrap();
    peer.send_text("two").unwrap();
    assert!(
        peer.get_current_outbound_buffered_amount() > 0,
        "held, not written"
    );
    for _ in 0..20 {
        client.poll();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        client.get_available_packet_count(),
        0,
        "nothing left before flush"
    );
    server.flush();
    assert_eq!(
        server
            .get_peer(id)
            .unwrap()
            .get_current_outbound_buffered_amount(),
        0
    );
    run_clients_until(&mut [&mut client], "both", |c| {
        c[0].get_available_packet_count() == 2
    });

    // The client's own sends leave at its next poll().
    client.send_text("three").unwrap();
    assert!(client.get_current_outbound_buffered_amount() > 0);
    let events = events_until(&mut server, &mut [&mut client], "delivered", |ev| {
        ev.iter()
            .any(|e| matches!(e, ServerEvent::DataReceived { .. }))
    });
    assert!(events.contains(&ServerEvent::DataReceived { id }));
    assert_eq!(server.get_peer(id).unwrap().get_packet().unwrap(), b"three");
    // A large message is written at once even when batching (nothing to gain by waiting).
    let mut big_config = ServerConfig::default();
    big_config.peer.batch_writes = true;
    big_config.peer.outbound_buffer_size = 1 << 20;
    let mut big_server = server_with(big_config);
    let (_big_client, big_id) = connect(&mut big_server);
    let peer = big_server.get_peer(big_id).unwrap();
    peer.put_packet(&vec![9u8; 200_000]).unwrap();
    assert!(
        peer.get_current_outbound_buffered_amount() < 200_000,
        "a 200 KB message waited for the next poll"
    );
    // And the server's at its next poll().
    server.get_peer(id).unwrap().send_text("four").unwrap();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut Vec::new(),
        "four",
        |_, c, _| c[0].get_available_packet_count() == 3,
    );
}

#[test]
fn send_packet_forwards_text_as_text_and_binary_as_binary() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);
    client.send_text("héllo").unwrap();
    client.put_packet(&[0, 159, 146, 150]).unwrap();
    events_until(&mut server, &mut [&mut client], "two", |ev| {
        ev.iter()
            .filter(|e| matches!(e, ServerEvent::DataReceived { .. }))
            .count()
            == 2
    });
    let peer = server.get_peer(id).unwrap();
    for packet in peer.packets().collect::<Vec<_>>() {
        peer.send_packet(&packet).unwrap();
    }
    run_until(
        &mut server,
        &mut [&mut client],
        &mut Vec::new(),
        "echoes",
        |_, c, _| c[0].get_available_packet_count() == 2,
    );
    let text = client.recv().unwrap();
    assert_eq!((text.as_text(), text.is_text()), (Some("héllo"), true));
    let binary = client.recv().unwrap();
    assert_eq!(
        (binary.data(), binary.is_text()),
        (&[0u8, 159, 146, 150][..], false)
    );
}

/// `poll_with_timeout` carries out what the application queued before it sleeps: an echo
/// held by `batch_writes` goes out inside the same call, which then sleeps until the
/// client's answer to that echo arrives and reports it (one wait per round trip; before,
/// the call only wrote the echo and a second call had to wait for the answer).
#[test]
fn poll_with_timeout_writes_held_sends_before_it_sleeps() {
    let mut config = ServerConfig::default();
    config.peer.batch_writes = true;
    let mut server = WebSocketServer::with_config(config);
    server.listen_on("127.0.0.1", 0).unwrap();
    let (mut conn, id) = raw_client(&mut server);
    conn.send(&rawws::client(rawws::OP_BINARY, b"first"));
    server_at_until(&mut server, Instant::now(), "first message", |_, ev| {
        ev.contains(&ServerEvent::DataReceived { id })
    });
    let peer = server.get_peer(id).unwrap();
    assert_eq!(peer.get_packet().as_deref(), Some(&b"first"[..]));
    peer.put_packet(b"echo").unwrap();
    let answering = std::thread::spawn(move || {
        let echo = conn.expect_frame("the echo");
        assert_eq!(echo.payload, b"echo");
        conn.send(&rawws::client(rawws::OP_BINARY, b"answer"));
        conn
    });
    server.poll_with_timeout(TIMEOUT);
    let events: Vec<ServerEvent> = server.events().collect();
    assert!(
        events.contains(&ServerEvent::DataReceived { id }),
        "the answer to the echo was not collected by the call that sent the echo: {events:?}"
    );
    let _conn = answering.join().unwrap();
}

#[test]
fn put_var_and_get_var_carry_one_variant_per_message_in_either_godot_format() {
    let mut server = server();
    let mut godot3 = PeerConfig::default();
    godot3.variant_version = variant::GodotVersion::Godot3;
    for config in [PeerConfig::default(), godot3] {
        let version = config.variant_version;
        let (mut client, id) = connect_with(&mut server, "/", config, None);
        let value = Variant::from((7, "hi", vec![1.5f32, 2.0]));
        client.put_var(&value).unwrap();
        let mut got = None;
        run_until(
            &mut server,
            &mut [&mut client],
            &mut Vec::new(),
            "a var",
            |s, _, _| {
                got = s.get_peer(id).and_then(|p| p.recv());
                got.is_some()
            },
        );
        // The bytes are Godot's put_var bytes in the client's format.
        let packet = got.unwrap();
        assert_eq!(packet.data(), value.to_bytes(version).unwrap());
        assert!(!packet.is_text());
        // And the other way, through get_var.
        let peer = server.get_peer(id).unwrap();
        peer.config_mut().variant_version = version;
        peer.put_var(&value).unwrap();
        peer.put_packet(&[0xff, 0, 0, 0]).unwrap(); // an unknown type id
        let mut vars = Vec::new();
        run_until(
            &mut server,
            &mut [&mut client],
            &mut Vec::new(),
            "two vars",
            |_, c, _| {
                vars.extend(std::iter::from_fn(|| c[0].get_var()));
                vars.len() == 2
            },
        );
        assert_eq!(vars[0], Ok(value));
        assert!(vars[1].is_err(), "{:?}", vars[1]);
        assert_eq!(client.get_var(), None);
    }
    // A value Godot 3 cannot hold is refused before anything is sent.
    let mut godot3 = PeerConfig::default();
    godot3.variant_version = variant::GodotVersion::Godot3;
    let (mut client, _) = connect_with(&mut server, "/", godot3, None);
    let err = client
        .put_var(&Variant::StringName("n".into()))
        .unwrap_err();
    assert!(matches!(err, Error::Variant(_)), "{err}");
}

#[test]
fn breaking_out_of_events_or_packets_keeps_the_rest_queued() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);
    // Polls until `count` messages wait in the server's queue for peer `id`, leaving the
    // server's events where they are.
    let queued = |server: &mut WebSocketServer, client: &mut WebSocketPeer, count: usize| {
        let start = Instant::now();
        while server.get_peer(id).unwrap().get_available_packet_count() < count {
            assert!(start.elapsed() < TIMEOUT, "{count} messages never arrived");
            server.poll();
            client.poll();
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    for text in ["one", "two", "three"] {
        client.send_text(text).unwrap();
    }
    queued(&mut server, &mut client, 3);
    // A loop that stops at the first message leaves the others for the next loop.
    let mut seen = Vec::new();
    for event in server.events() {
        let stop = matches!(event, ServerEvent::DataReceived { .. });
        seen.push(event);
        if stop {
            break;
        }
    }
    assert_eq!(seen, [ServerEvent::DataReceived { id }]);
    let rest: Vec<ServerEvent> = server.events().collect();
    assert_eq!(rest, vec![ServerEvent::DataReceived { id }; 2]);
    assert_eq!(server.pop_event(), None);
    // An iterator dropped before it is advanced takes nothing.
    client.send_text("four").unwrap();
    queued(&mut server, &mut client, 4);
    drop(server.events());
    assert_eq!(server.pop_event(), Some(ServerEvent::DataReceived { id }));
    // The same for a peer's packets.
    let peer = server.get_peer(id).unwrap();
    let first = peer.packets().next().map(Packet::into_vec);
    assert_eq!(first.as_deref(), Some(&b"one"[..]));
    assert_eq!(peer.get_available_packet_count(), 3);
    let rest: Vec<Vec<u8>> = peer.packets().map(Packet::into_vec).collect();
    assert_eq!(rest, [&b"two"[..], b"three", b"four"]);
}
