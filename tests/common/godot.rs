//! The real Godot 3 engine: Debian's `godot3-server` (Godot 3.2.3, headless) running the
//! GDScript bots in `tests/multiplayer/`, and what a wspeer side needs to meet them.
//!
//! Needs `godot3-server` (`apt-get install -y godot3-server`, or tests/interop/setup.sh);
//! without it [`Godot::start`] fails, saying so.

use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wspeer::{MultiplayerConfig, MultiplayerProtocol};

use super::{KillOnDrop, TIMEOUT, TempDir, line_channel, read_lines};

pub const ENGINE: &str = "godot3-server";

/// The Godot project holding the bots.
pub fn bots_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/multiplayer")
}

/// What the bots' multiplayer speaks: Godot 3 mode, sub-protocol `ludus`.
pub fn godot3_config() -> MultiplayerConfig {
    let mut config = MultiplayerConfig {
        protocol: MultiplayerProtocol::Godot3,
        ..MultiplayerConfig::default()
    };
    config.websocket.peer.supported_protocols = vec!["ludus".into()];
    config
}

/// A port that was free a moment ago: Godot 3.2.3 cannot report the port it got for 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A running Godot bot: its stdout lines arrive on a channel and are kept in `seen`, its
/// stderr is kept for the reports.
pub struct Godot {
    /// The bot's name in failure messages.
    pub name: String,
    lines: mpsc::Receiver<String>,
    /// The stdout lines read so far.
    pub seen: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
    child: KillOnDrop,
    _home: TempDir,
}

impl Godot {
    /// Starts `godot3-server --path tests/multiplayer -s <script> <args>`, with its user
    /// data in a fresh directory and a locale Godot knows.
    pub fn start(name: &str, script: &str, args: &[&str]) -> Godot {
        let home = TempDir::new("godot3-home");
        let mut child = Command::new(ENGINE)
            .arg("--path")
            .arg(bots_dir())
            .args(["-s", script])
            .args(args)
            .env("LANG", "en_US.UTF-8")
            .env("HOME", &home.0)
            .env("XDG_DATA_HOME", &home.0)
            .env("XDG_CONFIG_HOME", &home.0)
            .env("XDG_CACHE_HOME", &home.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {ENGINE} ({e}): the Godot 3 tests need the engine; install it \
                     with `apt-get update && apt-get install -y godot3-server` (or run \
                     tests/interop/setup.sh)"
                )
            });
        let lines = line_channel(child.stdout.take().unwrap());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stderr_reader = read_lines(child.stderr.take().unwrap(), move |line| {
            sink.lock().unwrap().push(line);
            true
        });
        Godot {
            name: name.to_string(),
            lines,
            seen: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
            child: KillOnDrop(child),
            _home: home,
        }
    }

    /// Moves the stdout lines that arrived into `seen`.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Whether the bot printed `line` so far.
    pub fn saw(&mut self, line: &str) -> bool {
        self.drain();
        self.seen.iter().any(|l| l == line)
    }

    /// The lines seen so far that start with `prefix`, without it.
    pub fn lines_after(&mut self, prefix: &str) -> Vec<String> {
        self.drain();
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    }

    /// The bot's name and all it printed so far, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "{} stdout: {:#?}\nstderr: {:#?}",
            self.name,
            self.seen,
            self.stderr.lock().unwrap()
        )
    }

    /// The stderr lines read so far, each with its newline.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// Waits for a line starting with `prefix`, calling `tick` meanwhile (to drive the
    /// wspeer side); returns the rest of the line. Fails after [`TIMEOUT`].
    pub fn expect(&mut self, prefix: &str, mut tick: impl FnMut()) -> String {
        let start = Instant::now();
        let mut checked = 0;
        loop {
            self.drain();
            if let Some(line) = self.seen[checked..].iter().find(|l| l.starts_with(prefix)) {
                return line[prefix.len()..].to_string();
            }
            checked = self.seen.len();
            tick();
            if start.elapsed() > TIMEOUT {
                panic!("no line starting with {prefix:?}; {}", self.report());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Fails if Godot logged a multiplayer protocol error (a packet it could not take).
    pub fn assert_no_protocol_errors(&self) {
        self.assert_stderr_lacks(&["multiplayer", "_process_", "Invalid", "cheating"]);
    }

    /// Fails if Godot logged a multiplayer or script error (a packet or call it could not
    /// take).
    pub fn assert_no_errors(&self) {
        self.assert_stderr_lacks(&[
            "multiplayer",
            "_process_",
            "Invalid",
            "cheating",
            "SCRIPT ERROR",
            "RPC",
        ]);
    }

    /// Fails if a stderr line contains one of `needles`.
    fn assert_stderr_lacks(&self, needles: &[&str]) {
        let stderr = self.stderr.lock().unwrap();
        let bad: Vec<&String> = stderr
            .iter()
            .filter(|l| needles.iter().any(|needle| l.contains(needle)))
            .collect();
        assert!(bad.is_empty(), "{} logged errors: {stderr:#?}", self.name);
    }

    /// Waits for the process to exit, calling `tick` meanwhile; returns its exit code.
    /// Fails after [`TIMEOUT`].
    pub fn wait_exit(&mut self, mut tick: impl FnMut()) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            tick();
            assert!(start.elapsed() < TIMEOUT, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// For a bot that runs to completion on its own: waits up to `limit` for it to exit,
    /// killing it after that, then for the end of its output (all in `seen` and
    /// [`Godot::stderr_text`] on return). Returns how it exited, None if it was killed.
    pub fn finish(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("wait for godot3-server") {
                break Some(status);
            }
            if start.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if status.is_none() {
            let _ = self.child.0.kill();
            let _ = self.child.0.wait();
        }
        while let Ok(line) = self.lines.recv() {
            self.seen.push(line);
        }
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().expect("stderr reader");
        }
        status
    }
}
