//! The driver shared by the interop tests (`tests/interop_*.rs`): the message script that
//! wspeer and every independent peer run, the wspeer side of it (as server and as client),
//! and the peer processes (started in their own process group, always killed at the end).
//!
//! The script, the same in `peer.py`, `peer.js`, `godot/peer.gd` and `chromium/peer.html`,
//! for each of two connections ("sessions") in a cell:
//! 1. The client offers the sub-protocols `bogus, wspeer-interop`; the server supports
//!    `wspeer-interop` (wspeer: `other, wspeer-interop`). Both sides check that
//!    `wspeer-interop` was selected.
//! 2. Phase A: wspeer sends each message of the list (for every size: a text message, then
//!    a binary one; payloads from [`payload`] with seed `10 * session + 1`), one at a time;
//!    the peer checks every byte and the message type against its own copy of the generator,
//!    then echoes it back unchanged; wspeer checks the echo byte for byte.
//! 3. Phase B: the peer sends the same list with seed `10 * session + 2`; wspeer checks each
//!    message and echoes it; the peer checks the echo.
//! 4. Session 0: the peer closes with [`PEER_CLOSE`]; wspeer checks code and reason.
//!    Session 1: wspeer closes with [`WSPEER_CLOSE`]; the peer checks code and reason, and
//!    wspeer checks that the peer's answer echoes them.
//!
//! Connections from a peer client go to `<base>session0` and `<base>session1` (and
//! `<base>report` for the browser's verdict). A peer that finds a difference prints
//! `FAIL: ...` and exits with status 1; after both sessions it prints `PASS` and exits 0.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
// Process groups (for killing a peer with its helper processes) are POSIX; elsewhere only
// the peer itself is started and killed. The peers are installed for Debian by
// tests/interop/setup.sh, so these tests run on Linux; other systems only build them.
#[cfg(unix)]
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use wspeer::{
    Packet, PeerConfig, ServerConfig, ServerEvent, State, TlsOptions, WebSocketPeer,
    WebSocketServer, WriteMode,
};

/// The sub-protocol every cell negotiates.
pub const PROTOCOL: &str = "wspeer-interop";
/// What a client offers, in order (the first is supported by nobody).
pub const OFFERED: [&str; 2] = ["bogus", PROTOCOL];
/// What the wspeer server supports.
pub const SUPPORTED: [&str; 2] = ["other", PROTOCOL];
/// Session 0: the peer closes with this code and reason.
pub const PEER_CLOSE: (i32, &str) = (4001, "peer bye ✓");
/// Session 1: wspeer closes with this code and reason.
pub const WSPEER_CLOSE: (i32, &str) = (4002, "wspeer bye ✓");
/// The longest any cell may take, start to end.
pub const CELL_TIMEOUT: Duration = Duration::from_secs(30);
/// Message sizes for peers without a small message limit: the frame-length boundaries
/// (125/126, 65535/65536), Godot's 64 KiB buffer, and a message just under 1 MiB (the
/// default `max_size` of Python `websockets`).
pub const SIZES: &[usize] = &[0, 1, 125, 126, 127, 1000, 65535, 65536, 65537, 1_000_000];
/// How long a peer that exited may still have connections for wspeer to finish.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// The largest message wspeer accepts in these tests.
pub const MAX_MESSAGE: usize = 2 << 20;

/// The type of a message in the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
}

/// The deterministic payload every peer generates too.
///
/// Binary: byte `i` is `(i * 31 + seed * 17 + (i >> 9)) & 0xFF`.
/// Text (UTF-8): the tokens `j = seed, seed + 1, ...` where token `j` is, by `j % 4`, the
/// letter `'A' + (j >> 2) % 26`, `é`, `€`, `😀` (1, 2, 3 and 4 bytes), as many as fit in
/// `size` bytes, then `-` up to exactly `size` bytes.
pub fn payload(kind: Kind, size: usize, seed: usize) -> Vec<u8> {
    match kind {
        Kind::Binary => (0..size)
            .map(|i| ((i * 31 + seed * 17 + (i >> 9)) & 0xFF) as u8)
            .collect(),
        Kind::Text => {
            let mut out = Vec::with_capacity(size);
            let mut letter = [0u8; 1];
            for j in seed.. {
                let token: &[u8] = match j % 4 {
                    0 => {
                        letter[0] = b'A' + ((j >> 2) % 26) as u8;
                        &letter
                    }
                    1 => "é".as_bytes(),
                    2 => "€".as_bytes(),
                    _ => "😀".as_bytes(),
                };
                if out.len() + token.len() > size {
                    break;
                }
                out.extend_from_slice(token);
            }
            out.resize(size, b'-');
            out
        }
    }
}

