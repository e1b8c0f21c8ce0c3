//! The cost of one `WebSocketServer::poll()` against the number of peers and the number of
//! them ready: a wspeer server in this process (`examples/echo_server`'s configuration,
//! from that file), N idle connections opened by the load generator
//! (`loadgen --mode idle --hold`) in another process. Before each timed `poll()` the load
//! generator sends one 32-byte message on each of exactly k connections (the `send K`
//! command) and confirms it is written; after it, untimed, the messages are drained (and
//! the server polled again if some had not arrived in time, which the `ready` column
//! shows). Each N runs with the heartbeat off and on (the load generator answers pings).
//! Costs that grow with k and stay flat across N mean `poll()` is O(ready), not O(peers).
//!
//! ```text
//! poll_cost [--n 100,10000] [--k 0,10,100] [--heartbeat-ms 1000] [--calls 5000]
//!           [--loadgen PATH] [--client-cpu 1]
//! poll_cost --mode heartbeat [--n 10000] [--heartbeat-ms 30000] [--fps 60] [--blocks 5]
//!           [--block-secs 3] [--k K] [--loadgen PATH] [--client-cpu 1]
//! ```
//! Prints `RESULT mode=poll n=N k=K heartbeat_ms=H peers=.. calls=C median_us=..
//! mean_us=.. p99_us=.. ready=..` (`ready`: messages the timed poll delivered, mean).
//!
//! `--mode heartbeat` (issue #11) puts the cost of one heartbeat ping/pong round next to
//! the cost of one echo, in one process run, through the public API, at a game's pace:
//! two servers in this process, both in echo_server's configuration with N peers each
//! (two load generators), A with the heartbeat off and B with it on, polled `fps` times a
//! second (`poll()`, then echo_server's own `handle_events`: one *frame*), A and B one
//! after the other in each frame, the order swapped every frame. B's peers are opened at
//! an even N / interval per second (`loadgen --open-rate`), so their ping timers fall due
//! evenly: N / (interval × fps) pings per frame. The measurement is `--blocks` sets of
//! three blocks of `--block-secs` each: an *idle* block (A has nothing to do; B only its
//! heartbeat), an *echo* block (right after each frame A's load generator writes one
//! message on each of the same k peers, which A echoes in the next frame, as a pong
//! written after a frame is read in the next one: either way the load generator has slept
//! when the server writes to it, and both pay the same loopback wake-up), and a *cold
//! echo* block (the same, but on the next k peers round all N, so that each peer's turn
//! comes once every N ÷ k frames, as its ping comes once an interval: its state is as cold
//! in the caches as a pinged peer's). Rounds are counted by the load generators (`stats`):
//! pings B's one answered, echoes A's one received. Per set: ping round = (B's mean frame
//! − A's, idle block) / pings per frame; echo = (A's mean frame in an echo block − A's in
//! the idle block) / echoes per frame. Prints per set
//! `RESULT mode=heartbeat block=J n=N heartbeat_ms=H fps=F frames=T k=K
//! expected_pings=.. pings=.. echoes=.. idle_frame_us=.. hb_frame_us=.. echo_frame_us=..
//! idle_poll_p50_us=.. idle_poll_p99_us=.. hb_poll_p50_us=.. hb_poll_p99_us=..
//! ping_round_us=.. echo_us=.. ratio=.. spread_echoes=.. spread_echo_us=.. spread_ratio=..
//! late=..` (`spread_`: the cold echo block), then one such line with `all=1` over
//! every block (frame means pooled; `late`: frames that started over a period late).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wspeer::{Packet, ServerEvent, WebSocketServer};
use wspeer_bench::cost::{FrameCosts, mean, pings_per_frame};
use wspeer_bench::{Flags, parse_tagged_line, quantile, raise_nofile_limit, raise_nofile_limit_to};

/// `examples/echo_server.rs` itself, for its `server_config`.
#[allow(dead_code)]
#[path = "../../../examples/echo_server.rs"]
mod echo_server;

