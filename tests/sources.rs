//! Other sources in a server's poll (`register_source`, `waker`) on real loopback sockets:
//! a mio TCP stream and UDP socket reported among a WebSocket peer's events, a waker woken
//! from another thread, `poll_with_timeout` returning for each long before its timeout, a
//! deregistered token never reported, registrations living across `stop()` and `listen`,
//! and the same on a `WebSocketMultiplayerPeer` server.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::UdpSocket;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::multiplayer::{listening, wait_for};
use common::*;
use wspeer::mio::net::{TcpStream as MioTcpStream, UdpSocket as MioUdpSocket};
use wspeer::mio::{Interest, Waker};
use wspeer::*;

/// Far longer than any test runs: a poll that waits this long has missed its wake-up.
const LONG_WAIT: Duration = Duration::from_secs(15);
/// What "at once" means on a loaded test machine.
const PROMPT: Duration = Duration::from_secs(5);
/// How long the helper threads wait before making a source ready, so that the server is
/// asleep in `poll_with_timeout` by then.
const LATER: Duration = Duration::from_millis(200);

/// Calls `poll_with_timeout(LONG_WAIT)` until an event `wanted` picks arrives; fails if it
/// takes longer than PROMPT (so one poll never slept out its timeout). Returns every event.
fn wait_with_timeout(
    server: &mut WebSocketServer,
    what: &str,
    wanted: impl Fn(&ServerEvent) -> bool,
) -> Vec<ServerEvent> {
    let start = Instant::now();
    let mut events = Vec::new();
    while !events.iter().any(&wanted) {
        assert!(
            start.elapsed() < PROMPT,
            "{what}: not reported promptly; events: {events:?}"
        );
        server.poll_with_timeout(LONG_WAIT);
        events.extend(server.events());
    }
    assert!(
        start.elapsed() < PROMPT,
        "{what}: poll_with_timeout slept {:?}",
        start.elapsed()
    );
    events
}

fn is_ready(token: SourceToken) -> impl Fn(&ServerEvent) -> bool {
    move |event| matches!(event, ServerEvent::SourceReady { token: t, readable: true, .. } if *t == token)
}

/// A UDP socket on loopback, non-blocking, for mio.
fn udp() -> MioUdpSocket {
    MioUdpSocket::bind("127.0.0.1:0".parse().unwrap()).expect("bind UDP")
}

/// Sends `data` to `to` from a fresh socket, after `delay`, on another thread.
fn send_later(to: std::net::SocketAddr, data: &'static [u8], delay: Duration) {
    thread::spawn(move || {
        thread::sleep(delay);
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP sender");
        socket.send_to(data, to).expect("send datagram");
    });
}

/// Reads every datagram waiting on `socket` (until `WouldBlock`).
fn drain(socket: &MioUdpSocket) -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    let mut buf = [0u8; 1500];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => datagrams.push(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return datagrams,
            Err(e) => panic!("recv_from: {e}"),
        }
    }
}

#[test]
fn a_tcp_stream_shares_the_poll_with_websocket_peers() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);

    // The "bus": a plain TCP connection the server's loop reads through its own poller.
    let bus = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut stream = MioTcpStream::connect(bus.local_addr().unwrap()).unwrap();
    let (mut remote, _) = bus.accept().unwrap();
    let token = server
        .register_source(&mut stream, Interest::READABLE)
        .unwrap();

    // Both at once: a WebSocket message and bus bytes, each reported under its own name.
    client.send_text("over websocket").unwrap();
    remote.write_all(b"over the bus").unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "a message and the bus",
        |_, _, events| {
            events.iter().any(is_ready(token)) && events.contains(&ServerEvent::DataReceived { id })
        },
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!("the bus closed"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(got, b"over the bus");
    assert_eq!(
        server.get_peer(id).unwrap().get_packet().unwrap(),
        b"over websocket"
    );

    // A sleeping headless loop wakes for the bus, not at its timeout.
    let writer = thread::spawn(move || {
        thread::sleep(LATER);
        remote.write_all(b"later").unwrap();
        remote
    });
    wait_with_timeout(&mut server, "bus bytes", is_ready(token));
    let remote = writer.join().unwrap();

    // The remote end closing is reported too, flagged.
    drop(remote);
    let events = wait_with_timeout(
        &mut server,
        "bus closed",
        |event| matches!(event, ServerEvent::SourceReady { token: t, read_closed: true, .. } if *t == token),
    );
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, ServerEvent::ClientDisconnected { .. })),
        "the bus closing is no peer leaving: {events:?}"
    );
    assert!(server.has_peer(id));
    server.deregister_source(&mut stream, token).unwrap();
}

