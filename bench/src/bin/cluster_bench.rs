//! Cross-node chat latency and throughput over the Redis room bus, against the same room on one node.
//!
//! Starts its own `redis-server` and two `examples/cluster_node` processes on loopback,
//! then measures, from one client process (wspeer clients, busy-polled):
//!
//! - `single`: the sender and the receiver are members of the same room on node 1 (node 1
//!   still publishes every line to Redis: it does not know whether other nodes have
//!   members);
//! - `cross`: the sender is on node 1, the receiver on node 2: every line goes client →
//!   node 1 → Redis → node 2 → client.
//!
//! Latency: one line in flight at a time (the next is sent when the receiver has the
//! previous), `--samples` lines after `--warmup` unmeasured ones; the time from
//! `send_text` to its arrival at the receiving client. Throughput: `--count` lines of
//! `--size` bytes with at most `--window` in flight (sent and not yet received), lines
//! per second from the first send to the last arrival.
//!
//! ```text
//! cluster_bench [--node-bin target/release/examples/cluster_node] [--samples 2000]
//!               [--warmup 200] [--count 20000] [--window 64] [--size 64] [--raw FILE]
//! ```
//! Prints one `RESULT` line per mode and measure; `--raw FILE` appends JSON lines: the
//! summaries, and every latency sample in microseconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use wspeer::{State, WebSocketPeer};

struct Options {
    node_bin: String,
    samples: usize,
    warmup: usize,
    count: usize,
    window: usize,
    size: usize,
    raw: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        node_bin: "target/release/examples/cluster_node".into(),
        samples: 2000,
        warmup: 200,
        count: 20_000,
        window: 64,
        size: 64,
        raw: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|_| format!("bad number {v:?}"));
        match arg.as_str() {
            "--node-bin" => options.node_bin = value("--node-bin")?,
            "--samples" => options.samples = number(value("--samples")?)?,
            "--warmup" => options.warmup = number(value("--warmup")?)?,
            "--count" => options.count = number(value("--count")?)?,
            "--window" => options.window = number(value("--window")?)?,
            "--size" => options.size = number(value("--size")?)?,
            "--raw" => options.raw = Some(value("--raw")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_redis() -> Result<(Process, u16), String> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e} (apt-get install redis-server)"))?;
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut probe) = TcpStream::connect(("127.0.0.1", port)) {
            probe.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
            let mut answer = [0u8; 7];
            if probe.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n" {
                return Ok((process, port));
            }
        }
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_node(bin: &str, name: &str, redis_port: u16) -> Result<(Process, u16), String> {
    let mut child = Command::new(bin)
        .args(["--port", "0", "--node", name])
        .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{bin}: {e} (cargo build --release --example cluster_node)"))?;
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let prefix = format!("Node {name} listening on ws://");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .ok_or("the node printed nothing")?
        .map_err(|e| e.to_string())?;
    let addr = line
        .strip_prefix(&prefix)
        .ok_or(format!("unexpected first line {line:?}"))?;
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("no port")?;
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    Ok((process, port))
}

fn connect(port: u16, room: &str, name: &str) -> Result<WebSocketPeer, String> {
    let mut peer = WebSocketPeer::new();
    peer.config_mut().max_queued_packets = 4096;
    peer.connect_to_url(
        &format!("ws://127.0.0.1:{port}/?room={room}&name={name}"),
        None,
    )
    .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while peer.get_ready_state() != State::Open {
        peer.poll();
        if Instant::now() > deadline {
            return Err(format!(
                "{name}: not connected: {:?}",
                peer.get_last_error()
            ));
        }
    }
    Ok(peer)
}

/// Lines look like `s: <index> <padding>`: the index of a received line, if it is one.
fn index_of(text: &str) -> Option<usize> {
    text.strip_prefix("s: ")?.split(' ').next()?.parse().ok()
}

fn line(index: usize, size: usize) -> String {
    let mut text = format!("{index} ");
    while text.len() < size {
        text.push('x');
    }
    text
}

/// Polls both clients until the receiver has a line with index `want` (returns when it
/// arrived); other lines are ignored.
fn wait_for(sender: &mut WebSocketPeer, receiver: &mut WebSocketPeer, want: usize) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        sender.poll();
        while sender.recv().is_some() {}
        receiver.poll();
        while let Some(packet) = receiver.recv() {
            if packet.as_text().and_then(index_of) == Some(want) {
                return Instant::now();
            }
        }
        assert!(Instant::now() < deadline, "line {want} never arrived");
    }
}