/// The load generator holding the idle connections, and its output lines.
struct Idle {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Idle {
    fn start(
        loadgen: &str,
        client_cpu: Option<&str>,
        addr: &str,
        n: usize,
        extra: &[String],
    ) -> Result<Idle, String> {
        let mut cmd = match client_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu, loadgen]);
                c
            }
            None => Command::new(loadgen),
        };
        cmd.args(["--addr", addr, "--mode", "idle", "--hold", "--size", "32"])
            .args(["--conns", &n.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("{loadgen}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Idle {
            child,
            stdin,
            lines,
        })
    }

    /// Writes `command` to the load generator and returns its answer: the first line that
    /// starts with `tag` (a line starting with `ERROR` fails instead).
    fn ask(&mut self, command: &str, tag: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{command}").map_err(|e| format!("loadgen stdin: {e}"))?;
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| format!("the load generator did not answer `{command}`"))?;
            if line.starts_with(tag) {
                return Ok(line);
            }
            if line.starts_with("ERROR") {
                return Err(format!("loadgen: {line}"));
            }
        }
    }

    /// Asks for one message on each of `k` connections, the first `k` or (`spread`) the
    /// next `k` round all of them; returns once written.
    fn send(&mut self, k: usize, echo_peers: EchoPeers) -> Result<(), String> {
        let command = match echo_peers {
            EchoPeers::First => "send",
            EchoPeers::Spread => "send-spread",
        };
        self.ask(&format!("{command} {k}"), "SENT").map(drop)
    }

    /// The load generator's counters: pings answered, data messages received, echoes
    /// that differed from what was sent.
    fn stats(&mut self) -> Result<Stats, String> {
        let line = self.ask("stats", "STATS")?;
        let kv = parse_tagged_line(&line, "STATS").unwrap_or_default();
        let get = |k: &str| kv.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        Ok(Stats {
            pongs: get("pongs"),
            msgs: get("msgs"),
            mismatches: get("mismatches"),
        })
    }

    /// Closes its stdin (the load generator then closes every connection and exits) while
    /// `server` serves the close handshakes; kills it after 5 s.
    fn finish(&mut self, server: &mut WebSocketServer) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            server.poll_with_timeout(Duration::from_millis(5));
            drain(server);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counters of a load generator in `--hold` (its `STATS` line).
#[derive(Clone, Copy, Debug)]
struct Stats {
    pongs: f64,
    msgs: f64,
    mismatches: f64,
}

/// Polls (untimed) and drains every message; returns how many arrived.
fn drain(server: &mut WebSocketServer) -> usize {
    let mut msgs = 0;
    while let Some(event) = server.pop_event() {
        if let ServerEvent::DataReceived { id } = event {
            if let Some(peer) = server.get_peer(id) {
                while peer.recv().is_some() {
                    msgs += 1;
                }
            }
        }
    }
    msgs
}

struct Plan<'a> {
    ks: &'a [usize],
    calls: usize,
    loadgen: &'a str,
    client_cpu: Option<&'a str>,
}

