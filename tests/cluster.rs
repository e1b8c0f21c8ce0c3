//! examples/cluster_node.rs with a real redis-server: rooms across nodes, the printed lines, SIGTERM drain.

mod common;
mod rawws;

use std::time::{Duration, Instant};

use common::TIMEOUT;
use common::cluster::{ClusterNode, Member, Redis, http_status};
use rawws::{OP_TEXT, RawConn};
use wspeer::State;

/// Sends `text` from `from` every 100 ms until `to` has received `expected` (the other
/// node's subscription to the room is confirmed asynchronously: messages before it are
/// not delivered, as with any pub/sub), then clears both members' received texts.
fn until_delivered(from: &mut Member, to: &mut Member, text: &str, expected: &str) {
    let start = Instant::now();
    let mut last_send = None::<Instant>;
    loop {
        if last_send.is_none_or(|at| at.elapsed() > Duration::from_millis(100)) {
            from.socket.send_text(text).unwrap();
            last_send = Some(Instant::now());
        }
        from.tick();
        to.tick();
        if to.texts.iter().any(|t| t == expected) {
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "{expected:?} never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the repeated copies land, then forget them.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(200) {
        from.tick();
        to.tick();
        std::thread::sleep(Duration::from_millis(1));
    }
    from.texts.clear();
    to.texts.clear();
}

#[test]
fn members_on_two_nodes_chat_through_redis() {
    let redis = Redis::start();
    let mut n1 = ClusterNode::start("n1", &redis, &[]);
    let mut n2 = ClusterNode::start("n2", &redis, &[]);

    let mut alice = Member::connect(n1.port, "lobby", "alice");
    n1.expect_line("joined room lobby from 127.0.0.1:", || alice.tick());
    let mut bob = Member::connect(n2.port, "lobby", "bob");
    n2.expect_line("joined room lobby from 127.0.0.1:", || bob.tick());
    let mut carol = Member::connect(n2.port, "other", "carol");
    n2.expect_line("joined room other", || carol.tick());
    // A raw client, whose own port is known: the join line names it.
    let raw_addr = format!("127.0.0.1:{}", n1.port).parse().unwrap();
    let mut dave = RawConn::connect(raw_addr, "/?room=lobby&name=dave%20d");
    let dave_port = dave.stream.local_addr().unwrap().port();
    let line = n1.expect_line("joined room lobby from 127.0.0.1:", || alice.tick());
    assert!(
        line.starts_with("Client ") && line.ends_with(&format!(" from 127.0.0.1:{dave_port}")),
        "{line}"
    );

    until_delivered(&mut alice, &mut bob, "warm-up", "alice: warm-up");
    // dave got every warm-up copy (same node); read them off.
    let until = Instant::now() + Duration::from_millis(100);
    dave.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < until {
        if dave.read_frame().is_err() {
            break;
        }
    }
    dave.stream
        .set_read_timeout(Some(rawws::READ_TIMEOUT))
        .unwrap();

    alice.socket.send_text("hello everyone").unwrap();
    let start = Instant::now();
    while !bob.texts.contains(&"alice: hello everyone".to_owned()) {
        alice.tick();
        bob.tick();
        carol.tick();
        assert!(start.elapsed() < TIMEOUT, "bob never heard alice");
    }
    bob.socket.send_text("hi alice").unwrap();
    while !alice.texts.contains(&"bob: hi alice".to_owned()) {
        alice.tick();
        bob.tick();
        carol.tick();
        assert!(start.elapsed() < TIMEOUT, "alice never heard bob");
    }
    // Same room on the same node as alice: dave hears both, in order, once each.
    let frame = dave.expect_frame("alice's line");
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (OP_TEXT, &b"alice: hello everyone"[..])
    );
    let frame = dave.expect_frame("bob's line");
    assert_eq!(frame.payload, b"bob: hi alice");
    dave.send(&rawws::client(OP_TEXT, b"from dave"));
    while !bob.texts.contains(&"dave d: from dave".to_owned()) {
        alice.tick();
        bob.tick();
        carol.tick();
        assert!(start.elapsed() < TIMEOUT, "bob never heard dave");
    }
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(200) {
        alice.tick();
        bob.tick();
        carol.tick();
    }
    // Each line once, the sender included; nothing in the other room.
    assert_eq!(
        alice.texts,
        [
            "alice: hello everyone",
            "bob: hi alice",
            "dave d: from dave"
        ]
    );
    assert_eq!(
        bob.texts,
        [
            "alice: hello everyone",
            "bob: hi alice",
            "dave d: from dave"
        ]
    );
    assert!(carol.texts.is_empty(), "{:?}", carol.texts);

    // A client without a room and a name is closed with 1008.
    let mut stranger = wspeer::WebSocketPeer::new();
    stranger
        .connect_to_url(&format!("ws://127.0.0.1:{}/", n1.port), None)
        .unwrap();
    let start = Instant::now();
    while stranger.get_ready_state() != State::Closed {
        stranger.poll();
        assert!(start.elapsed() < TIMEOUT, "stranger not closed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(stranger.get_close_code(), 1008);
}

#[test]
fn sigterm_drains_closes_members_with_1001_and_exits_0() {
    let redis = Redis::start();
    let mut n1 = ClusterNode::start("drainme", &redis, &["--health-path", "/healthz"]);
    let port = n1.port;
    assert_eq!(http_status(port, "/healthz", ""), "HTTP/1.1 200 OK");
    let mut alice = Member::connect(port, "lobby", "alice");
    n1.expect_line("joined room lobby", || alice.tick());

    let signalled = Instant::now();
    n1.terminate();
    // The health check turns to 503 at once.
    loop {
        let status = http_status(port, "/healthz", "");
        if status.starts_with("HTTP/1.1 503") {
            break;
        }
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "still healthy"
        );
        alice.tick();
    }
    // New upgrades get 503 too.
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    assert!(
        http_status(port, "/?room=lobby&name=late", upgrade).starts_with("HTTP/1.1 503"),
        "an upgrade while draining"
    );
    // Members keep chatting during the grace period: alice hears herself.
    alice.socket.send_text("still here").unwrap();
    while !alice.texts.contains(&"alice: still here".to_owned()) {
        alice.tick();
        assert!(signalled.elapsed() < TIMEOUT, "no echo while draining");
    }
    while alice.socket.get_ready_state() != State::Closed {
        alice.tick();
        assert!(signalled.elapsed() < TIMEOUT, "alice never closed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(alice.socket.get_close_code(), 1001);
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        signalled.elapsed()
    );
    assert_eq!(n1.wait_exit(|| alice.tick()), Some(0));
    assert!(
        n1.seen.iter().any(|l| l == "Node drainme stopped"),
        "{:?}",
        n1.seen
    );
}

#[test]
fn chat_across_nodes_resumes_after_redis_restarts() {
    let mut redis = Redis::start();
    let mut n1 = ClusterNode::start("r1", &redis, &[]);
    let mut n2 = ClusterNode::start("r2", &redis, &[]);
    let mut alice = Member::connect(n1.port, "lobby", "alice");
    n1.expect_line("joined room lobby", || alice.tick());
    let mut bob = Member::connect(n2.port, "lobby", "bob");
    n2.expect_line("joined room lobby", || bob.tick());
    until_delivered(&mut alice, &mut bob, "before", "alice: before");

    redis.kill();
    // While Redis is down the nodes keep serving their own members.
    let start = Instant::now();
    alice.socket.send_text("local only").unwrap();
    while !alice.texts.contains(&"alice: local only".to_owned()) {
        alice.tick();
        assert!(
            start.elapsed() < TIMEOUT,
            "the node stopped serving without Redis"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    redis.restart();
    // Both nodes reconnect and subscribe to the lobby again: no subscription is lost.
    until_delivered(&mut alice, &mut bob, "after", "alice: after");
    until_delivered(&mut bob, &mut alice, "back", "bob: back");
}
