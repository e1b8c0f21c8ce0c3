//! The browser driver (wasm32) in headless Chromium: `examples/web/build.sh` builds the
//! page, a small HTTP server in this test serves `examples/web/`, and Chromium opens it
//! against a real example server on loopback:
//! - `index.html?url=ws://127.0.0.1:PORT/&report=/report` against `echo_server`: the page
//!   runs `examples/client.rs`'s logic and must log the two contract lines;
//! - `index.html?mode=multiplayer&url=...` against `mp_server`, with a native
//!   `WebSocketMultiplayerPeer` client of this test joined too: the browser's client and
//!   the native one must each receive the other's packet, relayed by the server, with the
//!   right sender id.
//!
//! Each page steps its client from `requestAnimationFrame` and, once done, POSTs the text
//! of its `<pre id="log">` to `/report`, where this test reads it. Chromium is installed by
//! `tests/setup-system.sh`; the wasm target and wasm-bindgen-cli by `build.sh` itself. Run
//! alone: `cargo test --test web_chromium` (after `cargo build --examples`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

use common::{KillOnDrop, TempDir, example_bin, line_channel};
use wspeer::{
    ConnectionStatus, MultiplayerEvent, MultiplayerPeer, TARGET_PEER_SERVER,
    WebSocketMultiplayerPeer,
};

const INSTALL: &str = "apt-get install -y chromium (tests/setup-system.sh does it)";

/// From Chromium's start to the page's report: a cold browser on a busy machine takes a
/// few seconds; the exchange itself a few milliseconds.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web")
}

/// Builds the page (fast when nothing changed), failing with the script's output. Once per
/// test process: two builds at once would rewrite `pkg/` under a page that is loading.
fn build_page() {
    static BUILT: Once = Once::new();
    BUILT.call_once(build_page_now);
}

fn build_page_now() {
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(web_dir().join("build.sh"))
        .output()
        .expect("run bash examples/web/build.sh");
    assert!(
        output.status.success(),
        "examples/web/build.sh failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "examples/web/build.sh: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The server example `name` on a free loopback port, and its `ws://` URL.
fn example_server(name: &str) -> (KillOnDrop, String) {
    let mut child = Command::new(example_bin(name))
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let lines = line_channel(child.stdout.take().unwrap());
    let child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("Listening on ") {
                    // The rest of its output (one line per message) is read and dropped.
                    std::thread::spawn(move || lines.iter().for_each(drop));
                    return (child, url.trim().to_string());
                }
            }
            Err(_) => panic!("{name} printed no \"Listening on\" line"),
        }
    }
}

/// Serves the files under `root` to GET requests on a loopback port, one thread per
/// connection, and hands the body of each `POST /report` to the returned channel. The
/// threads end with the test process.
fn serve(root: PathBuf) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
    let port = listener.local_addr().unwrap().port();
    let (reports, received) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let root = root.clone();
            let reports = reports.clone();
            std::thread::spawn(move || {
                if let Err(e) = answer(stream, &root, &reports) {
                    eprintln!("page server: {e}");
                }
            });
        }
    });
    (port, received)
}

/// Answers one HTTP/1.1 request and closes the connection.
fn answer(stream: TcpStream, root: &Path, reports: &mpsc::Sender<String>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/");
    let mut stream = stream;
    if method == "POST" && path == "/report" {
        let mut body = vec![0; content_length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        let _ = reports.send(String::from_utf8_lossy(&body).into_owned());
        return stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    }
    let relative = match path.trim_start_matches('/') {
        "" => "index.html",
        other => other,
    };
    let file = root.join(relative);
    let content_type = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    };
    match std::fs::read(&file) {
        Ok(body) if method == "GET" && !relative.contains("..") => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)
        }
        _ => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

/// Headless Chromium showing one page, killed (and its profile removed) when dropped.
struct Browser {
    _child: KillOnDrop,
    stderr: mpsc::Receiver<String>,
    _profile: TempDir,
}