fn measure(n: usize, heartbeat: Duration, plan: &Plan) -> Result<(), String> {
    let mut config = echo_server::server_config(wspeer::DEFAULT_BUFFER_SIZE, &[]);
    config.peer.heartbeat_interval = heartbeat;
    let mut server = WebSocketServer::with_config(config);
    server
        .listen_on("127.0.0.1", 0)
        .map_err(|e| format!("listen: {e}"))?;
    let addr = server.local_addr().ok_or("no address")?.to_string();
    let mut idle = Idle::start(plan.loadgen, plan.client_cpu, &addr, n, &[])?;
    let result = (|| {
        // Serve the handshakes until the client says all are open.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut ready = false;
        while !ready || server.peer_count() < n {
            server.poll_with_timeout(Duration::from_millis(2));
            drain(&mut server);
            while let Ok(line) = idle.lines.try_recv() {
                if line == "READY" {
                    ready = true;
                } else if line.starts_with("ERROR") {
                    return Err(format!("client: {line}"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} peers connected",
                    server.peer_count()
                ));
            }
        }
        // With the heartbeat on, run past one interval so that every peer's ping timer is
        // armed, fired and answered at least once: the steady state.
        let settle = Instant::now() + heartbeat.mul_f64(1.5) + Duration::from_millis(100);
        while Instant::now() < settle {
            server.poll_with_timeout(Duration::from_millis(5));
            drain(&mut server);
        }
        for &k in plan.ks.iter().filter(|&&k| k <= n) {
            let mut times = Vec::with_capacity(plan.calls);
            let mut delivered = 0usize;
            let warmup = (plan.calls / 10).max(10);
            for call in 0..warmup + plan.calls {
                idle.send(k, EchoPeers::First)?;
                let t = Instant::now();
                server.poll();
                let dt = t.elapsed();
                let mut got = drain(&mut server);
                let in_timed = got;
                let deadline = Instant::now() + Duration::from_secs(5);
                while got < k {
                    if Instant::now() > deadline {
                        return Err(format!("{got} of {k} messages arrived"));
                    }
                    server.poll();
                    got += drain(&mut server);
                }
                if server.peer_count() < n {
                    return Err(format!("peers dropped: {} of {n}", server.peer_count()));
                }
                if call >= warmup {
                    times.push(dt.as_secs_f64() * 1e6);
                    delivered += in_timed;
                }
            }
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            times.sort_by(f64::total_cmp);
            println!(
                "RESULT mode=poll n={n} k={k} heartbeat_ms={} peers={} calls={} \
                 median_us={:.3} mean_us={mean:.3} p99_us={:.3} ready={:.2}",
                heartbeat.as_millis(),
                server.peer_count(),
                times.len(),
                quantile(&times, 0.5),
                quantile(&times, 0.99),
                delivered as f64 / times.len() as f64,
            );
        }
        Ok(())
    })();
    idle.finish(&mut server);
    result
}

// ----- --mode heartbeat -----

/// What the heartbeat measurement needs besides the load generator.
struct HeartbeatPlan {
    n: usize,
    heartbeat: Duration,
    fps: f64,
    blocks: usize,
    block_secs: f64,
    /// Messages echoed per echo frame (default: the pings due per frame, rounded).
    k: Option<usize>,
}

/// Frames that start each block untimed (the previous block's last echoes go out).
const WARM_FRAMES: usize = 3;

/// A wspeer server in echo_server's configuration and the load generator holding its peers.
struct Side {
    server: WebSocketServer,
    idle: Idle,
    stalled: HashMap<i32, Packet>,
    ready: bool,
}

impl Side {
    fn start(n: usize, heartbeat: Duration, open_rate: f64, plan: &Plan) -> Result<Side, String> {
        let mut config = echo_server::server_config(wspeer::DEFAULT_BUFFER_SIZE, &[]);
        config.peer.heartbeat_interval = heartbeat;
        let mut server = WebSocketServer::with_config(config);
        server
            .listen_on("127.0.0.1", 0)
            .map_err(|e| format!("listen: {e}"))?;
        let addr = server.local_addr().ok_or("no address")?.to_string();
        let mut extra = vec!["--concurrency".to_string(), "64".into()];
        if open_rate > 0.0 {
            extra.extend(["--open-rate".to_string(), format!("{open_rate:.3}")]);
        }
        let idle = Idle::start(plan.loadgen, plan.client_cpu, &addr, n, &extra)?;
        Ok(Side {
            server,
            idle,
            stalled: HashMap::new(),
            ready: false,
        })
    }

    /// Polls (untimed), drains every event and notes the load generator's `READY`.
    fn serve(&mut self, timeout: Option<Duration>) -> Result<(), String> {
        match timeout {
            Some(t) => self.server.poll_with_timeout(t),
            None => self.server.poll(),
        }
        drain(&mut self.server);
        while let Ok(line) = self.idle.lines.try_recv() {
            if line == "READY" {
                self.ready = true;
            } else if line.starts_with("ERROR") {
                return Err(format!("client: {line}"));
            }
        }
        Ok(())
    }

