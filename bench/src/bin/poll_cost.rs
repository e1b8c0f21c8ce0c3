//! The cost of one `WebSocketServer::poll()` with nothing ready, against the number of
//! idle peers: a wspeer server in this process, N idle connections opened by the load
//! generator (`loadgen --mode idle --hold`) in another process, then many timed `poll()`
//! calls. Flat numbers across N mean `poll()` is O(ready), not O(peers).
//!
//! ```text
//! poll_cost [--n 100,1000,10000] [--calls 20000] [--loadgen PATH] [--client-cpu 1]
//! ```
//! Prints `RESULT mode=poll n=N calls=C median_us=.. mean_us=.. p99_us=.. events=..`.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wspeer::WebSocketServer;
use wspeer_bench::{Flags, quantile, raise_nofile_limit};

fn measure(n: usize, calls: usize, loadgen: &str, client_cpu: Option<&str>) -> Result<(), String> {
    let mut server = WebSocketServer::new();
    server
        .listen_on("127.0.0.1", 0)
        .map_err(|e| format!("listen: {e}"))?;
    let addr = server.local_addr().ok_or("no address")?;
    let mut cmd = match client_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, loadgen]);
            c
        }
        None => Command::new(loadgen),
    };
    cmd.args(["--addr", &addr.to_string(), "--mode", "idle", "--hold"])
        .args(["--conns", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{loadgen}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let result = (|| {
        // Serve the handshakes until the client says all are open.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut ready = false;
        while !ready || server.peer_count() < n {
            server.poll_with_timeout(Duration::from_millis(2));
            while server.pop_event().is_some() {}
            while let Ok(line) = rx.try_recv() {
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
        for _ in 0..100 {
            server.poll();
            while server.pop_event().is_some() {}
        }
        let mut times = Vec::with_capacity(calls);
        let mut events = 0usize;
        let all = Instant::now();
        for _ in 0..calls {
            let t = Instant::now();
            server.poll();
            times.push(t.elapsed().as_secs_f64() * 1e6);
            while server.pop_event().is_some() {
                events += 1;
            }
        }
        let mean = all.elapsed().as_secs_f64() * 1e6 / calls as f64;
        times.sort_by(f64::total_cmp);
        println!(
            "RESULT mode=poll n={n} peers={} calls={calls} median_us={:.3} mean_us={mean:.3} \
             p99_us={:.3} events={events}",
            server.peer_count(),
            quantile(&times, 0.5),
            quantile(&times, 0.99),
        );
        Ok(())
    })();
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        server.poll_with_timeout(Duration::from_millis(5));
        while server.pop_event().is_some() {}
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn run() -> Result<(), String> {
    let flags = Flags::parse(&[])?;
    flags.check_known(&["--n", "--calls", "--loadgen", "--client-cpu"])?;
    let ns: Vec<usize> = flags
        .get("--n")
        .unwrap_or("100,1000,10000")
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| format!("bad --n entry {s:?}")))
        .collect::<Result<_, _>>()?;
    let calls: usize = flags.value("--calls", 20_000)?;
    let default_loadgen = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("loadgen");
    let loadgen = flags
        .get("--loadgen")
        .map(String::from)
        .unwrap_or_else(|| default_loadgen.display().to_string());
    raise_nofile_limit();
    for n in ns {
        measure(n, calls.max(1), &loadgen, flags.get("--client-cpu"))?;
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
