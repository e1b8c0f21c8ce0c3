//! The WebSocket protocol of one connection with no I/O: upgrade, frames, queues, budgets,
//! heartbeat, close handshake and timers, driven by bytes and time given to it.
// Natively only: on wasm32 these items do not exist, so neither may links to them.
#![cfg_attr(
    not(target_arch = "wasm32"),
    doc = "
[`Connection`] never touches a socket or the clock, and starts no work of its own: bytes
come in through [`Connection::handle_input`], bytes to send go out through
[`Connection::transmit`], and every call that can start, check or end a timer takes the
time as a parameter.
[`WebSocketPeer`](crate::WebSocketPeer) and [`WebSocketServer`](crate::WebSocketServer)
are thin drivers around it (sockets, TLS, name lookup); an engine that owns its
sockets drives it the same way (see `examples/embed.rs`)."
)]
//!
//! On wasm32 the browser speaks the protocol itself: this module then holds only the
//! values the browser driver shares ([`State`], [`WriteMode`], [`Packet`]).

#[cfg(not(target_arch = "wasm32"))]
mod close;
#[cfg(not(target_arch = "wasm32"))]
mod connection;
#[cfg(not(target_arch = "wasm32"))]
mod forwarded;
#[cfg(not(target_arch = "wasm32"))]
mod frames;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod handshake;
mod message;
#[cfg(not(target_arch = "wasm32"))]
mod outbox;
#[cfg(not(target_arch = "wasm32"))]
mod proxy_header;
#[cfg(not(target_arch = "wasm32"))]
mod stats;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use connection::check_close;
#[cfg(not(target_arch = "wasm32"))]
pub use connection::{Connection, Event};
#[cfg(not(target_arch = "wasm32"))]
pub use forwarded::{ForwardedHeader, IpNetwork, client_address};
#[cfg(not(target_arch = "wasm32"))]
pub use handshake::HandshakeRequest;
pub use message::{Packet, State, WriteMode};
#[cfg(not(target_arch = "wasm32"))]
pub use proxy_header::{MIN_PROXY_HEADER_BYTES, ProxyHeader, ProxyProtocol, read_proxy_header};
#[cfg(not(target_arch = "wasm32"))]
pub use stats::PeerStats;

#[cfg(test)]
mod tests;