    /// One frame of a game loop: `poll()`, then echo_server's `handle_events`. Returns the
    /// time of the `poll()` and of the whole frame, in µs.
    fn frame(&mut self) -> (f64, f64) {
        let t = Instant::now();
        self.server.poll();
        let polled = t.elapsed();
        echo_server::handle_events(&mut self.server, &mut self.stalled, true);
        let done = t.elapsed();
        (polled.as_secs_f64() * 1e6, done.as_secs_f64() * 1e6)
    }
}

/// Sleeps to the next frame of a fixed rate; counts frames that started over a period late
/// (and then restarts the schedule instead of catching up in a burst).
struct Pacer {
    period: Duration,
    next: Instant,
    late: usize,
}

impl Pacer {
    fn new(fps: f64) -> Pacer {
        Pacer {
            period: Duration::from_secs_f64(1.0 / fps),
            next: Instant::now(),
            late: 0,
        }
    }

    fn wait(&mut self) {
        let now = Instant::now();
        if now < self.next {
            std::thread::sleep(self.next - now);
        } else if now > self.next + self.period {
            self.late += 1;
            self.next = now;
        }
        self.next += self.period;
    }
}

/// Frame times of one block, in µs.
#[derive(Default)]
struct Block {
    a_poll: Vec<f64>,
    a_frame: Vec<f64>,
    b_poll: Vec<f64>,
    b_frame: Vec<f64>,
    /// Pings B's load generator answered, echoes A's one received, during the block.
    pongs: f64,
    echoes: f64,
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, q)
}

/// Which of A's peers the echo messages go to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EchoPeers {
    /// The same `k` peers every frame: their state stays in the caches, as for players
    /// who send every frame.
    First,
    /// The next `k` round all N, so each peer's turn comes once every N ÷ k frames, the
    /// way each peer's ping comes once an interval: state as cold as the heartbeat's.
    Spread,
}

/// Runs one block of `frames` timed frames (after [`WARM_FRAMES`]), A echoing `k`
/// messages per frame when `k > 0`.
fn block(
    a: &mut Side,
    b: &mut Side,
    pacer: &mut Pacer,
    frames: usize,
    k: usize,
    echo_peers: EchoPeers,
) -> Result<Block, String> {
    let mut out = Block::default();
    // A's messages are written right after a frame and echoed in the next one, the way a
    // pong written after a frame is read in the next one: when the server writes an echo
    // or a ping, the load generator has been idle for most of a frame either way, so both
    // pay the same loopback wake-up of a sleeping remote (writing to a load generator
    // that has just run is cheaper, and would flatter the echo).
    for w in 0..WARM_FRAMES {
        pacer.wait();
        a.frame();
        b.frame();
        if k > 0 && w + 1 == WARM_FRAMES {
            a.idle.send(k, echo_peers)?;
        }
    }
    let (a0, b0) = (a.idle.stats()?, b.idle.stats()?);
    for f in 0..frames {
        pacer.wait();
        let (ta, tb) = if f % 2 == 0 {
            let ta = a.frame();
            (ta, b.frame())
        } else {
            let tb = b.frame();
            (a.frame(), tb)
        };
        out.a_poll.push(ta.0);
        out.a_frame.push(ta.1);
        out.b_poll.push(tb.0);
        out.b_frame.push(tb.1);
        if k > 0 && f + 1 < frames {
            a.idle.send(k, echo_peers)?;
        }
    }
    let (a1, b1) = (a.idle.stats()?, b.idle.stats()?);
    if a1.mismatches > 0.0 {
        return Err(format!(
            "{} echoes differed from what was sent",
            a1.mismatches
        ));
    }
    out.pongs = b1.pongs - b0.pongs;
    out.echoes = a1.msgs - a0.msgs;
    Ok(out)
}

