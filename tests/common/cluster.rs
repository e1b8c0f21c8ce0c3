//! A real `redis-server` and `cluster_node` processes on loopback, for the cluster tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use wspeer::{State, WebSocketPeer};

use super::{KillOnDrop, TIMEOUT, example_bin, expect_line, line_channel};

/// A free loopback port (bound once and released: a fixed port is never used), never the
/// same twice in this test process: tests run in parallel, and a port released for its
/// user to bind could otherwise be handed to another test meanwhile.
pub fn free_loopback_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("local addr")
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
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_loopback_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port; waits until it answers, and checks that
    /// the server answering is this one (not another process that took the port).
    pub fn restart(&mut self) {
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
        let deadline = Instant::now() + TIMEOUT;
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

    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
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

/// A running `cluster_node` with its stdout lines.
pub struct ClusterNode {
    pub child: KillOnDrop,
    pub name: String,
    pub port: u16,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl ClusterNode {
    /// Starts `cluster_node --port 0 --node NAME --redis URL EXTRA...` (or with `--port`
    /// given in `extra`) and waits for its `listening` line.
    pub fn start(name: &str, redis: &Redis, extra: &[&str]) -> ClusterNode {
        let mut args = vec!["--node", name];
        let redis_url = redis.url();
        args.extend_from_slice(&["--redis", &redis_url]);
        if !extra.contains(&"--port") {
            args.extend_from_slice(&["--port", "0"]);
        }
        args.extend_from_slice(extra);
        let mut child = Command::new(example_bin("cluster_node"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cluster_node");
        let lines = line_channel(child.stdout.take().unwrap());
        let mut node = ClusterNode {
            child: KillOnDrop(child),
            name: name.to_owned(),
            port: 0,
            lines,
            seen: Vec::new(),
        };
        let prefix = format!("Node {name} listening on ws://");
        let line = node.expect_line(&prefix, || {});
        let addr = line.trim_start_matches(&prefix);
        node.port = addr.rsplit(':').next().unwrap().parse().expect("port");
        node
    }

    /// Waits for a line containing `needle`, calling `tick` meanwhile (to drive clients).
    pub fn expect_line(&mut self, needle: &str, tick: impl FnMut()) -> String {
        expect_line(&self.name, &self.lines, &mut self.seen, needle, tick)
    }

    /// Moves the lines printed so far into `seen`; returns how many there were before.
    pub fn drain(&mut self) -> usize {
        let before = self.seen.len();
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        before
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.0.id().to_string()])
            .status()
            .expect("kill (procps)");
        assert!(status.success());
    }

    /// Waits for the process to exit (calling `tick` meanwhile); returns its exit code.
    pub fn wait_exit(&mut self, mut tick: impl FnMut()) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                // The last lines.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.code();
            }
            tick();
            assert!(start.elapsed() < TIMEOUT, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A chat member: a client connected to `ws://127.0.0.1:PORT/?room=ROOM&name=NAME` and
/// the texts it received.
pub struct Member {
    pub socket: WebSocketPeer,
    pub texts: Vec<String>,
}

impl Member {
    pub fn connect(port: u16, room: &str, name: &str) -> Member {
        let mut socket = WebSocketPeer::new();
        socket
            .connect_to_url(
                &format!("ws://127.0.0.1:{port}/?room={room}&name={name}"),
                None,
            )
            .expect("connect");
        let start = Instant::now();
        while socket.get_ready_state() != State::Open {
            socket.poll();
            assert!(
                start.elapsed() < TIMEOUT,
                "{name} not connected: {:?}",
                socket.get_last_error()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Member {
            socket,
            texts: Vec::new(),
        }
    }

    /// Polls and collects received texts.
    pub fn tick(&mut self) {
        self.socket.poll();
        while let Some(packet) = self.socket.recv() {
            self.texts
                .push(packet.as_text().expect("a text message").to_owned());
        }
    }
}

/// The status line of `GET path` on `127.0.0.1:port` (the server closes after answering).
pub fn http_status(port: u16, path: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}
