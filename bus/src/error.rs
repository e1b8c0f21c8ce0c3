//! `BusError`: what the bus refuses, each with what to do about it.

use std::fmt;

/// Why a bus call was refused. A refused call changed nothing.
#[derive(Debug)]
pub enum BusError {
    /// The Redis URL is not `redis://HOST:PORT` (what this crate supports).
    InvalidUrl(String),
    /// The Redis host has no address.
    Resolve(String),
    /// A [`BusConfig`](crate::BusConfig) field is out of range.
    InvalidConfig(String),
    /// A room name that is empty or longer than `max_room_name`.
    InvalidRoom {
        /// The name's length in bytes.
        len: usize,
        /// `BusConfig::max_room_name`.
        max: usize,
    },
    /// `max_rooms` rooms are joined already.
    TooManyRooms {
        /// `BusConfig::max_rooms`.
        max: usize,
    },
    /// `publish` to a room this node has not joined.
    NotJoined(String),
    /// A payload longer than `max_payload`.
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// `BusConfig::max_payload`.
        max: usize,
    },
    /// The outbound queue is at `max_outbound_messages` or would exceed
    /// `max_outbound_bytes`: Redis is slow or unreachable. Nothing was queued; try again
    /// after a few polls, or shed the message.
    QueueFull {
        /// Messages queued or waiting for Redis' reply.
        messages: usize,
        /// Bytes queued, not yet written.
        bytes: usize,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::InvalidUrl(e) => write!(f, "Redis URL: {e} (expected redis://HOST:PORT)"),
            BusError::Resolve(e) => write!(f, "Redis host: {e}"),
            BusError::InvalidConfig(e) => write!(f, "bus configuration: {e}"),
            BusError::InvalidRoom { len, max } => write!(
                f,
                "room name of {len} bytes: it must be 1 to {max} bytes (BusConfig::max_room_name)"
            ),
            BusError::TooManyRooms { max } => {
                write!(f, "{max} rooms joined already (BusConfig::max_rooms)")
            }
            BusError::NotJoined(room) => {
                write!(f, "room {room:?} is not joined: join it before publishing")
            }
            BusError::PayloadTooLarge { len, max } => write!(
                f,
                "payload of {len} bytes, over BusConfig::max_payload ({max})"
            ),
            BusError::QueueFull { messages, bytes } => write!(
                f,
                "outbound queue full ({messages} messages, {bytes} bytes unsent; \
                 BusConfig::max_outbound_messages / max_outbound_bytes): Redis is slow or \
                 unreachable, nothing was queued"
            ),
        }
    }
}

impl std::error::Error for BusError {}