/// The `RESULT mode=heartbeat` line of one block pair (or of all, pooled).
fn heartbeat_line(
    label: &str,
    plan: &HeartbeatPlan,
    k: usize,
    idle: &Block,
    echo: &Block,
    spread: &Block,
    late: usize,
) -> String {
    let frames = idle.a_frame.len().max(1) as f64;
    let costs_with = |echo: &Block| FrameCosts {
        idle_us: mean(&idle.a_frame),
        heartbeat_us: mean(&idle.b_frame),
        echo_frame_us: mean(&echo.a_frame),
        pings: idle.pongs / frames,
        echoes: echo.echoes / echo.a_frame.len().max(1) as f64,
    };
    let costs = costs_with(echo);
    let spread_costs = costs_with(spread);
    format!(
        "RESULT mode=heartbeat {label} n={} heartbeat_ms={} fps={} frames={} k={k} \
         expected_pings={:.3} pings={:.3} echoes={:.3} idle_frame_us={:.3} hb_frame_us={:.3} \
         echo_frame_us={:.3} idle_poll_p50_us={:.3} idle_poll_p99_us={:.3} \
         hb_poll_p50_us={:.3} hb_poll_p99_us={:.3} ping_round_us={:.4} echo_us={:.4} \
         ratio={:.4} spread_echoes={:.3} spread_echo_us={:.4} spread_ratio={:.4} late={late}",
        plan.n,
        plan.heartbeat.as_millis(),
        plan.fps,
        idle.a_frame.len(),
        pings_per_frame(plan.n, plan.heartbeat.as_secs_f64(), plan.fps),
        costs.pings,
        costs.echoes,
        costs.idle_us,
        costs.heartbeat_us,
        costs.echo_frame_us,
        percentile(&idle.a_poll, 0.5),
        percentile(&idle.a_poll, 0.99),
        percentile(&idle.b_poll, 0.5),
        percentile(&idle.b_poll, 0.99),
        costs.ping_round_us(),
        costs.echo_us(),
        costs.ratio(),
        spread_costs.echoes,
        spread_costs.echo_us(),
        spread_costs.ratio(),
    )
}

fn heartbeat_cost(hp: &mut HeartbeatPlan, plan: &Plan) -> Result<(), String> {
    // Two servers of N peers in this process: 2 N descriptors and some.
    let limit = raise_nofile_limit_to(2 * hp.n as u64 + 512);
    if limit < 2 * hp.n as u64 + 512 {
        let fit = (limit.saturating_sub(512) / 2) as usize;
        println!(
            "NOTE open-file limit {limit}: {fit} peers per server instead of {}",
            hp.n
        );
        hp.n = fit.max(1);
    }
    let n = hp.n;
    let expected = pings_per_frame(n, hp.heartbeat.as_secs_f64(), hp.fps);
    let k = hp.k.unwrap_or((expected.round() as usize).max(1)).min(n);
    // A: heartbeat off, its peers opened as fast as they come.
    let mut a = Side::start(n, Duration::ZERO, 0.0, plan)?;
    let mut b: Option<Side> = None;
    let result = (|| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !a.ready || a.server.peer_count() < n {
            a.serve(Some(Duration::from_millis(2)))?;
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} peers connected",
                    a.server.peer_count()
                ));
            }
        }
        // B: heartbeat on, its peers opened evenly over one interval while both servers
        // run at the frame rate, so that its pings fall due evenly.
        let rate = n as f64 / hp.heartbeat.as_secs_f64();
        let side = b.insert(Side::start(n, hp.heartbeat, rate, plan)?);
        let started = Instant::now();
        let deadline = started + hp.heartbeat * 2 + Duration::from_secs(120);
        // From one interval after the first peer opened, every timer has its even phase.
        let steady = started + hp.heartbeat + Duration::from_millis(500);
        let mut pacer = Pacer::new(hp.fps);
        while !side.ready || side.server.peer_count() < n || Instant::now() < steady {
            pacer.wait();
            a.serve(None)?;
            side.serve(None)?;
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} heartbeat peers connected",
                    side.server.peer_count()
                ));
            }
        }
        let frames = ((hp.block_secs * hp.fps).round() as usize).max(1);
        let mut pacer = Pacer::new(hp.fps);
        let mut all_idle = Block::default();
        let mut all_echo = Block::default();
        let mut all_spread = Block::default();
        for j in 0..hp.blocks {
            let late = pacer.late;
            let idle = block(&mut a, side, &mut pacer, frames, 0, EchoPeers::First)?;
            let echo = block(&mut a, side, &mut pacer, frames, k, EchoPeers::First)?;
            let spread = block(&mut a, side, &mut pacer, frames, k, EchoPeers::Spread)?;
            if a.server.peer_count() < n || side.server.peer_count() < n {
                return Err(format!(
                    "peers dropped: {} and {} of {n}",
                    a.server.peer_count(),
                    side.server.peer_count()
                ));
            }
            println!(
                "{}",
                heartbeat_line(
                    &format!("block={j}"),
                    hp,
                    k,
                    &idle,
                    &echo,
                    &spread,
                    pacer.late - late
                )
            );
            for (all, one) in [
                (&mut all_idle, idle),
                (&mut all_echo, echo),
                (&mut all_spread, spread),
            ] {
                all.a_poll.extend(one.a_poll);
                all.a_frame.extend(one.a_frame);
                all.b_poll.extend(one.b_poll);
                all.b_frame.extend(one.b_frame);
                all.pongs += one.pongs;
                all.echoes += one.echoes;
            }
        }
        println!(
            "{}",
            heartbeat_line(
                "all=1",
                hp,
                k,
                &all_idle,
                &all_echo,
                &all_spread,
                pacer.late
            )
        );
        Ok(())
    })();
    if let Some(side) = b.as_mut() {
        side.idle.finish(&mut side.server);
    }
    a.idle.finish(&mut a.server);
    result
}

