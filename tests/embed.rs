//! `examples/embed.rs` (a `proto::Connection` driven over a blocking `TcpStream`) as a user
//! runs it: against our own `echo_server` example and two independent servers (Python
//! `websockets`, Node `ws`; install them with `bash tests/interop/setup.sh`), and failing
//! fast with a message when it cannot work. Build the examples first:
//! `cargo build --examples && cargo test --test embed`.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, example_bin};
use harness::{PeerProcess, interop_dir, require, runs};

/// The contract: any failure ends the example within 10 s.
const EXAMPLE_LIMIT: Duration = Duration::from_secs(10);

/// What one run of the example did.
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status.code(),
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }

    /// The success contract: exactly these two lines, nothing on stderr, exit 0.
    fn assert_echoed_and_closed(&self) {
        assert_eq!(
            self.stdout.lines().collect::<Vec<_>>(),
            [
                "Got data from server: Test packet",
                "WebSocket closed with code: 1000"
            ],
            "{}",
            self.describe()
        );
        assert_eq!(self.status.code(), Some(0), "{}", self.describe());
        assert!(self.stderr.is_empty(), "{}", self.describe());
        assert!(self.elapsed < EXAMPLE_LIMIT, "{}", self.describe());
    }

    /// The failure contract: exit 1 within 10 s with a message on stderr containing `what`.
    fn assert_failed_with(&self, what: &str) {
        assert_eq!(self.status.code(), Some(1), "{}", self.describe());
        assert!(self.elapsed < EXAMPLE_LIMIT, "{}", self.describe());
        assert!(self.stderr.contains(what), "{}", self.describe());
        assert!(
            !self.stdout.contains("Got data from server"),
            "{}",
            self.describe()
        );
    }
}

/// Runs the built `embed` example on `url`; kills it if it outlives twice its own limit.
fn run_embed(url: &str) -> Outcome {
    let started = Instant::now();
    let mut child = KillOnDrop(
        Command::new(example_bin("embed"))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the embed example"),
    );
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the example") {
            break status;
        }
        assert!(
            started.elapsed() < 2 * EXAMPLE_LIMIT,
            "the embed example on {url} still runs after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    // The output is a few lines: it fits the pipes, so reading after the exit is safe.
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(pipe) = child.0.stdout.as_mut() {
        pipe.read_to_string(&mut stdout).expect("read stdout");
    }
    if let Some(pipe) = child.0.stderr.as_mut() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    Outcome {
        status,
        stdout,
        stderr,
        elapsed,
    }
}

/// An echo server (text as text, binary as binary) in Python `websockets`.
const PYTHON_ECHO: &str = r#"
import asyncio
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", 0) as server:
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main())
"#;

/// An echo server (text as text, binary as binary) in Node `ws`.
const NODE_ECHO: &str = r#"
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('listening', () => console.log(`READY ${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code) => console.log(`closed with ${code}`));
});
"#;

#[test]
fn echoes_with_our_echo_server() {
    let mut command = Command::new(example_bin("echo_server"));
    command.args(["--port", "0"]);
    let mut server = PeerProcess::spawn("echo_server", command, "cargo build --examples");
    let url = server.wait_line("Listening on ", Duration::from_secs(10));
    let outcome = run_embed(&format!("{url}/embed?x=1"));
    outcome.assert_echoed_and_closed();
    // The server saw the same exchange from its side.
    for line in [
        "Test packet ... echoing",
        "disconnecting with code: 1000",
        "clean: true",
    ] {
        assert!(
            server.wait_output(line, Duration::from_secs(5)),
            "echo_server never printed {line:?}\n{}",
            server.output()
        );
    }
}

#[test]
fn echoes_with_python_websockets() {
    let install = "python3 -m pip install 'websockets>=15,<18'";
    require(
        "python websockets",
        runs("python3", &["-c", "import websockets"]),
        install,
    );
    let mut command = Command::new("python3");
    command
        .args(["-c", PYTHON_ECHO])
        .env("PYTHONUNBUFFERED", "1");
    let mut server = PeerProcess::spawn("python websockets echo", command, install);
    let port = server.ready_port();
    run_embed(&format!("ws://127.0.0.1:{port}/")).assert_echoed_and_closed();
}

#[test]
fn echoes_with_node_ws() {
    let install = "cd tests/interop && npm ci";
    let ws_installed = Command::new("node")
        .current_dir(interop_dir())
        .args(["-e", "require('ws')"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require("node ws", ws_installed, install);
    let mut command = Command::new("node");
    // From tests/interop, so that `require('ws')` finds its node_modules.
    command.current_dir(interop_dir()).args(["-e", NODE_ECHO]);
    let mut server = PeerProcess::spawn("node ws echo", command, install);
    let port = server.ready_port();
    // A host name, not an address: the example resolves it.
    run_embed(&format!("ws://localhost:{port}")).assert_echoed_and_closed();
    assert!(
        server.wait_output("closed with 1000", Duration::from_secs(5)),
        "the node server did not see close 1000\n{}",
        server.output()
    );
}

#[test]
fn a_closed_port_fails_fast_with_a_message() {
    // Bound then released: nothing listens there any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port();
    let outcome = run_embed(&format!("ws://127.0.0.1:{port}/"));
    outcome.assert_failed_with(&format!("cannot connect to 127.0.0.1:{port}"));
    assert!(outcome.stdout.is_empty(), "{}", outcome.describe());
}

#[test]
fn wss_is_refused_with_a_clear_message() {
    run_embed("wss://127.0.0.1:1/").assert_failed_with("plain TCP");
}

#[test]
fn a_server_that_never_answers_fails_within_the_limit() {
    // Accepts the TCP connection and reads nothing: only the example's own timer (its
    // upgrade deadline, fired through poll_timeout/handle_timeout) can end it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("bound").port();
    let outcome = run_embed(&format!("ws://127.0.0.1:{port}/"));
    drop(listener);
    outcome.assert_failed_with("not open within");
    assert!(
        outcome.elapsed >= Duration::from_secs(5),
        "{}",
        outcome.describe()
    );
}
