//! The seam between the bus and whoever owns the poller: register and deregister the bus's two streams.

use std::io;

use wspeer::mio::net::TcpStream;
use wspeer::mio::{self as mio, Interest};
use wspeer::{SourceToken, WebSocketMultiplayerPeer, WebSocketServer};

/// Registers the bus's Redis streams with a poller and names them with a token the caller
/// routes readiness by. The bus registers each new stream once, readable and writable
/// (readiness is edge-triggered), and deregisters it before dropping it.
pub trait Registrar {
    /// What the poller reports a ready stream as.
    type Token: Copy + Eq + std::fmt::Debug;

    /// Starts reporting `stream`'s readiness for `interest`.
    fn register(&mut self, stream: &mut TcpStream, interest: Interest) -> io::Result<Self::Token>;

    /// Stops reporting `stream`; `token` is never reported again.
    fn deregister(&mut self, stream: &mut TcpStream, token: Self::Token) -> io::Result<()>;
}

/// A [`Registrar`] over a plain `mio::Registry`, for a loop that owns its `mio::Poll`:
/// tokens are handed out from `first` upward, never reused.
pub struct MioRegistrar {
    registry: mio::Registry,
    next: usize,
}

impl MioRegistrar {
    /// Registers with `registry` (a clone of the poller's), using tokens from `first` on:
    /// keep that range free of the loop's own tokens.
    pub fn new(registry: &mio::Registry, first: mio::Token) -> io::Result<Self> {
        Ok(MioRegistrar {
            registry: registry.try_clone()?,
            next: first.0,
        })
    }
}

impl Registrar for MioRegistrar {
    type Token = mio::Token;

    fn register(&mut self, stream: &mut TcpStream, interest: Interest) -> io::Result<mio::Token> {
        let token = mio::Token(self.next);
        self.next = self
            .next
            .checked_add(1)
            .ok_or_else(|| io::Error::other("MioRegistrar: tokens exhausted"))?;
        self.registry.register(stream, token, interest)?;
        Ok(token)
    }

    fn deregister(&mut self, stream: &mut TcpStream, _token: mio::Token) -> io::Result<()> {
        self.registry.deregister(stream)
    }
}

/// The bus in a [`WebSocketServer`]'s poll: its streams are the server's registered
/// sources, reported as `ServerEvent::SourceReady` (hand those to
/// [`RoomBus::handle_server_event`](crate::RoomBus::handle_server_event)), and
/// `poll_with_timeout` wakes for them.
impl Registrar for WebSocketServer {
    type Token = SourceToken;

    fn register(&mut self, stream: &mut TcpStream, interest: Interest) -> io::Result<SourceToken> {
        self.register_source(stream, interest)
            .map_err(io::Error::other)
    }

    fn deregister(&mut self, stream: &mut TcpStream, token: SourceToken) -> io::Result<()> {
        self.deregister_source(stream, token)
            .map_err(io::Error::other)
    }
}

/// The bus in a [`WebSocketMultiplayerPeer`] server's poll: its streams are reported as
/// `MultiplayerEvent::SourceReady` (hand them to
/// [`RoomBus::handle_ready`](crate::RoomBus::handle_ready)). Register again after the next
/// `create_server`: registrations end with the server.
impl Registrar for WebSocketMultiplayerPeer {
    type Token = SourceToken;

    fn register(&mut self, stream: &mut TcpStream, interest: Interest) -> io::Result<SourceToken> {
        self.register_source(stream, interest)
            .map_err(io::Error::other)
    }

    fn deregister(&mut self, stream: &mut TcpStream, token: SourceToken) -> io::Result<()> {
        self.deregister_source(stream, token)
            .map_err(io::Error::other)
    }
}