fn run() -> Result<(), String> {
    let flags = Flags::parse(&[])?;
    flags.check_known(&[
        "--mode",
        "--n",
        "--k",
        "--heartbeat-ms",
        "--calls",
        "--loadgen",
        "--client-cpu",
        "--fps",
        "--blocks",
        "--block-secs",
    ])?;
    let heartbeat_mode = match flags.get("--mode").unwrap_or("grid") {
        "grid" => false,
        "heartbeat" => true,
        other => return Err(format!("--mode grid|heartbeat, not {other:?}")),
    };
    let default_loadgen = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("loadgen");
    let loadgen = flags
        .get("--loadgen")
        .map(String::from)
        .unwrap_or_else(|| default_loadgen.display().to_string());
    raise_nofile_limit();
    if heartbeat_mode {
        let plan = Plan {
            ks: &[],
            calls: 0,
            loadgen: &loadgen,
            client_cpu: flags.get("--client-cpu"),
        };
        let ms: u64 = flags.value("--heartbeat-ms", 30_000)?;
        let fps: f64 = flags.value("--fps", 60.0)?;
        let block_secs: f64 = flags.value("--block-secs", 3.0)?;
        if ms == 0 || fps <= 0.0 || block_secs <= 0.0 {
            return Err("--heartbeat-ms, --fps and --block-secs must be above 0".into());
        }
        let mut hp = HeartbeatPlan {
            n: flags.value("--n", 10_000usize)?.max(1),
            heartbeat: Duration::from_millis(ms),
            fps,
            blocks: flags.value("--blocks", 5usize)?.max(1),
            block_secs,
            k: match flags.get("--k") {
                Some(_) => Some(flags.value("--k", 1usize)?.max(1)),
                None => None,
            },
        };
        return heartbeat_cost(&mut hp, &plan);
    }
    let ns = flags.numbers("--n", "100,10000")?;
    let ks = flags.numbers("--k", "0,10,100")?;
    let heartbeat_ms: u64 = flags.value("--heartbeat-ms", 1000)?;
    let calls: usize = flags.value("--calls", 5_000)?;
    let plan = Plan {
        ks: &ks,
        calls: calls.max(1),
        loadgen: &loadgen,
        client_cpu: flags.get("--client-cpu"),
    };
    let mut heartbeats = vec![Duration::ZERO];
    if heartbeat_ms > 0 {
        heartbeats.push(Duration::from_millis(heartbeat_ms));
    }
    for n in ns {
        for &heartbeat in &heartbeats {
            measure(n, heartbeat, &plan)?;
        }
    }
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