/// The script's message list: for every size, a text message then a binary one.
pub fn messages(sizes: &[usize]) -> Vec<(Kind, usize)> {
    sizes
        .iter()
        .flat_map(|&s| [(Kind::Text, s), (Kind::Binary, s)])
        .collect()
}

/// `sizes` as the comma-separated list the peer scripts take.
pub fn sizes_arg(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn check(packet: &Packet, kind: Kind, size: usize, seed: usize, what: &str) -> Result<(), String> {
    let expected = payload(kind, size, seed);
    let got_kind = if packet.is_text() {
        Kind::Text
    } else {
        Kind::Binary
    };
    if got_kind != kind {
        return Err(format!(
            "{what}: expected a {kind:?} message, got {got_kind:?}"
        ));
    }
    if packet.data() != expected.as_slice() {
        let first = packet
            .data()
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(packet.data().len().min(expected.len()));
        return Err(format!(
            "{what}: got {} bytes, expected {}; first difference at byte {first}",
            packet.data().len(),
            expected.len()
        ));
    }
    Ok(())
}

/// wspeer's side of phases A and B on one connection.
pub struct Exchange {
    session: usize,
    messages: Vec<(Kind, usize)>,
    step: Step,
    /// Payload bytes checked so far (both directions).
    pub checked_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    SendA(usize),
    AwaitEchoA(usize),
    AwaitB(usize),
    Done,
}

impl Exchange {
    pub fn new(session: usize, sizes: &[usize]) -> Self {
        Exchange {
            session,
            messages: messages(sizes),
            step: Step::SendA(0),
            checked_bytes: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// Where the exchange is, for failure messages.
    pub fn describe(&self) -> String {
        let n = self.messages.len();
        match self.step {
            Step::SendA(i) | Step::AwaitEchoA(i) => {
                format!("session {}: phase A, message {i} of {n}", self.session)
            }
            Step::AwaitB(i) => format!("session {}: phase B, message {i} of {n}", self.session),
            Step::Done => format!("session {}: messages done", self.session),
        }
    }

    fn seed_a(&self) -> usize {
        10 * self.session + 1
    }

    fn seed_b(&self) -> usize {
        10 * self.session + 2
    }

    /// Sends and checks whatever the script allows now; `Ok(true)` once both phases are done.
    pub fn advance(&mut self, peer: &mut WebSocketPeer) -> Result<bool, String> {
        loop {
            match self.step {
                Step::SendA(i) if i == self.messages.len() => self.step = Step::AwaitB(0),
                Step::SendA(i) => {
                    let (kind, size) = self.messages[i];
                    let data = payload(kind, size, self.seed_a());
                    let mode = match kind {
                        Kind::Text => WriteMode::Text,
                        Kind::Binary => WriteMode::Binary,
                    };
                    peer.send(&data, mode)
                        .map_err(|e| format!("{}: wspeer could not send: {e}", self.describe()))?;
                    self.step = Step::AwaitEchoA(i);
                }
                Step::AwaitEchoA(i) => {
                    let Some(packet) = peer.recv() else {
                        return Ok(false);
                    };
                    let (kind, size) = self.messages[i];
                    let what = format!(
                        "session {}: the peer's echo of wspeer's message {i} ({kind:?}, {size} bytes)",
                        self.session
                    );
                    check(&packet, kind, size, self.seed_a(), &what)?;
                    self.checked_bytes += size;
                    self.step = Step::SendA(i + 1);
                }
                Step::AwaitB(i) if i == self.messages.len() => self.step = Step::Done,
                Step::AwaitB(i) => {
                    let Some(packet) = peer.recv() else {
                        return Ok(false);
                    };
                    let (kind, size) = self.messages[i];
                    let what = format!(
                        "session {}: the peer's message {i} ({kind:?}, {size} bytes)",
                        self.session
                    );
                    check(&packet, kind, size, self.seed_b(), &what)?;
                    self.checked_bytes += size;
                    let mode = if packet.is_text() {
                        WriteMode::Text
                    } else {
                        WriteMode::Binary
                    };
                    peer.send(packet.data(), mode)
                        .map_err(|e| format!("{}: wspeer could not echo: {e}", self.describe()))?;
                    self.step = Step::AwaitB(i + 1);
                }
                Step::Done => return Ok(true),
            }
        }
    }
}

/// Settings for wspeer's side of every cell: room for the largest message.
pub fn peer_config() -> PeerConfig {
    PeerConfig {
        inbound_buffer_size: MAX_MESSAGE,
        outbound_buffer_size: MAX_MESSAGE,
        ..PeerConfig::default()
    }
}

/// A wspeer server for a cell on 127.0.0.1 (ephemeral port), optionally with TLS.
pub fn cell_server(tls: Option<TlsOptions>) -> WebSocketServer {
    let mut server = WebSocketServer::with_config(ServerConfig {
        peer: peer_config(),
        ..ServerConfig::default()
    });
    server.set_supported_protocols(&SUPPORTED);
    server.set_tls_options(tls).expect("server TLS options");
    server
        .listen_on("127.0.0.1", 0)
        .expect("listen on 127.0.0.1");
    server
}

/// The base URL of a cell server with the scheme chosen by the test.
pub fn base_url(server: &WebSocketServer, tls: bool) -> String {
    let addr = server.local_addr().expect("listening");
    format!("{}://{addr}/", if tls { "wss" } else { "ws" })
}

/// Fails the test with the peer's output (after a moment for it to print its own view).
fn fail(peer: &PeerProcess, why: String) -> ! {
    std::thread::sleep(Duration::from_millis(300));
    panic!(
        "{}: {why}\n--- {} output ---\n{}",
        peer.name,
        peer.name,
        peer.output()
    )
}

/// What one session looked like from wspeer's side, for the test's log.
#[derive(Debug, Default)]
pub struct SessionLog {
    pub session: usize,
    pub checked_bytes: usize,
    /// The close code and reason wspeer received (session 0: the peer's close; session
    /// 1: the peer's answer to wspeer's close).
    pub received_close: (i32, String),
    /// wspeer as server: what the peer's upgrade request offered.
    pub request: String,
}

struct ServerSession {
    session: usize,
    exchange: Exchange,
    close_request: Option<(i32, String)>,
    closing: bool,
    done: bool,
    log: SessionLog,
}

/// Runs both sessions of a cell with wspeer as the server and `peer` as the client, until
/// both sessions are checked and (`report == false`) the peer exited with success, or
/// (`report == true`, a browser page) the page sent its verdict to `<base>report`.
/// `peer_close_reason` is the reason wspeer must receive in session 0 (normally
/// `PEER_CLOSE.1`). Panics with the peer's output on any difference.
pub fn drive_server(
    server: &mut WebSocketServer,
    peer: &mut PeerProcess,
    sizes: &[usize],
    report: bool,
    peer_close_reason: &str,
) -> Vec<SessionLog> {
    let start = Instant::now();
    let mut sessions: HashMap<i32, ServerSession> = HashMap::new();
    let mut report_id = None;
    let mut verdict: Option<String> = None;
    let mut logs: Vec<SessionLog> = Vec::new();
    let mut exited_at: Option<Instant> = None;
    loop {
        server.poll_with_timeout(Duration::from_millis(1));
        let events: Vec<ServerEvent> = server.events().collect();
        for event in events {
            match event {
                ServerEvent::ClientConnected { id, protocol } => {
                    let request = server
                        .get_peer(id)
                        .and_then(|p| p.get_handshake_request())
                        .cloned()
                        .unwrap_or_default();
                    let path = request.path.clone();
                    let offer = |name: &str| request.header(name).unwrap_or("-").to_string();
                    let request_summary = format!(
                        "protocols offered {:?}, extensions offered {:?}, origin {:?}, user agent {:?}",
                        offer("sec-websocket-protocol"),
                        offer("sec-websocket-extensions"),
                        offer("origin"),
                        offer("user-agent")
                    );
                    if path == "/report" {
                        report_id = Some(id);
                        continue;
                    }
                    let Some(session) = path
                        .strip_prefix("/session")
                        .and_then(|s| s.parse::<usize>().ok())
                        .filter(|s| *s < 2)
                    else {
                        fail(peer, format!("unexpected request path {path:?}"));
                    };
                    if protocol != PROTOCOL {
                        fail(
                            peer,
                            format!("session {session}: selected sub-protocol {protocol:?}"),
                        );
                    }
                    sessions.insert(
                        id,
                        ServerSession {
                            session,
                            exchange: Exchange::new(session, sizes),
                            close_request: None,
                            closing: false,
                            done: false,
                            log: SessionLog {
                                session,
                                request: request_summary,
                                ..SessionLog::default()
                            },
                        },
                    );
                }
                ServerEvent::ClientCloseRequest { id, code, reason } => {
                    if let Some(s) = sessions.get_mut(&id) {
                        s.close_request = Some((code, reason));
                    }
                }
                ServerEvent::ClientDisconnected { id, was_clean } => {
                    if Some(id) == report_id {
                        if let Some(p) = server.get_peer(id) {
                            for packet in p.packets() {
                                verdict = Some(String::from_utf8_lossy(packet.data()).into());
                            }
                        }
                        continue;
                    }
                    let Some(s) = sessions.get_mut(&id) else {
                        continue;
                    };
                    let close = server
                        .get_peer(id)
                        .map(|p| (p.get_close_code(), p.get_close_reason().to_string()))
                        .unwrap_or((-2, String::new()));
                    if !s.exchange.is_done() {
                        let why = format!(
                            "the connection ended early ({}); clean: {was_clean}, close {close:?}",
                            s.exchange.describe()
                        );
                        fail(peer, why);
                    }
                    if !was_clean {
                        let why =
                            format!("session {}: not a clean close; close {close:?}", s.session);
                        fail(peer, why);
                    }
                    if s.session == 0 {
                        let expected = (PEER_CLOSE.0, peer_close_reason.to_string());
                        if s.close_request.as_ref() != Some(&expected) || close != expected {
                            let why = format!(
                                "session 0: the peer closed with {expected:?}, wspeer saw a close request {:?} and close {close:?}",
                                s.close_request
                            );
                            fail(peer, why);
                        }
                    } else if close != (WSPEER_CLOSE.0, WSPEER_CLOSE.1.to_string()) {
                        // Every peer here echoes the close frame it received.
                        let why = format!(
                            "session 1: wspeer closed with {WSPEER_CLOSE:?}, the peer answered {close:?}"
                        );
                        fail(peer, why);
                    }
                    s.done = true;
                    s.log.checked_bytes = s.exchange.checked_bytes;
                    s.log.received_close = close;
                    logs.push(std::mem::take(&mut s.log));
                }
                ServerEvent::DataReceived { .. } => {}
                _ => {}
            }
        }
        for (&id, s) in sessions.iter_mut() {
            if s.done {
                continue;
            }
            let Some(p) = server.get_peer(id) else {
                continue;
            };
            match s.exchange.advance(p) {
                Ok(true) if s.session == 1 && !s.closing => {
                    s.closing = true;
                    if let Err(e) = p.close(WSPEER_CLOSE.0, WSPEER_CLOSE.1) {
                        let why = format!("session 1: wspeer's close failed: {e}");
                        fail(peer, why);
                    }
                }
                Ok(_) => {}
                Err(why) => fail(peer, why),
            }
        }
        if let Some(id) = report_id {
            if let Some(p) = server.get_peer(id) {
                for packet in p.packets() {
                    verdict = Some(String::from_utf8_lossy(packet.data()).into());
                }
            }
        }
        let exit = peer.try_exit();
        if let Some(status) = exit {
            if !status.success() {
                fail(peer, format!("the peer exited with {status}"));
            }
        }
        if let Some(v) = &verdict {
            if v != "PASS" {
                fail(peer, format!("the page reported: {v}"));
            }
        }
        let sessions_done = logs.len() == 2;
        let peer_done = if report {
            verdict.is_some()
        } else {
            exit.is_some()
        };
        if sessions_done && peer_done {
            break;
        }
        if exit.is_some() && exited_at.is_none() {
            exited_at = Some(Instant::now());
        }
        // A client that exits at once after the last close frame may be seen gone before its
        // disconnect is: allow a moment.
        if !report && !sessions_done && exited_at.is_some_and(|t| t.elapsed() > EXIT_GRACE) {
            fail(peer, "the peer exited before both sessions ended".into());
        }
        if start.elapsed() > CELL_TIMEOUT {
            let states: Vec<String> = sessions
                .values()
                .map(|s| format!("{} (done: {})", s.exchange.describe(), s.done))
                .collect();
            fail(
                peer,
                format!(
                    "timed out after {CELL_TIMEOUT:?}; sessions: {states:?}; verdict: {verdict:?}"
                ),
            );
        }
    }
    logs.sort_by_key(|l| l.session);
    if !report {
        peer.expect_pass();
    }
    logs
}

/// Runs both sessions of a cell with wspeer as the client of the peer's server at `base`
/// (ending in `/`), then waits for the peer to exit with success. `peer_close_reason` as
/// for [`drive_server`].
pub fn drive_client(
    base: &str,
    tls: Option<TlsOptions>,
    peer: &mut PeerProcess,
    sizes: &[usize],
    peer_close_reason: &str,
) -> Vec<SessionLog> {
    let start = Instant::now();
    let mut logs = Vec::new();
    for session in 0..2 {
        let mut client = WebSocketPeer::with_config(peer_config());
        client.set_supported_protocols(&OFFERED);
        let url = format!("{base}session{session}");
        if let Err(e) = client.connect_to_url(&url, tls.clone()) {
            fail(peer, format!("connect_to_url({url}): {e}"));
        }
        let mut exchange = Exchange::new(session, sizes);
        let mut opened = false;
        let mut closing = false;
        loop {
            client.poll();
            match client.get_ready_state() {
                State::Connecting => {}
                State::Open | State::Closing => {
                    if !opened {
                        opened = true;
                        if client.get_selected_protocol() != PROTOCOL {
                            let why = format!(
                                "session {session}: selected sub-protocol {:?}",
                                client.get_selected_protocol()
                            );
                            fail(peer, why);
                        }
                    }
                    if client.get_ready_state() == State::Open {
                        match exchange.advance(&mut client) {
                            Ok(true) if session == 1 && !closing => {
                                closing = true;
                                if let Err(e) = client.close(WSPEER_CLOSE.0, WSPEER_CLOSE.1) {
                                    fail(peer, format!("session 1: wspeer's close failed: {e}"));
                                }
                            }
                            Ok(_) => {}
                            Err(why) => fail(peer, why),
                        }
                    }
                }
                State::Closed => break,
            }
            if let Some(status) = peer.try_exit() {
                if !status.success() {
                    fail(peer, format!("the peer exited with {status}"));
                }
            }
            if start.elapsed() > CELL_TIMEOUT {
                fail(
                    peer,
                    format!(
                        "timed out after {CELL_TIMEOUT:?}: {} (state {:?})",
                        exchange.describe(),
                        client.get_ready_state()
                    ),
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // Packets that arrived with the close are still readable.
        if let Err(why) = exchange.advance(&mut client) {
            fail(peer, why);
        }
        let close = (
            client.get_close_code(),
            client.get_close_reason().to_string(),
        );
        if !opened || !exchange.is_done() {
            let why = format!(
                "the connection ended early ({}); close {close:?}, error: {:?}",
                exchange.describe(),
                client.get_last_error()
            );
            fail(peer, why);
        }
        if session == 0 && close != (PEER_CLOSE.0, peer_close_reason.to_string()) {
            let why = format!(
                "session 0: the peer closed with {:?}, wspeer saw {close:?} (error: {:?})",
                (PEER_CLOSE.0, peer_close_reason),
                client.get_last_error()
            );
            fail(peer, why);
        }
        // Every peer here echoes the close frame it received.
        if session == 1 && close != (WSPEER_CLOSE.0, WSPEER_CLOSE.1.to_string()) {
            let why = format!(
                "session 1: the peer answered wspeer's close with {close:?} (error: {:?})",
                client.get_last_error()
            );
            fail(peer, why);
        }
        logs.push(SessionLog {
            session,
            checked_bytes: exchange.checked_bytes,
            received_close: close,
            request: String::new(),
        });
    }
    let remaining = CELL_TIMEOUT.saturating_sub(start.elapsed()) + Duration::from_secs(1);
    let status = peer.wait_exit(remaining);
    if !status.success() {
        fail(peer, format!("the peer exited with {status}"));
    }
    peer.expect_pass();
    logs
}

/// Prints what a cell did (visible with `--nocapture`).
pub fn print_logs(cell: &str, logs: &[SessionLog], peer: &PeerProcess) {
    for log in logs {
        println!(
            "{cell}: session {}: {} payload bytes checked by wspeer; close received by wspeer: {} {:?}",
            log.session, log.checked_bytes, log.received_close.0, log.received_close.1
        );
        if !log.request.is_empty() {
            println!("{cell}: session {}: {}", log.session, log.request);
        }
    }
    for line in peer.output().lines().filter(|l| l.contains("closed with")) {
        println!("{cell}: peer: {line}");
    }
}

// ----- processes and files -----

/// The directory of the peer scripts (`tests/interop`).
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "wspeer-interop-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test PKI written to files: CA, leaf chain and key for `127.0.0.1` and `localhost`.
pub struct PkiFiles {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki_files(dir: &TempDir) -> PkiFiles {
    let pki = crate::common::pki_for(&["127.0.0.1", "localhost"]);
    PkiFiles {
        ca: dir.write("ca.pem", &pki.ca_pem),
        cert: dir.write("cert.pem", &pki.cert_pem),
        key: dir.write("key.pem", &pki.key_pem),
        ca_pem: pki.ca_pem,
        cert_pem: pki.cert_pem,
        key_pem: pki.key_pem,
    }
}

/// Fails the test, naming the install command, when `check` says a peer is missing.
pub fn require(what: &str, ok: bool, install: &str) {
    assert!(
        ok,
        "{what} is not installed. Install the interop peers with `bash tests/interop/setup.sh` \
         (here: `{install}`); these tests never skip."
    );
}

/// Whether `program` can be started (found on PATH and executable).
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A peer process in its own process group, with its output collected; the whole group is
/// killed on drop.
pub struct PeerProcess {
    pub name: String,
    child: Child,
    output: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
    exit: Option<ExitStatus>,
}

impl PeerProcess {
    /// Starts `command`; a missing program fails the test with `install` in the message.
    pub fn spawn(name: &str, mut command: Command, install: &str) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group, killed as a whole (POSIX only: see the `CommandExt` import).
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "{name}: cannot start {:?}: {e}. Install the interop peers with \
                 `bash tests/interop/setup.sh` (here: `{install}`); these tests never skip.",
                command.get_program()
            )
        });
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_reader(stdout, "", output.clone(), Some(tx));
        spawn_reader(stderr, "[stderr] ", output.clone(), None);
        PeerProcess {
            name: name.to_string(),
            child,
            output,
            lines,
            exit: None,
        }
    }

    /// Everything the peer printed so far (stderr lines prefixed), the last 16 KiB.
    pub fn output(&self) -> String {
        let all = self.output.lock().map(|o| o.clone()).unwrap_or_default();
        if all.len() > 16384 {
            let mut cut = all.len() - 16384;
            while !all.is_char_boundary(cut) {
                cut += 1;
            }
            format!("[...]\n{}", &all[cut..])
        } else {
            all
        }
    }

    /// Waits (bounded) until the peer's combined output contains `needle`: stdout and
    /// stderr are read by separate threads, so a line on one can overtake the other.
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while !self.output().contains(needle) {
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// The exit status, if the peer has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits (bounded) for the peer to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                // Let the reader threads catch the last lines.
                std::thread::sleep(Duration::from_millis(20));
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "{}: did not exit within {timeout:?}\n--- output ---\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) for a stdout line starting with `prefix` and returns the rest of it.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        match self.try_wait_line(prefix, timeout) {
            Some(rest) => rest,
            None => panic!(
                "{}: exited ({:?}) before printing {prefix:?}\n--- output ---\n{}",
                self.name,
                self.exit,
                self.output()
            ),
        }
    }

    /// Like [`wait_line`](Self::wait_line), but `None` if the peer exits first.
    pub fn try_wait_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Some(rest.trim().to_string());
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout is closed: the peer is exiting.
                    self.wait_exit(Duration::from_secs(5));
                    return None;
                }
            }
            if self.try_exit().is_some() {
                // Drain what is left before giving up.
                std::thread::sleep(Duration::from_millis(20));
                while let Ok(line) = self.lines.try_recv() {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Some(rest.trim().to_string());
                    }
                }
                return None;
            }
            assert!(
                start.elapsed() < timeout,
                "{}: no {prefix:?} line within {timeout:?}\n--- output ---\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// A server peer's `READY <port>` line.
    pub fn ready_port(&mut self) -> u16 {
        let rest = self.wait_line("READY ", Duration::from_secs(20));
        rest.parse()
            .unwrap_or_else(|_| panic!("{}: bad READY line {rest:?}", self.name))
    }

    /// Checks that the peer printed `PASS` (its own checks all held).
    pub fn expect_pass(&self) {
        let out = self.output();
        assert!(
            out.lines().any(|l| l.trim() == "PASS"),
            "{}: no PASS line\n--- output ---\n{out}",
            self.name
        );
    }

    fn kill(&mut self) {
        // The whole group: browsers and engines start helper processes. (The shell's own
        // `kill`, so that nothing beyond `sh` is needed; POSIX process groups only.)
        #[cfg(unix)]
        let _ = Command::new("sh")
            .args(["-c", "kill -KILL \"-$1\" 2>/dev/null", "sh"])
            .arg(self.child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_reader(
    pipe: impl Read + Send + 'static,
    prefix: &'static str,
    output: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut out) = output.lock() {
                out.push_str(prefix);
                out.push_str(&line);
                out.push('\n');
            }
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    });
}