#[test]
fn udp_sockets_are_reported_under_their_own_tokens() {
    let mut server = server();
    let mut sockets: Vec<MioUdpSocket> = (0..3).map(|_| udp()).collect();
    let tokens: Vec<SourceToken> = sockets
        .iter_mut()
        .map(|socket| server.register_source(socket, Interest::READABLE).unwrap())
        .collect();
    assert_eq!(
        tokens
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "three sources, three tokens: {tokens:?}"
    );
    // Only the second socket gets a datagram: only its token is reported.
    send_later(sockets[1].local_addr().unwrap(), b"to the second", LATER);
    let events = wait_with_timeout(&mut server, "the second socket", is_ready(tokens[1]));
    assert!(
        !events.iter().any(is_ready(tokens[0])) && !events.iter().any(is_ready(tokens[2])),
        "{events:?}"
    );
    assert_eq!(drain(&sockets[1]), vec![b"to the second".to_vec()]);
}

#[test]
fn a_waker_woken_from_another_thread_ends_the_sleep() {
    let mut server = server();
    let waker = server.waker().unwrap();
    assert!(
        Arc::ptr_eq(&waker, &server.waker().unwrap()),
        "one waker per server"
    );
    let (sender, receiver) = std::sync::mpsc::channel();
    let worker = {
        let waker = Arc::clone(&waker);
        thread::spawn(move || {
            thread::sleep(LATER);
            sender.send("work done").unwrap();
            waker.wake().unwrap();
        })
    };
    let events = wait_with_timeout(&mut server, "the waker", |e| *e == ServerEvent::Woken);
    assert_eq!(events, vec![ServerEvent::Woken]);
    assert_eq!(receiver.try_recv(), Ok("work done"));
    worker.join().unwrap();

    // Wakes between two polls make one event.
    waker.wake().unwrap();
    waker.wake().unwrap();
    server.poll();
    assert_eq!(
        server.events().collect::<Vec<_>>(),
        vec![ServerEvent::Woken]
    );
    server.poll();
    assert_eq!(server.pop_event(), None);
}

#[test]
fn a_deregistered_token_is_never_reported() {
    let mut server = server();
    let mut socket = udp();
    let address = socket.local_addr().unwrap();
    let token = server
        .register_source(&mut socket, Interest::READABLE)
        .unwrap();
    send_later(address, b"first", Duration::ZERO);
    wait_for("the datagram in the socket", || {
        socket.peek_from(&mut [0u8; 16]).is_ok()
    });
    // Polled but not drained: the event waits in the queue, and goes with the source.
    server.poll();
    server.deregister_source(&mut socket, token).unwrap();
    assert_eq!(server.pop_event(), None);

    // Later readiness is not reported either.
    send_later(address, b"second", Duration::ZERO);
    let mut received = Vec::new();
    wait_for("the second datagram in the socket", || {
        received.extend(drain(&socket));
        received.len() == 2
    });
    assert_eq!(received, vec![b"first".to_vec(), b"second".to_vec()]);
    for _ in 0..20 {
        server.poll_with_timeout(Duration::from_millis(5));
        assert_eq!(server.pop_event(), None);
    }

    // The token is dead for every call; registering again gives a new one.
    assert!(matches!(
        server.reregister_source(&mut socket, token, Interest::READABLE),
        Err(Error::SourceNotRegistered(t)) if t == token
    ));
    assert!(matches!(
        server.deregister_source(&mut socket, token),
        Err(Error::SourceNotRegistered(t)) if t == token
    ));
    let again = server
        .register_source(&mut socket, Interest::READABLE)
        .unwrap();
    assert_ne!(again, token);
    send_later(address, b"third", LATER);
    let events = wait_with_timeout(&mut server, "the new token", is_ready(again));
    assert!(!events.iter().any(is_ready(token)), "{events:?}");
}

