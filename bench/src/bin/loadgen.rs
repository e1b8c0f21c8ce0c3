//! The load generator: one thread, mio, raw sockets, pre-built masked frames and a parser
//! that checks each echo in place without copying it, so that it costs as little CPU per
//! message as possible (the approach of uWebSockets' `load_test.c`).
//!
//! ```text
//! loadgen --addr 127.0.0.1:PORT [--ca CA.pem]  (wss when --ca is given)
//!         --mode echo|setup|idle [--conns N] [--size BYTES] [--inflight K]
//!         [--msg-type binary|text|mixed] [--warmup SECS] [--secs SECS]
//!         [--server-pid PID] [--concurrency C] [--hold] [--open-rate R]
//! ```
//! - `echo`: opens `conns` connections; once all are open, each keeps `inflight` messages
//!   of `size` bytes in flight (sends one more per echo). After `warmup`, counts echoes for
//!   `secs`; with one in flight it also records each round trip. Every echo, warm-up
//!   included, is checked against what was sent: type (text or binary), length and every
//!   byte; each one that differs counts as a mismatch (`mismatches=` in the result, and a
//!   `NOTE first mismatch: ..` line).
//! - `setup`: keeps `conns` connections at a time going through TCP connect, opening
//!   handshake (and TLS), close frame out, close frame back; counts completions.
//! - `idle`: opens `conns` connections and leaves them idle (answering pings with pongs);
//!   reports the server's VmRSS before and after. `--open-rate R` opens at most R
//!   connections per second (spread evenly: a server's heartbeat timers, armed when each
//!   connection opens, then fall due evenly too). With `--hold` it prints `READY` and
//!   keeps them until stdin closes; meanwhile each stdin line `send K` sends one message
//!   of `size` bytes on each of the first K connections and prints `SENT K` once written
//!   (`send-spread K`: on the next K after the previous `send-spread`'s, round the open
//!   connections, so that each is reached once every open ÷ K sends),
//!   and `stats` handles what has arrived and prints `STATS pongs=P msgs=M mismatches=X`:
//!   the pings answered with a pong, the data messages (echoes) received and those that
//!   differed from what was sent, since the start.
//!
//! `--msg-type`: binary (the default), text (ASCII), or mixed (text on odd connections).
//! Prints one `RESULT key=value ...` line. Server CPU (user+sys from `/proc/PID/stat`) and
//! this process's CPU are sampled at the start and the end of the measured interval.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use slab::Slab;
use wspeer_bench::{
    Expected, Flags, FrameParser, Parsed, cpu_seconds, handshake_request, masked_frame,
    own_cpu_seconds, quantile, raise_nofile_limit, vm_rss_kib,
};

/// The token of the waker that stdin commands use in `--hold`.
const WAKER: Token = Token(usize::MAX);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Echo,
    Setup,
    Idle,
}

struct Options {
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    mode: Mode,
    conns: usize,
    size: usize,
    inflight: usize,
    warmup: Duration,
    secs: Duration,
    server_pid: Option<u32>,
    concurrency: usize,
    hold: bool,
    /// Connections opened per second at most (0: as fast as `concurrency` allows).
    open_rate: f64,
    msg_type: MsgType,
}

/// Which frames the connections send.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MsgType {
    Binary,
    Text,
    Mixed,
}

impl MsgType {
    /// Index into `Gen::frames` for connection `key`: 0 binary, 1 text.
    fn kind_of(self, key: usize) -> usize {
        match self {
            MsgType::Binary => 0,
            MsgType::Text => 1,
            MsgType::Mixed => key % 2,
        }
    }
}