impl Browser {
    fn open(page: &str) -> Browser {
        let profile = TempDir::new("web-chromium");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(page)
            .env("HOME", &profile.0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromium ({e}): {INSTALL}"));
        let stderr = line_channel(child.stderr.take().unwrap());
        Browser {
            _child: KillOnDrop(child),
            stderr,
            _profile: profile,
        }
    }

    /// What Chromium has printed so far, for a failure's message.
    fn said(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

/// The URL of the page served on `http_port`, with `query` and the report path.
fn page_url(http_port: u16, query: &str) -> String {
    format!("http://127.0.0.1:{http_port}/index.html?{query}&report=/report")
}

#[test]
fn web_example_echoes_and_closes_with_1000_in_headless_chromium() {
    build_page();
    let (_echo, ws_url) = example_server("echo_server");
    let (http_port, reports) = serve(web_dir());
    let page = page_url(http_port, &format!("url={}/", ws_url.trim_end_matches('/')));

    let started = Instant::now();
    let browser = Browser::open(&page);
    let report = reports.recv_timeout(PAGE_TIMEOUT);
    let Ok(log) = report else {
        panic!(
            "the page at {page} reported nothing within {PAGE_TIMEOUT:?}; Chromium said:\n{}",
            browser.said()
        );
    };
    drop(browser);
    println!(
        "page run in Chromium: {:.1} s\n{log}",
        started.elapsed().as_secs_f64()
    );
    let lines: Vec<&str> = log.lines().collect();
    for expected in [
        "Got data from server: Test packet",
        "WebSocket closed with code: 1000",
    ] {
        assert!(
            lines.contains(&expected),
            "the page's log has no line {expected:?}:\n{log}"
        );
    }
}

/// What the native client sends to the browser's (the page sends `Hello from the browser`).
const NATIVE_GREETING: &str = "Hello from the native client";

/// How long the native client may take to join `mp_server`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A native client of `mp_server`: joined, with its id.
fn native_client(url: &str) -> (WebSocketMultiplayerPeer, i32) {
    let mut native = WebSocketMultiplayerPeer::new();
    native.set_supported_protocols(&["ludus"]);
    native
        .create_client(url, None)
        .expect("start the native client");
    let deadline = Instant::now() + JOIN_TIMEOUT;
    while native.get_connection_status() != ConnectionStatus::Connected {
        assert!(
            Instant::now() < deadline,
            "the native client did not join {url} within {JOIN_TIMEOUT:?}: {:?}",
            native.get_last_error()
        );
        std::thread::sleep(Duration::from_millis(5));
        native.poll();
    }
    let id = native.get_unique_id();
    (native, id)
}

#[test]
fn web_multiplayer_client_and_a_native_one_exchange_packets_through_mp_server() {
    build_page();
    let (_server, ws_url) = example_server("mp_server");
    let ws_url = format!("{}/", ws_url.trim_end_matches('/'));
    // The native client joins first: the server announces it to the browser's client.
    let (mut native, native_id) = native_client(&ws_url);
    let (http_port, reports) = serve(web_dir());
    let page = page_url(http_port, &format!("mode=multiplayer&url={ws_url}"));

    let started = Instant::now();
    let browser = Browser::open(&page);
    let deadline = started + PAGE_TIMEOUT;
    // The other clients the server announced to the native one, those it said had left,
    // and what they sent. The server relays a client's packets before it announces that
    // client's departure: once the browser's has been, nothing more can come from it.
    let mut announced = Vec::new();
    let mut departed = Vec::new();
    let mut received = Vec::new();
    let mut report = None;
    while report.is_none() || (received.is_empty() && departed.is_empty()) {
        native.poll();
        while let Some(event) = native.pop_event() {
            match event {
                MultiplayerEvent::PeerConnected(id) if id != TARGET_PEER_SERVER => {
                    announced.push(id);
                    native
                        .send_bytes(NATIVE_GREETING.as_bytes(), id)
                        .expect("send to the browser's client");
                }
                MultiplayerEvent::PeerDisconnected(id) if id != TARGET_PEER_SERVER => {
                    departed.push(id);
                }
                _ => {}
            }
        }
        while let Some((from, packet)) = native.recv() {
            received.push((from, String::from_utf8_lossy(&packet).into_owned()));
        }
        if report.is_none() {
            report = reports.recv_timeout(Duration::from_millis(5)).ok();
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            Instant::now() < deadline,
            "no exchange within {PAGE_TIMEOUT:?}: the page at {page} reported {report:?}; the \
             native client (peer {native_id}) was told of peers {announced:?} and received \
             {received:?}; Chromium said:\n{}",
            browser.said()
        );
    }
    drop(browser);
    let log = report.unwrap_or_default();
    println!(
        "multiplayer page run in Chromium: {:.1} s\n{log}",
        started.elapsed().as_secs_f64()
    );

    let browser_id: i32 = log
        .lines()
        .find_map(|line| line.strip_prefix("Connected as peer "))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("the page's log names no id of its own:\n{log}"));
    assert_ne!(browser_id, native_id);
    assert_eq!(
        announced,
        [browser_id],
        "the server announced other peers to the native client than the browser's:\n{log}"
    );
    assert_eq!(
        received,
        [(browser_id, "Hello from the browser".to_string())],
        "the native client's packets (the browser's client left: {departed:?}); the page's \
         log:\n{log}"
    );
    // The whole log: joined with its id, told of the server and the native client, sent
    // to it through the relay, received its packet with its id, left cleanly.
    let expected = [
        format!("Joining {ws_url} (sub-protocol ludus)"),
        format!("Connected as peer {browser_id}"),
        "Peer 1 connected".to_string(),
        format!("Peer {native_id} connected"),
        format!("Sent to {native_id}: Hello from the browser"),
        format!("from {native_id}: {NATIVE_GREETING}"),
        "Peer 1 disconnected".to_string(),
        "Disconnected from the server".to_string(),
    ];
    assert_eq!(log.lines().collect::<Vec<_>>(), expected, "the page's log");
}
