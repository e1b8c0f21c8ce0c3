//! The browser driver (wasm32) in headless Chromium: `examples/web/build.sh` builds the
//! page, the real `echo_server` example listens on loopback, a small HTTP server in this
//! test serves `examples/web/`, and Chromium opens
//! `index.html?url=ws://127.0.0.1:PORT/&report=/report`. The page runs
//! `examples/client.rs`'s logic from `requestAnimationFrame` and, once the connection is
//! closed, POSTs the text of its `<pre id="log">` to `/report`; this test checks it for the
//! contract lines. Chromium is installed by `tests/setup-system.sh`; the wasm target and
//! wasm-bindgen-cli by `build.sh` itself. Run alone: `cargo test --test web_chromium`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{KillOnDrop, TempDir, example_bin, line_channel};

const INSTALL: &str = "apt-get install -y chromium (tests/setup-system.sh does it)";

/// From Chromium's start to the page's report: a cold browser on a busy machine takes a
/// few seconds; the exchange itself a few milliseconds.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web")
}

/// Builds the page (fast when nothing changed), failing with the script's output.
fn build_page() {
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

/// The echo server example on a free loopback port, and its `ws://` URL.
fn echo_server() -> (KillOnDrop, String) {
    let mut child = Command::new(example_bin("echo_server"))
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start echo_server");
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
            Err(_) => panic!("echo_server printed no \"Listening on\" line"),
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

#[test]
fn web_example_echoes_and_closes_with_1000_in_headless_chromium() {
    build_page();
    let (_echo, ws_url) = echo_server();
    let (http_port, reports) = serve(web_dir());
    let page = format!(
        "http://127.0.0.1:{http_port}/index.html?url={ws_url}/&report=/report",
        ws_url = ws_url.trim_end_matches('/')
    );

    let profile = TempDir::new("web-chromium");
    let started = Instant::now();
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
        .arg(&page)
        .env("HOME", &profile.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}): {INSTALL}"));
    let browser_log = line_channel(child.stderr.take().unwrap());
    let chromium = KillOnDrop(child);

    let report = reports.recv_timeout(PAGE_TIMEOUT);
    drop(chromium);
    let Ok(log) = report else {
        let browser: Vec<String> = browser_log.try_iter().collect();
        panic!(
            "the page at {page} reported nothing within {PAGE_TIMEOUT:?}; Chromium said:\n{}",
            browser.join("\n")
        );
    };
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
