//! Hostile clients on loopback, each with a figure: slowloris, malformed upgrade requests,
//! a flood that never reads, a 1 MiB message in 1-byte fragments, ping/pong/close floods,
//! and masking violations. Figures are printed (`cargo test --test hostile -- --nocapture`)
//! and recorded in docs/security.md; assertions are about correctness, bounds and close
//! codes, never about speed.

#![allow(clippy::field_reassign_with_default)] // configs read best as "defaults, then this change"

mod common;
mod rawws;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rawws::{End, RawConn};
use wspeer::*;

// ----- helpers -----

/// One test at a time: the figures measure one scenario, not the neighbours' load.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// CPU time used by the calling thread so far.
fn thread_cpu() -> Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.sec as u64, ts.nsec as u32)
}

/// Resident memory of process `pid` in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One frame of a game loop on the server: poll, then echo every message (text as text).
fn serve_echo(server: &mut WebSocketServer, events: &mut Vec<ServerEvent>) {
    server.poll();
    while let Some(event) = server.pop_event() {
        if let ServerEvent::DataReceived { id } = event {
            if let Some(peer) = server.get_peer(id) {
                while let Some(packet) = peer.recv() {
                    let mode = if packet.is_text() {
                        WriteMode::Text
                    } else {
                        WriteMode::Binary
                    };
                    let _ = peer.send(packet.data(), mode);
                }
            }
        }
        events.push(event);
    }
}

/// Live clients doing echo round trips, one message in flight each; latencies collected.
struct LivePeers {
    clients: Vec<WebSocketPeer>,
    in_flight: Vec<Option<(String, Instant)>>,
    seq: u64,
    latencies: Vec<Duration>,
}

impl LivePeers {
    fn connect(server: &mut WebSocketServer, n: usize) -> LivePeers {
        let clients: Vec<WebSocketPeer> = (0..n).map(|_| connect(server).0).collect();
        LivePeers {
            in_flight: vec![None; clients.len()],
            clients,
            seq: 0,
            latencies: Vec::new(),
        }
    }

    /// One frame on the client side: send where nothing is in flight, check echoes.
    fn tick(&mut self) {
        for (client, flight) in self.clients.iter_mut().zip(self.in_flight.iter_mut()) {
            client.poll();
            assert_eq!(
                client.get_ready_state(),
                State::Open,
                "a live peer was lost"
            );
            if let Some(packet) = client.recv() {
                let (expected, sent_at) = flight.take().expect("an echo nobody asked for");
                assert_eq!(packet.as_text(), Some(expected.as_str()), "wrong echo");
                self.latencies.push(sent_at.elapsed());
            }
            if flight.is_none() {
                self.seq += 1;
                let text = format!("live {}", self.seq);
                client.send_text(&text).expect("live send");
                *flight = Some((text, Instant::now()));
            }
        }
    }

    /// Runs the server and the live peers until `done` (bounded by `limit`), returning the
    /// round-trip latencies measured meanwhile.
    fn run(
        &mut self,
        server: &mut WebSocketServer,
        events: &mut Vec<ServerEvent>,
        limit: Duration,
        mut done: impl FnMut(&mut WebSocketServer) -> bool,
    ) -> Vec<Duration> {
        let start = Instant::now();
        let first = self.latencies.len();
        while !done(server) {
            serve_echo(server, events);
            self.tick();
            assert!(start.elapsed() < limit, "did not finish within {limit:?}");
            std::thread::sleep(Duration::from_micros(200));
        }
        self.latencies.split_off(first)
    }

