//! The benchmark runner: starts each echo server in turn, drives it with `loadgen`, writes
//! the raw records of the run (`docs/bench/<run-id>.jsonl`) and, from them,
//! `docs/performance.md` and `docs/performance.svg`.
//!
//! ```text
//! bash bench/run.sh [--quick] [--rounds N] [--secs S] [--warmup S] [--idle-conns N]
//!                   [--servers a,b,..] [--scenarios a,b,..] [--note TEXT] [--no-docs]
//! target/release/bench --from docs/bench/<run-id>.jsonl   # the report again, from records
//! ```
//! (`bench/run.sh` builds everything and runs this binary.) Servers are pinned to CPU 0
//! and the load generator to CPU 1 with `taskset` where the machine has two CPUs; each
//! scenario runs `rounds` rounds, each round every server once, the order rotated by one
//! server each round (A B C, B C A, C A B, ..). Ctrl-C, a panic or the end of the run kill
//! every process it started.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wspeer_bench::{
    BIG_MAX_MESSAGE, Flags, parse_result_line, raise_nofile_limit, summary, write_test_pki,
};

mod records;
mod report;

/// Godot's `WebSocketServer` visits every peer on every frame, so opening connections gets
/// slower as they grow (10 000 take about 30 s): its idle row stops at this many.
pub const GODOT_IDLE_CONNS: usize = 2_000;

const USAGE: &str = "\
usage: bash bench/run.sh [FLAGS]   (or: target/release/bench [FLAGS])
  --quick                 smoke check: 1 round, 0.2 s warm-up + 0.6 s per run, 2 000 idle,
                          a short heartbeat cost (1 000 peers, 3 s heartbeat, 2 × 0.5 s);
                          writes into target/bench/, never into docs/ (unless --out/--raw)
  --rounds N              interleaved rounds per scenario (default 5)
  --warmup S --secs S     warm-up and measured seconds per run (default 1 and 5)
  --idle-conns N          idle connections (default 10 000)
  --poll-n A,B            peers for the poll() cost (default 100,10000)
  --poll-k A,B,C          of which ready per poll (default 0,10,100)
  --poll-heartbeat-ms MS  heartbeat of the second poll() pass (default 1000; 0: no pass)
  --poll-calls N          timed poll() calls per N and k (default 5 000)
  --hb-peers N            peers per server for the heartbeat cost (default 10 000; 0: skip)
  --hb-interval-ms MS     its heartbeat interval (default 30 000: 5.6 pings per frame)
  --hb-blocks N           its sets of idle, echo and cold-echo blocks (default 5)
  --hb-block-secs S       seconds per block (default 3), at 60 frames per second
  --alloc-msgs N          echoes per size for the allocation count (default 20 000)
  --servers a,b           only these: wspeer,wspeer-wss,tt-mt,tt-ct,fws-ct,fws-mt,
                          fws-ct-wss,fws-mt-wss,node,godot
  --scenarios a,b         only these: lat,c100x20,c100x16x64,c1000x4x64,c100x1k,c200x16k,
                          c10x1m,setup,idle,poll,heartbeat,alloc
  --note TEXT             a caveat printed at the top of the report
  --raw FILE              the raw records (default docs/bench/<run-id>.jsonl)
  --out FILE --svg FILE   where to write (default docs/performance.md and .svg)
  --no-docs               print the markdown instead of writing it (records still written)
  --from FILE             run nothing: write the report (--out/--svg/--no-docs) from a raw
                          records file alone
  --no-pin                do not pin with taskset
  --echo-server PATH      wspeer's echo server binary (default: next to this binary)
  --wspeer-big-args ARGS  extra echo_server flags for the 1 MiB scenario
  --write-pki DIR         only write the test CA, certificate and key (for manual runs)
";

/// Process groups of the children alive now, killed on exit, Ctrl-C or panic.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// The scratch directory (certificates, server logs), removed on exit.
static SCRATCH: Mutex<Option<PathBuf>> = Mutex::new(None);

