//! The bus against a real `redis-server` on loopback: rooms across nodes, own messages dropped, gaps, the bounded queue, hostile bytes, back-off, and Redis restarting.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wspeer_bus::mio::{Events, Poll, Token};
use wspeer_bus::{
    BusConfig, BusError, BusEvent, EnvelopeError, LinkKind, MioRegistrar, RoomBus, envelope, resp,
};

/// A free loopback port, never the same twice in this test process: tests run in
/// parallel, and a port released for its user to bind could otherwise be handed to
/// another test meanwhile.
fn free_loopback_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The `process_id` of the Redis answering on `port`, once it answers.
fn redis_pid(port: u16) -> Option<u32> {
    let mut probe = TcpStream::connect(("127.0.0.1", port)).ok()?;
    probe.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    probe.write_all(b"INFO server\r\n").ok()?;
    let mut answer = String::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((_, rest)) = answer.split_once("process_id:") {
            if let Some((pid, _)) = rest.split_once("\r\n") {
                return pid.trim().parse().ok();
            }
        }
        let n = probe.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        answer.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

/// A `redis-server` of its own on a free loopback port, without persistence, stopped when
/// dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let mut redis = Redis {
            port: free_loopback_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port; waits until it answers, and checks that the
    /// server answering is this one (not another process that took the port).
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it with `apt-get install redis-server` \
                     (bash tests/setup-system.sh does)"
                )
            });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(answering) = redis_pid(self.port) {
                assert_eq!(
                    answering, pid,
                    "another redis-server answers on port {}",
                    self.port
                );
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Publishes raw bytes on a room's channel, as a foreign or hostile publisher would.
    fn publish_raw(&self, room: &str, bytes: &[u8]) {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.write_all(&resp::publish(
            format!("wspeer:room:{room}").as_bytes(),
            bytes,
        ))
        .unwrap();
        let mut answer = [0u8; 1];
        conn.read_exact(&mut answer).unwrap();
        assert_eq!(answer[0], b':', "PUBLISH answered with an integer");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One node: a bus on a `mio::Poll` of its own, and every event it reported.
struct Node {
    bus: RoomBus<Token>,
    poll: Poll,
    registrar: MioRegistrar,
    seen: Vec<BusEvent>,
}

impl Node {
    fn new(url: &str, config: BusConfig) -> Node {
        let poll = Poll::new().unwrap();
        let registrar = MioRegistrar::new(poll.registry(), Token(100)).unwrap();
        Node {
            bus: RoomBus::new(url, config).unwrap(),
            poll,
            registrar,
            seen: Vec::new(),
        }
    }

    fn named(redis: &Redis, node: &str) -> Node {
        Node::new(&redis.url(), fast(node))
    }

    /// One turn of the loop: wait up to 10 ms for readiness, then poll the bus.
    fn turn(&mut self) {
        let mut events = Events::with_capacity(16);
        self.poll
            .poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        for event in events.iter() {
            assert!(self.bus.handle_ready(
                event.token(),
                event.is_readable() || event.is_read_closed() || event.is_error(),
                event.is_writable() || event.is_write_closed() || event.is_error(),
            ));
        }
        self.bus.poll(&mut self.registrar, Instant::now());
        while let Some(event) = self.bus.next_event() {
            self.seen.push(event);
        }
    }

    /// Turns until `done` holds for an event reported since `seen[from]`; returns its
    /// index in `seen`.
    fn until_since(&mut self, from: usize, what: &str, done: impl Fn(&BusEvent) -> bool) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.seen[from..].iter().position(&done) {
                return from + i;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} in 10 s; events: {:?}",
                self.bus.node_id(),
                &self.seen[from..]
            );
            self.turn();
        }
    }

    /// Turns until `done` holds for an event not reported yet.
    fn until(&mut self, what: &str, done: impl Fn(&BusEvent) -> bool) -> usize {
        self.until_since(self.seen.len(), what, done)
    }

    /// Turns until Redis has confirmed the subscription to `room` since `seen[from]`.
    fn subscribed_since(&mut self, from: usize, room: &str) {
        self.until_since(
            from,
            &format!("subscription to {room}"),
            |e| matches!(e, BusEvent::Subscribed { room: r } if r == room),
        );
    }

    /// Turns until Redis has confirmed the subscription to `room` (ever).
    fn subscribed(&mut self, room: &str) {
        self.subscribed_since(0, room);
    }

    /// Turns until the publish link has come up since `seen[from]`.
    fn publishing_since(&mut self, from: usize) {
        self.until_since(from, "publish link", |e| {
            *e == BusEvent::Connected {
                link: LinkKind::Publish,
            }
        });
    }

    fn messages(&self) -> Vec<(String, String, u64, Vec<u8>)> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                BusEvent::Message {
                    room,
                    from,
                    seq,
                    payload,
                } => Some((room.clone(), from.clone(), *seq, payload.clone())),
                _ => None,
            })
            .collect()
    }
}

