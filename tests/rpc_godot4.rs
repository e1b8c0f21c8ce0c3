//! Godot 4's high-level multiplayer against a peer written from the reference, not from
//! wspeer: `tests/multiplayer/godot4_client.py` (Python `websockets`, installed by
//! `tests/interop/setup.sh`) spells out every byte a Godot 4.3+ client sends and expects —
//! authentication, `echo` in full-path, cached, raw-bytes and no-argument form — against a
//! wspeer server in this process (with authentication) and against `examples/rpc_server`
//! (without). No Godot 4 binary exists for this machine; these bytes are the contract.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{KillOnDrop, TIMEOUT, example_bin, line_channel};
use wspeer::*;

const MAIN: &str = "/root/Main";

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/multiplayer/godot4_client.py")
}

/// Starts the emulated client; its stdout lines arrive on the channel.
fn emulated_client(url: &str, extra: &[&str]) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = Command::new("python3")
        .arg(script())
        .arg(url)
        .arg("ludus")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs (tests/interop/setup.sh installs websockets)");
    let lines = line_channel(child.stdout.take().unwrap());
    (KillOnDrop(child), lines)
}

fn echo_node() -> RpcNode {
    RpcNode::new()
        .method("echo", RpcMode::AnyPeer)
        .method("echo_reply", RpcMode::AnyPeer)
}

#[test]
fn emulated_godot4_client_authenticates_and_gets_echo_replies_byte_for_byte() {
    let mut server = WebSocketMultiplayerPeer::with_config(MultiplayerConfig {
        authentication: true,
        ..MultiplayerConfig::default()
    });
    server.set_supported_protocols(&["ludus"]);
    server.rpc_config(MAIN, echo_node());
    server.create_server(0, "127.0.0.1", None).unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let (mut child, lines) = emulated_client(&url, &[]);

    let deadline = Instant::now() + TIMEOUT * 3;
    let mut events = Vec::new();
    let mut calls = 0;
    let verdict = loop {
        assert!(Instant::now() < deadline, "no verdict; events: {events:?}");
        server.poll();
        while let Some(event) = server.pop_event() {
            match &event {
                MultiplayerEvent::AuthReceived { id, data } => {
                    assert_eq!(data, b"tok");
                    server.send_auth(*id, b"ok").unwrap();
                    server.complete_auth(*id).unwrap();
                }
                MultiplayerEvent::RemoteCall(call) => {
                    assert_eq!((call.node.as_str(), call.method.as_str()), (MAIN, "echo"));
                    calls += 1;
                    server
                        .rpc_id(call.from, MAIN, "echo_reply", &call.args)
                        .unwrap();
                }
                _ => {}
            }
            events.push(event);
        }
        if let Ok(line) = lines.try_recv() {
            break line;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(verdict, "PASS", "events: {events:?}");
    assert_eq!(calls, 4);
    let id = match events.first() {
        Some(MultiplayerEvent::PeerAuthenticating(id)) => *id,
        other => panic!("first event {other:?}"),
    };
    // Admitted only once both sides completed, then the calls.
    let connected = events
        .iter()
        .position(|e| *e == MultiplayerEvent::PeerConnected(id))
        .expect("admitted");
    let first_call = events
        .iter()
        .position(|e| matches!(e, MultiplayerEvent::RemoteCall(_)))
        .unwrap();
    assert!(connected < first_call, "{events:?}");
    let status = child.0.wait().unwrap();
    assert!(status.success());
    assert_eq!(server.dropped_packets(), 0);
}

#[test]
fn rpc_server_example_answers_an_emulated_godot4_client() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut server = KillOnDrop(
        Command::new(example_bin("rpc_server"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cargo build --examples first (tests/run.sh does)"),
    );
    let server_lines = line_channel(server.0.stdout.take().unwrap());
    let listening = server_lines.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(listening, format!("Listening on ws://127.0.0.1:{port}"));
    let (mut client, lines) = emulated_client(&format!("ws://127.0.0.1:{port}/"), &["--no-auth"]);
    assert_eq!(lines.recv_timeout(TIMEOUT * 2).unwrap(), "PASS");
    assert!(client.0.wait().unwrap().success());
    let mut seen = Vec::new();
    while let Ok(line) = server_lines.recv_timeout(Duration::from_millis(500)) {
        seen.push(line);
    }
    let id = seen
        .iter()
        .find_map(|l| l.strip_prefix("Peer ")?.strip_suffix(" connected"))
        .unwrap_or_else(|| panic!("no connection line in {seen:?}"))
        .to_string();
    let echoes: Vec<&String> = seen.iter().filter(|l| l.starts_with("RPC echo")).collect();
    assert_eq!(
        echoes,
        [
            &format!("RPC echo from {id}: hi, 7"),
            &format!("RPC echo from {id}: hi, 7"),
            &format!("RPC echo from {id}: [1, 2, 3]"),
            &format!("RPC echo from {id}: "),
        ],
        "{seen:?}"
    );
}