fn options() -> Result<Options, String> {
    let flags = Flags::parse(&["--hold"])?;
    flags.check_known(&[
        "--addr",
        "--ca",
        "--mode",
        "--conns",
        "--size",
        "--inflight",
        "--warmup",
        "--secs",
        "--server-pid",
        "--concurrency",
        "--hold",
        "--msg-type",
        "--open-rate",
    ])?;
    let addr = flags
        .get("--addr")
        .ok_or("--addr is required")?
        .parse()
        .map_err(|e| format!("--addr: {e}"))?;
    let tls = match flags.get("--ca") {
        Some(path) => Some(tls_config(path)?),
        None => None,
    };
    let mode = match flags.get("--mode").unwrap_or("echo") {
        "echo" => Mode::Echo,
        "setup" => Mode::Setup,
        "idle" => Mode::Idle,
        other => return Err(format!("--mode echo|setup|idle, not {other:?}")),
    };
    let msg_type = match flags.get("--msg-type").unwrap_or("binary") {
        "binary" => MsgType::Binary,
        "text" => MsgType::Text,
        "mixed" => MsgType::Mixed,
        other => return Err(format!("--msg-type binary|text|mixed, not {other:?}")),
    };
    let server_pid = match flags.get("--server-pid") {
        Some(p) => Some(p.parse().map_err(|_| "bad --server-pid")?),
        None => None,
    };
    Ok(Options {
        addr,
        tls,
        mode,
        conns: flags.value("--conns", 1usize)?.max(1),
        size: flags.value("--size", 32usize)?,
        inflight: flags.value("--inflight", 1usize)?.max(1),
        warmup: Duration::from_secs_f64(flags.value("--warmup", 0.5f64)?),
        secs: Duration::from_secs_f64(flags.value("--secs", 2.0f64)?),
        server_pid,
        concurrency: flags.value("--concurrency", 128usize)?.max(1),
        hold: flags.has("--hold"),
        open_rate: flags.value("--open-rate", 0f64)?.max(0.0),
        msg_type,
    })
}