/// Sends until the receiver hears the sender: the receiving node's subscription is
/// confirmed asynchronously.
fn warm_up(sender: &mut WebSocketPeer, receiver: &mut WebSocketPeer, size: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut index = 1_000_000_000;
    'outer: loop {
        sender.send_text(&line(index, size)).unwrap();
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            sender.poll();
            while sender.recv().is_some() {}
            receiver.poll();
            while let Some(packet) = receiver.recv() {
                if packet.as_text().and_then(index_of).is_some() {
                    break 'outer;
                }
            }
        }
        index += 1;
        assert!(
            Instant::now() < deadline,
            "the receiver never heard the sender"
        );
    }
    // Drain the warm-up copies still on the way.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        sender.poll();
        while sender.recv().is_some() {}
        receiver.poll();
        while receiver.recv().is_some() {}
    }
}

fn latency(
    sender: &mut WebSocketPeer,
    receiver: &mut WebSocketPeer,
    options: &Options,
) -> Vec<f64> {
    let mut samples = Vec::with_capacity(options.samples);
    for index in 0..options.warmup + options.samples {
        let sent = Instant::now();
        sender.send_text(&line(index, options.size)).unwrap();
        let arrived = wait_for(sender, receiver, index);
        if index >= options.warmup {
            samples.push((arrived - sent).as_secs_f64() * 1e6);
        }
    }
    samples
}

fn throughput(sender: &mut WebSocketPeer, receiver: &mut WebSocketPeer, options: &Options) -> f64 {
    let base = 2_000_000;
    let start = Instant::now();
    let (mut sent, mut received) = (0, 0);
    let deadline = start + Duration::from_secs(120);
    while received < options.count {
        while sent < options.count && sent - received < options.window {
            sender.send_text(&line(base + sent, options.size)).unwrap();
            sent += 1;
        }
        sender.poll();
        while sender.recv().is_some() {}
        receiver.poll();
        while let Some(packet) = receiver.recv() {
            if packet
                .as_text()
                .and_then(index_of)
                .is_some_and(|i| i >= base)
            {
                received += 1;
            }
        }
        assert!(
            Instant::now() < deadline,
            "throughput run stuck at {received}"
        );
    }
    options.count as f64 / start.elapsed().as_secs_f64()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn run(options: Options) -> Result<(), String> {
    let (_redis, redis_port) = start_redis()?;
    let (_n1, port1) = start_node(&options.node_bin, "n1", redis_port)?;
    let (_n2, port2) = start_node(&options.node_bin, "n2", redis_port)?;
    let mut raw = match &options.raw {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{path}: {e}"))?,
        ),
        None => None,
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (mode, receiver_port, room) in [("single", port1, "single"), ("cross", port2, "cross")] {
        let mut sender = connect(port1, room, "s")?;
        let mut receiver = connect(receiver_port, room, "r")?;
        warm_up(&mut sender, &mut receiver, options.size);
        let mut samples = latency(&mut sender, &mut receiver, &options);
        let rate = throughput(&mut sender, &mut receiver, &options);
        let raw_samples: Vec<String> = samples.iter().map(|s| format!("{s:.1}")).collect();
        samples.sort_by(f64::total_cmp);
        let (p50, p99) = (quantile(&samples, 0.5), quantile(&samples, 0.99));
        let summary = format!(
            "mode={mode} size={} samples={} p50_us={p50:.0} p99_us={p99:.0} max_us={:.0} \
             count={} window={} lines_per_s={rate:.0}",
            options.size,
            samples.len(),
            samples[samples.len() - 1],
            options.count,
            options.window,
        );
        println!("RESULT {summary}");
        if let Some(file) = raw.as_mut() {
            writeln!(
                file,
                "{{\"record\":\"cluster\",\"started\":{started},\"mode\":\"{mode}\",\
                 \"size\":{},\"p50_us\":{p50:.1},\"p99_us\":{p99:.1},\"count\":{},\
                 \"window\":{},\"lines_per_s\":{rate:.0},\"latency_us\":[{}]}}",
                options.size,
                options.count,
                options.window,
                raw_samples.join(",")
            )
            .map_err(|e| e.to_string())?;
        }
        let _ = sender.close(1000, "");
        let _ = receiver.close(1000, "");
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cluster_bench: {message}");
            ExitCode::FAILURE
        }
    }
}
