//! Heap allocations per echoed message in the steady state, in `examples/echo_server`'s
//! exact configuration: this binary includes that file, builds its server with the
//! example's own `server_config` and runs the example's own `handle_events` between polls
//! (`batch_writes` on, the stalled-echo map, `send_packet` of the received packet). The
//! clients are wspeer clients in this process; a counting global allocator books each
//! allocation to the side (server or client) whose code made it.
//!
//! ```text
//! alloc_count [--sizes 32,1024,4096,16384,65536] [--conns 1,100] [--inflight 4]
//!             [--msgs 20000] [--warmup 2000] [--idle N]
//! ```
//! For each connection count and size: a fresh server (message limit as the runner gives
//! echo_server: Godot's 65 535 bytes, or `--max-message 2097152` above it), then the
//! clients: one connection keeps one message in flight (ping-pong); more connections
//! pipeline `--inflight` messages each. Every echo is checked (type, length, bytes).
//! Prints `RESULT mode=alloc conns=C inflight=K size=S max_message=M msgs=N
//! server_allocs=.. server_bytes=.. client_allocs=.. client_bytes=.. server_polls=..`
//! (all per echoed message; reallocations count as allocations).
//!
//! With `--idle N` it also opens N idle connections from wspeer clients to a fresh server
//! (same configuration) and reports the server's live heap per idle peer, by allocation
//! size (`RESULT mode=idle_heap n=N bytes_per_peer=.. allocs_per_peer=..` and one
//! `RESULT mode=idle_size size=S per_peer=..` line per size that stays allocated).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wspeer::{Packet, PeerConfig, State, WebSocketPeer, WebSocketServer, WriteMode};
use wspeer_bench::{BIG_MAX_MESSAGE, Flags};

/// `examples/echo_server.rs` itself, for its `server_config` and `handle_events`.
#[allow(dead_code)]
#[path = "../../../examples/echo_server.rs"]
mod echo_server;

const NONE: usize = usize::MAX;
const SERVER: usize = 0;
const CLIENT: usize = 1;

static ALLOCS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static BYTES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// Live server allocations by exact size (the last slot: every larger size).
const SIZES: usize = 256 * 1024;
static LIVE: [AtomicI64; SIZES + 1] = [const { AtomicI64::new(0) }; SIZES + 1];
/// Live bytes of the server allocations larger than `SIZES`.
static LIVE_BIG: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static SIDE: Cell<usize> = const { Cell::new(NONE) };
}

fn current_side() -> usize {
    SIDE.try_with(Cell::get).unwrap_or(NONE)
}

fn book(size: usize) {
    let side = current_side();
    if side != NONE {
        ALLOCS[side].fetch_add(1, Ordering::Relaxed);
        BYTES[side].fetch_add(size as u64, Ordering::Relaxed);
    }
    if side == SERVER {
        LIVE[size.min(SIZES)].fetch_add(1, Ordering::Relaxed);
        if size > SIZES {
            LIVE_BIG.fetch_add(size as i64, Ordering::Relaxed);
        }
    }
}

