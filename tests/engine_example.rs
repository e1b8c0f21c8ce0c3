//! The macroquad example game (`examples/macroquad_game`) played as people run it, headless:
//! the real `mp_server` binary, two game clients each under `xvfb-run -a` (Xvfb with Mesa's
//! software OpenGL) racing with `--autoplay`, and a third wspeer client that joins mid-race
//! and sends a move of its own. Needs the binaries (`cargo build --examples` and
//! `cargo build -p wspeer-macroquad-game`, as tests/run.sh does) and Debian's `xvfb`,
//! `xauth`, `libgl1-mesa-dri`, `libglx-mesa0`, `libx11-6` and `libxi6` (tests/setup-system.sh).

// Linux only: Xvfb, and each client's process group (`CommandExt::process_group`), killed
// whole when the test fails. On other systems this file is empty, so that
// `cargo check --target x86_64-pc-windows-gnu --all-targets` passes.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{KillOnDrop, example_bin, line_channel, read_lines};
use wspeer::{MultiplayerEvent, MultiplayerPeer, TARGET_PEER_BROADCAST, WebSocketMultiplayerPeer};

/// Turns each client plays: 4 × 2 moves of at least 0.1 s (the game's autoplay delay), and
/// no win possible (4 sixes reach square 24 of 30), so the race always has 8 moves.
const TURNS: usize = 4;
/// Xvfb and a software-rendered window start in about a second; the race takes another.
const DEADLINE: Duration = Duration::from_secs(60);
const GAME: &str = "wspeer-macroquad-game";

/// The built game (target/<profile>/wspeer-macroquad-game, beside this test's deps/
/// directory). Panics with the command to run when it is missing or older than its source.
fn game_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir.join(GAME);
    let build = format!("cargo build -p {GAME}");
    assert!(
        path.is_file(),
        "{} is missing: run `{build}` first (tests/run.sh does)",
        path.display()
    );
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/macroquad_game/src/main.rs");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    assert!(
        modified(&source) <= modified(&path),
        "{} is older than {}: run `{build}` first",
        path.display(),
        source.display()
    );
    path
}

/// `xvfb-run`, or a panic naming the packages: never skipped.
fn xvfb_run() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("xvfb-run"))
        .find(|candidate| candidate.is_file())
        .expect(
            "xvfb-run not found: this test runs the game under Xvfb. Install it with \
             `apt-get install -y xvfb xauth libgl1-mesa-dri libglx-mesa0 libx11-6 libxi6` \
             (tests/setup-system.sh does)",
        )
}

