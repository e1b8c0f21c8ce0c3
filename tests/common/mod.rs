//! Shared test harness: a server and clients on loopback, polled together like a game loop.
#![allow(dead_code)]

pub mod cluster;
pub mod godot;
pub mod multiplayer;

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wspeer::{
    PeerConfig, ServerConfig, ServerEvent, State, TlsOptions, WebSocketPeer, WebSocketServer,
};

/// Generous: only a broken implementation gets near it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A listening server on 127.0.0.1 with an ephemeral port.
pub fn server_with(config: ServerConfig) -> WebSocketServer {
    let mut server = WebSocketServer::with_config(config);
    server.listen_on("127.0.0.1", 0).expect("listen");
    server
}

pub fn server() -> WebSocketServer {
    server_with(ServerConfig::default())
}

pub fn url(server: &WebSocketServer, path: &str) -> String {
    format!("ws://{}{path}", server.local_addr().expect("listening"))
}

/// Polls the server and every client (a frame), until `done` says so or TIMEOUT passes.
/// Server events are collected into `events`.
pub fn run_until(
    server: &mut WebSocketServer,
    clients: &mut [&mut WebSocketPeer],
    events: &mut Vec<ServerEvent>,
    what: &str,
    mut done: impl FnMut(&mut WebSocketServer, &mut [&mut WebSocketPeer], &[ServerEvent]) -> bool,
) {
    let start = Instant::now();
    loop {
        server.poll();
        events.extend(server.events());
        for client in clients.iter_mut() {
            client.poll();
        }
        if done(server, clients, events) {
            return;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out waiting for: {what}; events so far: {events:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Polls only clients until `done`.
pub fn run_clients_until(
    clients: &mut [&mut WebSocketPeer],
    what: &str,
    mut done: impl FnMut(&mut [&mut WebSocketPeer]) -> bool,
) {
    let start = Instant::now();
    loop {
        for client in clients.iter_mut() {
            client.poll();
        }
        if done(clients) {
            return;
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Connects a client with `config` and polls until it is open; returns it and its server id.
pub fn connect_with(
    server: &mut WebSocketServer,
    path: &str,
    config: PeerConfig,
    tls: Option<TlsOptions>,
) -> (WebSocketPeer, i32) {
    let scheme_url = url(server, path);
    let target = if tls.is_some() {
        scheme_url.replacen("ws://", "wss://", 1)
    } else {
        scheme_url
    };
    connect_to(server, WebSocketPeer::with_config(config), &target, tls)
}

/// Connects `client` to `target` (this server, directly or through something in front)
/// and polls both until the client is open and the server reported it; returns the
/// client and its server id.
pub fn connect_to(
    server: &mut WebSocketServer,
    mut client: WebSocketPeer,
    target: &str,
    tls: Option<TlsOptions>,
) -> (WebSocketPeer, i32) {
    client.connect_to_url(target, tls).expect("connect_to_url");
    let mut events = Vec::new();
    run_until(
        server,
        &mut [&mut client],
        &mut events,
        "client open",
        |_, c, ev| {
            c[0].get_ready_state() == State::Open
                && ev
                    .iter()
                    .any(|e| matches!(e, ServerEvent::ClientConnected { .. }))
        },
    );
    let id = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::ClientConnected { id, .. } => Some(*id),
            _ => None,
        })
        .expect("connected event");
    (client, id)
}

pub fn connect(server: &mut WebSocketServer) -> (WebSocketPeer, i32) {
    connect_with(server, "/", PeerConfig::default(), None)
}

/// A test CA and a leaf for `names`, signed by it: (ca_pem, leaf_chain_pem, leaf_key_pem).
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn pki_for(names: &[&str]) -> TestPki {
    pki_with_ca_name("wspeer test CA", names)
}

/// Like [`pki_for`], with the CA's common name chosen. Two CAs in one test need different
/// names: a verifier that finds a trusted CA with the issuer's name but another key
/// reports a bad signature, not an unknown issuer.
pub fn pki_with_ca_name(ca_name: &str, names: &[&str]) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    TestPki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

impl TestPki {
    /// Server options serving this leaf (and its chain).
    pub fn server_options(&self) -> TlsOptions {
        TlsOptions::server(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("server TLS options")
    }

    /// Client options trusting only this PKI's CA.
    pub fn client_options(&self) -> TlsOptions {
        TlsOptions::client_with_ca(self.ca_pem.as_bytes()).expect("client TLS options")
    }
}

/// A listening wss:// server on 127.0.0.1 (ephemeral port) presenting `pki`'s leaf.
pub fn tls_server_with(config: ServerConfig, pki: &TestPki) -> WebSocketServer {
    let mut server = WebSocketServer::with_config(config);
    server
        .set_tls_options(Some(pki.server_options()))
        .expect("set_tls_options");
    server.listen_on("127.0.0.1", 0).expect("listen");
    server
}

pub fn wss_url(server: &WebSocketServer, path: &str) -> String {
    format!("wss://{}{path}", server.local_addr().expect("listening"))
}

/// The built example binary `name` (target/<profile>/examples/name, next to this test's
/// deps/ directory). Panics with the command to run when it is missing, or older than its
/// source (`cargo test --test X` alone does not rebuild examples): never skipped, never
/// stale.
pub fn example_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "example binary {} is missing: run `cargo build --examples` first (tests/run.sh does)",
        path.display()
    );
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    assert!(
        modified(&source) <= modified(&path),
        "{} is older than {}: run `cargo build --examples` first",
        path.display(),
        source.display()
    );
    path
}

/// Reads `stream` (a child's stdout or stderr) on a thread, handing each line to `each`
/// (without its `\n` or `\r\n`) until the end of the stream or until `each` returns false.
/// Bytes that are not UTF-8 arrive replaced (U+FFFD), not as the end of the stream.
pub fn read_lines(
    stream: impl Read + Send + 'static,
    mut each: impl FnMut(String) -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            if !each(String::from_utf8_lossy(&line).into_owned()) {
                break;
            }
        }
    })
}

/// The lines of `stream` (a child's stdout) arriving on a channel, which disconnects at
/// the end of the stream.
pub fn line_channel(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    read_lines(stream, move |line| tx.send(line).is_ok());
    lines
}

/// Waits for a line containing `needle` on `lines` (a child's output), keeping every line
/// read in `seen` and calling `tick` meanwhile (to drive clients); fails, naming `who` and
/// showing the output so far, after TIMEOUT.
pub fn expect_line(
    who: &str,
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    needle: &str,
    mut tick: impl FnMut(),
) -> String {
    let start = Instant::now();
    loop {
        while let Ok(line) = lines.try_recv() {
            seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        tick();
        assert!(
            start.elapsed() < TIMEOUT,
            "{who}: no line containing {needle:?}; output so far: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wspeer-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `contents` to `name` inside the directory; returns the path as a string.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
