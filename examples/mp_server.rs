//! A headless multiplayer relay server for Godot clients: a `WebSocketMultiplayerPeer`
//! server that hands out ids, announces clients to each other and relays their packets as
//! Godot's own server does.
//!
//! ```text
//! cargo run --example mp_server -- [--port 8080] [--bind 127.0.0.1] [--protocol ludus]
//!     [--godot3] [--no-relay] [--cert FILE --key FILE] [--verbose]
//! ```
//! - `--protocol NAME`: the WebSocket sub-protocol clients must offer (default `ludus`, as
//!   the websocket_multiplayer demo; `--protocol ''` accepts clients offering none).
//! - `--godot3`: speak Godot 3's protocol (`WebSocketClient` with `gd_mp_api = true`)
//!   instead of Godot 4's (`WebSocketMultiplayerPeer` + `SceneMultiplayer`).
//! - `--no-relay`: clients see only the server (`SceneMultiplayer.server_relay = false`).
//! - `--cert/--key`: serve `wss://` with this PEM certificate chain and key.
//! - `--verbose`: also print every packet addressed to the server.
//!
//! Prints `Listening on ws://...`, then `Peer <id> connected` / `Peer <id> disconnected`.
//! Ctrl-C stops it.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wspeer::{
    MultiplayerConfig, MultiplayerEvent, MultiplayerPeer, MultiplayerProtocol, TlsOptions,
    WebSocketMultiplayerPeer,
};

const USAGE: &str = "usage: mp_server [--port 8080] [--bind 127.0.0.1] [--protocol ludus] \
                     [--godot3] [--no-relay] [--cert FILE --key FILE] [--verbose]";

struct Options {
    port: u16,
    bind: String,
    protocol: String,
    godot3: bool,
    relay: bool,
    cert: Option<String>,
    key: Option<String>,
    verbose: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        port: 8080,
        bind: "127.0.0.1".into(),
        protocol: "ludus".into(),
        godot3: false,
        relay: true,
        cert: None,
        key: None,
        verbose: false,
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
            "--protocol" => options.protocol = value("--protocol")?,
            "--godot3" => options.godot3 = true,
            "--no-relay" => options.relay = false,
            "--cert" => options.cert = Some(value("--cert")?),
            "--key" => options.key = Some(value("--key")?),
            "--verbose" => options.verbose = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
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

fn run(options: Options) -> Result<(), String> {
    let config = MultiplayerConfig {
        protocol: if options.godot3 {
            MultiplayerProtocol::Godot3
        } else {
            MultiplayerProtocol::Godot4
        },
        server_relay: options.relay,
        ..MultiplayerConfig::default()
    };
    let mut peer = WebSocketMultiplayerPeer::with_config(config);
    let protocol = options.protocol.trim();
    if !protocol.is_empty() {
        peer.set_supported_protocols(&[protocol]);
    }
    let tls = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            Some(TlsOptions::server(&read(cert)?, &read(key)?).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    peer.create_server(options.port, &options.bind, tls)
        .map_err(|e| format!("Unable to start server: {e}"))?;
    let addr = peer.local_addr().ok_or("no local address")?;
    println!("Listening on {scheme}://{addr}");
    println!(
        "Protocol: {}, sub-protocol: {}, relay: {}",
        if options.godot3 { "Godot 3" } else { "Godot 4" },
        if protocol.is_empty() {
            "(none)"
        } else {
            protocol
        },
        if options.relay { "on" } else { "off" }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;

    while !stop.load(Ordering::SeqCst) {
        // Sleeps in the OS until there is work: relaying needs no frame rate.
        peer.poll_with_timeout(Duration::from_millis(50));
        while let Some(event) = peer.pop_event() {
            match event {
                MultiplayerEvent::PeerConnected(id) => println!("Peer {id} connected"),
                MultiplayerEvent::PeerDisconnected(id) => println!("Peer {id} disconnected"),
                _ => {}
            }
        }
        // Packets for the server itself: this relay has no game logic, it only reads them
        // so they do not pile up.
        while let Some((from, packet)) = peer.recv() {
            if options.verbose {
                println!("Packet from {from}: {} bytes", packet.len());
            }
        }
    }
    peer.close();
    println!("Stopped");
    Ok(())
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
