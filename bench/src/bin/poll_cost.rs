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
//! ```
//! Prints `RESULT mode=poll n=N k=K heartbeat_ms=H peers=.. calls=C median_us=..
//! mean_us=.. p99_us=.. ready=..` (`ready`: messages the timed poll delivered, mean).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wspeer::{ServerEvent, WebSocketServer};
use wspeer_bench::{Flags, quantile, raise_nofile_limit};

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

    /// Asks for one message on each of the first `k` connections; returns once written.
    fn send(&mut self, k: usize) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "send {k}").map_err(|e| format!("loadgen stdin: {e}"))?;
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| "the load generator did not answer `send`".to_string())?;
            if line.starts_with("SENT") {
                return Ok(());
            }
            if line.starts_with("ERROR") {
                return Err(format!("loadgen: {line}"));
            }
        }
    }
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
    let mut idle = Idle::start(plan.loadgen, plan.client_cpu, &addr, n)?;
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
                idle.send(k)?;
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
    drop(idle.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    while idle.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        server.poll_with_timeout(Duration::from_millis(5));
        drain(&mut server);
    }
    let _ = idle.child.kill();
    let _ = idle.child.wait();
    result
}

fn run() -> Result<(), String> {
    let flags = Flags::parse(&[])?;
    flags.check_known(&[
        "--n",
        "--k",
        "--heartbeat-ms",
        "--calls",
        "--loadgen",
        "--client-cpu",
    ])?;
    let ns = flags.numbers("--n", "100,10000")?;
    let ks = flags.numbers("--k", "0,10,100")?;
    let heartbeat_ms: u64 = flags.value("--heartbeat-ms", 1000)?;
    let calls: usize = flags.value("--calls", 5_000)?;
    let default_loadgen = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("loadgen");
    let loadgen = flags
        .get("--loadgen")
        .map(String::from)
        .unwrap_or_else(|| default_loadgen.display().to_string());
    raise_nofile_limit();
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
