//! Runs the built `examples/autobahn_client` binary against a tiny fake Autobahn fuzzing
//! server (raw frames, see `rawws`) that speaks the client-agent protocol: `getCaseCount`
//! answers "2", each `runCase` sends a text and a binary message and expects both echoed
//! (masked, same type, same bytes) before closing with 1000, and `updateReports` closes at
//! once. The test checks the exact sequence of request paths, every echo, the printed
//! lines and the exit status.

mod common;
mod rawws;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rawws::*;

const AGENT: &str = "wspeer-test";

/// Kills the child if the test ends early.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The server closes with 1000 and expects the client's masked close 1000 back.
fn close_1000(conn: &mut RawConn, what: &str) {
    conn.send(&server_close(1000, b""));
    let got = conn.expect_frame(&format!("{what}: the client's close"));
    assert!(got.mask.is_some(), "{what}: unmasked close {got:?}");
    assert_eq!(
        (got.opcode, got.close_code().map(|(c, _)| c)),
        (OP_CLOSE, Some(1000)),
        "{what}: {got:?}"
    );
}

/// One case: a text and a binary message, each echoed exactly, then the close.
fn run_case(conn: &mut RawConn, case: u32) {
    let text = format!("case {case}: Hello, ✓ κόσμε");
    let binary = pattern(300 + case as usize);
    conn.send(&concat(&[
        server(OP_TEXT, text.as_bytes()),
        server(OP_BINARY, &binary),
    ]));
    for (opcode, payload) in [(OP_TEXT, text.as_bytes()), (OP_BINARY, &binary[..])] {
        let got = conn.expect_frame(&format!("case {case}: echo"));
        assert!(got.mask.is_some(), "case {case}: unmasked echo {got:?}");
        assert_eq!(
            (got.fin, got.opcode, got.payload.as_slice()),
            (true, opcode, payload),
            "case {case}: echo"
        );
    }
    close_1000(conn, &format!("case {case}"));
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// The fake fuzzing server: serves the four connections in order and returns the
/// request paths it saw.
fn fuzzing_server(listener: TcpListener) -> Vec<String> {
    let mut paths = Vec::new();
    for _ in 0..4 {
        let (mut conn, request) = RawConn::accept(&listener);
        conn.send(&RawConn::response_101(&request));
        let path = request.path.clone();
        paths.push(path.clone());
        if path == "/getCaseCount" {
            conn.send(&server(OP_TEXT, b"2"));
            close_1000(&mut conn, "getCaseCount");
        } else if let Some(rest) = path.strip_prefix("/runCase?case=") {
            let case: u32 = rest
                .split('&')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad runCase path {path}"));
            run_case(&mut conn, case);
        } else {
            close_1000(&mut conn, &path);
        }
        // Dropping the connection: the server closes TCP first, as Autobahn does.
    }
    paths
}

/// The example runs both cases of the fake server, echoing text as text and binary as
/// binary, then updates the reports, prints one line per case, and exits 0.
#[test]
fn autobahn_client_runs_every_case_of_a_fake_fuzzing_server() {
    let binary = common::example_bin("autobahn_client");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || fuzzing_server(listener));
    let child = Command::new(&binary)
        .args(["--url", &format!("ws://{addr}"), "--agent", AGENT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let mut reaper = Reaper(Some(child));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let child = reaper.0.as_mut().unwrap();
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if status.is_none() {
        drop(reaper.0.as_mut().map(Child::kill));
    }
    let output = reaper.0.take().unwrap().wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let paths = match server.join() {
        Ok(paths) => paths,
        Err(panic) => {
            eprintln!("client stdout:\n{stdout}\nclient stderr:\n{stderr}");
            std::panic::resume_unwind(panic)
        }
    };
    let status =
        status.unwrap_or_else(|| panic!("the client did not exit within 20 s:\n{stdout}{stderr}"));
    assert!(
        status.success(),
        "exit status {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(
        paths,
        [
            "/getCaseCount".to_string(),
            format!("/runCase?case=1&agent={AGENT}"),
            format!("/runCase?case=2&agent={AGENT}"),
            format!("/updateReports?agent={AGENT}"),
        ]
    );
    let case_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("case ")).collect();
    assert_eq!(case_lines.len(), 2, "one line per case:\n{stdout}");
    for (i, line) in case_lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!(
                "case {}/2: echoed 2 message(s), closed 1000",
                i + 1
            )),
            "{line}"
        );
    }
}

/// Bad arguments exit with status 2 and the usage, without connecting anywhere.
#[test]
fn autobahn_client_rejects_unknown_arguments() {
    let output = Command::new(common::example_bin("autobahn_client"))
        .arg("--bogus")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage"));
}