fn tls_config(ca_path: &str) -> Result<Arc<ClientConfig>, String> {
    let pem = std::fs::read(ca_path).map_err(|e| format!("{ca_path}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| format!("{ca_path}: {e:?}"))?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection of the set-up scenario is a full handshake.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

// ----- one connection -----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    Handshake,
    Open,
    Closing,
}

enum ReadOutcome {
    Data(usize),
    WouldBlock,
    Eof,
}

struct Conn {
    sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
    phase: Phase,
    readable: bool,
    writable: bool,
    /// The handshake response read so far.
    response: Vec<u8>,
    parser: FrameParser,
    /// Bytes to send before any frame (the request, then the close frame).
    extra: Vec<u8>,
    extra_off: usize,
    /// Whole echo frames still to send; the first may be partly written.
    queued: usize,
    frame_off: usize,
    /// Echoes awaited.
    in_flight: usize,
    sent_at: Instant,
    started: Instant,
    /// Index into `Gen::frames`: 0 binary, 1 text.
    kind: usize,
}

impl Conn {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        let Some(tls) = self.tls.as_mut() else {
            if !self.readable {
                return Ok(ReadOutcome::WouldBlock);
            }
            return match self.sock.read(buf) {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => {
                    // A short read drained the socket: epoll reports the next arrival.
                    if n < buf.len() {
                        self.readable = false;
                    }
                    Ok(ReadOutcome::Data(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    Ok(ReadOutcome::WouldBlock)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.read_some(buf),
                Err(e) => Err(e),
            };
        };
        loop {
            match tls.reader().read(buf) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => return Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.readable {
                return Ok(ReadOutcome::WouldBlock);
            }
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(_) => {
                    tls.process_new_packets()
                        .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(ReadOutcome::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what is pending (extra bytes, then queued frames) until done or WouldBlock.
    fn push_out(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.phase == Phase::Connecting {
            return Ok(());
        }
        if self.tls.is_some() {
            return self.push_out_tls(frame);
        }
        while self.writable {
            let result = if self.extra_off < self.extra.len() {
                self.sock.write(&self.extra[self.extra_off..])
            } else if self.queued > 0 {
                let mut slices = [IoSlice::new(&[]); 64];
                slices[0] = IoSlice::new(&frame[self.frame_off..]);
                let count = self.queued.min(slices.len());
                for slice in slices.iter_mut().take(count).skip(1) {
                    *slice = IoSlice::new(frame);
                }
                self.sock.write_vectored(&slices[..count])
            } else {
                return Ok(());
            };
            match result {
                Ok(n) => self.advance(n, frame.len()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn advance(&mut self, mut n: usize, frame_len: usize) {
        if self.extra_off < self.extra.len() {
            self.extra_off += n;
            if self.extra_off == self.extra.len() {
                self.extra.clear();
                self.extra_off = 0;
            }
            return;
        }
        let first = frame_len - self.frame_off;
        if n < first {
            self.frame_off += n;
            return;
        }
        n -= first;
        self.queued -= 1;
        self.queued -= n / frame_len;
        self.frame_off = n % frame_len;
    }

    fn push_out_tls(&mut self, frame: &[u8]) -> io::Result<()> {
        loop {
            let tls = self.tls.as_mut().expect("TLS connection");
            // Hand plaintext to rustls while it takes it.
            let mut progressed = false;
            loop {
                let n = if self.extra_off < self.extra.len() {
                    tls.writer().write(&self.extra[self.extra_off..])?
                } else if self.queued > 0 {
                    tls.writer().write(&frame[self.frame_off..])?
                } else {
                    break;
                };
                if n == 0 {
                    break;
                }
                progressed = true;
                if self.extra_off < self.extra.len() {
                    self.extra_off += n;
                    if self.extra_off == self.extra.len() {
                        self.extra.clear();
                        self.extra_off = 0;
                    }
                } else {
                    self.frame_off += n;
                    if self.frame_off == frame.len() {
                        self.frame_off = 0;
                        self.queued -= 1;
                    }
                }
            }
            let tls = self.tls.as_mut().expect("TLS connection");
            let mut flushed = false;
            while self.writable && tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(_) => flushed = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let more = self.extra_off < self.extra.len() || self.queued > 0;
            if !(progressed || flushed) || !more || !self.writable {
                return Ok(());
            }
        }
    }

    /// Checks a connect in progress; `Ok(true)` once connected.
    fn check_connected(&mut self) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

// ----- the generator -----

/// What one `drive` call found.
#[derive(Default)]
struct Status {
    opened: bool,
    /// The close handshake completed.
    done: bool,
    failed: Option<String>,
}

struct Ctx {
    mode: Mode,
    /// Echoes are answered with new messages.
    sending: bool,
    /// Round trips are recorded (inside the measured interval).
    recording: bool,
    inflight: usize,
    msgs: u64,
    /// Pings answered with a pong.
    pongs: u64,
    rtts_us: Vec<f64>,
    request: Vec<u8>,
    close_frame: Vec<u8>,
    /// Echoes that differed from what was sent, and what was wrong with the first.
    mismatches: u64,
    first_mismatch: Option<String>,
}

struct Gen {
    opts: Options,
    poll: Poll,
    conns: Slab<Conn>,
    /// The pre-built frames: binary and text, and what their echoes must be.
    frames: [Vec<u8>; 2],
    expected: [Expected; 2],
    scratch: Vec<u8>,
    ctx: Ctx,
    /// Connections not yet open.
    pending: usize,
    open: usize,
    failed: u64,
    completed: u64,
    first_error: Option<String>,
    setup_us: Vec<f64>,
    /// Where the next `send-spread` starts among the open connections.
    spread_cursor: usize,
}

impl Gen {
    fn new(opts: Options) -> io::Result<Gen> {
        let payload: Vec<u8> = (0..opts.size).map(|i| (i * 31 + 7) as u8).collect();
        // Text: printable ASCII, so valid UTF-8 whatever the size.
        let text: Vec<u8> = (0..opts.size).map(|i| b' ' + (i * 31 % 95) as u8).collect();
        let ctx = Ctx {
            mode: opts.mode,
            sending: false,
            recording: false,
            inflight: opts.inflight,
            msgs: 0,
            pongs: 0,
            rtts_us: Vec::new(),
            request: handshake_request(&opts.addr.to_string()),
            close_frame: masked_frame(8, &1000u16.to_be_bytes()),
            mismatches: 0,
            first_mismatch: None,
        };
        Ok(Gen {
            frames: [masked_frame(2, &payload), masked_frame(1, &text)],
            expected: [
                Expected {
                    opcode: 2,
                    payload: payload.into(),
                },
                Expected {
                    opcode: 1,
                    payload: text.into(),
                },
            ],
            scratch: vec![0; 256 * 1024],
            spread_cursor: 0,
            poll: Poll::new()?,
            conns: Slab::new(),
            ctx,
            opts,
            pending: 0,
            open: 0,
            failed: 0,
            completed: 0,
            first_error: None,
            setup_us: Vec::new(),
        })
    }

    fn connect(&mut self) {
        let mut sock = match TcpStream::connect(self.opts.addr) {
            Ok(sock) => sock,
            Err(e) => {
                self.fail(format!("connect: {e}"));
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(entry.key()),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.fail(format!("register: {e}"));
            return;
        }
        let tls = self.opts.tls.as_ref().map(|config| {
            let name = ServerName::try_from("localhost").expect("valid name");
            Box::new(ClientConnection::new(config.clone(), name).expect("TLS client"))
        });
        let now = Instant::now();
        let kind = self.opts.msg_type.kind_of(entry.key());
        entry.insert(Conn {
            sock,
            tls,
            phase: Phase::Connecting,
            readable: false,
            writable: false,
            response: Vec::new(),
            parser: FrameParser::expecting(self.expected[kind].clone()),
            extra: Vec::new(),
            extra_off: 0,
            queued: 0,
            frame_off: 0,
            in_flight: 0,
            sent_at: now,
            started: now,
            kind,
        });
        self.pending += 1;
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }

    fn remove(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(&mut conn.sock);
        if conn.phase == Phase::Connecting || conn.phase == Phase::Handshake {
            self.pending -= 1;
        } else {
            self.open -= 1;
        }
    }

    /// Waits for socket events (at most `timeout`) and advances the connections.
    fn turn(&mut self, events: &mut Events, timeout: Duration) {
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.fail(format!("poll: {e}"));
            }
            return;
        }
        for event in events.iter() {
            let key = event.token().0;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                conn.readable = true;
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                conn.writable = true;
            }
            let frame = &self.frames[conn.kind];
            let status = drive(conn, &mut self.ctx, &mut self.scratch, frame);
            if status.opened {
                self.pending -= 1;
                self.open += 1;
            }
            if status.done {
                self.completed += 1;
                let started = conn.started;
                if self.ctx.recording {
                    self.setup_us.push(started.elapsed().as_secs_f64() * 1e6);
                }
                self.remove(key);
            } else if let Some(why) = status.failed {
                self.remove(key);
                self.fail(why);
            }
        }
    }

    /// Opens connections (at most `concurrency` handshakes at once, and at most
    /// `open_rate` per second when it is set) until `target` are open; gives up after
    /// `limit`.
    fn open_all(&mut self, target: usize, limit: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut events = Events::with_capacity(1024);
        let rate = self.opts.open_rate;
        let mut started = 0usize;
        while self.open < target {
            let allowed = if rate > 0.0 {
                (start.elapsed().as_secs_f64() * rate) as usize + 1
            } else {
                usize::MAX
            };
            while self.pending < self.opts.concurrency
                && self.open + self.pending < target
                && started < allowed
            {
                self.connect();
                started += 1;
                if self.failed > 0 {
                    break;
                }
            }
            if self.failed > 0 {
                return Err(self.first_error.clone().unwrap_or_default());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "only {} of {target} connections open after {limit:?}",
                    self.open
                ));
            }
            // Paced: wake up for the next connection due (about one a millisecond at most).
            let wait = if rate > 0.0 {
                Duration::from_secs_f64((1.0 / rate).clamp(0.000_5, 0.05))
            } else {
                Duration::from_millis(50)
            };
            self.turn(&mut events, wait);
        }
        Ok(start.elapsed())
    }

    /// Starts the close handshake everywhere and waits for it at most `limit`.
    fn close_all(&mut self, limit: Duration) {
        self.ctx.sending = false;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            if conn.phase == Phase::Open {
                conn.phase = Phase::Closing;
                conn.extra.extend_from_slice(&self.ctx.close_frame);
                if conn.push_out(&self.frames[conn.kind]).is_err() {
                    self.remove(key);
                }
            }
        }
        let deadline = Instant::now() + limit;
        let mut events = Events::with_capacity(1024);
        let before = self.failed;
        while !self.conns.is_empty() && Instant::now() < deadline {
            self.turn(&mut events, Duration::from_millis(20));
        }
        // Failures while closing (a server that drops instead of answering) do not count.
        self.failed = before;
    }
}

/// Advances one connection after a readiness event.
fn drive(conn: &mut Conn, ctx: &mut Ctx, scratch: &mut [u8], frame: &[u8]) -> Status {
    let mut status = Status::default();
    if let Err(e) = drive_io(conn, ctx, scratch, frame, &mut status) {
        status.failed = Some(format!("{:?} connection: {e}", conn.phase));
    }
    status
}

fn drive_io(
    conn: &mut Conn,
    ctx: &mut Ctx,
    scratch: &mut [u8],
    frame: &[u8],
    status: &mut Status,
) -> io::Result<()> {
    if conn.phase == Phase::Connecting {
        if !conn.writable || !conn.check_connected()? {
            return Ok(());
        }
        conn.sock.set_nodelay(true)?;
        conn.phase = Phase::Handshake;
        match conn.tls.as_mut() {
            Some(tls) => {
                tls.writer().write_all(&ctx.request)?;
            }
            None => conn.extra.extend_from_slice(&ctx.request),
        }
    }
    let mut parsed = Parsed::default();
    let mut eof = false;
    loop {
        match conn.read_some(scratch)? {
            ReadOutcome::Data(n) => {
                let data = &scratch[..n];
                if conn.phase == Phase::Handshake {
                    conn.response.extend_from_slice(data);
                    let Some(end) = find(&conn.response, b"\r\n\r\n") else {
                        if conn.response.len() > 16 * 1024 {
                            return Err(io::Error::other("oversized handshake response"));
                        }
                        continue;
                    };
                    if !conn.response.starts_with(b"HTTP/1.1 101") {
                        let line = String::from_utf8_lossy(&conn.response);
                        let line = line.lines().next().unwrap_or("").to_string();
                        return Err(io::Error::other(format!("handshake refused: {line}")));
                    }
                    let rest = conn.response.split_off(end + 4);
                    conn.response = Vec::new();
                    conn.parser.feed(&rest, &mut parsed);
                    conn.phase = Phase::Open;
                    status.opened = true;
                    if ctx.mode == Mode::Setup {
                        conn.phase = Phase::Closing;
                        conn.extra.extend_from_slice(&ctx.close_frame);
                    } else if ctx.sending {
                        start_sending(conn, ctx.inflight);
                    }
                } else {
                    conn.parser.feed(data, &mut parsed);
                }
            }
            ReadOutcome::WouldBlock => break,
            ReadOutcome::Eof => {
                eof = true;
                break;
            }
        }
    }
    if parsed.mismatches > 0 {
        ctx.mismatches += parsed.mismatches as u64;
        if ctx.first_mismatch.is_none() {
            ctx.first_mismatch = parsed.first_mismatch.take();
        }
    }
    if conn.phase == Phase::Open {
        for ping in &parsed.pings {
            conn.extra.extend_from_slice(&masked_frame(10, ping));
        }
        ctx.pongs += parsed.pings.len() as u64;
    }
    if parsed.messages > 0 {
        let m = parsed.messages;
        ctx.msgs += m as u64;
        conn.in_flight = conn.in_flight.saturating_sub(m);
        let now = Instant::now();
        if ctx.recording && ctx.inflight == 1 {
            ctx.rtts_us
                .push(now.duration_since(conn.sent_at).as_secs_f64() * 1e6);
        }
        if ctx.sending && conn.phase == Phase::Open {
            conn.queued += m;
            conn.in_flight += m;
            conn.sent_at = now;
        }
    }
    if let Some(code) = parsed.close {
        if conn.phase == Phase::Closing {
            status.done = true;
            return Ok(());
        }
        return Err(io::Error::other(format!("server closed with code {code}")));
    }
    if eof {
        return Err(io::Error::other("server closed the connection"));
    }
    conn.push_out(frame)
}

fn start_sending(conn: &mut Conn, inflight: usize) {
    conn.queued += inflight;
    conn.in_flight += inflight;
    conn.sent_at = Instant::now();
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// CPU counters at one instant of the measurement.
struct Sample {
    at: Instant,
    server_cpu: Option<f64>,
    client_cpu: f64,
    msgs: u64,
    completed: u64,
}

fn sample(g: &Gen) -> Sample {
    Sample {
        at: Instant::now(),
        server_cpu: g.opts.server_pid.and_then(cpu_seconds),
        client_cpu: own_cpu_seconds(),
        msgs: g.ctx.msgs,
        completed: g.completed,
    }
}

/// Runs the warm-up and the measured interval, keeping `target` connections going in
/// setup mode.
fn measure(g: &mut Gen) -> Result<(Sample, Sample), String> {
    let mut events = Events::with_capacity(1024);
    let t0 = Instant::now();
    let start_at = t0 + g.opts.warmup;
    let end_at = start_at + g.opts.secs;
    let mut start: Option<Sample> = None;
    loop {
        let now = Instant::now();
        if start.is_none() && now >= start_at {
            g.ctx.recording = true;
            start = Some(sample(g));
        }
        if now >= end_at {
            let end = sample(g);
            g.ctx.recording = false;
            return Ok((start.expect("started"), end));
        }
        if g.opts.mode == Mode::Setup {
            while g.pending + g.open < g.opts.conns {
                let failed = g.failed;
                g.connect();
                if g.failed > failed {
                    break;
                }
            }
        }
        if g.opts.mode == Mode::Echo && g.failed > 0 {
            return Err(g.first_error.clone().unwrap_or_default());
        }
        if g.opts.mode == Mode::Setup && g.completed == 0 && g.failed > 100 {
            return Err(g.first_error.clone().unwrap_or_default());
        }
        let next = if start.is_none() { start_at } else { end_at };
        g.turn(&mut events, next.saturating_duration_since(now));
    }
}

fn run(opts: Options) -> Result<(), String> {
    raise_nofile_limit();
    let mode = opts.mode;
    let mut g = Gen::new(opts).map_err(|e| e.to_string())?;
    match mode {
        Mode::Echo => {
            let conns = g.opts.conns;
            g.open_all(conns, Duration::from_secs(30))?;
            g.ctx.sending = true;
            let keys: Vec<usize> = g.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                let conn = &mut g.conns[key];
                start_sending(conn, g.ctx.inflight);
                conn.push_out(&g.frames[conn.kind])
                    .map_err(|e| format!("send: {e}"))?;
            }
            let (a, b) = measure(&mut g)?;
            let secs = b.at.duration_since(a.at).as_secs_f64();
            let mut rtts = std::mem::take(&mut g.ctx.rtts_us);
            rtts.sort_by(f64::total_cmp);
            let lat = if rtts.is_empty() {
                String::new()
            } else {
                format!(
                    " p50_us={:.2} p99_us={:.2} p999_us={:.2} max_us={:.2}",
                    quantile(&rtts, 0.5),
                    quantile(&rtts, 0.99),
                    quantile(&rtts, 0.999),
                    rtts[rtts.len() - 1]
                )
            };
            print_result(&g, &a, &b, secs, b.msgs - a.msgs, &lat);
            g.close_all(Duration::from_millis(500));
        }
        Mode::Setup => {
            let (a, b) = measure(&mut g)?;
            let secs = b.at.duration_since(a.at).as_secs_f64();
            let mut times = std::mem::take(&mut g.setup_us);
            times.sort_by(f64::total_cmp);
            let lat = format!(
                " p50_us={:.2} p99_us={:.2} failed={}",
                quantile(&times, 0.5),
                quantile(&times, 0.99),
                g.failed
            );
            print_result(&g, &a, &b, secs, b.completed - a.completed, &lat);
            g.close_all(Duration::from_millis(500));
        }
        Mode::Idle => {
            let pid = g.opts.server_pid;
            let before = pid.and_then(vm_rss_kib);
            let conns = g.opts.conns;
            let paced = if g.opts.open_rate > 0.0 {
                2.0 * conns as f64 / g.opts.open_rate
            } else {
                0.0
            };
            let took = g.open_all(conns, Duration::from_secs_f64(120.0 + paced))?;
            // Let the server finish what it does after the handshake.
            let mut events = Events::with_capacity(1024);
            let settle = Instant::now();
            while settle.elapsed() < Duration::from_millis(500) {
                g.turn(&mut events, Duration::from_millis(50));
            }
            if g.failed > 0 || g.open < conns {
                return Err(format!(
                    "{} of {conns} idle connections survived: {}",
                    g.open,
                    g.first_error.clone().unwrap_or_default()
                ));
            }
            let after = pid.and_then(vm_rss_kib);
            println!(
                "RESULT mode=idle conns={conns} open_secs={:.3} rss_before_kib={} rss_after_kib={}",
                took.as_secs_f64(),
                before.unwrap_or(0),
                after.unwrap_or(0)
            );
            if g.opts.hold {
                hold(&mut g, &mut events)?;
            }
        }
    }
    Ok(())
}

/// Keeps the idle connections until stdin closes, answering `send K` commands.
fn hold(g: &mut Gen, events: &mut Events) -> Result<(), String> {
    let waker = Arc::new(Waker::new(g.poll.registry(), WAKER).map_err(|e| e.to_string())?);
    let (tx, rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
            let _ = waker.wake();
        }
        let _ = tx.send(None);
        let _ = waker.wake();
    });
    println!("READY");
    let _ = io::stdout().flush();
    loop {
        loop {
            match rx.try_recv() {
                Ok(Some(line)) if line.trim() == "stats" => {
                    // What has already arrived is counted too.
                    g.turn(events, Duration::ZERO);
                    println!(
                        "STATS pongs={} msgs={} mismatches={}",
                        g.ctx.pongs, g.ctx.msgs, g.ctx.mismatches
                    );
                    let _ = io::stdout().flush();
                }
                Ok(Some(line)) => {
                    let (spread, k) = if let Some(k) = line.strip_prefix("send-spread ") {
                        (true, k)
                    } else if let Some(k) = line.strip_prefix("send ") {
                        (false, k)
                    } else {
                        return Err(format!("unknown command {line:?}"));
                    };
                    let k: usize = k
                        .trim()
                        .parse()
                        .map_err(|_| format!("unknown command {line:?}"))?;
                    send_on(g, k, spread, events)?;
                    println!("SENT {k}");
                    let _ = io::stdout().flush();
                }
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        g.turn(events, Duration::from_millis(100));
        if g.failed > 0 {
            return Err(g.first_error.clone().unwrap_or_default());
        }
    }
}

/// Sends one message on each of `k` open connections and writes it out: the first `k`,
/// or with `spread` the next `k` after the previous spread send's, wrapping around, so
/// each connection's turn comes once every (open connections ÷ k) sends.
fn send_on(g: &mut Gen, k: usize, spread: bool, events: &mut Events) -> Result<(), String> {
    let open: Vec<usize> = g
        .conns
        .iter()
        .filter(|(_, c)| c.phase == Phase::Open)
        .map(|(key, _)| key)
        .collect();
    if open.len() < k {
        return Err(format!("only {} connections open, {k} asked", open.len()));
    }
    let start = if spread {
        g.spread_cursor % open.len()
    } else {
        0
    };
    let keys: Vec<usize> = open.iter().cycle().skip(start).take(k).copied().collect();
    if spread {
        g.spread_cursor = (start + k) % open.len();
    }
    for &key in &keys {
        let conn = &mut g.conns[key];
        start_sending(conn, 1);
        let frame = &g.frames[conn.kind];
        conn.push_out(frame).map_err(|e| format!("send: {e}"))?;
    }
    // A socket not yet known writable: wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    while keys
        .iter()
        .any(|&key| g.conns.get(key).is_some_and(|c| c.queued > 0))
    {
        if Instant::now() > deadline {
            return Err("messages still unwritten after 5 s: the server does not read".into());
        }
        g.turn(events, Duration::from_millis(1));
    }
    Ok(())
}

fn print_result(g: &Gen, a: &Sample, b: &Sample, secs: f64, count: u64, extra: &str) {
    let server_cpu = match (a.server_cpu, b.server_cpu) {
        (Some(x), Some(y)) => format!("{:.4}", y - x),
        _ => "nan".into(),
    };
    println!(
        "RESULT mode={:?} conns={} size={} inflight={} count={count} secs={secs:.4} \
         server_cpu={server_cpu} client_cpu={:.4} errors={} mismatches={} msg_type={:?}{extra}",
        g.opts.mode,
        g.opts.conns,
        g.opts.size,
        g.opts.inflight,
        b.client_cpu - a.client_cpu,
        g.failed,
        g.ctx.mismatches,
        g.opts.msg_type,
    );
    if let Some(e) = &g.first_error {
        println!("NOTE first error: {e}");
    }
    if let Some(m) = &g.ctx.first_mismatch {
        println!("MISMATCH first mismatch: {m}");
    }
}

fn main() -> ExitCode {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("ERROR {e}");
            ExitCode::FAILURE
        }
    }
}