/// The defaults with a quick back-off, so reconnecting tests stay short.
fn fast(node: &str) -> BusConfig {
    let mut config = BusConfig::new(node);
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config
}

fn is_message_from(event: &BusEvent, node: &str, text: &[u8]) -> bool {
    matches!(event, BusEvent::Message { from, payload, .. } if from == node && payload == text)
}

#[test]
fn two_nodes_exchange_room_messages_and_drop_their_own() {
    let redis = Redis::start();
    let mut a = Node::named(&redis, "node-a");
    let mut b = Node::named(&redis, "node-b");
    a.bus.join("lobby").unwrap();
    b.bus.join("lobby").unwrap();
    b.bus.join("quiet").unwrap();
    a.subscribed("lobby");
    b.subscribed("lobby");
    b.subscribed("quiet");
    a.publishing_since(0);

    a.bus.publish("lobby", b"hello from a").unwrap();
    a.bus.publish("lobby", b"again").unwrap();
    b.until("a's second message", |e| {
        is_message_from(e, "node-a", b"again")
    });
    b.bus.publish("lobby", b"hello from b").unwrap();
    a.until("b's message", |e| {
        is_message_from(e, "node-b", b"hello from b")
    });

    // B heard A's two messages in order, numbered 1 and 2, in the lobby only.
    assert_eq!(
        b.messages(),
        vec![
            ("lobby".into(), "node-a".into(), 1, b"hello from a".to_vec()),
            ("lobby".into(), "node-a".into(), 2, b"again".to_vec()),
        ]
    );
    // A's own messages came back from Redis before B's (one channel, one order) and were
    // dropped: A heard only B.
    assert_eq!(
        a.messages(),
        vec![("lobby".into(), "node-b".into(), 1, b"hello from b".to_vec())]
    );
    assert!(!a.seen.iter().any(|e| matches!(e, BusEvent::Gap { .. })));

    // After leaving, the room's messages are no longer reported, and publishing there is
    // refused.
    b.bus.leave("lobby");
    assert!(matches!(
        b.bus.publish("lobby", b"x"),
        Err(BusError::NotJoined(_))
    ));
    a.bus.join("quiet").unwrap();
    a.subscribed("quiet");
    a.bus.publish("lobby", b"after b left").unwrap();
    a.bus.publish("quiet", b"marker").unwrap();
    // One publisher, one subscriber connection: Redis delivers in order, so the lobby's
    // message would have come before the marker.
    b.until("the marker", |e| is_message_from(e, "node-a", b"marker"));
    assert_eq!(b.messages().len(), 3, "{:?}", b.seen);
    assert_eq!(b.messages()[2].0, "quiet");
}

