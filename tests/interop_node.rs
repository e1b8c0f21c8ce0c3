//! Interop with Node.js `ws` 8 (npm; installed into `tests/interop/node_modules` by
//! `tests/interop/setup.sh`): wspeer as server and as client, over ws:// and wss://. The
//! script both sides run is described in `tests/interop/harness.rs`; the peer is
//! `tests/interop/peer.js`. Run alone: `cargo test --test interop_node`.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use harness::{SIZES, ScriptPeer, interop_dir, runs};

const NODE: ScriptPeer = ScriptPeer {
    name: "node ws",
    program: "node",
    script: "peer.js",
    install: "cd tests/interop && npm ci",
    installed: || {
        interop_dir().join("node_modules/ws/package.json").is_file() && runs("node", &["--version"])
    },
};

#[test]
fn wspeer_server_node_client_ws() {
    NODE.wspeer_server(false, SIZES);
}

#[test]
fn wspeer_server_node_client_wss() {
    NODE.wspeer_server(true, SIZES);
}

#[test]
fn wspeer_client_node_server_ws() {
    NODE.wspeer_client(false, SIZES);
}

#[test]
fn wspeer_client_node_server_wss() {
    NODE.wspeer_client(true, SIZES);
}