    /// Waits for every message in flight, so nothing is left unanswered.
    fn settle(&mut self, server: &mut WebSocketServer, events: &mut Vec<ServerEvent>) {
        let start = Instant::now();
        while self.in_flight.iter().any(Option::is_some) {
            serve_echo(server, events);
            for (client, flight) in self.clients.iter_mut().zip(self.in_flight.iter_mut()) {
                client.poll();
                if let Some(packet) = client.recv() {
                    let (expected, _) = flight.take().expect("an echo nobody asked for");
                    assert_eq!(packet.as_text(), Some(expected.as_str()));
                }
            }
            assert!(start.elapsed() < TIMEOUT, "live echoes never came back");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn report_latency(what: &str, before: &[Duration], during: &[Duration]) {
    println!(
        "FIGURE {what}: echo latency p50 {:.3} ms / p99 {:.3} ms before ({} round trips), \
         p50 {:.3} ms / p99 {:.3} ms during ({} round trips)",
        ms(percentile(before, 0.5)),
        ms(percentile(before, 0.99)),
        before.len(),
        ms(percentile(during, 0.5)),
        ms(percentile(during, 0.99)),
        during.len()
    );
}

/// Polls the server (echoing) until `thread` finishes, then returns its result.
fn serve_until_done<T>(
    server: &mut WebSocketServer,
    events: &mut Vec<ServerEvent>,
    thread: std::thread::JoinHandle<T>,
    limit: Duration,
) -> T {
    let start = Instant::now();
    while !thread.is_finished() {
        serve_echo(server, events);
        assert!(start.elapsed() < limit, "the remote side did not finish");
        std::thread::sleep(Duration::from_micros(100));
    }
    thread.join().expect("remote side thread")
}

/// A raw client upgraded on a helper thread while this thread polls the server.
fn raw_client(server: &mut WebSocketServer, events: &mut Vec<ServerEvent>) -> RawConn {
    let addr = server.local_addr().unwrap();
    let upgrading = std::thread::spawn(move || RawConn::connect_with(addr, "/", "").0);
    serve_until_done(server, events, upgrading, TIMEOUT)
}

fn connected_ids(events: &[ServerEvent]) -> Vec<i32> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::ClientConnected { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

// ----- slowloris -----

struct Attacker {
    stream: Option<TcpStream>,
    connected: Instant,
    closed_after: Option<Duration>,
    answered: usize,
}

/// Opens `n` connections to `addr` (in batches, watching the open ones meanwhile) and
/// trickles an upgrade request into each, one byte per second, until the server has
/// closed every one of them or `limit` passes; records when each was closed.
fn slowloris(addr: SocketAddr, n: usize, limit: Duration) -> (Vec<Attacker>, Duration) {
    let request = b"GET / HTTP/1.1\r\nHost: slow\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let start = Instant::now();
    let mut conns: Vec<Attacker> = Vec::with_capacity(n);
    let mut connect_phase = Duration::ZERO;
    let mut next_byte = (Instant::now(), 0usize);
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        for _ in 0..50 {
            if conns.len() == n {
                break;
            }
            let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("attacker connect");
            stream.set_nonblocking(true).unwrap();
            conns.push(Attacker {
                stream: Some(stream),
                connected: Instant::now(),
                closed_after: None,
                answered: 0,
            });
            if conns.len() == n {
                connect_phase = start.elapsed();
            }
        }
        let now = Instant::now();
        let send = now >= next_byte.0;
        for conn in conns.iter_mut() {
            let Some(stream) = conn.stream.as_mut() else {
                continue;
            };
            let mut closed = false;
            if send {
                match stream.write(&request[next_byte.1 % request.len()..][..1]) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => closed = true,
                }
            }
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => closed = true,
                    Ok(n) => {
                        conn.answered += n;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => closed = true,
                }
                break;
            }
            if closed {
                conn.closed_after = Some(conn.connected.elapsed());
                conn.stream = None;
            }
        }
        if send {
            next_byte = (next_byte.0 + Duration::from_secs(1), next_byte.1 + 1);
        }
        if conns.len() == n && conns.iter().all(|c| c.stream.is_none()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (conns, connect_phase)
}

#[test]
fn slowloris_is_refused_and_timed_out_while_live_peers_keep_their_latency() {
    let _serial = serial();
    const ATTACKERS: usize = 1000;
    const LIVE: usize = 4;
    let handshake_timeout = Duration::from_secs(2);
    let mut config = ServerConfig::default();
    config.handshake_timeout = handshake_timeout;
    let limit = config.max_pending_handshakes;
    let mut server = server_with(config);
    let addr = server.local_addr().unwrap();
    let mut events = Vec::new();
    let mut live = LivePeers::connect(&mut server, LIVE);

    let warmup = Instant::now();
    live.run(&mut server, &mut events, TIMEOUT, |_| {
        warmup.elapsed() > Duration::from_millis(300)
    });
    let calm = Instant::now();
    let before = live.run(&mut server, &mut events, TIMEOUT, |_| {
        calm.elapsed() > Duration::from_secs(2)
    });
    let calm = calm.elapsed();

    let attack = std::thread::spawn(move || slowloris(addr, ATTACKERS, Duration::from_secs(20)));
    let mut peak_pending = 0;
    let attacked = Instant::now();
    let during = live.run(&mut server, &mut events, Duration::from_secs(30), |s| {
        peak_pending = peak_pending.max(s.pending_count());
        attack.is_finished()
    });
    let attacked = attacked.elapsed();
    let (attackers, connect_phase) = attack.join().expect("attack thread");
    live.settle(&mut server, &mut events);

    // Refused connections are closed when accepted; pending ones at the handshake
    // timeout. A refusal is seen by the attacker within milliseconds, so anything
    // closed well before the timeout was refused.
    let cutoff = handshake_timeout - Duration::from_millis(100);
    let closed: Vec<Duration> = attackers.iter().filter_map(|a| a.closed_after).collect();
    let refused: Vec<Duration> = closed.iter().copied().filter(|d| *d < cutoff).collect();
    let timed_out: Vec<Duration> = closed.iter().copied().filter(|d| *d >= cutoff).collect();
    let answered: usize = attackers.iter().map(|a| a.answered).sum();
    let secs = |v: &[Duration], max: bool| {
        let pick = if max { v.iter().max() } else { v.iter().min() };
        pick.copied().unwrap_or_default().as_secs_f64()
    };
    println!(
        "FIGURE slowloris: {ATTACKERS} connections trickling 1 byte/s (all open after \
         {:.2} s): {} refused by the pending limit (closed after {:.3}..{:.3} s; server \
         counted {}), {} dropped by the {handshake_timeout:?} handshake timeout after \
         {:.2}..{:.2} s, peak pending {peak_pending} (limit {limit}), {answered} bytes \
         answered",
        connect_phase.as_secs_f64(),
        refused.len(),
        secs(&refused, false),
        secs(&refused, true),
        server.refused_connections(),
        timed_out.len(),
        secs(&timed_out, false),
        secs(&timed_out, true),
    );
    report_latency("slowloris live peers", &before, &during);
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let slowest = during.iter().max().copied().unwrap_or_default();
    println!(
        "FIGURE slowloris live peers: {:.0} round trips/s before, {:.0} during; slowest \
         during {:.3} ms",
        rate(before.len(), calm),
        rate(during.len(), attacked),
        ms(slowest)
    );

    assert_eq!(
        closed.len(),
        ATTACKERS,
        "every half-open connection must end"
    );
    assert_eq!(answered, 0, "an incomplete request head gets no answer");
    assert_eq!(
        peak_pending, limit,
        "the pending limit was reached, never passed"
    );
    assert!(
        !refused.is_empty(),
        "the excess over the pending limit is refused"
    );
    assert_eq!(server.refused_connections(), refused.len() as u64);
    // Measured here: the timed-out ones were closed 1.99..2.02 s after they connected
    // (2 s timeout). 100 ms is five times the worst overshoot seen.
    for d in &timed_out {
        assert!(
            *d <= handshake_timeout + Duration::from_millis(100),
            "a half-open connection lived {d:?}, past the handshake timeout"
        );
    }
    assert_eq!(server.pending_count(), 0);
    assert_eq!(server.peer_count(), LIVE);
    assert_eq!(
        connected_ids(&events).len(),
        0,
        "no attacker ever connected"
    );
    // The live peers keep their latency. Measured here (debug build, 2 shared cores,
    // six runs): median 0.36-0.43 ms before and 0.41-0.46 ms during; 7 700-8 500 round
    // trips a second before, 6 900-7 300 during; the slowest round trip during the attack
    // 15-22 ms. p99 swings with the machine's other load (0.5-4 ms before, 1.3-6.7 ms
    // during), so it is reported, not asserted. A server that stalled on the attackers
    // would fail these.
    let (p50_before, p50_during) = (percentile(&before, 0.5), percentile(&during, 0.5));
    assert!(
        p50_during <= 3 * p50_before,
        "live median latency {p50_during:?} during the attack, {p50_before:?} before"
    );
    assert!(
        rate(during.len(), attacked) >= rate(before.len(), calm) / 3.0,
        "live peers slowed down: {} round trips in {attacked:?} during, {} in {calm:?} \
         before",
        during.len(),
        before.len()
    );
    assert!(
        slowest <= Duration::from_millis(100),
        "a live round trip took {slowest:?} during the attack"
    );
}

// ----- malformed upgrade requests -----

/// Sends `request` on a fresh connection and reads until the server closes: the whole
/// answer and how the stream ended.
fn bad_request(addr: SocketAddr, request: Vec<u8>) -> (String, End) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    // The server may refuse before reading everything; a failed write is fine then.
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break End::Eof,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break End::Reset,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break End::Timeout,
            Err(e) => break End::Broken(e.to_string()),
        }
    };
    (String::from_utf8_lossy(&answer).into_owned(), end)
}

