//! Other mio sources in a server's poller: `SourceToken`, the token range kept apart from
//! the server's own, and the one `Waker`.

use std::collections::HashSet;
use std::sync::Arc;

use mio::{Registry, Token, Waker};

use crate::error::Error;

/// A source registered with
/// [`WebSocketServer::register_source`](crate::WebSocketServer::register_source) (or the
/// same method of a `WebSocketMultiplayerPeer` server): named in its
/// [`SourceReady`](crate::ServerEvent::SourceReady) events and needed to reregister or
/// deregister it. Opaque; never reused by the server that gave it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceToken(usize);

/// The server's listener.
pub(crate) const LISTENER: Token = Token(usize::MAX);
/// The server's [`Waker`].
pub(crate) const WAKER: Token = Token(usize::MAX - 1);
/// Registered sources get the mio tokens from here up to `WAKER` (exclusive); the server's
/// connections are slab keys, far below (a slab that large cannot be allocated).
const FIRST_SOURCE: usize = 1 << (usize::BITS - 1);
/// The most source tokens one server gives out over its life.
const SOURCE_TOKENS: usize = WAKER.0 - FIRST_SOURCE;

/// The sources registered with one server's poller, and its waker.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    /// Tokens handed out so far: never reused, so an event can never name the wrong source.
    issued: usize,
    live: HashSet<SourceToken>,
    waker: Option<Arc<Waker>>,
}

impl Sources {
    /// The token the next registration gets, if any is left.
    pub(crate) fn next(&self) -> Result<SourceToken, Error> {
        if self.issued >= SOURCE_TOKENS {
            return Err(Error::Io(std::io::Error::other(
                "this server gave out every source token it has; create another server",
            )));
        }
        Ok(SourceToken(self.issued))
    }

    /// Records that `token` (from [`next`](Self::next)) is now registered.
    pub(crate) fn issue(&mut self, token: SourceToken) {
        self.issued = token.0 + 1;
        self.live.insert(token);
    }

    /// Fails unless `token` is registered here.
    pub(crate) fn check(&self, token: SourceToken) -> Result<(), Error> {
        if self.live.contains(&token) {
            Ok(())
        } else {
            Err(Error::SourceNotRegistered(token))
        }
    }

    /// Forgets a deregistered token.
    pub(crate) fn forget(&mut self, token: SourceToken) {
        self.live.remove(&token);
    }

    /// The registered source an event's mio token names, if any.
    pub(crate) fn find(&self, token: Token) -> Option<SourceToken> {
        let source = SourceToken(token.0.checked_sub(FIRST_SOURCE)?);
        self.live.contains(&source).then_some(source)
    }

    /// The server's waker, created at the first call.
    pub(crate) fn waker(&mut self, registry: &Registry) -> Result<Arc<Waker>, Error> {
        if let Some(waker) = &self.waker {
            return Ok(Arc::clone(waker));
        }
        let waker = Arc::new(Waker::new(registry, WAKER)?);
        self.waker = Some(Arc::clone(&waker));
        Ok(waker)
    }
}

impl SourceToken {
    /// The mio token this source is registered with.
    pub(crate) fn mio(self) -> Token {
        Token(FIRST_SOURCE + self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_tokens_stay_apart_from_the_servers_own() {
        let mut sources = Sources::default();
        let first = sources.next().unwrap();
        sources.issue(first);
        let second = sources.next().unwrap();
        sources.issue(second);
        assert_ne!(first, second);
        for token in [first, second] {
            assert!(token.mio().0 >= FIRST_SOURCE);
            assert_ne!(token.mio(), LISTENER);
            assert_ne!(token.mio(), WAKER);
            assert_eq!(sources.find(token.mio()), Some(token));
        }
        // Connection tokens (slab keys) and the server's own tokens are no source.
        for token in [Token(0), Token(7), LISTENER, WAKER] {
            assert_eq!(sources.find(token), None);
        }
        // A forgotten token is never found again, and its number is not given out again.
        sources.forget(first);
        assert_eq!(sources.find(first.mio()), None);
        assert!(matches!(
            sources.check(first),
            Err(Error::SourceNotRegistered(t)) if t == first
        ));
        assert_ne!(sources.next().unwrap(), first);
    }

    #[test]
    fn running_out_of_source_tokens_is_an_error() {
        let mut sources = Sources {
            issued: SOURCE_TOKENS - 1,
            ..Sources::default()
        };
        let last = sources.next().unwrap();
        assert_eq!(last.mio(), Token(WAKER.0 - 1));
        sources.issue(last);
        assert!(matches!(sources.next(), Err(Error::Io(_))));
    }
}
