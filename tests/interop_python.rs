//! Interop with Python `websockets` (PyPI, 17.x; installed by `tests/interop/setup.sh`):
//! wspeer as server and as client, over ws:// and wss://. The script both sides run is
//! described in `tests/interop/harness.rs`; the peer is `tests/interop/peer.py`.
//! Run alone: `cargo test --test interop_python`.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use harness::{SIZES, ScriptPeer, runs};

const PYTHON: ScriptPeer = ScriptPeer {
    name: "python websockets",
    program: "python3",
    script: "peer.py",
    install: "python3 -m pip install 'websockets>=15,<18'",
    installed: || runs("python3", &["-c", "import websockets"]),
};

#[test]
fn wspeer_server_python_client_ws() {
    PYTHON.wspeer_server(false, SIZES);
}

#[test]
fn wspeer_server_python_client_wss() {
    PYTHON.wspeer_server(true, SIZES);
}

#[test]
fn wspeer_client_python_server_ws() {
    PYTHON.wspeer_client(false, SIZES);
}

#[test]
fn wspeer_client_python_server_wss() {
    PYTHON.wspeer_client(true, SIZES);
}