fn upgrade_request(request_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut text = format!("{request_line}\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

const HOST: &str = "Host: hostile.test";
const UPGRADE: &str = "Upgrade: websocket";
const CONNECTION: &str = "Connection: Upgrade";
const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
const VERSION: &str = "Sec-WebSocket-Version: 13";

#[test]
fn malformed_upgrades_get_their_status_and_are_closed_without_disturbing_others() {
    let _serial = serial();
    let mut server = common::server();
    let addr = server.local_addr().unwrap();
    let mut events = Vec::new();
    let mut live = LivePeers::connect(&mut server, 1);
    let long_path = format!("GET /{} HTTP/1.1", "a".repeat(9000));
    let long_header = format!("X-Big: {}", "b".repeat(9000));
    let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: v")).collect();
    let mut many_headers: Vec<&str> = vec![HOST, UPGRADE, CONNECTION, KEY, VERSION];
    many_headers.extend(many.iter().map(String::as_str));
    let all = [HOST, UPGRADE, CONNECTION, KEY, VERSION];
    let without =
        |skip: &str| -> Vec<&str> { all.iter().copied().filter(|h| *h != skip).collect() };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "oversized request line",
            upgrade_request(&long_path, &all),
            431,
        ),
        (
            "oversized header",
            upgrade_request("GET / HTTP/1.1", &[HOST, &long_header, UPGRADE]),
            431,
        ),
        (
            "100 headers",
            upgrade_request("GET / HTTP/1.1", &many_headers),
            431,
        ),
        ("POST", upgrade_request("POST / HTTP/1.1", &all), 400),
        ("HTTP/1.0", upgrade_request("GET / HTTP/1.0", &all), 400),
        (
            "WebSocket version 8",
            upgrade_request(
                "GET / HTTP/1.1",
                &[HOST, UPGRADE, CONNECTION, KEY, "Sec-WebSocket-Version: 8"],
            ),
            426,
        ),
        (
            "missing key",
            upgrade_request("GET / HTTP/1.1", &without(KEY)),
            400,
        ),
        (
            "malformed key",
            upgrade_request(
                "GET / HTTP/1.1",
                &[
                    HOST,
                    UPGRADE,
                    CONNECTION,
                    "Sec-WebSocket-Key: short",
                    VERSION,
                ],
            ),
            400,
        ),
        (
            "missing Upgrade",
            upgrade_request("GET / HTTP/1.1", &without(UPGRADE)),
            400,
        ),
        (
            "missing Host",
            upgrade_request("GET / HTTP/1.1", &without(HOST)),
            400,
        ),
        (
            "binary garbage",
            (0..200u32).map(|i| (i * 37 % 256) as u8).collect(),
            400,
        ),
    ];
    let mut figures = Vec::new();
    for (what, request, status) in cases {
        let client = std::thread::spawn(move || bad_request(addr, request));
        let start = Instant::now();
        while !client.is_finished() {
            serve_echo(&mut server, &mut events);
            live.tick();
            assert!(start.elapsed() < TIMEOUT, "{what}: no answer");
            std::thread::sleep(Duration::from_micros(200));
        }
        let (answer, end) = client.join().unwrap();
        let status_line = answer.lines().next().unwrap_or("").to_string();
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: expected {status}, got {answer:?}"
        );
        assert!(
            answer.contains("Connection: close\r\n"),
            "{what}: {answer:?}"
        );
        if status == 426 {
            assert!(
                answer.contains("Sec-WebSocket-Version: 13\r\n"),
                "{answer:?}"
            );
        }
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        assert!(!body.is_empty(), "{what}: the refusal says why");
        assert_eq!(end, End::Eof, "{what}: closed with FIN after the answer");
        figures.push(format!("{what} -> {status} ({body})"));
    }
    live.settle(&mut server, &mut events);
    // The refused connections leave nothing behind; the live peer never noticed.
    let start = Instant::now();
    while server.slot_count() != 1 {
        serve_echo(&mut server, &mut events);
        assert!(start.elapsed() < TIMEOUT, "refused connections linger");
    }
    assert_eq!((server.peer_count(), server.pending_count()), (1, 0));
    assert!(
        events
            .iter()
            .all(|e| matches!(e, ServerEvent::DataReceived { .. })),
        "only the live peer's messages: {events:?}"
    );
    println!(
        "FIGURE malformed upgrades: {} cases answered and closed with FIN, live peer \
         unaffected ({} round trips meanwhile):\n  {}",
        figures.len(),
        live.latencies.len(),
        figures.join("\n  ")
    );
}

