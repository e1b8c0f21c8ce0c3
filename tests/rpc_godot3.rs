//! Godot 3 RPCs against the real engine: Debian's `godot3-server` (Godot 3.2.3, headless)
//! runs the GDScript bots in `tests/multiplayer/` — `g3_rpc_client.gd` (`WebSocketClient`)
//! and `g3_rpc_server.gd` (`WebSocketServer`), both with `gd_mp_api = true` and a node
//! `/root/Main` running `g3_rpc_main.gd` (`remote func echo`, `echo_reply`, `note`,
//! `ask_rset`, `remote var rv`) — against wspeer in Godot 3 mode, both ways, and two Godot
//! clients against `examples/rpc_server --godot3`.
//!
//! Values are compared byte for byte: the bots print `var2bytes()` of what they get, and of
//! their own table of argument sets (`Main.arg_sets()`), which must match [`arg_sets`] here.
//! A recording TCP relay between the two sides checks the path cache on the wire: the first
//! call of each side carries the node's path, every later one its cache id.
//!
//! Needs `godot3-server` (`apt-get install -y godot3-server`, or tests/interop/setup.sh);
//! without it every test here fails, saying so. The `rpc_server` test needs
//! `cargo build --examples` first.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::godot::{Godot, free_port, godot3_config};
use common::{KillOnDrop, TIMEOUT, example_bin, line_channel};
use wspeer::variant::{Color, Dictionary, Vector2};
use wspeer::*;

const MAIN: &str = "/root/Main";

/// The argument sets of `Main.arg_sets()` in `g3_rpc_main.gd`, by name.
fn arg_sets() -> Vec<(&'static str, Vec<Variant>)> {
    let v2 = |x, y| Variant::Vector2(Vector2 { x, y });
    let mut dictionary = Dictionary::new();
    dictionary.insert("k", 1);
    dictionary.insert("n", Variant::Nil);
    vec![
        ("int", vec![Variant::Int(7)]),
        ("int_64", vec![Variant::Int(1 << 40)]),
        ("float_f32", vec![Variant::Float(1.5)]),
        ("float_f64", vec![Variant::Float(0.1)]),
        ("string", vec!["héllo".into()]),
        ("vector2", vec![v2(1.0, -2.5)]),
        (
            "array",
            vec![Variant::from(vec![
                Variant::Int(1),
                "a".into(),
                Variant::from(vec![Variant::Bool(true)]),
            ])],
        ),
        ("dictionary", vec![Variant::Dictionary(dictionary)]),
        (
            "pool_byte_array",
            vec![Variant::PackedByteArray(vec![1, 2, 3])],
        ),
        ("null", vec![Variant::Nil]),
        ("no_args", vec![]),
        (
            "four_args",
            vec![
                "hi".into(),
                Variant::Int(-7),
                Variant::Float(0.1),
                v2(0.5, 0.0),
            ],
        ),
        (
            "color_bool_null",
            vec![
                Variant::Color(Color {
                    r: 1.0,
                    g: 0.0,
                    b: 0.5,
                    a: 1.0,
                }),
                Variant::Bool(false),
                Variant::Nil,
            ],
        ),
    ]
}

