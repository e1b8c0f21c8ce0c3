//! `BusConfig`: the node's id, the channel names and every limit of the bus, checked before any I/O.

use std::time::Duration;

use crate::envelope::MAX_NODE_ID_LEN;
use crate::error::BusError;

/// How a [`RoomBus`](crate::RoomBus) names itself and its channels, and its limits.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// This node's id, 1 to 255 bytes: carried in every envelope it publishes; envelopes
    /// carrying it are dropped on receipt (a node does not hear itself). Unique per
    /// process in the cluster.
    pub node_id: String,
    /// Prepended to a room's name to make its Redis channel. Default `wspeer:room:`.
    pub channel_prefix: String,
    /// The longest payload published or accepted, in bytes. Default 64 KiB.
    pub max_payload: usize,
    /// The longest room name, in bytes. Default 128.
    pub max_room_name: usize,
    /// How many rooms may be joined at once. Default 10 000.
    pub max_rooms: usize,
    /// Messages published and not yet answered by Redis (queued, being written, or
    /// waiting for Redis' reply), counted while disconnected too: `publish` fails with
    /// [`BusError::QueueFull`] beyond it. Default 4096.
    pub max_outbound_messages: usize,
    /// Bytes of published messages not yet written to Redis (RESP framing included):
    /// `publish` fails with [`BusError::QueueFull`] beyond it. Default 4 MiB.
    pub max_outbound_bytes: usize,
    /// Events waiting for [`RoomBus::next_event`](crate::RoomBus::next_event): the bus
    /// stops reading Redis while this many wait, and resumes on the next `poll` after
    /// they are taken. Default 4096.
    pub max_queued_events: usize,
    /// Senders whose sequence numbers are followed per room (for gap detection): when a
    /// room has seen this many, it forgets them all and starts again. Default 1024.
    pub max_tracked_nodes: usize,
    /// The first wait before reconnecting after a failure. Default 100 ms.
    pub reconnect_min: Duration,
    /// The longest wait before reconnecting: every failure doubles the wait up to this,
    /// a successful connection resets it. Default 5 s.
    pub reconnect_max: Duration,
    /// How long a connection attempt may take. Default 3 s.
    pub connect_timeout: Duration,
}

impl BusConfig {
    /// The defaults, for node `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        BusConfig {
            node_id: node_id.into(),
            channel_prefix: "wspeer:room:".to_owned(),
            max_payload: 64 * 1024,
            max_room_name: 128,
            max_rooms: 10_000,
            max_outbound_messages: 4096,
            max_outbound_bytes: 4 * 1024 * 1024,
            max_queued_events: 4096,
            max_tracked_nodes: 1024,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), BusError> {
        let bad = |what: &str| Err(BusError::InvalidConfig(what.to_owned()));
        if self.node_id.is_empty() || self.node_id.len() > MAX_NODE_ID_LEN {
            return bad("node_id must be 1 to 255 bytes");
        }
        if self.max_outbound_messages == 0 || self.max_outbound_bytes == 0 {
            return bad("max_outbound_messages and max_outbound_bytes must be at least 1");
        }
        if self.max_queued_events == 0 || self.max_rooms == 0 || self.max_room_name == 0 {
            return bad("max_queued_events, max_rooms and max_room_name must be at least 1");
        }
        if self.max_tracked_nodes == 0 {
            return bad("max_tracked_nodes must be at least 1");
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return bad("reconnect_min must be above zero and at most reconnect_max");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout must be above zero");
        }
        Ok(())
    }
}