/// One game client under `xvfb-run -a`, in its own process group (xvfb-run, Xvfb and the
/// game), with its stdout lines and its stderr kept for the checks and the reports.
struct GameClient {
    name: &'static str,
    child: Child,
    status: Option<ExitStatus>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl GameClient {
    fn start(name: &'static str, url: &str) -> GameClient {
        let mut child = Command::new(xvfb_run())
            .arg("-a")
            .arg(game_bin())
            .args(["--url", url, "--autoplay", &TURNS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start xvfb-run for {name}: {e}"));
        let lines = line_channel(child.stdout.take().unwrap());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let kept = stderr.clone();
        read_lines(child.stderr.take().unwrap(), move |line| {
            kept.lock().unwrap().push(line);
            true
        });
        GameClient {
            name,
            child,
            status: None,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Reads what arrived; true once the client has exited and its output is all read.
    fn tick(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        loop {
            match self.lines.try_recv() {
                Ok(line) => self.seen.push(line),
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => return self.status.is_some(),
            }
        }
    }

    fn report(&self) -> String {
        format!(
            "{}: status {:?}\nstdout: {:#?}\nstderr: {:#?}",
            self.name,
            self.status,
            self.seen,
            self.stderr.lock().unwrap()
        )
    }

    /// The text after `prefix` on the first line that starts with it.
    fn after(&self, prefix: &str) -> Option<&str> {
        self.seen.iter().find_map(|line| line.strip_prefix(prefix))
    }

    fn id(&self) -> i32 {
        let id = self.after("Connected as ").expect("a Connected line");
        id.parse().expect("a numeric id")
    }

    fn moves(&self) -> Vec<&str> {
        let moves = self.seen.iter().filter(|l| l.starts_with("Move "));
        moves.map(String::as_str).collect()
    }
}

impl Drop for GameClient {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // TERM to xvfb-run's children (Xvfb and the game), so that xvfb-run cleans up as
        // usual (display lock, auth file); KILL to the whole group if it does not end.
        let xvfb_run = self.child.id().to_string();
        let _ = Command::new("pkill")
            .args(["-TERM", "-P", &xvfb_run])
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let group = format!("-{xvfb_run}");
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A wspeer client that joins once the race is on: the players must ignore its move, and it
/// hears theirs as the server relays them.
struct Intruder {
    peer: WebSocketMultiplayerPeer,
    id: i32,
    heard: Vec<(i32, String)>,
}

impl Intruder {
    fn join(url: &str) -> Intruder {
        let mut peer = WebSocketMultiplayerPeer::new();
        peer.set_supported_protocols(&["ludus"]);
        peer.create_client(url, None).expect("create_client");
        Intruder {
            peer,
            id: 0,
            heard: Vec::new(),
        }
    }

    fn tick(&mut self) {
        self.peer.poll();
        while let Some(event) = self.peer.pop_event() {
            match event {
                MultiplayerEvent::ConnectedToServer => {
                    self.id = self.peer.get_unique_id();
                    // A well-formed first move, from someone who is not racing.
                    let sent = self.peer.send_bytes(b"roll 1 6", TARGET_PEER_BROADCAST);
                    sent.expect("send the intruder's move");
                }
                MultiplayerEvent::ConnectionFailed => {
                    panic!("intruder: {:?}", self.peer.get_last_error())
                }
                _ => {}
            }
        }
        while let Some((from, packet)) = self.peer.recv() {
            let text = String::from_utf8_lossy(&packet).into_owned();
            self.heard.push((from, text));
        }
    }
}

#[test]
fn two_macroquad_clients_race_through_mp_server_under_xvfb() {
    let started = Instant::now();
    let mut server = Command::new(example_bin("mp_server"));
    server.args(["--port", "0"]).stdout(Stdio::piped());
    let mut server = KillOnDrop(server.spawn().expect("start mp_server"));
    let server_lines = line_channel(server.0.stdout.take().unwrap());
    let listening = server_lines
        .recv_timeout(Duration::from_secs(10))
        .expect("mp_server's Listening line");
    let url = listening
        .strip_prefix("Listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {listening:?}"))
        .to_string();

    let mut clients = [GameClient::start("A", &url), GameClient::start("B", &url)];
    let mut intruder: Option<Intruder> = None;
    let mut seated_at = None;
    loop {
        let mut done = true;
        for client in &mut clients {
            done &= client.tick();
        }
        if let Some(intruder) = &mut intruder {
            intruder.tick();
        }
        let seated = clients
            .iter()
            .all(|c| c.after("Playing against ").is_some());
        if seated && intruder.is_none() {
            seated_at = Some(Instant::now());
            intruder = Some(Intruder::join(&url));
        }
        if done {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the race did not end within {DEADLINE:?}\n{}\n{}",
            clients[0].report(),
            clients[1].report()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let race_time = seated_at.map(|at| at.elapsed());
    let report = format!("{}\n{}", clients[0].report(), clients[1].report());
    for client in &clients {
        assert!(
            client.status.is_some_and(|s| s.success()),
            "{} failed\n{report}",
            client.name
        );
    }

    // Each met the other, through the server's announcements.
    let (a, b) = (clients[0].id(), clients[1].id());
    let first = a.min(b);
    for (client, other) in clients.iter().zip([b, a]) {
        let expected = format!("{other}: player {first} starts");
        assert_eq!(
            client.after("Playing against "),
            Some(expected.as_str()),
            "{report}"
        );
    }

    // Both saw the same moves, each player's own and the other's: the rolls are random, so
    // one can print the other's only if they travelled.
    let moves = clients[0].moves();
    assert_eq!(moves, clients[1].moves(), "the two races differ\n{report}");
    assert_eq!(moves.len(), 2 * TURNS, "{report}");
    for (i, line) in moves.iter().enumerate() {
        let player = if i % 2 == 0 { first } else { a.max(b) };
        let prefix = format!("Move {}: player {player} rolls ", i + 1);
        assert!(
            line.starts_with(&prefix),
            "{line:?}, expected {prefix:?}\n{report}"
        );
    }
    let results: Vec<&str> = clients
        .iter()
        .map(|c| c.after("Result: ").expect("a Result line"))
        .map(|r| r.rsplit_once("; ").expect("…; N frames").0)
        .collect();
    assert_eq!(results[0], results[1], "{report}");
    assert!(
        results[0].starts_with(&format!("{TURNS} turns each played; ")),
        "{report}"
    );

    // The intruder was announced, its move ignored, and it heard the players' moves as
    // the same text both printed.
    let intruder = intruder.expect("the intruder joined");
    assert_ne!(intruder.id, 0, "the intruder never got its id");
    for client in &clients {
        for needle in [
            format!("Player {} joined: the table is full, ignored", intruder.id),
            format!("Ignoring a packet from {}: not racing with us", intruder.id),
        ] {
            assert!(
                client.seen.contains(&needle),
                "{}: no {needle:?}\n{report}",
                client.name
            );
        }
        assert!(
            client
                .moves()
                .iter()
                .all(|m| !m.contains(&intruder.id.to_string())),
            "{report}"
        );
    }
    assert!(!intruder.heard.is_empty(), "the intruder heard no move");
    for (from, text) in &intruder.heard {
        let mut words = text.split(' ').skip(1);
        let (number, roll) = (words.next().unwrap(), words.next().unwrap());
        let line = format!("Move {number}: player {from} rolls {roll} to square ");
        assert!(
            moves.iter().any(|m| m.starts_with(&line)),
            "the intruder heard {text:?} from {from}, which no client printed\n{report}"
        );
    }
    eprintln!(
        "engine_example: {} moves; from both seated to both exited {race_time:?}; \
         intruder heard {} of them; whole test {:?}",
        moves.len(),
        intruder.heard.len(),
        started.elapsed()
    );
}