fn kill_everything() {
    let groups: Vec<i32> = match GROUPS.lock() {
        Ok(mut g) => g.drain(..).collect(),
        Err(_) => return,
    };
    for pid in groups {
        // SAFETY: kill has no memory-safety preconditions; a negative pid is a group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    if let Ok(mut dir) = SCRATCH.lock() {
        if let Some(dir) = dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// A child process in its own process group, its stdout and stderr in a log file.
struct Proc {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: &Path) -> Result<Proc, String> {
        let file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let file2 = file.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe. If the runner dies without cleaning up
        // (SIGKILL), the kernel kills the child too.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let program = format!("{:?}", cmd.get_program());
        let mut groups = GROUPS.lock().map_err(|_| "poisoned")?;
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let pid = child.id();
        groups.push(pid as i32);
        Ok(Proc {
            child,
            pid,
            log: log.to_path_buf(),
        })
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let out = self.output();
        let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for exit at most `limit`; false if it had to be killed.
    fn wait_for(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: as in kill_everything.
        unsafe { libc::kill(-(self.pid as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        if let Ok(mut g) = GROUPS.lock() {
            g.retain(|p| *p != self.pid as i32);
        }
        let _ = fs::remove_file(&self.log);
    }
}

// ----- servers and scenarios -----

/// One server of the benchmark (a row of the tables).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Srv {
    /// wspeer's `examples/echo_server`, ws.
    Wspeer,
    /// The same over TLS.
    WspeerWss,
    /// tokio-tungstenite, multi-thread runtime.
    TtMulti,
    /// tokio-tungstenite, current-thread runtime.
    TtCurrent,
    /// fastwebsockets, current-thread runtime.
    FwsCurrent,
    /// fastwebsockets, multi-thread runtime.
    FwsMulti,
    /// fastwebsockets over TLS (tokio-rustls), current-thread runtime.
    FwsCurrentWss,
    /// fastwebsockets over TLS (tokio-rustls), multi-thread runtime.
    FwsMultiWss,
    /// Node `ws` (optional).
    Node,
    /// Godot 3's `WebSocketServer` (optional).
    Godot,
}

impl Srv {
    /// Every server, in the order of the tables.
    pub const ALL: [Srv; 10] = [
        Srv::Wspeer,
        Srv::WspeerWss,
        Srv::TtMulti,
        Srv::TtCurrent,
        Srv::FwsCurrent,
        Srv::FwsMulti,
        Srv::FwsCurrentWss,
        Srv::FwsMultiWss,
        Srv::Node,
        Srv::Godot,
    ];

    /// The server's name in flags (`--servers`) and records.
    pub fn key(self) -> &'static str {
        match self {
            Srv::Wspeer => "wspeer",
            Srv::WspeerWss => "wspeer-wss",
            Srv::TtMulti => "tt-mt",
            Srv::TtCurrent => "tt-ct",
            Srv::FwsCurrent => "fws-ct",
            Srv::FwsMulti => "fws-mt",
            Srv::FwsCurrentWss => "fws-ct-wss",
            Srv::FwsMultiWss => "fws-mt-wss",
            Srv::Node => "node",
            Srv::Godot => "godot",
        }
    }

    /// The server's name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Srv::Wspeer => "wspeer (ws)",
            Srv::WspeerWss => "wspeer (wss)",
            Srv::TtMulti => "tokio-tungstenite, multi-thread",
            Srv::TtCurrent => "tokio-tungstenite, current-thread",
            Srv::FwsCurrent => "fastwebsockets, current-thread",
            Srv::FwsMulti => "fastwebsockets, multi-thread",
            Srv::FwsCurrentWss => "fastwebsockets (wss), current-thread",
            Srv::FwsMultiWss => "fastwebsockets (wss), multi-thread",
            Srv::Node => "Node ws",
            Srv::Godot => "Godot 3",
        }
    }

    /// Whether it serves wss (the load generator connects with TLS): such a server runs
    /// only in the scenarios that list it in [`Scenario::wss`].
    pub fn tls(self) -> bool {
        matches!(self, Srv::WspeerWss | Srv::FwsCurrentWss | Srv::FwsMultiWss)
    }

    /// Rows shown only when their runtime is installed.
    pub fn optional(self) -> bool {
        matches!(self, Srv::Node | Srv::Godot)
    }
}

/// What a scenario asks of the load generator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// `conns` connections, each keeping `inflight` messages of `size` bytes in flight.
    Echo {
        /// Connections.
        conns: usize,
        /// Message size in bytes.
        size: usize,
        /// Messages in flight per connection.
        inflight: usize,
    },
    /// Connect, handshake and close, `concurrency` connections at a time.
    Setup {
        /// Connections going through set-up at once.
        concurrency: usize,
    },
    /// Idle connections (the server's memory per connection).
    Idle,
}

/// One scenario of the benchmark: every server runs it once per round.
pub struct Scenario {
    /// Its name in flags (`--scenarios`) and records.
    pub key: &'static str,
    /// `loadgen --msg-type` of the scenario.
    pub msg_type: &'static str,
    /// The heading of its table.
    pub title: &'static str,
    /// What the load generator does.
    pub kind: Kind,
    /// Whether a server below 90 % CPU is flagged (client-bound).
    pub throughput: bool,
    /// The TLS servers that run it too (no TLS server runs a scenario not listing it).
    pub wss: &'static [Srv],
}

/// The TLS servers of the ws-and-wss throughput scenario: wspeer's and fastwebsockets'.
const WSS_ECHO: &[Srv] = &[Srv::WspeerWss, Srv::FwsCurrentWss, Srv::FwsMultiWss];

impl Scenario {
    /// Whether `srv` runs this scenario (TLS servers only where listed in `wss`).
    pub fn runs(&self, srv: Srv) -> bool {
        !srv.tls() || self.wss.contains(&srv)
    }
}

/// Every scenario, in the order they run.
pub fn scenarios() -> Vec<Scenario> {
    let echo = |conns, size, inflight| Kind::Echo {
        conns,
        size,
        inflight,
    };
    vec![
        Scenario {
            key: "lat",
            msg_type: "text",
            title: "1 connection × 32 B ping-pong",
            kind: echo(1, 32, 1),
            throughput: false,
            wss: &[],
        },
        Scenario {
            key: "c100x20",
            msg_type: "binary",
            title: "100 connections × 20 B, one in flight each",
            kind: echo(100, 20, 1),
            throughput: true,
            wss: &[],
        },
        Scenario {
            key: "c100x16x64",
            msg_type: "binary",
            title: "100 connections × 16 in flight × 64 B",
            kind: echo(100, 64, 16),
            throughput: true,
            wss: &[],
        },
        Scenario {
            key: "c1000x4x64",
            msg_type: "binary",
            title: "1 000 connections × 4 in flight × 64 B",
            kind: echo(1000, 64, 4),
            throughput: true,
            wss: &[],
        },
        Scenario {
            key: "c100x1k",
            msg_type: "binary",
            title: "100 connections × 1 KiB, one in flight each (ws and wss)",
            kind: echo(100, 1024, 1),
            throughput: true,
            wss: WSS_ECHO,
        },
        Scenario {
            key: "c200x16k",
            msg_type: "binary",
            title: "200 connections × 16 KiB, one in flight each",
            kind: echo(200, 16 * 1024, 1),
            throughput: true,
            wss: &[],
        },
        Scenario {
            key: "c10x1m",
            msg_type: "binary",
            title: "10 connections × 1 MiB, one in flight each",
            kind: echo(10, 1024 * 1024, 1),
            throughput: true,
            wss: &[],
        },
        Scenario {
            key: "setup",
            msg_type: "binary",
            title: "Connection set-up: connect + handshake + close, 32 at a time",
            kind: Kind::Setup { concurrency: 32 },
            throughput: true,
            wss: &[Srv::WspeerWss],
        },
        Scenario {
            key: "idle",
            msg_type: "binary",
            title: "Idle connections",
            kind: Kind::Idle,
            throughput: false,
            wss: &[],
        },
    ]
}

// ----- the run -----