// ----- flood without reading -----

/// A running `echo_server` example and its address.
fn start_echo_server() -> (KillOnDrop, SocketAddr) {
    let mut child = Command::new(example_bin("echo_server"))
        .args(["--port", "0", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start echo_server");
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(TIMEOUT)
        .expect("echo_server printed its address");
    let addr = line
        .trim_start_matches("Listening on ws://")
        .parse()
        .unwrap_or_else(|_| panic!("unexpected first line {line:?}"));
    (child, addr)
}

/// A client that connects to a separate server process and echoes through it.
fn process_live_client(addr: SocketAddr) -> WebSocketPeer {
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&format!("ws://{addr}/live"), None)
        .unwrap();
    run_clients_until(&mut [&mut client], "live client open", |c| {
        c[0].get_ready_state() == State::Open
    });
    client
}

fn echo_round_trip(client: &mut WebSocketPeer, text: &str) -> Duration {
    let sent = Instant::now();
    client.send_text(text).expect("live send");
    run_clients_until(&mut [&mut *client], "live echo", |c| {
        c[0].get_available_packet_count() > 0
    });
    let rtt = sent.elapsed();
    assert_eq!(client.recv().unwrap().as_text(), Some(text));
    rtt
}

struct FloodResult {
    frames: u64,
    bytes: u64,
    stalled_for: Duration,
    echoes_in_order: u64,
}

/// Sends numbered 16 KiB binary frames as fast as the socket takes them for `duration`,
/// never reading; then reads every echo back and checks order and content.
fn flood(addr: SocketAddr, duration: Duration) -> FloodResult {
    let (mut conn, _) = RawConn::connect_with(addr, "/flood", "");
    conn.stream.set_nonblocking(true).unwrap();
    let payload = |n: u64| -> Vec<u8> {
        let mut p = rawws::pattern(16 * 1024);
        p[..8].copy_from_slice(&n.to_be_bytes());
        p
    };
    let start = Instant::now();
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut pending: Vec<u8> = Vec::new();
    let mut last_progress = Instant::now();
    let mut longest_stall = Duration::ZERO;
    while start.elapsed() < duration {
        if pending.is_empty() {
            pending = rawws::client(rawws::OP_BINARY, &payload(frames));
            frames += 1;
        }
        match conn.stream.write(&pending) {
            Ok(n) => {
                pending.drain(..n);
                bytes += n as u64;
                longest_stall = longest_stall.max(last_progress.elapsed());
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("flood write failed: {e}"),
        }
    }
    let stalled_for = longest_stall.max(last_progress.elapsed());
    // Now read: every echo must come back, complete and in order. The last frame may be
    // half-written (the server stopped reading): finish it while reading.
    let mut echoes = 0;
    let mut inbound: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let reading = Instant::now();
    while echoes < frames {
        assert!(
            reading.elapsed() < Duration::from_secs(60),
            "echoes stopped coming"
        );
        if !pending.is_empty() {
            match conn.stream.write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("flood write failed: {e}"),
            }
        }
        match conn.stream.read(&mut chunk) {
            Ok(0) => panic!("the server closed the flooder"),
            Ok(n) => inbound.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("flood read failed: {e}"),
        }
        // Whole unmasked binary frames of 16 KiB: 4-byte header (126 + 16-bit length).
        const FRAME: usize = 4 + 16 * 1024;
        let mut at = 0;
        while inbound.len() - at >= FRAME {
            assert_eq!(
                &inbound[at..at + 4],
                &[0x82, 126, 0x40, 0x00],
                "echo header"
            );
            assert!(
                inbound[at + 4..at + FRAME] == payload(echoes)[..],
                "echo {echoes} out of order or damaged"
            );
            echoes += 1;
            at += FRAME;
        }
        inbound.drain(..at);
    }
    assert!(inbound.is_empty(), "bytes after the last echo");
    conn.stream.set_nonblocking(false).unwrap();
    conn.send(&rawws::client_close(1000, b""));
    let close = conn.expect_frame("close echo");
    assert_eq!(close.close_code().map(|c| c.0), Some(1000));
    FloodResult {
        frames,
        bytes,
        stalled_for,
        echoes_in_order: echoes,
    }
}

#[test]
fn flood_without_reading_is_slowed_by_back_pressure_with_bounded_memory() {
    let _serial = serial();
    let (server, addr) = start_echo_server();
    let pid = server.0.id();
    let mut live = process_live_client(addr);
    let mut before = Vec::new();
    for i in 0..200 {
        before.push(echo_round_trip(&mut live, &format!("before {i}")));
    }
    let baseline = rss_kib(pid);
    let flood_time = Duration::from_secs(4);
    let flooder = std::thread::spawn(move || flood(addr, flood_time));
    let mut during = Vec::new();
    let mut peak = baseline;
    let start = Instant::now();
    let mut i = 0;
    while !flooder.is_finished() {
        peak = peak.max(rss_kib(pid));
        during.push(echo_round_trip(&mut live, &format!("during {i}")));
        i += 1;
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "flood never ended"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = flooder.join().expect("flooder");
    peak = peak.max(rss_kib(pid));
    println!(
        "FIGURE flood: the flooder wrote {} frames ({:.1} MiB) in {flood_time:?} and was \
         blocked by back-pressure for up to {:.2} s at a time; echo_server RSS {} KiB before, \
         peak {} KiB (+{} KiB); all {} echoes came back in order afterwards",
        result.frames,
        result.bytes as f64 / (1024.0 * 1024.0),
        result.stalled_for.as_secs_f64(),
        baseline,
        peak,
        peak.saturating_sub(baseline),
        result.echoes_in_order
    );
    report_latency("flood live peer", &before, &during);
    // Without back-pressure loopback would take gigabytes in 4 s; with it the flooder is
    // held to what the kernel buffers and wspeer's bounded queues can hold.
    assert!(
        result.bytes < 64 << 20,
        "the flooder was not slowed: {} bytes",
        result.bytes
    );
    assert!(
        result.stalled_for >= Duration::from_millis(500),
        "the flooder was never held back"
    );
    // Default limits: 64 KiB outbound + inbound queue below 2 x 64 KiB + a 64 KiB read
    // buffer + the one stalled 16 KiB packet. Measured here (debug echo_server): +240,
    // +276 and +300 KiB. The bound is about three times that.
    assert!(
        peak - baseline < 1024,
        "server memory grew by {} KiB under a flood",
        peak - baseline
    );
    assert_eq!(result.echoes_in_order, result.frames);
    assert!(!during.is_empty());
}

// ----- 1 MiB in 1-byte fragments -----

/// Encodes `message` as one-byte masked fragments (first: `opcode`, then continuations).
fn one_byte_fragments(opcode: u8, message: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(message.len() * 7);
    for (i, b) in message.iter().enumerate() {
        let op = if i == 0 { opcode } else { rawws::OP_CONT };
        wire.extend(rawws::masked(
            i + 1 == message.len(),
            op,
            std::slice::from_ref(b),
        ));
    }
    wire
}

#[test]
fn one_mib_in_one_byte_fragments_is_reassembled_or_refused_1009() {
    let _serial = serial();
    const SIZE: usize = 1 << 20;
    let message: Vec<u8> = rawws::pattern(SIZE);
    let wire = one_byte_fragments(rawws::OP_BINARY, &message);

    // Raised limit: the message arrives whole.
    let mut config = ServerConfig::default();
    config.peer.inbound_buffer_size = 2 << 20;
    let mut server = server_with(config);
    let mut events = Vec::new();
    let mut conn = raw_client(&mut server, &mut events);
    let id = connected_ids(&events)[0];
    let to_send = wire.clone();
    let writer = std::thread::spawn(move || {
        conn.send(&to_send);
        conn
    });
    let cpu = thread_cpu();
    let start = Instant::now();
    let mut got = None;
    while got.is_none() {
        server.poll();
        events.extend(server.events());
        if let Some(peer) = server.get_peer(id) {
            got = peer.recv();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never reassembled"
        );
    }
    let (cpu_ok, wall_ok) = (thread_cpu() - cpu, start.elapsed());
    let conn = writer.join().unwrap();
    let packet = got.unwrap();
    assert!(!packet.is_text());
    assert!(
        packet.data() == message.as_slice(),
        "reassembled message differs"
    );
    let closing = std::thread::spawn(move || {
        let mut conn = conn;
        conn.send(&rawws::client_close(1000, b""));
        conn.expect_frame("close echo").close_code().map(|c| c.0)
    });
    let code = serve_until_done(&mut server, &mut events, closing, TIMEOUT);
    assert_eq!(code, Some(1000));

    // Default limit (65535): refused with 1009 once the fragments pass it.
    let mut server = common::server();
    let mut events = Vec::new();
    let conn = raw_client(&mut server, &mut events);
    let reader = std::thread::spawn(move || {
        let mut conn = conn;
        // Write on another thread: the server stops reading at the limit and drains.
        let mut writer_side = RawConn::new(conn.stream.try_clone().unwrap());
        let writing = std::thread::spawn(move || {
            let _ = writer_side.stream.write_all(&wire);
        });
        let close = conn.expect_frame("the server's close");
        let code = close.close_code().map(|c| c.0);
        let _ = conn.stream.write_all(&rawws::client_close(1009, b""));
        conn.shutdown_write();
        let end = conn.read_frame().err();
        let _ = writing.join();
        (code, end)
    });
    let cpu = thread_cpu();
    let start = Instant::now();
    let (code, end) = serve_until_done(&mut server, &mut events, reader, Duration::from_secs(60));
    let (cpu_refused, wall_refused) = (thread_cpu() - cpu, start.elapsed());
    assert_eq!(code, Some(1009), "too big for inbound_buffer_size");
    assert!(
        matches!(end, Some(End::Eof) | Some(End::Reset)),
        "connection ended: {end:?}"
    );
    println!(
        "FIGURE 1 MiB in 1-byte fragments ({:.1} MiB on the wire, {} frames): reassembled \
         with a 2 MiB limit using {:.2} s server CPU ({:.2} s wall); with the default 64 KiB \
         limit closed 1009 using {:.3} s server CPU ({:.2} s wall, including draining the rest)",
        (SIZE * 7) as f64 / (1024.0 * 1024.0),
        SIZE,
        cpu_ok.as_secs_f64(),
        wall_ok.as_secs_f64(),
        cpu_refused.as_secs_f64(),
        wall_refused.as_secs_f64()
    );
}

// ----- control-frame floods -----

/// Writes `frames` in one go from a helper thread, never reading, and returns the
/// connection once all of it went out.
fn write_all_without_reading(conn: RawConn, frames: Vec<u8>) -> std::thread::JoinHandle<RawConn> {
    std::thread::spawn(move || {
        let mut conn = conn;
        conn.stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        conn.send(&frames);
        conn
    })
}

#[test]
fn ping_flood_keeps_the_outbound_buffer_bounded() {
    let _serial = serial();
    const PINGS: usize = 100_000;
    let mut server = common::server();
    let limit = server.config().peer.outbound_buffer_size;
    let mut events = Vec::new();
    let conn = raw_client(&mut server, &mut events);
    let id = connected_ids(&events)[0];
    let mut wire = Vec::new();
    for i in 0..PINGS {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(125, b'.');
        wire.extend(rawws::client(rawws::OP_PING, &payload));
    }
    // The flooder writes without reading for 2 s, then reads the pongs while it finishes.
    let flooder = std::thread::spawn(move || {
        let mut conn = conn;
        conn.stream.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let mut written = 0;
        let write_some =
            |conn: &mut RawConn, written: &mut usize| match conn.stream.write(&wire[*written..]) {
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("ping flood write failed: {e}"),
            };
        while written < wire.len() && start.elapsed() < Duration::from_secs(2) {
            write_some(&mut conn, &mut written);
        }
        let held_at = written;
        // Pongs are unmasked 127-byte frames: 0x8A, 125, payload.
        let (mut pongs, mut last) = (0usize, -1i64);
        let mut inbound: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 256 * 1024];
        while last < PINGS as i64 - 1 {
            assert!(start.elapsed() < Duration::from_secs(60), "pongs stopped");
            if written < wire.len() {
                write_some(&mut conn, &mut written);
            }
            match conn.stream.read(&mut chunk) {
                Ok(0) => panic!("the server closed the ping flooder"),
                Ok(n) => inbound.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("ping flood read failed: {e}"),
            }
            let mut at = 0;
            while inbound.len() - at >= 127 {
                assert_eq!(&inbound[at..at + 2], &[0x8A, 125], "a pong header");
                let n: i64 = String::from_utf8_lossy(&inbound[at + 2..at + 10])
                    .parse()
                    .unwrap();
                // Every ping is answered, each by its own pong, in order (RFC 6455
                // §5.5.3 would allow skipping all but the latest; wspeer does not).
                assert_eq!(
                    n,
                    last + 1,
                    "pong {n} after pong {last}: missing or reordered"
                );
                last = n;
                pongs += 1;
                at += 127;
            }
            inbound.drain(..at);
        }
        assert!(inbound.is_empty());
        conn.stream.set_nonblocking(false).unwrap();
        conn.send(&rawws::client_close(1000, b""));
        let close = conn.expect_frame("close echo");
        (held_at, pongs, close.close_code().map(|c| c.0))
    });
    let cpu = thread_cpu();
    let start = Instant::now();
    let mut peak = 0;
    // While the client does not read, its pongs pile up only to the outbound budget.
    while !flooder.is_finished() {
        server.poll();
        events.extend(server.events());
        let buffered = server
            .get_peer(id)
            .map_or(0, |p| p.get_current_outbound_buffered_amount());
        peak = peak.max(buffered);
        // Reading pauses once more than the budget waits; the pong of the frame being
        // read and tungstenite's one pending pong can still go out: two 127-byte frames.
        assert!(
            buffered <= limit + 2 * 127,
            "pongs piled up to {buffered} bytes (outbound_buffer_size {limit})"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "flood never ended"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
    let (held_at, pongs, code) = flooder.join().expect("ping flooder");
    let cpu = thread_cpu() - cpu;
    assert_eq!(code, Some(1000));
    assert_eq!(pongs, PINGS, "one pong per ping");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ServerEvent::DataReceived { .. })),
        "pings are not packets"
    );
    assert!(held_at < PINGS * 131, "back-pressure held the flooder");
    println!(
        "FIGURE ping flood: {PINGS} pings of 125 bytes ({:.1} MiB): while not reading, the \
         flooder got {:.2} MiB in before back-pressure held it; server outbound peaked at \
         {peak} bytes (limit {limit}); {pongs} pongs answered in order once it read, \
         {:.2} s server CPU ({:.1} us/ping), closed 1000",
        (PINGS * 131) as f64 / (1024.0 * 1024.0),
        held_at as f64 / (1024.0 * 1024.0),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / PINGS as f64
    );
}