#[test]
fn gaps_malformed_envelopes_and_restarted_senders_are_reported() {
    let redis = Redis::start();
    let mut b = Node::named(&redis, "node-b");
    b.bus.join("r").unwrap();
    b.subscribed("r");

    for seq in [1, 2, 5] {
        redis.publish_raw("r", &envelope::encode("node-x", seq, b"m"));
    }
    redis.publish_raw("r", b"\x07not an envelope");
    redis.publish_raw("r", &envelope::encode("node-x", 6, &[0u8; 70 * 1024]));
    // node-x restarted: its numbers start again, which is not a gap.
    redis.publish_raw("r", &envelope::encode("node-x", 1, b"reborn"));
    redis.publish_raw("r", &envelope::encode("node-x", 2, b"last"));
    let last = b.until("the last message", |e| {
        is_message_from(e, "node-x", b"last")
    });

    let reported: Vec<&BusEvent> = b.seen[..=last]
        .iter()
        .filter(|e| !matches!(e, BusEvent::Connected { .. } | BusEvent::Subscribed { .. }))
        .collect();
    let message = |seq, payload: &[u8]| BusEvent::Message {
        room: "r".into(),
        from: "node-x".into(),
        seq,
        payload: payload.to_vec(),
    };
    assert_eq!(
        reported,
        vec![
            &message(1, b"m"),
            &message(2, b"m"),
            &BusEvent::Gap {
                room: "r".into(),
                from: "node-x".into(),
                missed: 2
            },
            &message(5, b"m"),
            &BusEvent::Malformed {
                room: "r".into(),
                error: EnvelopeError::UnknownVersion(7)
            },
            &BusEvent::Malformed {
                room: "r".into(),
                error: EnvelopeError::PayloadTooLarge {
                    len: 70 * 1024,
                    max: 64 * 1024
                }
            },
            &message(1, b"reborn"),
            &message(2, b"last"),
        ]
    );
}

#[test]
fn a_reply_over_the_bound_drops_the_link_which_comes_back() {
    let redis = Redis::start();
    let mut b = Node::named(&redis, "node-b");
    b.bus.join("r").unwrap();
    b.subscribed("r");
    // Far over max_payload plus the envelope and RESP framing: the subscribe link refuses
    // to buffer it, reconnects and subscribes again.
    redis.publish_raw("r", &vec![b'z'; 200 * 1024]);
    let down = b.until("the link dropped", |e| {
        matches!(e, BusEvent::Disconnected { link: LinkKind::Subscribe, reason, .. }
            if reason.contains("longer than"))
    });
    b.subscribed_since(down, "r");
    redis.publish_raw("r", &envelope::encode("node-x", 1, b"fine"));
    b.until("the next message", |e| {
        is_message_from(e, "node-x", b"fine")
    });
    assert!(
        !b.seen[down..]
            .iter()
            .any(|e| matches!(e, BusEvent::Malformed { .. }))
    );
}