/// The settings of a run, as the report states them.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// A `--quick` smoke check.
    pub quick: bool,
    /// Interleaved rounds per scenario.
    pub rounds: usize,
    /// Warm-up seconds per run.
    pub warmup: f64,
    /// Measured seconds per run.
    pub secs: f64,
    /// Connections of the idle scenario.
    pub idle_conns: usize,
    /// Peer counts of the `poll()` grid (`--poll-n`).
    pub poll_ns: String,
    /// Ready counts of the `poll()` grid (`--poll-k`).
    pub poll_ks: String,
    /// Heartbeat of the grid's second pass (ms; 0: none).
    pub poll_heartbeat_ms: u64,
    /// Timed `poll()` calls per row of the grid.
    pub poll_calls: usize,
    /// Peers per server of the heartbeat cost (0: not run).
    pub hb_peers: usize,
    /// Heartbeat interval of the heartbeat cost (ms).
    pub hb_interval_ms: u64,
    /// Pairs of idle and echo blocks of the heartbeat cost.
    pub hb_blocks: usize,
    /// Seconds per block of the heartbeat cost.
    pub hb_block_secs: f64,
    /// Echoes per size of the allocation count.
    pub alloc_msgs: usize,
    /// A caveat for the top of the report.
    pub note: Option<String>,
    /// Servers and load generator pinned to separate CPUs.
    pub pinned: bool,
    /// The exact command of the run.
    pub command: String,
    /// The run's id: the name of its raw records file.
    pub run_id: String,
    /// Where the raw records were written (relative to the repository when inside it).
    pub raw_path: String,
}

/// One server in one round of one scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The scenario's key.
    pub scenario: &'static str,
    /// The server.
    pub srv: Srv,
    /// The round (from 0).
    pub round: usize,
    /// Position of the server in its round (the order rotates between rounds).
    pub order: usize,
    /// Every number the load generator reported, and those derived from them.
    pub m: HashMap<String, f64>,
    /// Why the run failed (its numbers may still be there, as for an echo mismatch).
    pub error: Option<String>,
}

/// Everything a run measured: what the report and the raw records are made of.
#[derive(Debug, PartialEq)]
pub struct Results {
    /// The run's settings.
    pub settings: Settings,
    /// The full commit hash measured ("" outside a git checkout).
    pub commit: String,
    /// Uncommitted files under the measured paths at the time of the run.
    pub dirty: Vec<String>,
    /// The machine table of the report (key, value).
    pub machine: Vec<(String, String)>,
    /// The servers of the run, in order.
    pub servers: Vec<Srv>,
    /// Optional rows left out, and why.
    pub skipped: Vec<String>,
    /// One per server × scenario × round.
    pub runs: Vec<Run>,
    /// The rows `poll_cost` printed (the grid).
    pub poll: Vec<HashMap<String, f64>>,
    /// Why `poll_cost` failed.
    pub poll_error: Option<String>,
    /// The rows `poll_cost --mode heartbeat` printed (one per block pair, then `all`).
    pub heartbeat: Vec<HashMap<String, f64>>,
    /// Why the heartbeat cost failed.
    pub heartbeat_error: Option<String>,
    /// The rows `alloc_count` printed.
    pub alloc: Vec<HashMap<String, f64>>,
    /// Why `alloc_count` failed.
    pub alloc_error: Option<String>,
    /// Start of the run (`YYYY-MM-DD HH:MM UTC`).
    pub started: String,
    /// How long the run took.
    pub elapsed: Duration,
}

struct Bench {
    bins: PathBuf,
    root: PathBuf,
    scratch: PathBuf,
    echo_server: PathBuf,
    pinned: bool,
    wspeer_big_args: Vec<String>,
    warmup: f64,
    secs: f64,
    idle_conns: usize,
    log_seq: usize,
}

