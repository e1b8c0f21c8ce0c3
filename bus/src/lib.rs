//! A cross-node room bus over Redis pub/sub for wspeer servers, driven from the same poll loop.
//!
//! A game that runs several server processes keeps each real-time match on one process
//! and carries chat, presence and lobby traffic between processes over a bus. Here each
//! room is one Redis channel; a [`RoomBus`] holds two non-blocking connections to Redis
//! (one `SUBSCRIBE`s, one `PUBLISH`es) that the caller's poller watches, so the bus shares
//! the frame loop: no async runtime, no thread.
//!
//! - Every message travels in an [`envelope`] with the sending node's id (a node drops its
//!   own messages) and a sequence number per (node, room), so a receiver reports lost
//!   messages as [`BusEvent::Gap`].
//! - Delivery is at most once, like Redis pub/sub: what is published while a receiver is
//!   disconnected is lost to it (and shows up as a gap).
//! - The outbound queue is bounded ([`BusConfig::max_outbound_messages`],
//!   [`BusConfig::max_outbound_bytes`]); a full queue refuses the message with
//!   [`BusError::QueueFull`] and keeps it queued nowhere.
//! - A lost connection is made again after an exponential back-off
//!   ([`BusConfig::reconnect_min`] to [`BusConfig::reconnect_max`]); the subscribe link
//!   subscribes to every joined room again.
//! - Time is passed in ([`RoomBus::poll`]), so back-off is testable with simulated time.
//!
//! The bus registers its streams through a [`Registrar`]: [`MioRegistrar`] for a loop that
//! owns a `mio::Poll`.

pub mod envelope;
pub mod resp;

mod bus;
mod config;
mod error;
mod link;
mod registrar;

pub use bus::{BusEvent, RoomBus};
pub use config::BusConfig;
pub use envelope::EnvelopeError;
pub use error::BusError;
pub use link::LinkKind;
pub use registrar::{MioRegistrar, Registrar};
pub use wspeer::mio;
