//! Heap allocations per echoed message in the steady state: a wspeer server and a wspeer
//! client in this process, one message in flight, a counting global allocator that books
//! each allocation to the side (server or client) whose code made it.
//!
//! ```text
//! alloc_count [--sizes 32,1024,4096,16384] [--msgs 20000] [--warmup 2000] [--idle N]
//! ```
//! With `--idle N` it also opens N idle connections from wspeer clients in this process and
//! reports the server's live heap per idle peer, by allocation size
//! (`RESULT mode=idle_heap n=N bytes_per_peer=.. allocs_per_peer=..` and one
//! `RESULT mode=idle_size size=S per_peer=..` line per size that stays allocated).
//! Prints `RESULT mode=alloc size=S msgs=N server_allocs=.. server_bytes=.. client_allocs=..
//! client_bytes=.. server_polls=..` (all per message; reallocations count as allocations).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wspeer::{ServerEvent, State, WebSocketPeer, WebSocketServer, WriteMode};
use wspeer_bench::Flags;

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

/// One echo: the client sends, the server echoes, the client receives it. Returns the
/// number of server polls it took.
fn echo_once(
    server: &mut WebSocketServer,
    client: &mut WebSocketPeer,
    payload: &[u8],
) -> Result<u64, String> {
    side(CLIENT);
    client
        .send(payload, WriteMode::Binary)
        .map_err(|e| format!("client send: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut polls = 0;
    loop {
        side(SERVER);
        server.poll();
        polls += 1;
        while let Some(event) = server.pop_event() {
            if let ServerEvent::DataReceived { id } = event {
                if let Some(peer) = server.get_peer(id) {
                    // As examples/echo_server does: forward without copying.
                    while let Some(packet) = peer.recv() {
                        peer.send_packet(&packet)
                            .map_err(|e| format!("server send: {e}"))?;
                    }
                }
            }
        }
        side(CLIENT);
        client.poll();
        if let Some(packet) = client.recv() {
            side(NONE);
            if packet.data().len() != payload.len() {
                return Err("echo of the wrong size".into());
            }
            return Ok(polls);
        }
        side(NONE);
        if client.get_ready_state() != State::Open {
            return Err(format!("client {:?}", client.get_ready_state()));
        }
        if Instant::now() > deadline {
            return Err("no echo within 5 s".into());
        }
    }
}

fn run() -> Result<(), String> {
    let flags = Flags::parse(&[])?;
    flags.check_known(&["--sizes", "--msgs", "--warmup", "--idle"])?;
    let sizes: Vec<usize> = flags
        .get("--sizes")
        .unwrap_or("32,1024,4096,16384")
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| format!("bad size {s:?}")))
        .collect::<Result<_, _>>()?;
    let msgs: u64 = flags.value("--msgs", 20_000)?;
    let warmup: u64 = flags.value("--warmup", 2_000)?;

    let mut server = WebSocketServer::new();
    server
        .listen_on("127.0.0.1", 0)
        .map_err(|e| format!("listen: {e}"))?;
    let url = format!("ws://{}", server.local_addr().ok_or("no address")?);
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&url, None)
        .map_err(|e| format!("connect: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get_ready_state() != State::Open || server.peer_count() == 0 {
        server.poll();
        while server.pop_event().is_some() {}
        client.poll();
        if Instant::now() > deadline {
            return Err("the connection did not open".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    for size in sizes {
        let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
        for _ in 0..warmup {
            echo_once(&mut server, &mut client, &payload)?;
        }
        for counter in ALLOCS.iter().chain(BYTES.iter()) {
            counter.store(0, Ordering::Relaxed);
        }
        let mut polls = 0;
        for _ in 0..msgs {
            polls += echo_once(&mut server, &mut client, &payload)?;
        }
        let per = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / msgs as f64;
        println!(
            "RESULT mode=alloc size={size} msgs={msgs} server_allocs={:.3} server_bytes={:.1} \
             client_allocs={:.3} client_bytes={:.1} server_polls={:.2}",
            per(&ALLOCS[SERVER]),
            per(&BYTES[SERVER]),
            per(&ALLOCS[CLIENT]),
            per(&BYTES[CLIENT]),
            polls as f64 / msgs as f64,
        );
    }
    let idle: usize = flags.value("--idle", 0)?;
    if idle > 0 {
        idle_heap(&mut server, &url, idle)?;
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
