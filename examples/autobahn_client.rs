//! The Autobahn|Testsuite client agent: runs every case of a fuzzing server against a
//! wspeer `WebSocketPeer` client.
//!
//! ```text
//! # in one terminal (Docker image of the test suite):
//! docker run -it --rm -p 9001:9001 crossbario/autobahn-testsuite \
//!     wstest -m fuzzingserver -s /config/fuzzingserver.json
//! # in another:
//! cargo run --release --example autobahn_client -- [--url ws://127.0.0.1:9001] [--agent wspeer]
//! ```
//!
//! The standard protocol of a client agent: read the number of cases from
//! `URL/getCaseCount` (one text message), then for each case N connect to
//! `URL/runCase?case=N&agent=AGENT` and echo every message as received (text as text,
//! binary as binary) until the server closes, and finally connect to
//! `URL/updateReports?agent=AGENT` so the server writes its reports. One line is printed
//! per case. Limits are raised far above the suite's largest message (16 MiB).
//!
//! Exits 0 when the case count was read and the reports were updated (the verdict on each
//! case is the fuzzing server's), 1 otherwise, 2 on bad arguments.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wspeer::{Error, Packet, PeerConfig, State, WebSocketPeer, WriteMode};

const USAGE: &str =
    "usage: autobahn_client [--url ws://127.0.0.1:9001] [--agent wspeer] [--case-timeout SECS]";

struct Options {
    url: String,
    agent: String,
    case_timeout: Duration,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        url: "ws://127.0.0.1:9001".into(),
        agent: "wspeer".into(),
        case_timeout: Duration::from_secs(120),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => options.url = value("--url")?,
            "--agent" => options.agent = value("--agent")?,
            "--case-timeout" => {
                let v = value("--case-timeout")?;
                let secs: u64 = v.parse().map_err(|_| format!("bad --case-timeout {v:?}"))?;
                options.case_timeout = Duration::from_secs(secs.max(1));
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if options.agent.is_empty() {
        return Err("--agent must not be empty".into());
    }
    options.url = options.url.trim_end_matches('/').to_string();
    Ok(options)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Limits far above the suite's largest messages (16 MiB) and bursts (thousands of
/// small messages in cases 9.x).
fn config() -> PeerConfig {
    PeerConfig {
        inbound_buffer_size: 64 << 20,
        outbound_buffer_size: 64 << 20,
        max_queued_packets: 1 << 20,
        connect_timeout: Duration::from_secs(10),
        ..PeerConfig::default()
    }
}

/// How one connection went.
struct Session {
    /// Messages received (kept only when not echoing).
    received: Vec<Packet>,
    echoed: usize,
    close_code: i32,
    close_reason: String,
    error: Option<String>,
    elapsed: Duration,
}

/// Connects to `url` and runs the connection until it is closed (or `limit` passes),
/// echoing every message when `echo` is set.
fn run_session(url: &str, echo: bool, limit: Duration) -> Result<Session, String> {
    let mut peer = WebSocketPeer::with_config(config());
    peer.connect_to_url(url, None)
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let started = Instant::now();
    let mut session = Session {
        received: Vec::new(),
        echoed: 0,
        close_code: -1,
        close_reason: String::new(),
        error: None,
        elapsed: Duration::ZERO,
    };
    // Echoes that did not fit the outbound budget yet, in order.
    let mut pending: VecDeque<Packet> = VecDeque::new();
    loop {
        peer.poll();
        let mut busy = false;
        while let Some(packet) = peer.recv() {
            busy = true;
            if echo {
                pending.push_back(packet);
            } else {
                session.received.push(packet);
            }
        }
        while let Some(packet) = pending.front() {
            let mode = if packet.is_text() {
                WriteMode::Text
            } else {
                WriteMode::Binary
            };
            match peer.send(packet.data(), mode) {
                Ok(()) => {
                    session.echoed += 1;
                    pending.pop_front();
                    busy = true;
                }
                // Wait for the socket to take what is queued; reading pauses meanwhile.
                Err(Error::OutboundBufferFull { .. } | Error::OutboundQueueFull { .. }) => break,
                // Closing or closed: the rest can no longer be sent.
                Err(_) => {
                    pending.clear();
                    break;
                }
            }
        }
        if peer.get_ready_state() == State::Closed {
            break;
        }
        if started.elapsed() > limit {
            let _ = peer.close(-1, "");
            session.error = Some(format!("no close within {limit:?}"));
            break;
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    session.elapsed = started.elapsed();
    session.close_code = peer.get_close_code();
    session.close_reason = peer.get_close_reason().to_string();
    if session.error.is_none() {
        session.error = peer.get_last_error().map(|e| e.to_string());
    }
    Ok(session)
}

fn case_count(options: &Options) -> Result<u32, String> {
    let url = format!("{}/getCaseCount", options.url);
    let session = run_session(&url, false, Duration::from_secs(30))?;
    let first = session.received.first().ok_or_else(|| {
        format!(
            "{url} sent no message (close code {}, {})",
            session.close_code,
            session.error.as_deref().unwrap_or("no error")
        )
    })?;
    let text = first
        .as_text()
        .ok_or_else(|| format!("{url} sent a binary message instead of the case count"))?;
    text.trim()
        .parse()
        .map_err(|_| format!("{url} sent {text:?}, not a case count"))
}

fn run(options: &Options) -> Result<(), String> {
    let count = case_count(options)?;
    let agent = encode_query(&options.agent);
    println!(
        "{count} case(s) on {} for agent {}",
        options.url, options.agent
    );
    for case in 1..=count {
        let url = format!("{}/runCase?case={case}&agent={agent}", options.url);
        match run_session(&url, true, options.case_timeout) {
            Ok(s) => println!(
                "case {case}/{count}: echoed {} message(s), closed {} {:?} in {} ms{}",
                s.echoed,
                s.close_code,
                s.close_reason,
                s.elapsed.as_millis(),
                s.error.map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            Err(e) => println!("case {case}/{count}: {e}"),
        }
    }
    let url = format!("{}/updateReports?agent={agent}", options.url);
    let session = run_session(&url, false, Duration::from_secs(60))?;
    if session.close_code == -1 {
        return Err(format!(
            "updateReports did not close cleanly: {}",
            session.error.as_deref().unwrap_or("no close frame")
        ));
    }
    println!("reports updated for agent {}", options.agent);
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