/// `var2bytes(args)` as the bots print it: the arguments as one Array, in hex.
fn args_hex(args: &[Variant]) -> String {
    let bytes = Variant::from(args.to_vec())
        .to_godot3_bytes()
        .expect("encodable in Godot 3");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn echo_node() -> RpcNode {
    RpcNode::new()
        .method("echo", RpcMode::AnyPeer)
        .method("echo_reply", RpcMode::AnyPeer)
        .method("ask_rset", RpcMode::AnyPeer)
        .method("rv", RpcMode::AnyPeer)
}

// The bots of this file (the runner is common::godot::Godot).
impl Godot {
    /// `g3_rpc_client.gd` joining `url` with the sub-protocol `ludus`, playing `mode`.
    fn client(name: &str, url: &str, mode: &str) -> Godot {
        Godot::start(
            name,
            "g3_rpc_client.gd",
            &[
                "--url",
                url,
                "--protocol",
                "ludus",
                "--mode",
                mode,
                "--limit",
                "40",
            ],
        )
    }

    /// Checks the bot's table of argument sets (its `SET <name> <hex>` lines) against
    /// [`arg_sets`].
    fn check_arg_sets(&mut self, mut tick: impl FnMut()) {
        let sets = arg_sets();
        for (name, args) in &sets {
            let hex = self.expect(&format!("SET {name} "), &mut tick);
            assert_eq!(
                hex,
                args_hex(args),
                "{}: arg set {name} differs between g3_rpc_main.gd and arg_sets()",
                self.name
            );
        }
        assert_eq!(
            self.lines_after("SET ").len(),
            sets.len(),
            "{}: g3_rpc_main.gd and arg_sets() do not list the same sets",
            self.report()
        );
    }
}

/// A TCP relay between one client and `upstream` that keeps a copy of what went each way,
/// to read the Godot 3 packets on the wire afterwards.
struct Tap {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    fn new(upstream: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tap");
        let addr = listener.local_addr().unwrap();
        let to_server = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let (up, down) = (to_server.clone(), to_client.clone());
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            pipe(client, server, up);
            pipe(server2, client2, down);
        });
        Tap {
            addr,
            to_server,
            to_client,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The Godot 3 multiplayer packets sent so far each way: (to the server, to the client).
    fn packets(&self) -> (Vec<String>, Vec<String>) {
        let read = |log: &Arc<Mutex<Vec<u8>>>| godot3_packets(&ws_messages(&log.lock().unwrap()));
        (read(&self.to_server), read(&self.to_client))
    }
}

/// Copies `from` to `to`, recording every byte before passing it on.
fn pipe(mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// The payloads of the binary messages in one direction of a recorded WebSocket connection
/// (after its HTTP handshake), unmasked. Neither side fragments or compresses these.
fn ws_messages(stream: &[u8]) -> Vec<Vec<u8>> {
    let Some(end) = stream.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let mut at = end + 4;
    let mut out = Vec::new();
    while at + 2 <= stream.len() {
        let (b0, b1) = (stream[at], stream[at + 1]);
        let mut p = at + 2;
        let mut len = usize::from(b1 & 0x7f);
        if len == 126 {
            let Some(b) = stream.get(p..p + 2) else { break };
            len = usize::from(u16::from_be_bytes([b[0], b[1]]));
            p += 2;
        } else if len == 127 {
            let Some(b) = stream.get(p..p + 8) else { break };
            len = u64::from_be_bytes(b.try_into().unwrap()) as usize;
            p += 8;
        }
        let mask = if b1 & 0x80 != 0 {
            let Some(m) = stream.get(p..p + 4) else { break };
            p += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        let Some(payload) = stream.get(p..p + len) else {
            break;
        };
        let mut payload = payload.to_vec();
        if let Some(mask) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        if b0 & 0x0f == 2 {
            assert_eq!(
                b0 & 0xf0,
                0x80,
                "a fragmented or compressed message: {b0:#x}"
            );
            out.push(payload);
        }
        at = p + len;
    }
    out
}

/// The text up to the first NUL of `bytes` (from `at`).
fn c_str(bytes: &[u8], at: usize) -> String {
    let rest = bytes.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

/// What each Godot 3 data message (transport type 0) carries, in short: `simplify <id>
/// <path>`, `confirm <path>`, `call <method> <path>` / `call <method> #<cache id>`, `set
/// <property> <path or #id>`, `raw`. System messages (id, peer announcements) are left out.
fn godot3_packets(messages: &[Vec<u8>]) -> Vec<String> {
    let u32_at = |p: &[u8], at: usize| u32::from_le_bytes(p[at..at + 4].try_into().unwrap());
    messages
        .iter()
        .filter(|m| m.len() > 9 && m[0] == 0)
        .map(|m| {
            let p = &m[9..];
            let target = |p: &[u8]| {
                let t = u32_at(p, 1);
                if t & 0x8000_0000 != 0 {
                    c_str(p, (t & 0x7fff_ffff) as usize)
                } else {
                    format!("#{t}")
                }
            };
            match p[0] {
                0 => format!("call {} {}", c_str(p, 5), target(p)),
                1 => format!("set {} {}", c_str(p, 5), target(p)),
                2 => format!("simplify {} {}", u32_at(p, 1), c_str(p, 5)),
                3 => format!("confirm {}", c_str(p, 1)),
                4 => "raw".to_string(),
                other => format!("unknown command {other}"),
            }
        })
        .collect()
}

/// `first` once, then `rest` `times` times, as owned strings.
fn sequence(first: &[&str], rest: &str, times: usize) -> Vec<String> {
    first
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::repeat_n(rest.to_string(), times))
        .collect()
}

/// A child's stdout: the lines so far, and waiting for one.
struct Output {
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Output {
    /// Waits for a line containing `needle`; returns it.
    fn line(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.log.push(line);
            }
            if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "no line containing {needle:?} in {:#?}",
                self.log
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What a wspeer side saw, and a poll that collects it.
struct Side {
    peer: WebSocketMultiplayerPeer,
    events: Vec<MultiplayerEvent>,
}

impl Side {
    fn new(peer: WebSocketMultiplayerPeer) -> Side {
        Side {
            peer,
            events: Vec::new(),
        }
    }

    fn tick(&mut self) {
        self.peer.poll();
        while let Some(event) = self.peer.pop_event() {
            self.events.push(event);
        }
        while self.peer.recv().is_some() {}
    }

    fn calls(&self, method: &str) -> Vec<&RemoteCall> {
        self.events
            .iter()
            .filter_map(|e| match e {
                MultiplayerEvent::RemoteCall(call) if call.method == method => Some(&**call),
                _ => None,
            })
            .collect()
    }

    fn sets(&self) -> Vec<&RemoteSet> {
        self.events
            .iter()
            .filter_map(|e| match e {
                MultiplayerEvent::RemoteSet(set) => Some(&**set),
                _ => None,
            })
            .collect()
    }

    fn wait_for(&mut self, what: &str, mut done: impl FnMut(&Side) -> bool) {
        let start = Instant::now();
        loop {
            self.tick();
            if done(self) {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "timed out waiting for: {what}; events: {:#?}",
                self.events
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn godot3_client_calls_a_wspeer_server_and_gets_echo_replies() {
    let mut server = WebSocketMultiplayerPeer::with_config(godot3_config());
    server.rpc_config(MAIN, echo_node());
    server.create_server(0, "127.0.0.1", None).unwrap();
    let tap = Tap::new(server.local_addr().unwrap());
    let mut server = Side::new(server);
    let mut bot = Godot::client("godot client", &tap.url(), "sets");

    // The server answers every echo with echo_reply, same arguments, to the caller.
    let mut answered = 0;
    let mut tick = || {
        server.tick();
        let calls: Vec<(i32, Vec<Variant>)> = server
            .calls("echo")
            .iter()
            .skip(answered)
            .map(|c| (c.from, c.args.clone()))
            .collect();
        for (from, args) in calls {
            server
                .peer
                .rpc_id(from, MAIN, "echo_reply", &args)
                .unwrap_or_else(|e| panic!("echo_reply to {from} with {args:?}: {e}"));
            answered += 1;
        }
    };
    let id: i32 = bot
        .expect("connected_to_server ", &mut tick)
        .parse()
        .unwrap();
    bot.check_arg_sets(&mut tick);
    bot.expect("done", &mut tick);
    assert_eq!(bot.wait_exit(&mut tick), Some(0), "{}", bot.report());

    // Each set twice, then the final "done"; all from the bot, on /root/Main.
    let sets = arg_sets();
    let mut expected: Vec<Vec<Variant>> = sets
        .iter()
        .flat_map(|(_, args)| [args.clone(), args.clone()])
        .collect();
    expected.push(vec!["done".into()]);
    let calls = server.calls("echo");
    let got: Vec<Vec<Variant>> = calls.iter().map(|c| c.args.clone()).collect();
    assert_eq!(got, expected);
    for call in &calls {
        assert_eq!((call.from, call.node.as_str()), (id, MAIN), "{call:?}");
    }
    // The bot received the same values back, in order.
    let replies: Vec<String> = bot
        .lines_after("echo_reply 1 ")
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let expected_hex: Vec<String> = expected.iter().map(|args| args_hex(args)).collect();
    assert_eq!(replies, expected_hex, "{}", bot.report());

    // rset_id(1, "rv", 42) and rset("rv", Vector2(3, 4)), before the last echo.
    let sets_got: Vec<(i32, &str, &str, &Variant)> = server
        .sets()
        .iter()
        .map(|s| (s.from, s.node.as_str(), s.property.as_str(), &s.value))
        .collect();
    assert_eq!(
        sets_got,
        [
            (id, MAIN, "rv", &Variant::Int(42)),
            (
                id,
                MAIN,
                "rv",
                &Variant::Vector2(Vector2 { x: 3.0, y: 4.0 })
            ),
        ]
    );
    let last_set = server
        .events
        .iter()
        .rposition(|e| matches!(e, MultiplayerEvent::RemoteSet(_)))
        .unwrap();
    let last_call = server
        .events
        .iter()
        .rposition(|e| matches!(e, MultiplayerEvent::RemoteCall(_)))
        .unwrap();
    assert!(last_set < last_call, "{:#?}", server.events);

    // The path cache on the wire: each side simplifies Main once, confirms the other's,
    // and sends the full path only in its first call.
    let calls_after_first = expected.len() - 1;
    let (to_server, to_client) = tap.packets();
    let mut want_up = sequence(
        &["simplify 1 Main", "call echo Main", "confirm Main"],
        "call echo #1",
        calls_after_first - 1,
    );
    want_up.extend(["set rv #1", "set rv #1", "call echo #1"].map(String::from));
    assert_eq!(to_server, want_up);
    let want_down = sequence(
        &["confirm Main", "simplify 1 Main", "call echo_reply Main"],
        "call echo_reply #1",
        calls_after_first,
    );
    assert_eq!(to_client, want_down);

    assert_eq!(server.peer.dropped_packets(), 0);
    bot.assert_no_errors();
}

#[test]
fn wspeer_client_calls_a_godot3_server_and_gets_echo_replies() {
    let port = free_port();
    let port_arg = port.to_string();
    let mut godot = Godot::start(
        "godot server",
        "g3_rpc_server.gd",
        &["--port", &port_arg, "--protocol", "ludus", "--limit", "40"],
    );
    godot.expect(&format!("listening {port}"), || {});
    godot.check_arg_sets(|| {});
    let tap = Tap::new(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut client = WebSocketMultiplayerPeer::with_config(godot3_config());
    client.rpc_config(MAIN, echo_node());
    client.create_client(&tap.url(), None).unwrap();
    let mut client = Side::new(client);
    client.wait_for("connected", |c| {
        c.events.contains(&MultiplayerEvent::ConnectedToServer)
    });
    let id = client.peer.get_unique_id();
    godot.expect(&format!("peer_connected {id}"), || client.tick());

    // Each set twice, one call at a time: the second goes through the path cache.
    let sets = arg_sets();
    let mut sent = 0;
    for (name, args) in &sets {
        for _ in 0..2 {
            client
                .peer
                .rpc_id(1, MAIN, "echo", args)
                .unwrap_or_else(|e| panic!("echo {name}: {e}"));
            sent += 1;
            client.wait_for(&format!("echo_reply {name}"), |c| {
                c.calls("echo_reply").len() == sent
            });
            let reply = client.calls("echo_reply")[sent - 1];
            assert_eq!(
                (reply.from, reply.node.as_str(), &reply.args),
                (1, MAIN, args),
                "set {name}"
            );
        }
    }
    // The Godot server decoded the same values.
    let expected_hex: Vec<String> = sets
        .iter()
        .flat_map(|(_, args)| [args_hex(args), args_hex(args)])
        .collect();
    godot.expect(&format!("echo {id} {} ", expected_hex[sent - 1]), || {
        client.tick()
    });
    let echoes: Vec<String> = godot
        .lines_after(&format!("echo {id} "))
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(echoes, expected_hex, "{}", godot.report());

    // The Godot server sets our rv with rset_id.
    let value = Variant::from(vec![Variant::Int(5), "five".into()]);
    client
        .peer
        .rpc_id(1, MAIN, "ask_rset", std::slice::from_ref(&value))
        .unwrap();
    client.wait_for("rset of rv", |c| !c.sets().is_empty());
    let set = client.sets()[0].clone();
    assert_eq!(
        (
            set.from,
            set.node.as_str(),
            set.property.as_str(),
            &set.value
        ),
        (1, MAIN, "rv", &value)
    );

    // The path cache on the wire, both ways.
    let (to_server, to_client) = tap.packets();
    let mut want_up = sequence(
        &["simplify 1 Main", "call echo Main", "confirm Main"],
        "call echo #1",
        sent - 1,
    );
    want_up.push("call ask_rset #1".into());
    assert_eq!(to_server, want_up);
    let mut want_down = sequence(
        &["confirm Main", "simplify 1 Main", "call echo_reply Main"],
        "call echo_reply #1",
        sent - 1,
    );
    want_down.push("set rv #1".into());
    assert_eq!(to_client, want_down);

    assert_eq!(client.peer.dropped_packets(), 0);
    godot.assert_no_errors();
}

#[test]
fn rpc_server_example_answers_and_relays_godot3_clients() {
    let port = free_port();
    let mut server = Command::new(example_bin("rpc_server"))
        .args(["--port", &port.to_string(), "--godot3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rpc_server");
    let mut server_out = Output {
        lines: line_channel(server.stdout.take().unwrap()),
        log: Vec::new(),
    };
    let _server = KillOnDrop(server);
    assert_eq!(
        server_out.line("Listening on "),
        format!("Listening on ws://127.0.0.1:{port}")
    );
    let url = format!("ws://127.0.0.1:{port}/");

    // b joins first and listens; a joins, and plays its script once it learns of b.
    let mut b = Godot::client("b", &url, "listen");
    let ib: i32 = b.expect("connected_to_server ", || {}).parse().unwrap();
    let mut a = Godot::client("a", &url, "relay");
    let ia: i32 = a.expect("connected_to_server ", || {}).parse().unwrap();
    a.expect(&format!("peer_connected {ib}"), || {});
    a.expect("done", || {});

    // a called b's note twice through the relay (the server has no note), and broadcast
    // echo_reply, which reached b and the server.
    b.expect(
        &format!(
            "note {ia} {} ",
            args_hex(&[Variant::from("again"), Variant::Int(9)])
        ),
        || {},
    );
    let b_got = |b: &mut Godot, method: &str| -> Vec<String> {
        b.lines_after(&format!("{method} {ia} "))
            .iter()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        b_got(&mut b, "note"),
        [
            args_hex(&[Variant::from("hi"), Variant::Int(7)]),
            args_hex(&[Variant::from("again"), Variant::Int(9)])
        ],
        "{}",
        b.report()
    );
    assert_eq!(
        b_got(&mut b, "echo_reply"),
        [args_hex(&[Variant::from("all"), Variant::Int(8)])],
        "{}",
        b.report()
    );
    assert!(b.lines_after("echo ").is_empty(), "{}", b.report());

    // a's echo to the server came back, and the server logged both calls it received.
    let reply = a.expect("echo_reply 1 ", || {});
    assert!(
        reply.starts_with(&format!("{} ", args_hex(&[Variant::from("x")]))),
        "{}",
        a.report()
    );
    assert_eq!(a.lines_after("echo_reply ").len(), 1, "{}", a.report());
    server_out.line(&format!("RPC echo from {ia}: x"));
    server_out.line(&format!("RPC echo_reply from {ia} ignored"));
    server_out.line(&format!("Peer {ib} connected"));
    assert!(
        !server_out.log.iter().any(|l| l.contains("note")),
        "the server handled a relayed call: {:#?}",
        server_out.log
    );
    a.assert_no_errors();
    b.assert_no_errors();
}