// ----- the cells of peers with the common command line (peer.py, peer.js) -----

/// A peer program taking `client BASE --sizes S [--ca F]` or
/// `server --sizes S [--cert F --key F]` (then printing `READY <port>`).
pub struct ScriptPeer {
    /// For messages, e.g. "python websockets".
    pub name: &'static str,
    /// The interpreter, e.g. "python3".
    pub program: &'static str,
    /// The script inside tests/interop.
    pub script: &'static str,
    /// The command that installs what is missing.
    pub install: &'static str,
    /// Whether the peer's library is installed.
    pub installed: fn() -> bool,
}

impl ScriptPeer {
    fn spawn(&self, args: &[String]) -> PeerProcess {
        require(self.name, (self.installed)(), self.install);
        let mut command = Command::new(self.program);
        command
            .current_dir(interop_dir())
            .arg(interop_dir().join(self.script))
            .args(args)
            .env("PYTHONUNBUFFERED", "1");
        PeerProcess::spawn(self.name, command, self.install)
    }

    /// wspeer serves (ws:// or wss:// with a test CA the peer trusts); the peer connects.
    pub fn wspeer_server(&self, tls: bool, sizes: &[usize]) {
        let dir = TempDir::new("pki");
        let pki = pki_files(&dir);
        let server_tls = tls.then(|| {
            TlsOptions::server(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).expect("server TLS")
        });
        let mut server = cell_server(server_tls);
        let mut args = vec![
            "client".to_string(),
            base_url(&server, tls),
            "--sizes".into(),
            sizes_arg(sizes),
        ];
        if tls {
            args.extend(["--ca".to_string(), pki.ca.display().to_string()]);
        }
        let started = Instant::now();
        let mut peer = self.spawn(&args);
        let logs = drive_server(&mut server, &mut peer, sizes, false, PEER_CLOSE.1);
        let cell = format!(
            "{} client -> wspeer server ({})",
            self.name,
            if tls { "wss" } else { "ws" }
        );
        print_logs(&cell, &logs, &peer);
        println!("{cell}: {:?}", started.elapsed());
    }