#[test]
fn registrations_live_before_listen_and_across_stop() {
    let mut server = WebSocketServer::new();
    let mut socket = udp();
    let address = socket.local_addr().unwrap();
    let token = server
        .register_source(&mut socket, Interest::READABLE)
        .unwrap();
    let waker = server.waker().unwrap();

    // Not listening yet.
    send_later(address, b"before listen", LATER);
    wait_with_timeout(&mut server, "before listen", is_ready(token));
    drain(&socket);
    waker.wake().unwrap();
    wait_with_timeout(&mut server, "woken before listen", |e| {
        *e == ServerEvent::Woken
    });

    // Listening, stopped, listening again: the same registrations.
    server.listen_on("127.0.0.1", 0).unwrap();
    server.stop();
    send_later(address, b"after stop", LATER);
    wait_with_timeout(&mut server, "after stop", is_ready(token));
    drain(&socket);
    server.listen_on("127.0.0.1", 0).unwrap();
    let (_client, _id) = connect(&mut server);
    send_later(address, b"listening again", LATER);
    wait_with_timeout(&mut server, "listening again", is_ready(token));
    waker.wake().unwrap();
    wait_with_timeout(&mut server, "woken listening again", |e| {
        *e == ServerEvent::Woken
    });
}

#[test]
fn a_multiplayer_server_reports_sources_and_wakes() {
    let mut idle = WebSocketMultiplayerPeer::new();
    let mut socket = udp();
    assert!(matches!(
        idle.register_source(&mut socket, Interest::READABLE),
        Err(Error::NotOpen)
    ));
    assert!(matches!(idle.waker(), Err(Error::NotOpen)));

    let mut node = listening(WebSocketMultiplayerPeer::new());
    let token = node
        .peer
        .register_source(&mut socket, Interest::READABLE)
        .unwrap();
    let waker: Arc<Waker> = node.peer.waker().unwrap();
    send_later(socket.local_addr().unwrap(), b"to the game server", LATER);
    let start = Instant::now();
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e| matches!(e, MultiplayerEvent::SourceReady { token: t, readable: true, .. } if *t == token))
    {
        assert!(start.elapsed() < PROMPT, "not reported promptly: {events:?}");
        node.peer.poll_with_timeout(LONG_WAIT);
        while let Some(event) = node.peer.pop_event() {
            events.push(event);
        }
    }
    assert_eq!(drain(&socket), vec![b"to the game server".to_vec()]);

    let waking = thread::spawn(move || {
        thread::sleep(LATER);
        waker.wake().unwrap();
    });
    let start = Instant::now();
    while node.peer.pop_event() != Some(MultiplayerEvent::Woken) {
        assert!(
            start.elapsed() < PROMPT,
            "the waker was not reported promptly"
        );
        node.peer.poll_with_timeout(LONG_WAIT);
    }
    waking.join().unwrap();

    // Deregistered, with an event still queued: never reported.
    send_later(socket.local_addr().unwrap(), b"queued", Duration::ZERO);
    wait_for("the datagram in the socket", || {
        socket.peek_from(&mut [0u8; 16]).is_ok()
    });
    node.peer.poll();
    node.peer.deregister_source(&mut socket, token).unwrap();
    assert_eq!(node.peer.pop_event(), None);
}
