//! A headless Godot multiplayer server with a Rust authority: it hosts node `/root/Main`,
//! whose RPC methods are `echo` and `echo_reply` (both `any_peer`), and answers every
//! `echo(args…)` with `echo_reply(the same args)` on the caller's `/root/Main`. Clients
//! also reach each other through it (relay), as through Godot's own server.
//!
//! ```text
//! cargo run --example rpc_server -- [--port 8080] [--bind 127.0.0.1] [--protocol ludus] [--godot3]
//! ```
//! - `--protocol NAME`: the WebSocket sub-protocol clients must offer (default `ludus`;
//!   `--protocol ''` accepts clients offering none).
//! - `--godot3`: Godot 3's wire (`WebSocketClient` with `gd_mp_api = true`, `remote func`)
//!   instead of Godot 4's (`WebSocketMultiplayerPeer` + `SceneMultiplayer`, `@rpc`).
//!
//! The GDScript side declares the same two methods on its `/root/Main`:
//!
//! ```gdscript
//! @rpc("any_peer") func echo(a, b): pass
//! @rpc("any_peer") func echo_reply(a, b): print("echo_reply ", a, " ", b)
//! ```
//!
//! Prints `Listening on ws://ADDR`, `Peer <id> connected` / `Peer <id> disconnected`, and
//! for each call `RPC echo from <id>: <args>` (the arguments as Godot 4's `str()` prints
//! them, also with `--godot3`, separated by `, `). Ctrl-C stops it.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wspeer::{
    MultiplayerConfig, MultiplayerEvent, MultiplayerPeer, MultiplayerProtocol, RpcMode, RpcNode,
    WebSocketMultiplayerPeer,
};

const USAGE: &str =
    "usage: rpc_server [--port 8080] [--bind 127.0.0.1] [--protocol ludus] [--godot3]";

/// The node both sides have, and its methods.
const MAIN: &str = "/root/Main";

struct Options {
    port: u16,
    bind: String,
    protocol: String,
    godot3: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        port: 8080,
        bind: "127.0.0.1".into(),
        protocol: "ludus".into(),
        godot3: false,
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
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn run(options: Options) -> Result<(), String> {
    let config = MultiplayerConfig {
        protocol: if options.godot3 {
            MultiplayerProtocol::Godot3
        } else {
            MultiplayerProtocol::Godot4
        },
        ..MultiplayerConfig::default()
    };
    let mut peer = WebSocketMultiplayerPeer::with_config(config);
    peer.rpc_config(
        MAIN,
        RpcNode::new()
            .method("echo", RpcMode::AnyPeer)
            .method("echo_reply", RpcMode::AnyPeer),
    );
    let protocol = options.protocol.trim();
    if !protocol.is_empty() {
        peer.set_supported_protocols(&[protocol]);
    }
    peer.create_server(options.port, &options.bind, None)
        .map_err(|e| format!("Unable to start server: {e}"))?;
    let addr = peer.local_addr().ok_or("no local address")?;
    println!("Listening on ws://{addr}");

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;

    while !stop.load(Ordering::SeqCst) {
        peer.poll_with_timeout(Duration::from_millis(50));
        while let Some(event) = peer.pop_event() {
            match event {
                MultiplayerEvent::PeerConnected(id) => println!("Peer {id} connected"),
                MultiplayerEvent::PeerDisconnected(id) => println!("Peer {id} disconnected"),
                MultiplayerEvent::RemoteCall(call) if call.method == "echo" => {
                    let args: Vec<String> = call.args.iter().map(|a| a.to_string()).collect();
                    println!("RPC echo from {}: {}", call.from, args.join(", "));
                    if let Err(e) = peer.rpc_id(call.from, MAIN, "echo_reply", &call.args) {
                        eprintln!("cannot answer peer {}: {e}", call.from);
                    }
                }
                MultiplayerEvent::RemoteCall(call) => {
                    println!("RPC {} from {} ignored", call.method, call.from)
                }
                _ => {}
            }
        }
        // Bytes sent with send_bytes are not part of this server's protocol: read and
        // dropped so they do not pile up.
        while peer.recv().is_some() {}
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