fn unbook(size: usize) {
    if current_side() == SERVER {
        LIVE[size.min(SIZES)].fetch_sub(1, Ordering::Relaxed);
        if size > SIZES {
            LIVE_BIG.fetch_sub(size as i64, Ordering::Relaxed);
        }
    }
}

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        book(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        book(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unbook(layout.size());
        book(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unbook(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn side(s: usize) {
    SIDE.with(|c| c.set(s));
}

fn reset_counters() {
    for counter in ALLOCS.iter().chain(BYTES.iter()) {
        counter.store(0, Ordering::Relaxed);
    }
}

/// The server half of `examples/echo_server`: its configuration and its loop body.
struct EchoServer {
    server: WebSocketServer,
    stalled: HashMap<i32, Packet>,
}

impl EchoServer {
    fn new(max_message: usize) -> Result<(EchoServer, String), String> {
        let mut server = WebSocketServer::with_config(echo_server::server_config(max_message, &[]));
        server
            .listen_on("127.0.0.1", 0)
            .map_err(|e| format!("listen: {e}"))?;
        let url = format!("ws://{}", server.local_addr().ok_or("no address")?);
        Ok((
            EchoServer {
                server,
                stalled: HashMap::new(),
            },
            url,
        ))
    }

    /// One turn of the example's loop (its `poll_with_timeout` without the wait: the
    /// clients live in this thread).
    fn turn(&mut self) {
        side(SERVER);
        self.server.poll_with_timeout(Duration::ZERO);
        echo_server::handle_events(&mut self.server, &mut self.stalled, true);
        side(NONE);
    }
}

/// Opens `n` wspeer clients able to send and receive `max_message`-byte messages.
fn open_clients(
    echo: &mut EchoServer,
    url: &str,
    n: usize,
    max_message: usize,
) -> Result<Vec<WebSocketPeer>, String> {
    let mut config = PeerConfig {
        inbound_buffer_size: max_message,
        // No byte budget: the clients must never be what limits the pipeline.
        outbound_buffer_size: 0,
        ..PeerConfig::default()
    };
    config.batch_writes = false;
    let base = echo.server.peer_count();
    let mut clients = Vec::with_capacity(n);
    side(CLIENT);
    for _ in 0..n {
        let mut c = WebSocketPeer::with_config(config.clone());
        c.connect_to_url(url, None)
            .map_err(|e| format!("connect: {e}"))?;
        clients.push(c);
    }
    side(NONE);
    let deadline = Instant::now() + Duration::from_secs(20);
    while echo.server.peer_count() < base + n
        || clients.iter().any(|c| c.get_ready_state() != State::Open)
    {
        echo.turn();
        side(CLIENT);
        for c in clients.iter_mut() {
            c.poll();
        }
        side(NONE);
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} connections opened",
                echo.server.peer_count() - base
            ));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(clients)
}

/// Counts allocations over `msgs` echoes (after `warmup` more) with `conns` clients each
/// keeping `inflight` messages of `size` bytes in flight.
fn measure(
    conns: usize,
    inflight: usize,
    size: usize,
    msgs: u64,
    warmup: u64,
) -> Result<(), String> {
    let max_message = if size > wspeer::DEFAULT_BUFFER_SIZE {
        BIG_MAX_MESSAGE
    } else {
        wspeer::DEFAULT_BUFFER_SIZE
    };
    let (mut echo, url) = EchoServer::new(max_message)?;
    let mut clients = open_clients(&mut echo, &url, conns, max_message)?;
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
    side(CLIENT);
    for c in clients.iter_mut() {
        for _ in 0..inflight {
            c.send(&payload, WriteMode::Binary)
                .map_err(|e| format!("client send: {e}"))?;
        }
    }
    side(NONE);
    let mut echoed = 0u64;
    let mut polls = 0u64;
    let mut last_echo = Instant::now();
    let mut counting = false;
    let total = warmup + msgs;
    while echoed < total {
        if !counting && echoed >= warmup {
            counting = true;
            echoed = warmup;
            polls = 0;
            reset_counters();
        }
        echo.turn();
        polls += 1;
        for c in clients.iter_mut() {
            side(CLIENT);
            c.poll();
            while let Some(packet) = c.recv() {
                side(NONE);
                if packet.is_text() || packet.data() != payload.as_slice() {
                    return Err(format!(
                        "echo mismatch: {} bytes, text {} (sent {size} binary)",
                        packet.data().len(),
                        packet.is_text()
                    ));
                }
                echoed += 1;
                last_echo = Instant::now();
                side(CLIENT);
                c.send(&payload, WriteMode::Binary)
                    .map_err(|e| format!("client send: {e}"))?;
            }
            side(NONE);
            if c.get_ready_state() != State::Open {
                return Err(format!("client {:?}", c.get_ready_state()));
            }
        }
        if last_echo.elapsed() > Duration::from_secs(5) {
            return Err(format!("no echo for 5 s after {echoed}"));
        }
    }
    let per = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / msgs as f64;
    let (server_allocs, server_bytes) = (per(&ALLOCS[SERVER]), per(&BYTES[SERVER]));
    let (client_allocs, client_bytes) = (per(&ALLOCS[CLIENT]), per(&BYTES[CLIENT]));
    println!(
        "RESULT mode=alloc conns={conns} inflight={inflight} size={size} \
         max_message={max_message} msgs={msgs} server_allocs={server_allocs:.3} \
         server_bytes={server_bytes:.1} client_allocs={client_allocs:.3} \
         client_bytes={client_bytes:.1} server_polls={:.3}",
        polls as f64 / msgs as f64,
    );
    side(CLIENT);
    drop(clients);
    side(NONE);
    Ok(())
}

fn run() -> Result<(), String> {
    let flags = Flags::parse(&[])?;
    flags.check_known(&[
        "--sizes",
        "--conns",
        "--inflight",
        "--msgs",
        "--warmup",
        "--idle",
    ])?;
    let sizes = flags.numbers("--sizes", "32,1024,4096,16384,65536")?;
    let conns = flags.numbers("--conns", "1,100")?;
    let inflight: usize = flags.value("--inflight", 4)?;
    let msgs: u64 = flags.value("--msgs", 20_000)?;
    let warmup: u64 = flags.value("--warmup", 2_000)?;
    wspeer_bench::raise_nofile_limit();
    for &c in &conns {
        let k = if c == 1 { 1 } else { inflight.max(1) };
        for &size in &sizes {
            measure(c.max(1), k, size, msgs.max(1), warmup)?;
        }
    }
    let idle: usize = flags.value("--idle", 0)?;
    if idle > 0 {
        let (mut echo, url) = EchoServer::new(wspeer::DEFAULT_BUFFER_SIZE)?;
        idle_heap(&mut echo.server, &url, idle)?;
    }
    Ok(())
}

/// Opens `n` more connections, lets them go idle, and reports the server heap they hold.
fn idle_heap(server: &mut WebSocketServer, url: &str, n: usize) -> Result<(), String> {
    wspeer_bench::raise_nofile_limit();
    // Settle, then count from here.
    for _ in 0..100 {
        side(SERVER);
        server.poll();
        while server.pop_event().is_some() {}
        side(NONE);
    }
    let before: Vec<i64> = LIVE.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let big_before = LIVE_BIG.load(Ordering::Relaxed);
    let base = server.peer_count();
    let mut clients = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.peer_count() < base + n
        || clients
            .iter()
            .any(|c: &WebSocketPeer| c.get_ready_state() != State::Open)
    {
        // At most 64 handshakes at a time, well inside the server's limits.
        let opening = clients
            .iter()
            .filter(|c: &&WebSocketPeer| c.get_ready_state() == State::Connecting)
            .count();
        side(CLIENT);
        for _ in opening..64 {
            if clients.len() == n {
                break;
            }
            let mut c = WebSocketPeer::new();
            c.connect_to_url(url, None)
                .map_err(|e| format!("connect: {e}"))?;
            clients.push(c);
        }
        for c in clients.iter_mut() {
            c.poll();
        }
        side(SERVER);
        server.poll();
        while server.pop_event().is_some() {}
        side(NONE);
        if Instant::now() > deadline {
            return Err(format!(
                "only {} idle peers connected",
                server.peer_count() - base
            ));
        }
    }
    for _ in 0..100 {
        side(SERVER);
        server.poll();
        while server.pop_event().is_some() {}
        side(CLIENT);
        for c in clients.iter_mut() {
            c.poll();
        }
        side(NONE);
    }
    let mut bytes = 0f64;
    let mut allocs = 0f64;
    let mut sizes = Vec::new();
    let big = (LIVE_BIG.load(Ordering::Relaxed) - big_before) as f64 / n as f64;
    for (size, (now, was)) in LIVE.iter().zip(before).enumerate().take(SIZES) {
        let net = now.load(Ordering::Relaxed) - was;
        if net > 0 {
            let per_peer = net as f64 / n as f64;
            bytes += per_peer * size as f64;
            allocs += per_peer;
            if per_peer >= 0.05 {
                sizes.push((size, per_peer));
            }
        }
    }
    // Tables that grow with the peer count (the slab, the id map) are the large ones.
    println!(
        "RESULT mode=idle_heap n={n} bytes_per_peer={:.0} allocs_per_peer={allocs:.2} \
         large_bytes_per_peer={big:.0}",
        bytes + big
    );
    sizes.sort_by(|a, b| (b.0 as f64 * b.1).total_cmp(&(a.0 as f64 * a.1)));
    for (size, per_peer) in sizes.into_iter().take(12) {
        println!("RESULT mode=idle_size size={size} per_peer={per_peer:.2}");
    }
    drop(clients);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("ERROR {e}");
            ExitCode::FAILURE
        }
    }
}