#[test]
fn a_full_outbound_queue_refuses_and_loses_nothing_queued() {
    let redis = Redis::start();
    let mut b = Node::named(&redis, "node-b");
    b.bus.join("r").unwrap();
    b.subscribed("r");

    let mut config = fast("node-a");
    config.max_outbound_messages = 3;
    config.max_outbound_bytes = 1000;
    let mut a = Node::new(&redis.url(), config);
    a.bus.join("r").unwrap();
    // Not connected yet: the queue fills.
    for i in 1..=3 {
        a.bus.publish("r", format!("m{i}").as_bytes()).unwrap();
    }
    match a.bus.publish("r", b"m4") {
        Err(BusError::QueueFull { messages: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    // The refused message took no sequence number: what follows is numbered 4.
    a.publishing_since(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.bus.queued_messages() > 0 {
        assert!(Instant::now() < deadline, "queue never drained");
        a.turn();
    }
    a.bus.publish("r", b"m4 again").unwrap();
    b.until("m4", |e| is_message_from(e, "node-a", b"m4 again"));
    let seqs: Vec<(u64, Vec<u8>)> = b.messages().into_iter().map(|m| (m.2, m.3)).collect();
    assert_eq!(
        seqs,
        vec![
            (1, b"m1".to_vec()),
            (2, b"m2".to_vec()),
            (3, b"m3".to_vec()),
            (4, b"m4 again".to_vec())
        ]
    );

    // The byte bound: a payload that fits max_payload but not the queue's bytes.
    match a.bus.publish("r", &[0u8; 1200]) {
        Err(BusError::QueueFull { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.bus.publish("r", &[0u8; 64 * 1024 + 1]),
        Err(BusError::PayloadTooLarge { .. })
    ));
}

#[test]
fn back_off_doubles_up_to_its_maximum_and_connects_time_out_in_simulated_time() {
    // A port nobody listens on: every attempt is refused.
    let port = free_loopback_port();
    let mut config = BusConfig::new("lonely");
    config.reconnect_min = Duration::from_millis(100);
    config.reconnect_max = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(2);
    let mut node = Node::new(&format!("redis://127.0.0.1:{port}"), config);
    let start = Instant::now();
    let mut now = start;
    let mut waits = Vec::new();
    for _ in 0..5 {
        // An attempt starts at `now`; its refusal arrives as readiness, acted on at `now`.
        node.bus.poll(&mut node.registrar, now);
        let attempt_deadline = node.bus.next_deadline().unwrap();
        assert_eq!(attempt_deadline, now + Duration::from_secs(2), "connecting");
        let retry_in = loop {
            let mut events = Events::with_capacity(4);
            node.poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            for e in events.iter() {
                node.bus.handle_ready(e.token(), true, true);
            }
            node.bus.poll(&mut node.registrar, now);
            let mut found = None;
            while let Some(event) = node.bus.next_event() {
                if let BusEvent::Disconnected {
                    link: LinkKind::Subscribe,
                    retry_in,
                    ..
                } = event
                {
                    found = Some(retry_in);
                }
            }
            if let Some(retry_in) = found {
                break retry_in;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never refused");
        };
        waits.push(retry_in.as_millis());
        // Just before the back-off ends nothing starts; at its end the next attempt does.
        node.bus.poll(
            &mut node.registrar,
            now + retry_in - Duration::from_millis(1),
        );
        assert_eq!(node.bus.next_deadline(), Some(now + retry_in));
        now += retry_in;
    }
    assert_eq!(waits, vec![100, 200, 400, 500, 500]);

    // A connect that reports nothing by its deadline is given up.
    node.bus.poll(&mut node.registrar, now);
    node.bus
        .poll(&mut node.registrar, now + Duration::from_secs(2));
    let mut timed_out = 0;
    while let Some(event) = node.bus.next_event() {
        if let BusEvent::Disconnected { reason, .. } = event {
            assert!(reason.contains("timed out"), "{reason}");
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 2, "both links");
}

#[test]
fn redis_restarting_loses_no_subscription() {
    let mut redis = Redis::start();
    let mut a = Node::named(&redis, "node-a");
    let mut b = Node::named(&redis, "node-b");
    for room in ["one", "two", "three"] {
        a.bus.join(room).unwrap();
        b.bus.join(room).unwrap();
    }
    for room in ["one", "two", "three"] {
        b.subscribed(room);
    }
    a.publishing_since(0);
    a.bus.publish("two", b"before").unwrap();
    b.until("before", |e| is_message_from(e, "node-a", b"before"));

    redis.kill();
    for node in [&mut a, &mut b] {
        let down = node.until("subscribe link lost", |e| {
            matches!(
                e,
                BusEvent::Disconnected {
                    link: LinkKind::Subscribe,
                    ..
                }
            )
        });
        // The connection had come up: the first wait is the shortest.
        assert!(matches!(
            node.seen[down],
            BusEvent::Disconnected { retry_in, .. } if retry_in == Duration::from_millis(20)
        ));
    }
    // A few refused attempts while Redis is down.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        a.turn();
        b.turn();
    }
    let (a_from, b_from) = (a.seen.len(), b.seen.len());
    redis.restart();
    for room in ["one", "two", "three"] {
        b.subscribed_since(b_from, room);
    }
    assert!(b.seen[b_from..].contains(&BusEvent::Connected {
        link: LinkKind::Subscribe
    }));
    a.subscribed_since(a_from, "one");
    a.publishing_since(a_from);
    let mark = b.seen.len();
    for room in ["one", "two", "three"] {
        a.bus.publish(room, room.as_bytes()).unwrap();
    }
    for room in ["one", "two", "three"] {
        b.until_since(mark, room, |e| {
            matches!(e, BusEvent::Message { room: r, from, payload, .. }
                if r == room && from == "node-a" && payload == room.as_bytes())
        });
    }
    b.bus.publish("three", b"back").unwrap();
    a.until("b's message after the restart", |e| {
        is_message_from(e, "node-b", b"back")
    });
}

#[test]
fn bad_urls_and_configurations_are_refused_before_any_io() {
    for url in [
        "http://127.0.0.1:6379",
        "redis://:secret@127.0.0.1:6379",
        "redis://127.0.0.1:6379/3",
        "rediss://127.0.0.1:6379",
        "not a url",
    ] {
        assert!(
            matches!(
                RoomBus::<Token>::new(url, BusConfig::new("n")),
                Err(BusError::InvalidUrl(_))
            ),
            "{url}"
        );
    }
    let url = "redis://127.0.0.1:1";
    for config in [
        BusConfig::new(""),
        BusConfig::new("n".repeat(256)),
        BusConfig {
            max_outbound_messages: 0,
            ..BusConfig::new("n")
        },
        BusConfig {
            reconnect_max: Duration::from_millis(1),
            ..BusConfig::new("n")
        },
    ] {
        assert!(matches!(
            RoomBus::<Token>::new(url, config),
            Err(BusError::InvalidConfig(_))
        ));
    }
    let mut config = BusConfig::new("n");
    config.max_rooms = 2;
    config.max_room_name = 4;
    let mut bus = RoomBus::<Token>::new(url, config).unwrap();
    bus.join("a").unwrap();
    bus.join("a").unwrap();
    bus.join("bb").unwrap();
    assert!(matches!(
        bus.join("ccc"),
        Err(BusError::TooManyRooms { max: 2 })
    ));
    assert!(matches!(
        bus.join("toolong"),
        Err(BusError::InvalidRoom { len: 7, max: 4 })
    ));
    assert!(matches!(
        bus.join(""),
        Err(BusError::InvalidRoom { len: 0, .. })
    ));
}

#[test]
fn the_event_queue_bound_pauses_reading_and_the_next_polls_resume_it() {
    let redis = Redis::start();
    let mut config = fast("node-b");
    config.max_queued_events = 3;
    let mut b = Node::new(&redis.url(), config);
    b.bus.join("r").unwrap();
    b.subscribed("r");
    for seq in 1..=10 {
        redis.publish_raw("r", &envelope::encode("node-x", seq, b"m"));
    }
    // Everything has arrived on the socket (PUBLISH answers after delivering to the
    // subscriber's output buffer); one readiness event announces it.
    std::thread::sleep(Duration::from_millis(100));
    let mut events = Events::with_capacity(4);
    b.poll
        .poll(&mut events, Some(Duration::from_secs(1)))
        .unwrap();
    for e in events.iter() {
        b.bus.handle_ready(e.token(), true, true);
    }
    let mut seqs = Vec::new();
    for _ in 0..10 {
        // No new readiness: the bus resumes reading by itself, three events at a time,
        // and while it has more to read it asks to be polled again at once.
        let now = Instant::now();
        b.bus.poll(&mut b.registrar, now);
        if seqs.len() < 7 {
            assert_eq!(b.bus.next_deadline(), Some(now), "more to read");
        }
        let mut taken = 0;
        while let Some(event) = b.bus.next_event() {
            taken += 1;
            if let BusEvent::Message { seq, .. } = event {
                seqs.push(seq);
            }
        }
        assert!(taken <= 3, "{taken} events queued");
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
}

#[test]
fn senders_beyond_max_tracked_nodes_restart_the_rooms_tracking() {
    let redis = Redis::start();
    let mut config = fast("node-b");
    config.max_tracked_nodes = 2;
    let mut b = Node::new(&redis.url(), config);
    b.bus.join("r").unwrap();
    b.subscribed("r");
    // x and y are followed; x's gap is seen. Then z is a third sender: the room forgets x
    // and y, so x's next gap is not (its number is the first heard again).
    for (node, seq) in [("x", 1), ("y", 1), ("x", 3), ("z", 1), ("x", 5), ("x", 7)] {
        redis.publish_raw("r", &envelope::encode(node, seq, b"m"));
    }
    let last = b.until(
        "x's last",
        |e| matches!(e, BusEvent::Message { from, seq: 7, .. } if from == "x"),
    );
    let gaps: Vec<u64> = b.seen[..=last]
        .iter()
        .filter_map(|e| match e {
            BusEvent::Gap { from, missed, .. } if from == "x" => Some(*missed),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![1, 1]);
}