impl Bench {
    fn pin(&self, cpu: &str, program: &Path) -> Command {
        if self.pinned {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", cpu]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn log_path(&mut self, what: &str) -> PathBuf {
        self.log_seq += 1;
        self.scratch.join(format!("{}-{what}.log", self.log_seq))
    }

    fn server_command(&self, srv: Srv, port: u16, scenario: &Scenario) -> Command {
        let port_s = port.to_string();
        match srv {
            Srv::Wspeer | Srv::WspeerWss => {
                let mut cmd = self.pin("0", &self.echo_server);
                cmd.args(["--port", &port_s, "--quiet"]);
                if srv == Srv::WspeerWss {
                    cmd.arg("--cert")
                        .arg(self.scratch.join("cert.pem"))
                        .arg("--key")
                        .arg(self.scratch.join("key.pem"));
                }
                if let Kind::Echo { size, .. } = scenario.kind {
                    if size > 65535 {
                        cmd.args(&self.wspeer_big_args);
                    }
                }
                cmd
            }
            Srv::TtMulti | Srv::TtCurrent => {
                let mut cmd = self.pin("0", &self.bins.join("tt_echo"));
                let rt = if srv == Srv::TtMulti {
                    "multi"
                } else {
                    "current"
                };
                cmd.args(["--port", &port_s, "--runtime", rt]);
                cmd
            }
            Srv::FwsCurrent | Srv::FwsMulti | Srv::FwsCurrentWss | Srv::FwsMultiWss => {
                let mut cmd = self.pin("0", &self.bins.join("fws_echo"));
                let rt = if matches!(srv, Srv::FwsMulti | Srv::FwsMultiWss) {
                    "multi"
                } else {
                    "current"
                };
                cmd.args(["--port", &port_s, "--runtime", rt]);
                if srv.tls() {
                    // The certificate and key of wspeer's wss run.
                    cmd.arg("--cert")
                        .arg(self.scratch.join("cert.pem"))
                        .arg("--key")
                        .arg(self.scratch.join("key.pem"));
                }
                cmd
            }
            Srv::Node => {
                let mut cmd = self.pin("0", Path::new("node"));
                cmd.arg(self.root.join("bench/node/echo.js")).arg(&port_s);
                cmd
            }
            Srv::Godot => {
                let mut cmd = self.pin("0", Path::new("godot3-server"));
                let home = self.scratch.join("godot-home");
                let _ = fs::create_dir_all(&home);
                cmd.arg("--path")
                    .arg(self.root.join("bench/godot"))
                    .args(["-s", "echo.gd"])
                    .env("BENCH_PORT", &port_s)
                    .env("HOME", &home)
                    .env("XDG_DATA_HOME", &home)
                    .env("XDG_CONFIG_HOME", &home)
                    .env("XDG_CACHE_HOME", &home);
                cmd
            }
        }
    }

    /// Starts a server and waits for its `Listening on` line; returns it and its address.
    fn start_server(&mut self, srv: Srv, scenario: &Scenario) -> Result<(Proc, String), String> {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let log = self.log_path(srv.key());
            let mut proc = Proc::spawn(self.server_command(srv, port, scenario), &log)?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let out = proc.output();
                if let Some(line) = out.lines().find(|l| l.contains("Listening on ")) {
                    let addr = line
                        .split("://")
                        .nth(1)
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    return Ok((proc, addr));
                }
                if !proc.alive() {
                    last = format!("{} exited: {}", srv.key(), proc.tail());
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("{} did not start: {}", srv.key(), proc.tail()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(last)
    }

    /// Runs the load generator; returns its `RESULT` fields (and `NOTE` text).
    fn loadgen(
        &mut self,
        args: &[String],
        limit: Duration,
    ) -> Result<HashMap<String, String>, String> {
        let log = self.log_path("loadgen");
        let mut cmd = self.pin("1", &self.bins.join("loadgen"));
        cmd.args(args);
        let mut proc = Proc::spawn(cmd, &log)?;
        if !proc.wait_for(limit) {
            return Err(format!(
                "loadgen did not finish in {limit:?}: {}",
                proc.tail()
            ));
        }
        let out = proc.output();
        if let Some(err) = out.lines().find_map(|l| l.strip_prefix("ERROR ")) {
            return Err(err.to_string());
        }
        let mut result = out
            .lines()
            .find_map(parse_result_line)
            .ok_or_else(|| format!("no result from loadgen: {}", proc.tail()))?;
        if let Some(note) = out.lines().find_map(|l| l.strip_prefix("NOTE ")) {
            result.insert("note".into(), note.replace(' ', "_"));
        }
        if let Some(m) = out.lines().find_map(|l| l.strip_prefix("MISMATCH ")) {
            result.insert("mismatch".into(), m.replace(' ', "_"));
        }
        Ok(result)
    }

    /// One run: its numbers, and why it failed (an echo mismatch keeps the numbers).
    fn run_one(
        &mut self,
        scenario: &Scenario,
        srv: Srv,
    ) -> Result<(HashMap<String, f64>, Option<String>), String> {
        let (mut server, addr) = self.start_server(srv, scenario)?;
        let mut args: Vec<String> = vec!["--addr".into(), addr, "--server-pid".into()];
        args.push(server.pid.to_string());
        if srv.tls() {
            args.push("--ca".into());
            args.push(self.scratch.join("ca.pem").display().to_string());
        }
        let timing = |args: &mut Vec<String>, warmup: f64, secs: f64| {
            args.extend([
                "--warmup".into(),
                warmup.to_string(),
                "--secs".into(),
                secs.to_string(),
            ]);
        };
        match scenario.kind {
            Kind::Echo {
                conns,
                size,
                inflight,
            } => {
                args.extend(["--mode", "echo", "--msg-type", scenario.msg_type].map(String::from));
                args.extend([
                    "--conns".into(),
                    conns.to_string(),
                    "--size".into(),
                    size.to_string(),
                    "--inflight".into(),
                    inflight.to_string(),
                    // At most 32 handshakes at once while opening (as in the idle
                    // scenario): Godot loses some of 1 000 opened 128 at a time.
                    "--concurrency".into(),
                    "32".into(),
                ]);
                timing(&mut args, self.warmup, self.secs);
            }
            Kind::Setup { concurrency } => {
                args.extend(["--mode", "setup"].map(String::from));
                args.extend(["--conns".into(), concurrency.to_string()]);
                timing(&mut args, self.warmup, self.secs);
            }
            Kind::Idle => {
                args.extend(["--mode", "idle"].map(String::from));
                let conns = if srv == Srv::Godot {
                    self.idle_conns.min(GODOT_IDLE_CONNS)
                } else {
                    self.idle_conns
                };
                args.extend(["--conns".into(), conns.to_string()]);
                args.extend(["--concurrency".into(), "32".into()]);
            }
        }
        let limit = Duration::from_secs_f64(self.warmup + self.secs + 150.0);
        let result = self.loadgen(&args, limit);
        let alive = server.alive();
        let tail = server.tail();
        drop(server);
        let result = result.map_err(|e| {
            if srv == Srv::Wspeer && e.contains("1009") && self.wspeer_big_args.is_empty() {
                format!(
                    "{e} (examples/echo_server keeps Godot's 65535-byte message limit and has \
                     no flag to raise it)"
                )
            } else {
                e
            }
        })?;
        if !alive {
            return Err(format!("server exited during the run: {tail}"));
        }
        let mut m: HashMap<String, f64> = result
            .iter()
            .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k.clone(), v)))
            .collect();
        if let Some(note) = result.get("note") {
            if m.get("errors").copied().unwrap_or(0.0) > 0.0 {
                return Err(note.replace('_', " "));
            }
        }
        derive(&mut m, scenario);
        let mismatches = m.get("mismatches").copied().unwrap_or(0.0);
        let error = (mismatches > 0.0).then(|| {
            format!(
                "{mismatches} echoes differed from what was sent (first: {})",
                result
                    .get("mismatch")
                    .map_or(String::new(), |m| m.replace('_', " "))
            )
        });
        Ok((m, error))
    }

    /// Runs one of the in-process wspeer binaries pinned to the server CPU, for at most
    /// `limit`.
    fn helper(
        &mut self,
        name: &str,
        args: &[String],
        limit: Duration,
    ) -> Result<Vec<HashMap<String, f64>>, String> {
        let log = self.log_path(name);
        let mut cmd = self.pin("0", &self.bins.join(name));
        cmd.args(args);
        let mut proc = Proc::spawn(cmd, &log)?;
        if !proc.wait_for(limit) {
            return Err(format!("{name} did not finish: {}", proc.tail()));
        }
        let out = proc.output();
        if let Some(err) = out.lines().find_map(|l| l.strip_prefix("ERROR ")) {
            return Err(err.to_string());
        }
        let rows: Vec<HashMap<String, f64>> = out
            .lines()
            .filter_map(parse_result_line)
            .map(|r| {
                r.into_iter()
                    .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k, v)))
                    .collect()
            })
            .collect();
        if rows.is_empty() {
            return Err(format!("{name} printed no result: {}", proc.tail()));
        }
        Ok(rows)
    }
}