#[test]
fn pong_flood_is_ignored_and_queues_nothing() {
    let _serial = serial();
    const PONGS: usize = 100_000;
    let mut server = common::server();
    let mut events = Vec::new();
    let conn = raw_client(&mut server, &mut events);
    let id = connected_ids(&events)[0];
    let mut wire = Vec::new();
    for _ in 0..PONGS {
        wire.extend(rawws::client(rawws::OP_PONG, &[b'p'; 125]));
    }
    wire.extend(rawws::client(rawws::OP_TEXT, b"after the pongs"));
    let writer = write_all_without_reading(conn, wire);
    let cpu = thread_cpu();
    let start = Instant::now();
    let mut text = None;
    while text.is_none() {
        server.poll();
        events.extend(server.events());
        let peer = server.get_peer(id).expect("still connected");
        assert_eq!(peer.get_current_outbound_buffered_amount(), 0);
        text = peer.recv();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "message never arrived"
        );
    }
    let cpu = thread_cpu() - cpu;
    assert_eq!(text.unwrap().as_text(), Some("after the pongs"));
    let mut conn = writer.join().unwrap();
    conn.send(&rawws::client_close(1000, b""));
    let reader = std::thread::spawn(move || {
        let close = conn.expect_frame("close echo");
        close.close_code().map(|c| c.0)
    });
    let code = serve_until_done(&mut server, &mut events, reader, TIMEOUT);
    assert_eq!(code, Some(1000), "nothing but the close echo came back");
    println!(
        "FIGURE pong flood: {PONGS} unsolicited pongs ({:.1} MiB) ignored in {:.2} s server \
         CPU ({:.1} us/pong), nothing queued either way, the next message arrived, closed 1000",
        (PONGS * 131) as f64 / (1024.0 * 1024.0),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / PONGS as f64
    );
}

