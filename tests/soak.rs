//! Churn soak: many connect / send / close cycles against one server, with clean and
//! unclean closes from both sides, then the books must balance: no slot left in the
//! server, no file descriptor left in the process, RSS back near its baseline, and no
//! peer id ever handed out twice.
//!
//! `WSPEER_SOAK_CYCLES` sets the number of cycles (default 30 000, about 15 s
//! on 2 cores; the full run is `WSPEER_SOAK_CYCLES=100000`). This file holds a
//! single test so that nothing else in the process opens files meanwhile.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use wspeer::*;

const DEFAULT_CYCLES: u64 = 30_000;
/// Connections in flight at once.
const CONCURRENCY: usize = 32;
const WARMUP: u64 = 1_000;

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// How a cycle ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// The client closes with 1000.
    ClientClose,
    /// The client drops the connection without a close frame.
    ClientAbort,
    /// The server closes with 4000.
    ServerClose,
    /// The server drops the connection without a close frame.
    ServerAbort,
    /// The client gives up before the handshake finished.
    AbandonHandshake,
}

impl Ending {
    fn of(n: u64) -> Ending {
        match n % 5 {
            0 => Ending::ClientClose,
            1 => Ending::ClientAbort,
            2 => Ending::ServerClose,
            3 => Ending::ServerAbort,
            _ => Ending::AbandonHandshake,
        }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Ending {
        Ending::of(u64::from(code))
    }

    /// Whether the server reports the disconnect as clean.
    fn clean(self) -> bool {
        matches!(self, Ending::ClientClose | Ending::ServerClose)
    }
}

struct Cycle {
    n: u64,
    peer: WebSocketPeer,
    sent: bool,
    echoed: bool,
    started: Instant,
}

#[derive(Default)]
struct Books {
    clean: u64,
    unclean: u64,
    /// Every id handed out, in order; checked for repeats at the end. Touched up front so
    /// that its growth does not count as the server's memory.
    ids: Vec<i32>,
    endings: HashMap<i32, Ending>,
}

/// Runs cycles `first..last` to completion.
fn churn(server: &mut WebSocketServer, url: &str, first: u64, last: u64, books: &mut Books) {
    let mut next = first;
    let mut flying: Vec<Cycle> = Vec::new();
    let start = Instant::now();
    while next < last || !flying.is_empty() {
        while flying.len() < CONCURRENCY && next < last {
            let mut peer = WebSocketPeer::new();
            peer.connect_to_url(url, None).expect("connect_to_url");
            flying.push(Cycle {
                n: next,
                peer,
                sent: false,
                echoed: false,
                started: Instant::now(),
            });
            next += 1;
        }
        server.poll();
        while let Some(event) = server.pop_event() {
            match event {
                ServerEvent::ClientConnected { id, .. } => {
                    books.ids.push(id);
                }
                ServerEvent::DataReceived { id } => {
                    let peer = server.get_peer(id).expect("reported peers exist");
                    let packet = peer.recv().expect("a packet");
                    let ending = Ending::from_code(packet.data()[0]);
                    books.endings.insert(id, ending);
                    peer.put_packet(packet.data()).expect("echo");
                    match ending {
                        Ending::ServerClose => peer.close(4000, "soak").unwrap(),
                        Ending::ServerAbort => peer.close(-1, "").unwrap(),
                        _ => {}
                    }
                }
                ServerEvent::ClientDisconnected { id, was_clean } => {
                    // A handshake abandoned just after it completed never sent anything.
                    let ending = books
                        .endings
                        .remove(&id)
                        .unwrap_or(Ending::AbandonHandshake);
                    assert_eq!(was_clean, ending.clean(), "peer {id} ended by {ending:?}");
                    if was_clean {
                        books.clean += 1;
                    } else {
                        books.unclean += 1;
                    }
                }
                ServerEvent::ClientCloseRequest { .. } => {}
                _ => {}
            }
        }
        let mut i = 0;
        while i < flying.len() {
            let cycle = &mut flying[i];
            let ending = Ending::of(cycle.n);
            cycle.peer.poll();
            let state = cycle.peer.get_ready_state();
            if ending == Ending::AbandonHandshake {
                // Give up at once: the server sees a connection that ends mid-handshake.
                cycle.peer.close(1000, "").unwrap();
            } else if state == State::Open && !cycle.sent {
                cycle
                    .peer
                    .put_packet(&[ending.code(), (cycle.n % 251) as u8])
                    .unwrap();
                cycle.sent = true;
            }
            if let Some(echo) = cycle.peer.recv() {
                assert_eq!(echo.data(), &[ending.code(), (cycle.n % 251) as u8]);
                cycle.echoed = true;
                match ending {
                    Ending::ClientClose => cycle.peer.close(1000, "").unwrap(),
                    Ending::ClientAbort => cycle.peer.close(-1, "").unwrap(),
                    _ => {}
                }
            }
            if cycle.peer.get_ready_state() == State::Closed {
                let code = cycle.peer.get_close_code();
                match ending {
                    Ending::ClientClose => assert_eq!(code, 1000, "cycle {}", cycle.n),
                    Ending::ServerClose => assert_eq!(code, 4000, "cycle {}", cycle.n),
                    _ => assert_eq!(code, -1, "cycle {}", cycle.n),
                }
                if ending != Ending::AbandonHandshake && ending != Ending::ServerAbort {
                    assert!(cycle.echoed, "cycle {} closed before its echo", cycle.n);
                }
                flying.swap_remove(i);
                continue;
            }
            assert!(
                cycle.started.elapsed() < TIMEOUT,
                "cycle {} stuck in {state:?}",
                cycle.n
            );
            i += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "the soak did not finish"
        );
    }
}

/// Polls until the server holds nothing: every slot retired, nothing pending.
fn drain(server: &mut WebSocketServer, books: &mut Books) {
    let start = Instant::now();
    while server.slot_count() > 0 || !books.endings.is_empty() {
        server.poll();
        for event in server.events() {
            if let ServerEvent::ClientDisconnected { id, was_clean } = event {
                let ending = books
                    .endings
                    .remove(&id)
                    .unwrap_or(Ending::AbandonHandshake);
                assert_eq!(was_clean, ending.clean());
                if was_clean {
                    books.clean += 1;
                } else {
                    books.unclean += 1;
                }
            }
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "slots left behind: {} (pending {}, peers {})",
            server.slot_count(),
            server.pending_count(),
            server.peer_count()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn churn_soak_leaks_no_slot_fd_or_memory_and_reuses_no_id() {
    let cycles: u64 = std::env::var("WSPEER_SOAK_CYCLES")
        .ok()
        .map(|v| v.parse().expect("WSPEER_SOAK_CYCLES must be a number"))
        .unwrap_or(DEFAULT_CYCLES);
    let mut server = common::server();
    let url = url(&server, "/soak");
    let mut books = Books::default();
    let sessions_at_most = (WARMUP + cycles) as usize;
    books.ids.resize(sessions_at_most, 0);
    books.ids.clear();

    // Warm up: allocator arenas, the slab and the id map reach their working size.
    churn(&mut server, &url, 0, WARMUP, &mut books);
    drain(&mut server, &mut books);
    let (fds_before, rss_before) = (fd_count(), rss_kib());

    let start = Instant::now();
    churn(&mut server, &url, WARMUP, WARMUP + cycles, &mut books);
    drain(&mut server, &mut books);
    let took = start.elapsed();
    let (fds_after, rss_after) = (fd_count(), rss_kib());
    let sessions = books.clean + books.unclean;
    assert!(
        books.ids.len() <= sessions_at_most,
        "the id list grew past its warm size"
    );
    let mut ids = std::mem::take(&mut books.ids);
    let handed_out = ids.len();
    ids.sort_unstable();
    ids.dedup();
    println!(
        "FIGURE churn soak: {cycles} cycles (+{WARMUP} warm-up) in {:.1} s ({:.0} cycles/s, \
         {CONCURRENCY} in flight; endings: client close, client abort, server close, server \
         abort, abandoned handshake in turn): {} sessions ({} clean, {} unclean), {} distinct \
         ids, slots left {}, fds {fds_before} -> {fds_after}, RSS {rss_before} -> \
         {rss_after} KiB",
        took.as_secs_f64(),
        cycles as f64 / took.as_secs_f64(),
        sessions,
        books.clean,
        books.unclean,
        ids.len(),
        server.slot_count()
    );
    assert_eq!(server.slot_count(), 0, "leaked slots");
    assert_eq!((server.peer_count(), server.pending_count()), (0, 0));
    assert_eq!(fds_after, fds_before, "leaked file descriptors");
    assert_eq!(ids.len(), handed_out, "a peer id was handed out twice");
    assert_eq!(handed_out as u64, sessions, "one id per session");
    // Allocator caches may keep a little: measured here (30 000 cycles, debug build) RSS
    // grew by 364 and 464 KiB. The bound is about three times that; a leak of 50 bytes per
    // cycle (1.5 MB) would cross it.
    assert!(
        rss_after <= rss_before + 1536,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
