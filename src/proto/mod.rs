//! The WebSocket protocol of one connection with no I/O: upgrade, frames, queues, budgets,
//! heartbeat, close handshake and timers, driven by bytes and time given to it.
//!
//! [`Connection`] never touches a socket or the clock, and starts no work of its own: bytes
//! come in through [`Connection::handle_input`], bytes to send go out through
//! [`Connection::transmit`], and every call that can start, check or end a timer takes the
//! time as a parameter.
//! [`WebSocketPeer`](crate::WebSocketPeer) and [`WebSocketServer`](crate::WebSocketServer)
//! are thin drivers around it (sockets, TLS, name lookup); an engine that owns its
//! sockets drives it the same way (see `examples/embed.rs`).

mod close;
mod connection;
mod forwarded;
mod frames;
pub(crate) mod handshake;
mod outbox;
mod proxy_header;
mod stats;

pub(crate) use connection::check_close;
pub use connection::{Connection, Event, Packet, State, WriteMode};
pub use forwarded::{ForwardedHeader, IpNetwork, client_address};
pub use handshake::HandshakeRequest;
pub use proxy_header::{MIN_PROXY_HEADER_BYTES, ProxyHeader, ProxyProtocol, read_proxy_header};
pub use stats::PeerStats;

#[cfg(test)]
mod tests;