#[test]
fn close_flood_gets_one_close_echo_and_one_event() {
    let _serial = serial();
    const CLOSES: usize = 10_000;
    let mut server = common::server();
    let mut events = Vec::new();
    let conn = raw_client(&mut server, &mut events);
    let id = connected_ids(&events)[0];
    let mut wire = rawws::client_close(4001, b"first");
    for i in 0..CLOSES {
        wire.extend(rawws::client_close(4002, format!("{i}").as_bytes()));
        wire.extend(rawws::client(rawws::OP_TEXT, b"after close"));
    }
    let reader = std::thread::spawn(move || {
        let mut conn = conn;
        let _ = conn.stream.write_all(&wire);
        let mut frames = Vec::new();
        let end = loop {
            match conn.read_frame() {
                Ok(frame) => frames.push(frame),
                Err(end) => break end,
            }
        };
        (frames, end)
    });
    let cpu = thread_cpu();
    let (frames, end) = serve_until_done(&mut server, &mut events, reader, TIMEOUT);
    let cpu = thread_cpu() - cpu;
    let start = Instant::now();
    while !events
        .iter()
        .any(|e| matches!(e, ServerEvent::ClientDisconnected { .. }))
    {
        server.poll();
        events.extend(server.events());
        assert!(start.elapsed() < TIMEOUT, "no disconnect event");
    }
    assert_eq!(frames.len(), 1, "exactly one close echo: {frames:?}");
    assert_eq!(frames[0].close_code().map(|c| c.0), Some(4001));
    assert_eq!(
        events[1..],
        [
            ServerEvent::ClientCloseRequest {
                id,
                code: 4001,
                reason: "first".into()
            },
            ServerEvent::ClientDisconnected {
                id,
                was_clean: true
            }
        ]
    );
    println!(
        "FIGURE close flood: 1 + {CLOSES} close frames and {CLOSES} text frames after them: \
         one close echo (4001), one close request and one clean disconnect event, \
         {:.3} s server CPU; the connection then ended with {end:?}",
        cpu.as_secs_f64()
    );
}

