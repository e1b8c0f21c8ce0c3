//! Where a client connects: `ws://`/`wss://` URL parsing and name resolution that never
//! blocks the frame.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;

use tungstenite::http::Uri;

use crate::config::Resolver;
use crate::error::Error;

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) uri: Uri,
    /// Host without IPv6 brackets: what TLS verifies and the resolver looks up.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) secure: bool,
}

impl Target {
    /// Parses `url`; an empty scheme means `ws://` (as in Godot), default ports are 80/443
    /// and the default path is `/`; the query is kept.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        if url.is_empty() {
            return Err(Error::InvalidUrl("empty URL".into()));
        }
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("ws://{url}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e| Error::InvalidUrl(format!("{url:?}: {e}")))?;
        let secure = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            other => return Err(Error::UnsupportedScheme(other.unwrap_or("").to_string())),
        };
        let raw_host = uri.host().unwrap_or("");
        let host = raw_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(Error::InvalidUrl(format!("{url:?} has no host")));
        }
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let path = match uri.path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') => pq.as_str().to_string(),
            Some(pq) => format!("/{}", pq.as_str()),
            None => "/".to_string(),
        };
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(raw_host);
        let uri: Uri = format!("{}://{authority}{path}", if secure { "wss" } else { "ws" })
            .parse()
            .map_err(|e| Error::InvalidUrl(format!("{url:?}: {e}")))?;
        Ok(Target {
            uri,
            host,
            port,
            secure,
        })
    }
}

/// The address itself when `host` is an IP literal (no brackets): no lookup, no thread.
pub(crate) fn literal_addr(host: &str, port: u16) -> Option<SocketAddr> {
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

/// A host name lookup running on a short-lived thread: the OS resolver has no
/// non-blocking interface, and `poll()` must not wait for it. The thread does no socket I/O
/// and ends with the lookup; an abandoned lookup finishes and its answer is dropped.
pub(crate) struct Lookup {
    /// In a `Mutex` only so that the peer holding it is `Sync` (an `mpsc::Receiver` is
    /// not); it is only ever reached through `&mut self`, so it is never locked.
    answer: Mutex<mpsc::Receiver<io::Result<Vec<SocketAddr>>>>,
}

impl Lookup {
    pub(crate) fn start(
        host: String,
        port: u16,
        resolver: Option<Resolver>,
    ) -> Result<Self, Error> {
        let (tx, answer) = mpsc::channel();
        thread::Builder::new()
            .name("wspeer-resolve".into())
            .spawn(move || {
                let result = match resolver {
                    Some(Resolver(lookup)) => lookup(&host, port),
                    None => (host.as_str(), port).to_socket_addrs().map(|a| a.collect()),
                };
                let _ = tx.send(result);
            })
            .map_err(|e| Error::Resolve(format!("could not start the lookup thread: {e}")))?;
        Ok(Lookup {
            answer: Mutex::new(answer),
        })
    }

    /// `None` while the lookup is still running.
    pub(crate) fn try_result(&mut self) -> Option<Result<Vec<SocketAddr>, Error>> {
        let answer = self
            .answer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        match answer.try_recv() {
            Ok(Ok(addrs)) if addrs.is_empty() => {
                Some(Err(Error::Resolve("the name has no addresses".into())))
            }
            Ok(Ok(addrs)) => Some(Ok(addrs)),
            Ok(Err(e)) => Some(Err(Error::Resolve(e.to_string()))),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(Error::Resolve(
                "the lookup thread ended without an answer".into(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_query() {
        let t = Target::parse("ws://example.com").unwrap();
        assert_eq!((t.port, t.secure, t.uri.path()), (80, false, "/"));
        let t = Target::parse("wss://example.com/a/b?x=1&y=2").unwrap();
        assert_eq!(t.port, 443);
        assert_eq!(t.uri.path_and_query().unwrap().as_str(), "/a/b?x=1&y=2");
        let t = Target::parse("example.com:9080/game").unwrap();
        assert_eq!((t.port, t.secure), (9080, false));
        let t = Target::parse("ws://[::1]:9000/").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(
            literal_addr(&t.host, t.port),
            Some("[::1]:9000".parse().unwrap())
        );
        let t = Target::parse("ws://localhost:1/").unwrap();
        assert!(literal_addr(&t.host, t.port).is_none());
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(Target::parse(""), Err(Error::InvalidUrl(_))));
        assert!(matches!(
            Target::parse("http://x/"),
            Err(Error::UnsupportedScheme(_))
        ));
        assert!(matches!(
            Target::parse("ws://:80/"),
            Err(Error::InvalidUrl(_))
        ));
    }
}