/// Rates and percentages from a run's raw counters.
fn derive(m: &mut HashMap<String, f64>, scenario: &Scenario) {
    let count = m.get("count").copied().unwrap_or(0.0);
    let secs = m.get("secs").copied().unwrap_or(f64::NAN);
    let server_cpu = m.get("server_cpu").copied().unwrap_or(f64::NAN);
    let client_cpu = m.get("client_cpu").copied().unwrap_or(f64::NAN);
    if scenario.kind == Kind::Idle {
        let conns = m.get("conns").copied().unwrap_or(f64::NAN);
        let before = m.get("rss_before_kib").copied().unwrap_or(f64::NAN);
        let after = m.get("rss_after_kib").copied().unwrap_or(f64::NAN);
        m.insert("kib_per_conn".into(), (after - before) / conns);
        return;
    }
    m.insert("rate".into(), count / secs);
    m.insert("per_cpu".into(), count / server_cpu);
    m.insert("server_pct".into(), 100.0 * server_cpu / secs);
    m.insert("client_pct".into(), 100.0 * client_cpu / secs);
    if let Kind::Echo { size, .. } = scenario.kind {
        m.insert("mb_per_s".into(), count * size as f64 / secs / 1e6);
        m.insert("mb_per_cpu".into(), count * size as f64 / server_cpu / 1e6);
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some(text)
}

fn machine_info(root: &Path, node: bool, godot: bool) -> Vec<(String, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mhz = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut info = vec![
        (
            "CPU".to_string(),
            format!(
                "{model}{}, {cores} logical CPUs",
                mhz.map(|m| format!(" ({m} MHz)")).unwrap_or_default()
            ),
        ),
        (
            "Memory".into(),
            format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
        ),
        ("Kernel".into(), format!("Linux {kernel}")),
    ];
    if let Some(v) = command_output("rustc", &["-V"]) {
        info.push(("Rust".into(), v.trim().to_string()));
    }
    if node {
        let v = command_output("node", &["-v"]).unwrap_or_default();
        let ws = fs::read_to_string(root.join("bench/node/node_modules/ws/package.json"))
            .ok()
            .and_then(|p| {
                p.lines()
                    .find(|l| l.trim_start().starts_with("\"version\""))
                    .map(|l| l.split('"').nth(3).unwrap_or("?").to_string())
            })
            .unwrap_or_else(|| "?".into());
        info.push(("Node".into(), format!("{} with ws {ws}", v.trim())));
    }
    if godot {
        let v = command_output("godot3-server", &["--version"]).unwrap_or_default();
        let v = v.lines().last().unwrap_or("").trim().to_string();
        info.push(("Godot".into(), format!("godot3-server {v}")));
    }
    info
}

/// What the revision check looks at: everything that decides a figure (the library, its
/// examples, the benchmark itself, the dependency versions).
const MEASURED_PATHS: [&str; 5] = ["src", "examples", "bench", "Cargo.toml", "Cargo.lock"];

/// The commit measured: `(full hash, one-line description, uncommitted files in
/// MEASURED_PATHS)`; `None` outside a git checkout.
fn revision(root: &Path) -> Option<(String, String, Vec<String>)> {
    let root = root.to_str().unwrap_or(".");
    let ok =
        |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty() && !s.contains("fatal"));
    let full = command_output("git", &["-C", root, "rev-parse", "HEAD"]).and_then(ok)?;
    let line = command_output("git", &["-C", root, "log", "-1", "--format=%h %cs"]).and_then(ok)?;
    let mut args = vec![
        "-C",
        root,
        "status",
        "--porcelain",
        "--untracked-files=all",
        "--",
    ];
    args.extend(MEASURED_PATHS);
    let dirty = command_output("git", &args)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.len() > 3)
        .map(|l| l[3..].to_string())
        .collect();
    Some((full, line, dirty))
}