// ----- masking violations -----

#[test]
fn unmasked_client_frame_is_closed_1002() {
    let _serial = serial();
    let mut server = common::server();
    let mut events = Vec::new();
    let conn = raw_client(&mut server, &mut events);
    let id = connected_ids(&events)[0];
    let reader = std::thread::spawn(move || {
        let mut conn = conn;
        conn.send(&rawws::server(rawws::OP_TEXT, b"not masked"));
        let close = conn.expect_frame("the server's close");
        conn.send(&rawws::client_close(1002, b""));
        (close.close_code(), conn.expect_end("after the close"))
    });
    let (code, end) = serve_until_done(&mut server, &mut events, reader, TIMEOUT);
    assert_eq!(code.map(|c| c.0), Some(1002), "protocol error");
    assert_eq!(end, End::Eof);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ServerEvent::DataReceived { .. })),
        "the unmasked frame was not delivered"
    );
    let start = Instant::now();
    while !events
        .iter()
        .any(|e| matches!(e, ServerEvent::ClientDisconnected { id: i, .. } if *i == id))
    {
        server.poll();
        events.extend(server.events());
        assert!(start.elapsed() < TIMEOUT);
    }
    println!("FIGURE unmasked client frame: server closed 1002 and ended with FIN");
}

#[test]
fn masked_server_frame_is_closed_1002_by_the_client() {
    let _serial = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = std::thread::spawn(move || {
        let (mut conn, request) = RawConn::accept(&listener);
        conn.send(&RawConn::response_101(&request));
        conn.send(&rawws::client(rawws::OP_TEXT, b"masked by a server"));
        let close = conn.expect_frame("the client's close");
        conn.send(&rawws::server_close(1002, b""));
        conn.shutdown_write();
        close.close_code()
    });
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&format!("ws://{addr}/"), None)
        .unwrap();
    run_clients_until(&mut [&mut client], "the client closes", |c| {
        c[0].get_ready_state() == State::Closed
    });
    let code = server_side.join().unwrap();
    assert_eq!(code.map(|c| c.0), Some(1002));
    assert_eq!(client.get_close_code(), 1002);
    assert!(
        matches!(
            client.get_last_error(),
            Some(Error::Protocol { code: 1002, .. })
        ),
        "{:?}",
        client.get_last_error()
    );
    assert_eq!(client.get_available_packet_count(), 0);
    println!(
        "FIGURE masked server frame: client closed 1002 ({})",
        client.get_last_error().unwrap()
    );
}
