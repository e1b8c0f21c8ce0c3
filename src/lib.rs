//! Godot's WebSocket networking model for any game loop: no async runtime, no hidden I/O
//! threads.
//!
//! Call `poll()` once per frame; non-blocking sockets advance only then, and messages
//! wait in queues read with `get_available_packet_count()` / `get_packet()`.
//!
//! A server and a client in one process, each advanced once per frame (this example runs
//! as a test):
//!
//! ```
//! use wspeer::{ServerEvent, State, WebSocketPeer, WebSocketServer};
//!
//! let mut server = WebSocketServer::new();
//! server.listen_on("127.0.0.1", 0)?; // port 0: any free port
//! let url = format!("ws://{}", server.local_addr().unwrap());
//!
//! let mut socket = WebSocketPeer::new();
//! socket.connect_to_url(&url, None)?;
//!
//! let mut sent = false;
//! loop {
//!     // --- one frame ---
//!     server.poll();
//!     while let Some(event) = server.pop_event() {
//!         if let ServerEvent::DataReceived { id } = event {
//!             let peer = server.get_peer(id).expect("reported peers exist");
//!             let packet = peer.get_packet().unwrap_or_default();
//!             peer.put_packet(&packet)?; // echo
//!         }
//!     }
//!
//!     socket.poll();
//!     if socket.get_ready_state() == State::Open {
//!         if !sent {
//!             socket.send_text("Test packet")?;
//!             sent = true;
//!         }
//!         while let Some(packet) = socket.get_packet() {
//!             println!("Got data from server: {}", String::from_utf8_lossy(&packet));
//!             socket.close(1000, "done")?;
//!         }
//!     }
//!     if socket.get_ready_state() == State::Closed {
//!         println!("closed with code {}", socket.get_close_code());
//!         assert_eq!(socket.get_close_code(), 1000);
//!         break;
//!     }
//!     std::thread::sleep(std::time::Duration::from_millis(1)); // the rest of the frame
//! }
//! # Ok::<(), wspeer::Error>(())
//! ```
//!
//! # In a browser (wasm32)
//!
//! Built for `wasm32-unknown-unknown`, `WebSocketPeer` is a driver over the page's own
//! `WebSocket` with the same poll model: the browser's callbacks only queue, and what they
//! bring (the open, packets, the close) becomes visible in `poll()`. The client side of
//! the crate is there: [`WebSocketPeer`] (with `connect_to_url(url)`: the browser does
//! `wss://` with its own trust store, so there is no TLS parameter), the client role of
//! [`WebSocketMultiplayerPeer`] (`create_client(url)`), [`Variant`], [`Packet`], [`State`],
//! [`WriteMode`], [`PeerConfig`] and [`Error`]. What a page cannot do is absent, not
//! stubbed: servers, `TlsOptions`, HTTP proxies, resolvers, custom handshake headers, the
//! heartbeat, socket options, statistics and the sans-IO `proto::Connection`. See
//! `docs/web.md`.
#![warn(missing_docs)]

mod config;
mod error;
mod ids;
#[cfg(not(target_arch = "wasm32"))]
mod listen;
mod multiplayer;
#[cfg(not(target_arch = "wasm32"))]
mod peer;
pub mod proto;
#[cfg(not(target_arch = "wasm32"))]
mod proxy;
#[cfg(not(target_arch = "wasm32"))]
mod server;
#[cfg(not(target_arch = "wasm32"))]
mod sources;
#[cfg(not(target_arch = "wasm32"))]
mod stream;
#[cfg(not(target_arch = "wasm32"))]
mod target;
#[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
mod tls;
#[cfg(all(not(feature = "tls"), not(target_arch = "wasm32")))]
#[path = "tls_off.rs"]
mod tls;
pub mod variant;
#[cfg(target_arch = "wasm32")]
mod web;
/// The browser driver's queue and limits are plain Rust: their tests run on the host
/// (where the driver that calls the rest of it is not built).
#[cfg(all(test, not(target_arch = "wasm32")))]
#[allow(dead_code)]
#[path = "web/inbox.rs"]
mod web_inbox;

pub use config::{DEFAULT_BUFFER_SIZE, PeerConfig, ServerConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use config::{LookupFn, Proxy, Resolver};
pub use error::Error;
#[cfg(not(target_arch = "wasm32"))]
pub use listen::listen_tcp;
/// The mio version wspeer is built with: other sources share a server's poller through
/// [`WebSocketServer::register_source`] and its [`waker`](WebSocketServer::waker).
#[cfg(not(target_arch = "wasm32"))]
pub use mio;
pub use multiplayer::wire as multiplayer_wire;
pub use multiplayer::{
    ConnectionStatus, MultiplayerConfig, MultiplayerEvent, MultiplayerPeer, MultiplayerProtocol,
    RemoteCall, RemoteSet, RpcMode, RpcNode, TARGET_PEER_BROADCAST, TARGET_PEER_SERVER,
    TransferMode, WebSocketMultiplayerPeer,
};
#[cfg(not(target_arch = "wasm32"))]
pub use peer::WebSocketPeer;
#[cfg(not(target_arch = "wasm32"))]
pub use proto::{ForwardedHeader, HandshakeRequest, IpNetwork, PeerStats, ProxyProtocol};
pub use proto::{Packet, State, WriteMode};
#[cfg(not(target_arch = "wasm32"))]
pub use server::{ServerEvent, WebSocketServer};
#[cfg(not(target_arch = "wasm32"))]
pub use sources::SourceToken;
#[cfg(not(target_arch = "wasm32"))]
pub use tls::TlsOptions;
#[cfg(target_arch = "wasm32")]
pub use web::WebSocketPeer;

/// The rustls version wspeer is built with, for [`TlsOptions::from_client_config`] and
/// [`TlsOptions::from_server_config`] (and [`Error::Tls`]'s payload). Only with a TLS
/// feature, and not on wasm32.
#[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
pub use rustls;
pub use variant::Variant;

/// The start of simulated time in unit tests: the protocol layer never reads the clock, so
/// its tests take one instant here and move it forward by hand.
#[cfg(test)]
pub(crate) fn test_epoch() -> std::time::Instant {
    std::time::Instant::now()
}

/// Every Rust block of the README and of `docs/` runs as a doc test (`cargo test --doc`), as
/// written: one item per Markdown file (`docs/embedding.md` is `proto::Connection`'s own
/// documentation). `tests/doc_snippets.rs` checks that no file is missing here.
#[cfg(doctest)]
#[allow(dead_code)]
mod doc_snippets {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../docs/edge.md")]
    struct Edge;
    #[doc = include_str!("../docs/godot.md")]
    struct Godot;
    #[doc = include_str!("../docs/interop.md")]
    struct Interop;
    #[doc = include_str!("../docs/multiplayer.md")]
    struct Multiplayer;
    #[doc = include_str!("../docs/performance.md")]
    struct Performance;
    #[doc = include_str!("../docs/scaling.md")]
    struct Scaling;
    #[doc = include_str!("../docs/security.md")]
    struct Security;
    #[doc = include_str!("../docs/web.md")]
    struct Web;
}