/// The revision line of the report.
pub fn revision_text(commit_line: &str, dirty: &[String]) -> String {
    if commit_line.is_empty() {
        return "not a git checkout".into();
    }
    if dirty.is_empty() {
        format!("commit {commit_line}")
    } else {
        format!(
            "commit {commit_line}, with uncommitted changes in {} file(s) of {}: {}",
            dirty.len(),
            MEASURED_PATHS.join(", "),
            dirty.join(", ")
        )
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `YYYY-MM-DD HH:MM UTC` for now (civil-from-days, proleptic Gregorian).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn list(flag: Option<&str>) -> Option<Vec<String>> {
    flag.map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
}

/// `YYYYMMDD-HHMMZ` for now: the start of a run id.
fn compact_utc_now() -> String {
    let t = utc_now(); // "YYYY-MM-DD HH:MM UTC"
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}Z", &digits[..8], &digits[8..12])
}

/// Where another helper writes the profiles of issue #11; the report includes the file
/// verbatim when it exists.
const PROFILES: &str = "docs/bench/profiles.md";

/// Writes the report (markdown and SVG) of `results`, or prints the markdown. `root` is
/// the workspace root (for [`PROFILES`]).
fn write_report(
    flags: &Flags,
    results: &Results,
    root: &Path,
    default_md: PathBuf,
) -> Result<(), String> {
    let scenario_list = scenarios();
    let profiles = fs::read_to_string(root.join(PROFILES)).ok();
    let markdown = report::markdown(results, &scenario_list, profiles.as_deref());
    if flags.has("--no-docs") {
        println!("{markdown}");
        return Ok(());
    }
    let md_path = flags.get("--out").map(PathBuf::from).unwrap_or(default_md);
    let svg_path = flags
        .get("--svg")
        .map(PathBuf::from)
        .unwrap_or_else(|| md_path.with_extension("svg"));
    if let Some(dir) = md_path.parent() {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    report::plot(results, &scenario_list, &svg_path)?;
    fs::write(&md_path, markdown).map_err(|e| format!("{}: {e}", md_path.display()))?;
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(())
}

/// Echo mismatches over all runs: the run fails (exit status 1) when there is any.
fn total_mismatches(results: &Results) -> f64 {
    results
        .runs
        .iter()
        .filter_map(|r| r.m.get("mismatches"))
        .sum()
}

fn run() -> Result<(), String> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let flags = Flags::parse(&["--quick", "--no-docs", "--no-pin"])?;
    if let Some(dir) = flags.get("--write-pki") {
        write_test_pki(Path::new(dir))?;
        eprintln!("wrote ca.pem, cert.pem and key.pem into {dir}");
        return Ok(());
    }
    flags.check_known(&[
        "--quick",
        "--no-docs",
        "--no-pin",
        "--rounds",
        "--secs",
        "--warmup",
        "--idle-conns",
        "--poll-n",
        "--poll-k",
        "--poll-heartbeat-ms",
        "--poll-calls",
        "--hb-peers",
        "--hb-interval-ms",
        "--hb-blocks",
        "--hb-block-secs",
        "--alloc-msgs",
        "--servers",
        "--scenarios",
        "--note",
        "--raw",
        "--from",
        "--out",
        "--svg",
        "--echo-server",
        "--wspeer-big-args",
    ])?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_path_buf();
    if let Some(raw) = flags.get("--from") {
        let text = fs::read_to_string(raw).map_err(|e| format!("{raw}: {e}"))?;
        let results = records::from_jsonl(&text).map_err(|e| format!("{raw}: {e}"))?;
        write_report(&flags, &results, &root, root.join("docs/performance.md"))?;
        let bad = total_mismatches(&results);
        if bad > 0.0 {
            return Err(format!(
                "{bad} echoes in these records differed from what was sent"
            ));
        }
        return Ok(());
    }
    let quick = flags.has("--quick");
    let rounds: usize = flags.value("--rounds", if quick { 1 } else { 5 })?;
    let secs: f64 = flags.value("--secs", if quick { 0.6 } else { 5.0 })?;
    let warmup: f64 = flags.value("--warmup", if quick { 0.2 } else { 1.0 })?;
    let idle_conns: usize = flags.value("--idle-conns", if quick { 2_000 } else { 10_000 })?;
    let poll_ns = flags.get("--poll-n").unwrap_or("100,10000").to_string();
    let poll_ks = flags.get("--poll-k").unwrap_or("0,10,100").to_string();
    let poll_heartbeat_ms: u64 = flags.value("--poll-heartbeat-ms", 1000)?;
    let poll_calls: usize = flags.value("--poll-calls", if quick { 500 } else { 5_000 })?;
    let hb_peers: usize = flags.value("--hb-peers", if quick { 1_000 } else { 10_000 })?;
    let hb_interval_ms: u64 =
        flags.value("--hb-interval-ms", if quick { 3_000 } else { 30_000 })?;
    let hb_blocks: usize = flags.value("--hb-blocks", if quick { 2 } else { 5 })?;
    let hb_block_secs: f64 = flags.value("--hb-block-secs", if quick { 0.5 } else { 3.0 })?;
    if hb_interval_ms == 0 || hb_blocks == 0 || hb_block_secs <= 0.0 {
        return Err("--hb-interval-ms, --hb-blocks and --hb-block-secs must be above 0".into());
    }
    let alloc_msgs: usize = flags.value("--alloc-msgs", if quick { 2_000 } else { 20_000 })?;
    let only_servers = list(flags.get("--servers"));
    let only_scenarios = list(flags.get("--scenarios"));

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bins = exe.parent().ok_or("no binary directory")?.to_path_buf();
    let echo_server = flags
        .get("--echo-server")
        .map(PathBuf::from)
        .unwrap_or_else(|| bins.join("examples/echo_server"));
    for needed in [&echo_server, &bins.join("loadgen"), &bins.join("tt_echo")] {
        if !needed.exists() {
            return Err(format!(
                "{} is missing: build with `cargo build --release -p wspeer-bench --bins` and \
                 `cargo build --release --example echo_server` (bench/run.sh does both)",
                needed.display()
            ));
        }
    }
    let nofile = raise_nofile_limit();
    if nofile < idle_conns as u64 + 256 {
        return Err(format!(
            "the open-file limit is {nofile}; the idle scenario needs {} (raise `ulimit -n`)",
            idle_conns + 256
        ));
    }

    // Where this run's records and report go: docs/ for a full run, target/bench/ for a
    // --quick one (a smoke check is never published by accident).
    let run_id = format!("{}{}", compact_utc_now(), if quick { "-quick" } else { "" });
    let out_dir = if quick {
        bins.parent().unwrap_or(&bins).join("bench")
    } else {
        root.join("docs")
    };
    let raw_path = flags.get("--raw").map(PathBuf::from).unwrap_or_else(|| {
        if quick {
            out_dir.join(format!("{run_id}.jsonl"))
        } else {
            out_dir.join("bench").join(format!("{run_id}.jsonl"))
        }
    });
    let raw_shown = raw_path
        .strip_prefix(&root)
        .unwrap_or(&raw_path)
        .display()
        .to_string();

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset_ok = Command::new("taskset")
        .args(["-c", "1", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let pinned = !flags.has("--no-pin") && cpus >= 2 && taskset_ok;

    // Optional rows.
    let mut skipped = Vec::new();
    let node_ok = command_output("node", &["-v"]).is_some()
        && root
            .join("bench/node/node_modules/ws/package.json")
            .exists();
    if !node_ok {
        skipped.push(
            "Node ws row skipped: `node` or bench/node/node_modules/ws is missing \
             (bench/run.sh runs `npm install` in bench/node when npm is present)"
                .to_string(),
        );
    }
    let godot_ok = command_output("godot3-server", &["--version"]).is_some();
    if !godot_ok {
        skipped.push(
            "Godot 3 row skipped: `godot3-server` is not installed \
             (Debian: `apt-get install godot3-server`)"
                .to_string(),
        );
    }
    let servers: Vec<Srv> = Srv::ALL
        .into_iter()
        .filter(|s| match s {
            Srv::Node => node_ok,
            Srv::Godot => godot_ok,
            _ => true,
        })
        .filter(|s| {
            only_servers
                .as_ref()
                .is_none_or(|o| o.iter().any(|k| k == s.key()))
        })
        .collect();
    for note in &skipped {
        eprintln!("note: {note}");
    }

    // wspeer's example keeps Godot's 64 KiB message limit unless it has a flag to raise it.
    let help = command_output(echo_server.to_str().unwrap_or(""), &["--help"]).unwrap_or_default();
    let big = BIG_MAX_MESSAGE.to_string();
    let wspeer_big_args: Vec<String> = match flags.get("--wspeer-big-args") {
        Some(a) => a.split_whitespace().map(String::from).collect(),
        None if help.contains("--max-message") => vec!["--max-message".into(), big],
        None if help.contains("--buffer-size") => vec!["--buffer-size".into(), big],
        None => Vec::new(),
    };

    let scratch = std::env::temp_dir().join(format!("wspeer-bench-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    *SCRATCH.lock().map_err(|_| "poisoned")? = Some(scratch.clone());
    write_test_pki(&scratch)?;

    let mut bench = Bench {
        bins,
        root: root.clone(),
        scratch,
        echo_server,
        pinned,
        wspeer_big_args,
        warmup,
        secs,
        idle_conns,
        log_seq: 0,
    };

    let all = scenarios();
    let chosen: Vec<&Scenario> = all
        .iter()
        .filter(|s| {
            only_scenarios
                .as_ref()
                .is_none_or(|o| o.iter().any(|k| k == s.key))
        })
        .collect();
    let servers_of =
        |s: &Scenario| -> Vec<Srv> { servers.iter().copied().filter(|srv| s.runs(*srv)).collect() };
    let rounds_of = |s: &Scenario| if s.kind == Kind::Idle { 1 } else { rounds };
    let total: usize = chosen
        .iter()
        .map(|s| servers_of(s).len() * rounds_of(s))
        .sum();
    let started = utc_now();
    let load_before = loadavg();
    let clock = Instant::now();
    eprintln!(
        "wspeer bench {run_id}: {total} runs ({rounds} round(s), {warmup} s warm-up + {secs} s \
         each), {}",
        if pinned {
            "servers on CPU 0, load generator on CPU 1"
        } else {
            "not pinned"
        }
    );
    let mut runs = Vec::new();
    let mut n = 0;
    for scenario in &chosen {
        for round in 0..rounds_of(scenario) {
            for (order, srv) in rotated(&servers_of(scenario), round)
                .into_iter()
                .enumerate()
            {
                n += 1;
                let (m, error) = match bench.run_one(scenario, srv) {
                    Ok(done) => done,
                    Err(e) => (HashMap::new(), Some(e)),
                };
                let mut line = if m.is_empty() {
                    String::new()
                } else {
                    report::progress_line(scenario, &m)
                };
                if let Some(e) = &error {
                    line = format!("FAILED: {e} {line}");
                }
                eprintln!(
                    "[{n}/{total}] {} | {} | round {}: {line}",
                    scenario.key,
                    srv.key(),
                    round + 1
                );
                runs.push(Run {
                    scenario: scenario.key,
                    srv,
                    round,
                    order,
                    m,
                    error,
                });
            }
        }
    }

    let want = |k: &str| {
        only_scenarios
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == k))
    };
    let (mut poll, mut poll_error) = (Vec::new(), None);
    if want("poll") {
        eprintln!("poll() cost with {poll_ns} peers, {poll_ks} of them ready ...");
        let mut args = vec![
            "--n".to_string(),
            poll_ns.clone(),
            "--k".into(),
            poll_ks.clone(),
            "--heartbeat-ms".into(),
            poll_heartbeat_ms.to_string(),
            "--calls".into(),
            poll_calls.to_string(),
            "--loadgen".into(),
            bench.bins.join("loadgen").display().to_string(),
        ];
        if pinned {
            args.extend(["--client-cpu".to_string(), "1".to_string()]);
        }
        match bench.helper("poll_cost", &args, Duration::from_secs(300)) {
            Ok(rows) => {
                for r in &rows {
                    let g = |k: &str| r.get(k).copied().unwrap_or(f64::NAN);
                    eprintln!(
                        "  {} peers, {} ready, heartbeat {} ms: median {:.3} µs",
                        g("n"),
                        g("k"),
                        g("heartbeat_ms"),
                        g("median_us")
                    );
                }
                poll = rows;
            }
            Err(e) => {
                eprintln!("  FAILED: {e}");
                poll_error = Some(e);
            }
        }
    }
    let (mut heartbeat, mut heartbeat_error) = (Vec::new(), None);
    if want("heartbeat") && hb_peers > 0 {
        eprintln!(
            "heartbeat cost: 2 servers × {hb_peers} peers, {hb_interval_ms} ms heartbeat, \
             60 frames/s, {hb_blocks} × 3 blocks of {hb_block_secs} s ..."
        );
        let mut args = vec![
            "--mode".to_string(),
            "heartbeat".into(),
            "--n".into(),
            hb_peers.to_string(),
            "--heartbeat-ms".into(),
            hb_interval_ms.to_string(),
            "--blocks".into(),
            hb_blocks.to_string(),
            "--block-secs".into(),
            hb_block_secs.to_string(),
            "--loadgen".into(),
            bench.bins.join("loadgen").display().to_string(),
        ];
        if pinned {
            args.extend(["--client-cpu".to_string(), "1".to_string()]);
        }
        // Opening the heartbeat peers takes one interval; then the blocks.
        let limit = Duration::from_secs_f64(
            2.0 * hb_interval_ms as f64 / 1000.0 + 3.0 * hb_blocks as f64 * hb_block_secs + 240.0,
        );
        match bench.helper("poll_cost", &args, limit) {
            Ok(rows) => {
                for r in &rows {
                    let g = |k: &str| r.get(k).copied().unwrap_or(f64::NAN);
                    eprintln!(
                        "  {}: {:.2} pings/frame, ping round {:.2} µs, echo {:.2} µs, ratio {:.2}, \
                         echo to a cold peer {:.2} µs, ratio {:.2}",
                        if r.contains_key("all") {
                            "all blocks".to_string()
                        } else {
                            format!("block {}", g("block"))
                        },
                        g("pings"),
                        g("ping_round_us"),
                        g("echo_us"),
                        g("ratio"),
                        g("spread_echo_us"),
                        g("spread_ratio")
                    );
                }
                heartbeat = rows;
            }
            Err(e) => {
                eprintln!("  FAILED: {e}");
                heartbeat_error = Some(e);
            }
        }
    }
    let (mut alloc, mut alloc_error) = (Vec::new(), None);
    if want("alloc") {
        eprintln!("allocations per echoed message, examples/echo_server's configuration ...");
        let args = vec![
            "--msgs".to_string(),
            alloc_msgs.to_string(),
            "--warmup".into(),
            (alloc_msgs / 10).max(100).to_string(),
            "--idle".into(),
            (if quick { 500 } else { 2_000 }).to_string(),
        ];
        match bench.helper("alloc_count", &args, Duration::from_secs(300)) {
            Ok(rows) => {
                for r in rows.iter().filter(|r| r.contains_key("server_allocs")) {
                    let g = |k: &str| r.get(k).copied().unwrap_or(f64::NAN);
                    eprintln!(
                        "  {} conn(s) × {} in flight, {} B: server {:.2} allocations/message",
                        g("conns"),
                        g("inflight"),
                        g("size"),
                        g("server_allocs")
                    );
                }
                alloc = rows;
            }
            Err(e) => {
                eprintln!("  FAILED: {e}");
                alloc_error = Some(e);
            }
        }
    }
    let load_after = loadavg();

    let (commit, commit_line, dirty) = revision(&root).unwrap_or_default();
    let mut machine = machine_info(&root, node_ok, godot_ok);
    machine.insert(0, ("wspeer".into(), revision_text(&commit_line, &dirty)));
    machine.push((
        "Load average (1, 5, 15 min)".into(),
        format!("{load_before} before the run, {load_after} after"),
    ));
    let command = std::env::var("BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!(
            "cargo run --release -p wspeer-bench --bin bench -- {}",
            args.join(" ")
        )
    });
    let results = Results {
        settings: Settings {
            quick,
            rounds,
            warmup,
            secs,
            idle_conns,
            poll_ns,
            poll_ks,
            poll_heartbeat_ms,
            poll_calls,
            hb_peers,
            hb_interval_ms,
            hb_blocks,
            hb_block_secs,
            alloc_msgs,
            note: flags.get("--note").map(String::from),
            pinned,
            command: command.trim().to_string(),
            run_id,
            raw_path: raw_shown,
        },
        commit,
        dirty,
        machine,
        servers,
        skipped,
        runs,
        poll,
        poll_error,
        heartbeat,
        heartbeat_error,
        alloc,
        alloc_error,
        started,
        elapsed: clock.elapsed(),
    };
    if let Some(dir) = raw_path.parent() {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    fs::write(&raw_path, records::to_jsonl(&results))
        .map_err(|e| format!("{}: {e}", raw_path.display()))?;
    eprintln!("wrote the raw records to {}", raw_path.display());
    write_report(&flags, &results, &root, out_dir.join("performance.md"))?;
    eprintln!("done in {:.0} s", results.elapsed.as_secs_f64());
    let bad = total_mismatches(&results);
    if bad > 0.0 {
        return Err(format!(
            "{bad} echoes differed from what was sent (see the failed runs above)"
        ));
    }
    Ok(())
}

/// `servers` rotated left by `round`: each server leads one round in turn, so no server is
/// always measured right after the same neighbour or always first after a scenario change.
pub fn rotated(servers: &[Srv], round: usize) -> Vec<Srv> {
    let mut v = servers.to_vec();
    if !v.is_empty() {
        let by = round % v.len();
        v.rotate_left(by);
    }
    v
}

/// Median, minimum and maximum of metric `key` over the successful runs of one server in
/// one scenario.
pub fn stat(results: &Results, scenario: &str, srv: Srv, key: &str) -> Option<(f64, f64, f64)> {
    let values: Vec<f64> = results
        .runs
        .iter()
        .filter(|r| r.scenario == scenario && r.srv == srv && r.error.is_none())
        .filter_map(|r| r.m.get(key).copied())
        .filter(|v| v.is_finite())
        .collect();
    summary(&values)
}

fn main() -> ExitCode {
    let _ = ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: stopping every server and load generator");
        kill_everything();
        std::process::exit(130);
    });
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_everything();
        default_hook(info);
    }));
    let result = run();
    kill_everything();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_leads_one_round_in_turn() {
        let s = [Srv::Wspeer, Srv::TtMulti, Srv::FwsCurrent];
        assert_eq!(rotated(&s, 0), s);
        assert_eq!(rotated(&s, 1), [Srv::TtMulti, Srv::FwsCurrent, Srv::Wspeer]);
        assert_eq!(rotated(&s, 2), [Srv::FwsCurrent, Srv::Wspeer, Srv::TtMulti]);
        assert_eq!(rotated(&s, 3), s);
        assert!(rotated(&[], 4).is_empty());
    }

    #[test]
    fn tls_servers_run_only_where_their_scenario_lists_them() {
        let all = scenarios();
        let get = |key: &str| all.iter().find(|s| s.key == key).unwrap();
        let pipelined = get("c1000x4x64");
        assert_eq!(
            pipelined.kind,
            Kind::Echo {
                conns: 1000,
                size: 64,
                inflight: 4
            }
        );
        let plain: Vec<Srv> = Srv::ALL.into_iter().filter(|s| !s.tls()).collect();
        assert!(plain.iter().all(|s| pipelined.runs(*s)));
        assert!(!pipelined.runs(Srv::WspeerWss) && !pipelined.runs(Srv::FwsCurrentWss));
        let wss = get("c100x1k");
        for srv in [
            Srv::WspeerWss,
            Srv::FwsCurrentWss,
            Srv::FwsMultiWss,
            Srv::Wspeer,
        ] {
            assert!(wss.runs(srv), "{srv:?}");
        }
        let setup = get("setup");
        assert!(setup.runs(Srv::WspeerWss) && !setup.runs(Srv::FwsMultiWss));
        // Every key is unique, for --servers and the records.
        let mut keys: Vec<&str> = Srv::ALL.iter().map(|s| s.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), Srv::ALL.len());
    }

    #[test]
    fn the_revision_line_names_uncommitted_files() {
        assert_eq!(
            revision_text("abc 2026-01-01", &[]),
            "commit abc 2026-01-01"
        );
        let dirty = revision_text("abc 2026-01-01", &["bench/run.sh".into()]);
        assert!(
            dirty.contains("bench/run.sh") && dirty.contains("bench"),
            "{dirty}"
        );
        assert_eq!(revision_text("", &[]), "not a git checkout");
    }
}
