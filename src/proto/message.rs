//! The values both drivers share, the native one and the browser's: a connection's
//! [`State`], a message's [`WriteMode`], and a received [`Packet`].

use bytes::Bytes;

/// Where a connection is, as Godot's `WebSocketPeer.State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Resolving, connecting, or in the TLS/WebSocket handshake.
    Connecting,
    /// Open: messages flow both ways.
    Open,
    /// A close frame was sent or received; keep polling until `Closed`.
    Closing,
    /// Closed, or never opened. Packets received before the close can still be read.
    Closed,
}

/// How a message is framed, as Godot's `WriteMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WriteMode {
    /// A text frame: the payload must be valid UTF-8.
    Text,
    /// A binary frame.
    #[default]
    Binary,
}

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub(crate) data: Bytes,
    pub(crate) is_text: bool,
}

impl Packet {
    /// A packet with this payload and type (for tests and for sending on what you built).
    /// Text must be valid UTF-8, or sending it fails with
    /// [`Error::InvalidUtf8`](crate::Error::InvalidUtf8).
    pub fn new(data: impl Into<Bytes>, is_text: bool) -> Self {
        Packet {
            data: data.into(),
            is_text,
        }
    }

    /// The payload.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The payload as shared bytes (a cheap clone, no copy).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Whether it arrived as a text frame (then [`as_text`](Self::as_text) is `Some`).
    pub fn is_text(&self) -> bool {
        self.is_text
    }

    /// The payload as text, for text frames (always valid UTF-8: checked on arrival).
    pub fn as_text(&self) -> Option<&str> {
        if self.is_text {
            std::str::from_utf8(&self.data).ok()
        } else {
            None
        }
    }

    /// The payload as an owned vector.
    pub fn into_vec(self) -> Vec<u8> {
        Vec::from(self.data)
    }
}