    /// The peer serves (ws:// or wss:// with a test CA wspeer trusts); wspeer connects.
    pub fn wspeer_client(&self, tls: bool, sizes: &[usize]) {
        let dir = TempDir::new("pki");
        let pki = pki_files(&dir);
        let mut args = vec!["server".to_string(), "--sizes".into(), sizes_arg(sizes)];
        if tls {
            args.extend([
                "--cert".to_string(),
                pki.cert.display().to_string(),
                "--key".into(),
                pki.key.display().to_string(),
            ]);
        }
        let started = Instant::now();
        let mut peer = self.spawn(&args);
        let port = peer.ready_port();
        let (base, client_tls) = if tls {
            let options =
                TlsOptions::client_with_ca(pki.ca_pem.as_bytes()).expect("client TLS options");
            (format!("wss://127.0.0.1:{port}/"), Some(options))
        } else {
            (format!("ws://127.0.0.1:{port}/"), None)
        };
        let logs = drive_client(&base, client_tls, &mut peer, sizes, PEER_CLOSE.1);
        let cell = format!(
            "wspeer client -> {} server ({})",
            self.name,
            if tls { "wss" } else { "ws" }
        );
        print_logs(&cell, &logs, &peer);
        println!("{cell}: {:?}", started.elapsed());
    }
}
