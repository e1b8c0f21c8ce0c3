//! The multiplayer and chat demos as people run them: `mp_server`, `chat_server`,
//! `chat_client`, `examples/chat.html` in headless Chromium, and a full game of the
//! `multiplayer` dice demo. Needs the example binaries (`cargo build --examples`) and
//! Debian's `chromium` (`apt-get install -y chromium`, or tests/interop/setup.sh).

#![allow(clippy::field_reassign_with_default)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{KillOnDrop, TIMEOUT, TempDir, example_bin, pki_for};
use wspeer::*;

/// A running program with its stdout lines (or stderr's, for Chromium) on a channel.
struct Running {
    name: String,
    child: KillOnDrop,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(name: &str, mut command: Command, read_stderr: bool) -> Running {
        command.stdin(Stdio::piped());
        if read_stderr {
            command.stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output: Box<dyn Read + Send> = if read_stderr {
            Box::new(child.stderr.take().unwrap())
        } else {
            Box::new(child.stdout.take().unwrap())
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child: KillOnDrop(child),
            lines,
            seen: Vec::new(),
        }
    }

    fn example(name: &str, args: &[&str]) -> Running {
        let mut command = Command::new(example_bin(name));
        command.args(args);
        Running::spawn(name, command, false)
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits for a line containing `needle`, calling `tick` meanwhile.
    fn expect(&mut self, needle: &str, mut tick: impl FnMut()) -> String {
        let start = Instant::now();
        let mut checked = 0;
        loop {
            self.drain();
            if let Some(line) = self.seen[checked..].iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            checked = self.seen.len();
            tick();
            assert!(
                start.elapsed() < TIMEOUT,
                "{}: no line containing {needle:?}; output so far: {:#?}",
                self.name,
                self.seen
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn count(&mut self, needle: &str) -> usize {
        self.drain();
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to stdin");
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn listening_url(&mut self) -> String {
        let line = self.expect("Listening on ", || {});
        line.trim_start_matches("Listening on ").to_string()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit status, calling `tick` meanwhile.
    fn wait_exit(&mut self, mut tick: impl FnMut()) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                self.drain();
                return status;
            }
            tick();
            assert!(
                start.elapsed() < TIMEOUT,
                "{} did not exit; output: {:#?}",
                self.name,
                self.seen
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn wait_for(what: &str, mut step: impl FnMut() -> bool) {
    let start = Instant::now();
    while !step() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A Godot 4-mode multiplayer client with what it reported.
struct Player {
    peer: WebSocketMultiplayerPeer,
    events: Vec<MultiplayerEvent>,
    packets: Vec<(i32, String)>,
}

impl Player {
    fn join(url: &str, protocols: &[&str], tls: Option<TlsOptions>) -> Player {
        let mut peer = WebSocketMultiplayerPeer::new();
        peer.set_supported_protocols(protocols);
        peer.create_client(url, tls).unwrap();
        Player {
            peer,
            events: Vec::new(),
            packets: Vec::new(),
        }
    }

    fn tick(&mut self) {
        self.peer.poll();
        while let Some(event) = self.peer.pop_event() {
            self.events.push(event);
        }
        while let Some((from, data)) = self.peer.recv() {
            self.packets
                .push((from, String::from_utf8_lossy(&data).into_owned()));
        }
    }

    fn connected(&self) -> bool {
        self.events.contains(&MultiplayerEvent::ConnectedToServer)
    }
}

fn tick_all(players: &mut [Player]) {
    for player in players.iter_mut() {
        player.tick();
    }
}

// ----- mp_server -----

#[test]
fn mp_server_hands_out_ids_announces_and_relays() {
    let mut server = Running::example("mp_server", &["--port", "0"]);
    let url = server.listening_url();
    let mut players: Vec<Player> = (0..3)
        .map(|_| Player::join(&url, &["ludus"], None))
        .collect();
    wait_for("three players connected", || {
        tick_all(&mut players);
        players
            .iter()
            .all(|p| p.connected() && p.peer.peer_ids().len() == 3)
    });
    let ids: Vec<i32> = players.iter().map(|p| p.peer.get_unique_id()).collect();
    for id in &ids {
        server.expect(&format!("Peer {id} connected"), || tick_all(&mut players));
    }
    players[0].peer.send_bytes(b"psst", ids[1]).unwrap();
    players[0].peer.send_bytes(b"hello all", 0).unwrap();
    wait_for("relayed", || {
        tick_all(&mut players);
        players[1].packets == [(ids[0], "psst".into()), (ids[0], "hello all".into())]
            && players[2].packets == [(ids[0], "hello all".into())]
    });
    // The default sub-protocol is ludus: a client without it is turned away.
    let mut stranger = Player::join(&url, &[], None);
    wait_for("stranger refused", || {
        stranger.tick();
        stranger
            .events
            .contains(&MultiplayerEvent::ConnectionFailed)
    });
    players[2].peer.close();
    server.expect(&format!("Peer {} disconnected", ids[2]), || {
        tick_all(&mut players)
    });
    wait_for("departure announced", || {
        tick_all(&mut players);
        players[0]
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(ids[2]))
    });
    server.signal("-INT");
    server.expect("Stopped", || tick_all(&mut players));
    assert!(server.wait_exit(|| {}).success());
}

#[test]
fn mp_server_without_relay_or_sub_protocol() {
    let mut server = Running::example(
        "mp_server",
        &["--port", "0", "--no-relay", "--protocol", ""],
    );
    let url = server.listening_url();
    server.expect("sub-protocol: (none), relay: off", || {});
    let mut players: Vec<Player> = (0..2).map(|_| Player::join(&url, &[], None)).collect();
    wait_for("connected", || {
        tick_all(&mut players);
        players.iter().all(Player::connected)
    });
    let other = players[1].peer.get_unique_id();
    server.expect(&format!("Peer {other} connected"), || {
        tick_all(&mut players)
    });
    // Clients see only the server, and cannot reach each other.
    assert_eq!(players[0].peer.peer_ids(), [1]);
    assert!(matches!(
        players[0].peer.send_bytes(b"x", other),
        Err(Error::PeerNotFound(_))
    ));
}

#[test]
fn mp_server_serves_wss_and_rejects_bad_flags() {
    let pki = pki_for(&["127.0.0.1"]);
    let dir = TempDir::new("mp-wss");
    let cert = dir.write("cert.pem", &pki.cert_pem);
    let key = dir.write("key.pem", &pki.key_pem);
    let mut server = Running::example(
        "mp_server",
        &["--port", "0", "--godot3", "--cert", &cert, "--key", &key],
    );
    let url = server.listening_url();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    server.expect("Protocol: Godot 3", || {});
    let mut config = MultiplayerConfig::default();
    config.protocol = MultiplayerProtocol::Godot3;
    config.websocket.peer.supported_protocols = vec!["ludus".into()];
    let mut player = WebSocketMultiplayerPeer::with_config(config);
    player
        .create_client(&url, Some(pki.client_options()))
        .unwrap();
    let mut player = Player {
        peer: player,
        events: Vec::new(),
        packets: Vec::new(),
    };
    wait_for("wss client connected", || {
        player.tick();
        player.connected()
    });
    let id = player.peer.get_unique_id();
    server.expect(&format!("Peer {id} connected"), || player.tick());

    for bad in [
        &["--port", "x"][..],
        &["--cert", "only.pem"],
        &["--frobnicate"],
    ] {
        let output = Command::new(example_bin("mp_server"))
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
    }
}

// ----- chat -----

fn chat_client(url: &str, extra: &[&str]) -> Running {
    let mut args = vec![url];
    args.extend_from_slice(extra);
    Running::example("chat_client", &args)
}

/// The id in a `[id] ...` line.
fn bracket_id(line: &str) -> String {
    line.trim_start_matches('[')
        .split(']')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn chat_broadcasts_to_everyone_but_the_sender() {
    let mut server = Running::example("chat_server", &["--port", "0"]);
    let url = server.listening_url();
    server.expect("Supported protocols: demo-chat", || {});
    let mut ann = chat_client(&url, &[]);
    ann.expect("Client just connected with protocol: demo-chat", || {});
    let ann_id = bracket_id(&server.expect("] connected", || {}));
    let mut bob = chat_client(&url, &[]);
    bob.expect("Client just connected with protocol: demo-chat", || {});
    let joined = ann.expect("] connected", || {});
    let bob_id = bracket_id(&joined);
    assert_ne!(ann_id, bob_id);
    server.expect(
        &format!("Remote client connected: {bob_id}. Protocol: demo-chat"),
        || {},
    );

    ann.type_line("hello from ann");
    bob.expect(&format!("[{ann_id}] Says: hello from ann"), || {});
    server.expect(&format!("[{ann_id}] Says: hello from ann"), || {});
    // The server's own line reaches everyone.
    server.type_line("welcome");
    ann.expect("Server says: welcome", || {});
    bob.expect("Server says: welcome", || {});
    assert_eq!(ann.count("Says: hello from ann"), 0, "{:#?}", ann.seen);

    // A client without the sub-protocol is refused.
    let mut stranger = WebSocketPeer::new();
    stranger.connect_to_url(&url, None).unwrap();
    wait_for("stranger refused", || {
        stranger.poll();
        stranger.get_ready_state() == State::Closed
    });
    assert!(stranger.get_last_error().is_some());

    // Ann leaves when her input ends: code and reason logged, Bob told.
    ann.close_stdin();
    server.expect(
        &format!("Remote client disconnected: {ann_id}. Code: 1000, Reason: Bye"),
        || {},
    );
    bob.expect(&format!("[{ann_id}] disconnected"), || {});
    ann.expect("Client just disconnected with code: 1000", || {});
    assert!(ann.wait_exit(|| {}).success());

    // Ctrl-C: Bob is closed with 1001.
    server.signal("-INT");
    bob.expect(
        "Client just disconnected with code: 1001, reason: Server stopping",
        || {},
    );
    assert!(bob.wait_exit(|| {}).success());
    assert!(server.wait_exit(|| {}).success());
}

#[test]
fn chat_over_wss() {
    let pki = pki_for(&["127.0.0.1"]);
    let dir = TempDir::new("chat-wss");
    let cert = dir.write("cert.pem", &pki.cert_pem);
    let key = dir.write("key.pem", &pki.key_pem);
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let mut server = Running::example(
        "chat_server",
        &["--port", "0", "--cert", &cert, "--key", &key],
    );
    let url = server.listening_url();
    assert!(url.starts_with("wss://"), "{url}");
    let mut ann = chat_client(&url, &["--ca", &ca]);
    ann.expect("Client just connected with protocol: demo-chat", || {});
    let mut bob = chat_client(&url, &["--insecure"]);
    bob.expect("Client just connected with protocol: demo-chat", || {});
    let ann_id = bracket_id(&server.expect("] connected", || {}));
    bob.type_line("over tls");
    ann.expect("Says: over tls", || {});
    // A client that does not trust the certificate fails and says why.
    let mut doubter = chat_client(&url, &[]);
    doubter.expect("Client just disconnected with code: -1", || {});
    doubter.expect("Error: TLS error", || {});
    assert_eq!(doubter.wait_exit(|| {}).code(), Some(1));
    assert!(!ann_id.is_empty());
}

fn chromium(url: &str, profile: &TempDir) -> Running {
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(url);
    if let Err(e) = Command::new("chromium").arg("--version").output() {
        panic!(
            "cannot run chromium ({e}): the chat page test needs it; install it with \
             `apt-get update && apt-get install -y chromium` (or run tests/interop/setup.sh)"
        );
    }
    // Chromium's console messages arrive on its stderr.
    Running::spawn("chromium", command, true)
}

/// Ends Chromium the polite way (it then takes its helper processes with it).
fn stop_chromium(browser: &mut Running) {
    browser.signal("-TERM");
    let start = Instant::now();
    while browser.child.0.try_wait().unwrap().is_none() && start.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A Rust member of the chat, to talk to the browser.
fn chat_member(url: &str) -> WebSocketPeer {
    let mut member = WebSocketPeer::new();
    member.set_supported_protocols(&["demo-chat"]);
    member.connect_to_url(url, None).unwrap();
    wait_for("member open", || {
        member.poll();
        member.get_ready_state() == State::Open
    });
    member
}

fn next_line(member: &mut WebSocketPeer, mut tick: impl FnMut()) -> String {
    let mut line = None;
    wait_for("a chat line", || {
        member.poll();
        tick();
        line = member.recv().and_then(|p| p.as_text().map(str::to_string));
        line.is_some()
    });
    line.unwrap()
}

#[test]
fn chat_page_joins_from_headless_chromium() {
    let mut server = Running::example("chat_server", &["--port", "0"]);
    let url = server.listening_url();
    let page = server.expect("Chat page: ", || {});
    let page = page.trim_start_matches("Chat page: ").to_string();

    // The server answers plain HTTP on the chat's port.
    let addr = url.trim_start_matches("ws://");
    for (path, status) in [
        ("/", "200 OK"),
        ("/chat.html", "200 OK"),
        ("/nope", "404 Not Found"),
    ] {
        let mut http = std::net::TcpStream::connect(addr).unwrap();
        http.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(http, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut response = String::new();
        http.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{response}"
        );
        if status == "200 OK" {
            assert!(response.contains("new WebSocket(url, PROTOCOL)"));
        }
    }

    let mut member = chat_member(&url);
    let member_id = bracket_id(&server.expect("] connected", || {}));

    // The page served by the chat server, joining with a line of its own.
    let profile = TempDir::new("chromium");
    let mut browser = chromium(
        &format!("{page}?say=hello%20from%20the%20browser"),
        &profile,
    );
    let joined = next_line(&mut member, || {});
    assert!(joined.ends_with("] connected"), "{joined}");
    let browser_id = bracket_id(&joined);
    assert_eq!(
        next_line(&mut member, || {}),
        format!("[{browser_id}] Says: hello from the browser")
    );
    browser.expect("Client just connected with protocol: demo-chat", || {});
    // What others say shows up on the page.
    member.send_text("hello page").unwrap();
    browser.expect(&format!("[{member_id}] Says: hello page"), || member.poll());
    stop_chromium(&mut browser);
    assert_eq!(
        next_line(&mut member, || {}),
        format!("[{browser_id}] disconnected")
    );

    // The same page opened from disk, pointed at the server.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/chat.html");
    let profile = TempDir::new("chromium");
    let mut browser = chromium(
        &format!("file://{}?url={url}/&say=from%20disk", file.display()),
        &profile,
    );
    let joined = next_line(&mut member, || {});
    let disk_id = bracket_id(&joined);
    assert_eq!(
        next_line(&mut member, || {}),
        format!("[{disk_id}] Says: from disk")
    );
    browser.expect("Client just connected with protocol: demo-chat", || {});
    stop_chromium(&mut browser);
}

/// Plain HTTP on the chat's port is answered inside the frame loop without waiting on
/// anyone: a browser that trickles its request over many frames gets the page, one that
/// never reads its answer holds nothing up, and the chat goes on meanwhile. A request head
/// is parsed as HTTP (query strings ignored, header names in any case); what is not a `GET`
/// or an upgrade is closed without an answer.
#[test]
fn chat_page_is_served_while_the_chat_goes_on() {
    let mut server = Running::example("chat_server", &["--port", "0"]);
    let url = server.listening_url();
    let addr = url.trim_start_matches("ws://").to_string();
    let mut ann = chat_member(&url);
    let ann_id = bracket_id(&server.expect("] connected", || {}));
    let mut bob = chat_member(&url);
    assert!(next_line(&mut ann, || {}).ends_with("] connected"));

    let connect = || {
        let http = std::net::TcpStream::connect(&addr).unwrap();
        http.set_read_timeout(Some(TIMEOUT)).unwrap();
        http
    };
    let read_all = |mut http: std::net::TcpStream| {
        let mut response = Vec::new();
        http.read_to_end(&mut response).unwrap();
        String::from_utf8(response).unwrap()
    };
    // A request that takes a second to arrive, a byte at a time.
    let mut slow = connect();
    let trickle = std::thread::spawn(move || {
        let request = "GET /?autoconnect=1 HTTP/1.1\r\nhost: x\r\nuser-agent: slow\r\n\r\n";
        let pause = Duration::from_secs(1) / request.len() as u32;
        for byte in request.as_bytes() {
            slow.write_all(std::slice::from_ref(byte)).unwrap();
            std::thread::sleep(pause);
        }
        slow
    });
    // A request whose answer is left unread until the end.
    let mut idle = connect();
    write!(idle, "GET /chat.html HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();

    // The chat keeps its pace while both are in flight.
    while !trickle.is_finished() {
        let sent = Instant::now();
        ann.send_text("still here").unwrap();
        assert_eq!(
            next_line(&mut bob, || {}),
            format!("[{ann_id}] Says: still here")
        );
        let round_trip = sent.elapsed();
        assert!(round_trip < Duration::from_secs(1), "{round_trip:?}");
    }
    for response in [read_all(trickle.join().unwrap()), read_all(idle)] {
        let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("new WebSocket(url, PROTOCOL)"));
    }

    // Neither a GET nor an upgrade: closed without an answer.
    for request in ["POST / HTTP/1.1\r\nHost: x\r\n\r\n", "hello\r\n\r\n"] {
        let mut http = connect();
        http.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = http.read_to_end(&mut response);
        assert!(response.is_empty(), "{request:?}: {response:?}");
    }
    // The chat is still there.
    bob.send_text("bye").unwrap();
    assert!(next_line(&mut ann, || {}).ends_with("] Says: bye"));
}

// ----- the dice game -----

#[test]
fn dice_game_is_played_to_the_end_by_headless_players() {
    let mut host = Running::example(
        "multiplayer",
        &[
            "--host",
            "--port",
            "0",
            "--players",
            "3",
            "--rounds",
            "2",
            "--auto",
            "--name",
            "Hosty",
        ],
    );
    let url = host.listening_url();
    let mut alice = Running::example(
        "multiplayer",
        &["--join", &url, "--name", "Alice", "--auto"],
    );
    let mut bob = Running::example("multiplayer", &["--join", &url, "--name", "Bob", "--auto"]);
    let winner = host.expect("Game over. Winner: ", || {});
    assert_eq!(alice.expect("Game over. ", || {}), winner);
    assert_eq!(bob.expect("Game over. ", || {}), winner);
    for player in [&mut host, &mut alice, &mut bob] {
        assert!(player.wait_exit(|| {}).success(), "{}", player.name);
    }
    // Two rounds: each of the three rolled twice, in turn order, as everyone saw it.
    host.expect("The game starts: Hosty, ", || {});
    for name in ["Hosty", "Alice", "Bob"] {
        assert_eq!(
            host.count(&format!("{name}: rolls ")),
            2,
            "{:#?}",
            host.seen
        );
    }
    let rolls = |p: &mut Running| -> Vec<String> {
        p.drain();
        p.seen
            .iter()
            .filter(|l| l.contains(": rolls "))
            .cloned()
            .collect()
    };
    let host_rolls = rolls(&mut host);
    assert_eq!(rolls(&mut alice), host_rolls);
    assert_eq!(rolls(&mut bob), host_rolls);
    let order: Vec<&str> = host_rolls
        .iter()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(order[..3], order[3..]);
    // The winner has the best total in the scores line.
    let scores = host.expect("Scores: ", || {});
    let best = scores
        .trim_start_matches("Scores: ")
        .split(", ")
        .map(|s| s.rsplit_once(' ').unwrap().1.parse::<u32>().unwrap())
        .max()
        .unwrap();
    assert!(
        winner.ends_with(&format!("with {best} points")),
        "{winner} / {scores}"
    );
    assert_eq!(host.count("Someone is trying to cheat"), 0);
}

#[test]
fn dice_host_is_the_authority() {
    let mut host = Running::example(
        "multiplayer",
        &[
            "--host",
            "--port",
            "0",
            "--players",
            "2",
            "--rounds",
            "1",
            "--name",
            "Hosty",
        ],
    );
    let url = host.listening_url();
    let mut mallory = Player::join(&url, &["ludus"], None);
    wait_for("connected", || {
        mallory.tick();
        mallory.connected()
    });
    let me = mallory.peer.get_unique_id();
    mallory.peer.send_bytes(b"name Mallory", 1).unwrap();
    host.expect("Your turn: type roll or pass", || mallory.tick());
    let heard = |mallory: &mut Player, text: &str| {
        let text = text.to_string();
        wait_for(&text, || {
            mallory.tick();
            mallory
                .packets
                .iter()
                .any(|(from, t)| *from == 1 && *t == text)
        });
    };
    heard(&mut mallory, "turn 1");
    // Acting out of turn is refused and reported to everyone.
    mallory.peer.send_bytes(b"action roll", 1).unwrap();
    heard(
        &mut mallory,
        &format!("log Someone is trying to cheat! {me}"),
    );
    // The host plays from its terminal; then it is Mallory's turn.
    host.type_line("roll");
    heard(&mut mallory, &format!("turn {me}"));
    mallory.peer.send_bytes(b"action dance", 1).unwrap();
    heard(&mut mallory, "log Invalid action: dance");
    mallory.peer.send_bytes(b"action pass", 1).unwrap();
    heard(&mut mallory, "log Mallory: passes");
    wait_for("game over", || {
        mallory.tick();
        mallory
            .packets
            .iter()
            .any(|(_, t)| t.starts_with("over Winner: Hosty with "))
    });
    mallory.peer.disconnect_peer(1, false).unwrap();
    assert!(host.wait_exit(|| mallory.tick()).success());
}
