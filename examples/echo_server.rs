//! The headless echo server: the seed page's minimal server, in Rust.
//!
//! ```text
//! cargo run --release --example echo_server -- [--port 9080] [--bind 127.0.0.1]
//!     [--cert FILE --key FILE] [--protocol NAME]... [--quiet] [--max-message BYTES]
//! ```
//! `--max-message` raises the largest message echoed (default 65535, Godot's).
//! Echoes text as text and binary as binary. Ctrl-C closes every client with 1001 and exits.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wspeer::{
    Error, Packet, ServerConfig, ServerEvent, TlsOptions, WebSocketPeer, WebSocketServer,
};

struct Options {
    port: u16,
    bind: String,
    cert: Option<String>,
    key: Option<String>,
    protocols: Vec<String>,
    quiet: bool,
    max_message: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        port: 9080,
        bind: "127.0.0.1".into(),
        cert: None,
        key: None,
        protocols: Vec::new(),
        quiet: false,
        max_message: wspeer::DEFAULT_BUFFER_SIZE,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                options.port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "--bind" => options.bind = value("--bind")?,
            "--cert" => options.cert = Some(value("--cert")?),
            "--key" => options.key = Some(value("--key")?),
            "--protocol" => options.protocols.push(value("--protocol")?),
            "--quiet" => options.quiet = true,
            "--max-message" => {
                let v = value("--max-message")?;
                options.max_message = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("bad --max-message {v:?}"))?;
            }
            "-h" | "--help" => {
                return Err("usage: echo_server [--port 9080] [--bind 127.0.0.1] \
                            [--cert FILE --key FILE] [--protocol NAME]... [--quiet] \
                            [--max-message BYTES]"
                    .into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if options.cert.is_some() != options.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    Ok(options)
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// Echoes what `peer` has queued, in order. A packet that does not fit the outbound budget
/// waits in `stalled`, and reading from that client stops until it goes out: the client is
/// slowed down by TCP instead of losing echoes.
fn pump(id: i32, peer: &mut WebSocketPeer, stalled: &mut HashMap<i32, Packet>, quiet: bool) {
    loop {
        let packet = match stalled.remove(&id) {
            Some(packet) => packet,
            None => match peer.recv() {
                Some(packet) => {
                    if !quiet {
                        println!(
                            "Got data from client {id}: {} ... echoing",
                            String::from_utf8_lossy(packet.data())
                        );
                    }
                    packet
                }
                None => return,
            },
        };
        match peer.send_packet(&packet) {
            Ok(()) => {}
            Err(Error::OutboundBufferFull { .. } | Error::OutboundQueueFull { .. }) => {
                stalled.insert(id, packet);
                return;
            }
            Err(e) => {
                eprintln!("Cannot echo to client {id}: {e}");
                return;
            }
        }
    }
}

/// The server's settings for `--max-message` and `--protocol`. Shared with the benchmark
/// (`bench/src/bin/alloc_count.rs` and `poll_cost.rs` include this file), so that what it
/// measures is this configuration.
pub fn server_config(max_message: usize, protocols: &[String]) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.peer.supported_protocols = protocols.to_vec();
    // Both directions: an echo must fit on the way back too.
    config.peer.inbound_buffer_size = max_message;
    config.peer.outbound_buffer_size = max_message.max(wspeer::DEFAULT_BUFFER_SIZE);
    // This loop polls again as soon as it has handled the events, so holding writes until
    // then costs no latency and lets all echoes to one client share a system call.
    config.peer.batch_writes = true;
    config
}

/// Handles every event of the last poll and retries the echoes waiting in `stalled`: the
/// body of the server loop between two polls (shared with the benchmark, like
/// [`server_config`]).
pub fn handle_events(
    server: &mut WebSocketServer,
    stalled: &mut HashMap<i32, Packet>,
    quiet: bool,
) {
    while let Some(event) = server.pop_event() {
        match event {
            ServerEvent::ClientConnected { id, protocol } => {
                println!("Client {id} connected with protocol: {protocol}");
            }
            ServerEvent::ClientCloseRequest { id, code, reason } => {
                println!("Client {id} disconnecting with code: {code}, reason: {reason}");
            }
            ServerEvent::ClientDisconnected { id, was_clean } => {
                stalled.remove(&id);
                println!("Client {id} disconnected, clean: {was_clean}");
            }
            ServerEvent::DataReceived { id } if !stalled.contains_key(&id) => {
                if let Some(peer) = server.get_peer(id) {
                    pump(id, peer, stalled, quiet);
                }
            }
            _ => {}
        }
    }
    let waiting: Vec<i32> = stalled.keys().copied().collect();
    for id in waiting {
        if let Some(peer) = server.get_peer(id) {
            pump(id, peer, stalled, quiet);
        }
    }
}

fn run(options: Options) -> Result<(), String> {
    let config = server_config(options.max_message, &options.protocols);
    let mut server = WebSocketServer::with_config(config);
    let scheme = if let (Some(cert), Some(key)) = (&options.cert, &options.key) {
        let tls = TlsOptions::server(&read(cert)?, &read(key)?).map_err(|e| e.to_string())?;
        server
            .set_tls_options(Some(tls))
            .map_err(|e| e.to_string())?;
        "wss"
    } else {
        "ws"
    };
    server
        .listen_on(&options.bind, options.port)
        .map_err(|e| format!("Unable to start server: {e}"))?;
    let addr = server.local_addr().ok_or("no local address")?;
    println!("Listening on {scheme}://{addr}");

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;

    let mut stalled: HashMap<i32, Packet> = HashMap::new();
    let mut stopping_since: Option<Instant> = None;
    loop {
        server.poll_with_timeout(Duration::from_millis(10));
        handle_events(&mut server, &mut stalled, options.quiet);
        if stop.load(Ordering::SeqCst) && stopping_since.is_none() {
            println!("Stopping: closing {} client(s)", server.peer_count());
            server.stop();
            stopping_since = Some(Instant::now());
        }
        if let Some(since) = stopping_since {
            if server.peer_count() == 0 || since.elapsed() > Duration::from_secs(6) {
                println!("Stopped");
                return Ok(());
            }
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
