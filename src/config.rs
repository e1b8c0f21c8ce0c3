//! Tunables Godot exposes on `WebSocketPeer` and its server, with Godot's defaults.

#[cfg(not(target_arch = "wasm32"))]
use std::fmt;
#[cfg(not(target_arch = "wasm32"))]
use std::io;
#[cfg(not(target_arch = "wasm32"))]
use std::net::SocketAddr;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
#[cfg(not(target_arch = "wasm32"))]
use crate::proto::{ForwardedHeader, IpNetwork, MIN_PROXY_HEADER_BYTES, ProxyProtocol};
use crate::variant::{GodotVersion, Limits};

/// Godot's `DEFAULT_BUFFER_SIZE`: the default for both buffer limits.
pub const DEFAULT_BUFFER_SIZE: usize = 65535;

/// Settings of one WebSocket connection. `Default` gives Godot 4.4's defaults plus
/// wspeer's own timeouts.
///
/// Changes take effect at the next `connect_to_url` / `accept_stream` (as in Godot, an open
/// connection keeps the values it started with).
///
/// On wasm32 the browser does the handshake, the pings and the sockets itself: the fields
/// for those (`handshake_headers`, `heartbeat_interval`, `close_timeout`,
/// `connect_timeout`, `no_delay`, `batch_writes`, `max_handshake_*`, `resolver`, `proxy`)
/// are not there (see `docs/web.md`).
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Sub-protocols offered by a client (in order of preference) or accepted by a server.
    /// A server picks the first one *in the client's order* that it supports.
    pub supported_protocols: Vec<String>,
    #[cfg(not(target_arch = "wasm32"))]
    /// Extra `"Name: value"` header lines, sent in the client's request and in the server's
    /// `101` response.
    pub handshake_headers: Vec<String>,
    /// Largest message accepted, in bytes (larger: closed with 1009). Reading also pauses
    /// while this many bytes wait unread in the packet queue (TCP back-pressure).
    pub inbound_buffer_size: usize,
    /// Most bytes that may wait to be written to the socket; `send` fails beyond it.
    /// `0` disables the byte check (the packet count still applies).
    pub outbound_buffer_size: usize,
    /// Most messages waiting in each direction: unread inbound packets (reading pauses)
    /// and unwritten outbound messages (`send` fails).
    pub max_queued_packets: usize,
    #[cfg(not(target_arch = "wasm32"))]
    /// Send a ping every interval; a ping still unanswered at the next interval drops the
    /// connection uncleanly (close code -1). `Duration::ZERO` (the default) turns it off.
    pub heartbeat_interval: Duration,
    #[cfg(not(target_arch = "wasm32"))]
    /// After we send a close frame, how long to wait for the remote's answer before
    /// dropping the connection. Beyond Godot, which waits forever.
    pub close_timeout: Duration,
    #[cfg(not(target_arch = "wasm32"))]
    /// Client only: time allowed for name resolution, TCP connect, TLS and WebSocket
    /// handshake together. Beyond Godot's `WebSocketPeer`, which has none.
    pub connect_timeout: Duration,
    #[cfg(not(target_arch = "wasm32"))]
    /// Whether `TCP_NODELAY` is set on new connections (Godot: on).
    pub no_delay: bool,
    #[cfg(not(target_arch = "wasm32"))]
    /// Hold sent messages until the next `poll()` (or an explicit `flush()`), so that all a
    /// frame sends to one peer leaves in one system call. Off by default: as in Godot, a
    /// message is written to the socket inside `send`. Turn it on for servers that send
    /// several messages per peer per frame (a headless server's loop polls again at once,
    /// so nothing waits).
    pub batch_writes: bool,
    #[cfg(not(target_arch = "wasm32"))]
    /// The largest HTTP head of the upgrade accepted, in bytes, on both sides. A server
    /// answers a larger request with `431` and closes; a client fails a larger `101`
    /// response with `Error::Handshake` (close code -1).
    pub max_handshake_bytes: usize,
    #[cfg(not(target_arch = "wasm32"))]
    /// The most header lines in the upgrade's HTTP head, on both sides: a server answers a
    /// request with more with `431`; a client fails such a `101` response with
    /// `Error::Handshake`.
    pub max_handshake_headers: usize,
    #[cfg(not(target_arch = "wasm32"))]
    /// Client only: how host names become addresses. `None` (the default) asks the OS
    /// resolver. Either way the lookup runs on a short-lived thread, never in `poll()`.
    /// With a [`proxy`](Self::proxy), it resolves the proxy's host name.
    pub resolver: Option<Resolver>,
    #[cfg(not(target_arch = "wasm32"))]
    /// Client only: an HTTP proxy to tunnel through (`CONNECT`), for `ws://` and `wss://`
    /// alike. `None` (the default) connects directly. Checked at `connect_to_url`.
    pub proxy: Option<Proxy>,
    /// The Variant format of `put_var` / `get_var`: Godot 4's (the default) or Godot 3's,
    /// whichever the other side's Godot speaks.
    pub variant_version: GodotVersion,
    /// Bounds on the Variants `get_var` decodes (nesting depth).
    pub variant_limits: Limits,
}

#[cfg(not(target_arch = "wasm32"))]
/// A host name lookup of your own (service discovery, a DNS cache, tests): given a host and
/// port, the addresses to try in order. It runs on wspeer's lookup thread and may block.
#[derive(Clone)]
pub struct Resolver(pub Arc<LookupFn>);

#[cfg(not(target_arch = "wasm32"))]
/// The function behind a [`Resolver`].
pub type LookupFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

#[cfg(not(target_arch = "wasm32"))]
impl Resolver {
    /// Wraps a lookup function.
    pub fn new(
        lookup: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        Resolver(Arc::new(lookup))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver(..)")
    }
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            supported_protocols: Vec::new(),
            #[cfg(not(target_arch = "wasm32"))]
            handshake_headers: Vec::new(),
            inbound_buffer_size: DEFAULT_BUFFER_SIZE,
            outbound_buffer_size: DEFAULT_BUFFER_SIZE,
            max_queued_packets: 4096,
            #[cfg(not(target_arch = "wasm32"))]
            heartbeat_interval: Duration::ZERO,
            #[cfg(not(target_arch = "wasm32"))]
            close_timeout: Duration::from_secs(5),
            #[cfg(not(target_arch = "wasm32"))]
            connect_timeout: Duration::from_secs(30),
            #[cfg(not(target_arch = "wasm32"))]
            no_delay: true,
            #[cfg(not(target_arch = "wasm32"))]
            batch_writes: false,
            #[cfg(not(target_arch = "wasm32"))]
            max_handshake_bytes: 8 * 1024,
            #[cfg(not(target_arch = "wasm32"))]
            max_handshake_headers: 64,
            #[cfg(not(target_arch = "wasm32"))]
            resolver: None,
            #[cfg(not(target_arch = "wasm32"))]
            proxy: None,
            variant_version: GodotVersion::Godot4,
            variant_limits: Limits::default(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// An HTTP proxy a client reaches its server through: the client connects to the proxy,
/// asks it for a tunnel with `CONNECT host:port` (with `Proxy-Authorization: Basic` when
/// credentials are given), and runs TLS (for `wss://`) and the WebSocket handshake inside
/// the tunnel once the proxy answers `2xx`. Set it in [`PeerConfig::proxy`] or with
/// [`WebSocketPeer::set_proxy`](crate::WebSocketPeer::set_proxy). Beyond Godot.
///
/// ```
/// use wspeer::{Proxy, WebSocketPeer};
///
/// let mut socket = WebSocketPeer::new();
/// socket.set_proxy(Some(Proxy::new("http://proxy.example:3128").with_basic_auth("me", "secret")));
/// // Also accepted: "proxy.example:3128", "http://me:secret@proxy.example:3128".
/// ```
///
/// The address is checked when a connection starts: `connect_to_url` fails with
/// [`Error::InvalidConfig`] for one that is not `[http://][user:password@]host:port`.
/// Credentials in the address are taken as written (no percent-decoding); use
/// [`with_basic_auth`](Self::with_basic_auth) for others. A proxy that answers anything
/// but `2xx` fails the connection with [`Error::ProxyRefused`]. The peer's
/// `get_connected_host` / `get_connected_port` then name the proxy, not the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `host:port`, or `http://[user:password@]host:port` (IPv6 hosts in brackets).
    pub address: String,
    /// User name and password for `Proxy-Authorization: Basic`; when set, they replace any
    /// given in `address`.
    pub basic_auth: Option<(String, String)>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Proxy {
    /// A proxy at `address` (`host:port` or `http://[user:password@]host:port`).
    pub fn new(address: impl Into<String>) -> Self {
        Proxy {
            address: address.into(),
            basic_auth: None,
        }
    }

    /// The same proxy with basic auth credentials.
    pub fn with_basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Parses the address: host (brackets removed), port and credentials.
    pub(crate) fn endpoint(&self) -> Result<ProxyEndpoint, Error> {
        let invalid = |why: &str| {
            Error::InvalidConfig(format!(
                "proxy address {:?}: {why}; expected [http://][user:password@]host:port",
                redact(&self.address)
            ))
        };
        let text = self.address.trim();
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(invalid(&format!(
                    "the scheme {scheme:?} is not supported (only http:// proxies)"
                )));
            }
            None => text,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        if hostport.contains(['/', '?', '#', '@']) || hostport.chars().any(char::is_whitespace) {
            return Err(invalid("it must not have a path"));
        }
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| invalid("no port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .ok_or_else(|| invalid("an unclosed '['"))?,
            None if host.contains(':') => return Err(invalid("an IPv6 host needs brackets")),
            None => host,
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let credentials = match (&self.basic_auth, userinfo) {
            (Some((user, password)), _) => Some(format!("{user}:{password}")),
            (None, Some(userinfo)) if userinfo.contains(':') => Some(userinfo.to_string()),
            (None, Some(_)) => return Err(invalid("credentials need user:password")),
            (None, None) => None,
        };
        Ok(ProxyEndpoint {
            host: host.to_string(),
            port,
            authorization: credentials
                .map(|c| format!("Basic {}", data_encoding::BASE64.encode(c.as_bytes()))),
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// The address with any password replaced, for messages.
fn redact(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let user = userinfo.rsplit_once("://").map_or(userinfo, |(_, u)| u);
            let scheme = userinfo.split_once("://").map_or("", |(s, _)| s);
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}{user}:***@{hostport}")
        }
        None => address.to_string(),
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("address", &redact(&self.address))
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(user, _)| (user, "***")),
            )
            .finish()
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// A checked [`Proxy`]: where to connect, and the `Proxy-Authorization` value.
#[derive(Clone, Debug)]
pub(crate) struct ProxyEndpoint {
    /// Without IPv6 brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) authorization: Option<String>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ProxyEndpoint {
    /// `host:port` as messages show it (IPv6 in brackets).
    pub(crate) fn display(&self) -> String {
        host_port(&self.host, self.port)
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// `host:port`, with IPv6 literals in brackets (as `CONNECT` and `Host` need them).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl PeerConfig {
    /// Checks every value that could make the connection unusable, before any I/O.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        #[cfg(not(target_arch = "wasm32"))]
        for line in &self.handshake_headers {
            parse_header_line(line)?;
        }
        for p in &self.supported_protocols {
            let valid = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !valid {
                return Err(Error::InvalidProtocol(p.clone()));
            }
        }
        if self.inbound_buffer_size == 0 {
            return Err(Error::InvalidConfig(
                "inbound_buffer_size must be at least 1".into(),
            ));
        }
        #[cfg(not(target_arch = "wasm32"))]
        if self.max_handshake_headers < 5 {
            // Host, Upgrade, Connection, Sec-WebSocket-Key and -Version are all required.
            return Err(Error::InvalidConfig(
                "max_handshake_headers must be at least 5".into(),
            ));
        }
        #[cfg(not(target_arch = "wasm32"))]
        if self.max_handshake_bytes < 128 {
            return Err(Error::InvalidConfig(
                "max_handshake_bytes must be at least 128".into(),
            ));
        }
        if self.max_queued_packets == 0 {
            return Err(Error::InvalidConfig(
                "max_queued_packets must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Splits a `"Name: value"` line into a validated header name and value.
pub(crate) fn parse_header_line(
    line: &str,
) -> Result<
    (
        tungstenite::http::HeaderName,
        tungstenite::http::HeaderValue,
    ),
    Error,
> {
    let invalid = || Error::InvalidHeader(line.to_string());
    let (name, value) = line.split_once(':').ok_or_else(invalid)?;
    let name =
        tungstenite::http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
    let value = tungstenite::http::HeaderValue::from_str(value.trim()).map_err(|_| invalid())?;
    Ok((name, value))
}

#[cfg_attr(
    not(target_arch = "wasm32"),
    doc = "Settings of a [`WebSocketServer`](crate::WebSocketServer): the [`PeerConfig`] given to"
)]
#[cfg_attr(
    target_arch = "wasm32",
    doc = "Settings of a `WebSocketServer` (native only): the [`PeerConfig`] given to"
)]
/// every accepted connection plus the listener's own limits.
///
/// On wasm32 there is no server: what is left is what a
/// [`WebSocketMultiplayerPeer`](crate::WebSocketMultiplayerPeer) client uses, the
/// connection's [`PeerConfig`] and the `handshake_timeout` that bounds its wait for an id.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Settings for each accepted peer.
    pub peer: PeerConfig,
    /// Time allowed from TCP accept to an open WebSocket (TLS included). Godot: 3 s. Must
    /// be more than zero, as Godot's setter requires (with zero every handshake would fail).
    pub handshake_timeout: Duration,
    #[cfg(not(target_arch = "wasm32"))]
    /// Connections still in their handshake at once; further connections are accepted and
    /// closed at once.
    pub max_pending_handshakes: usize,
    #[cfg(not(target_arch = "wasm32"))]
    /// Connections accepted per `poll()`; the rest wait in the kernel backlog for the next
    /// call, so a connection storm cannot stall a frame.
    pub max_accepts_per_poll: usize,
    #[cfg(not(target_arch = "wasm32"))]
    /// Let the application decide each upgrade before `101` (off by default): a complete,
    /// valid request is reported as
    /// [`ServerEvent::UpgradeRequested`](crate::ServerEvent::UpgradeRequested) and waits
    /// for [`accept_upgrade`](crate::WebSocketServer::accept_upgrade) or
    /// [`reject_upgrade`](crate::WebSocketServer::reject_upgrade), within
    /// `handshake_timeout`. Beyond Godot.
    pub decide_upgrades: bool,
    #[cfg(not(target_arch = "wasm32"))]
    /// A path answered on the WebSocket port as a health check (off by default): a plain
    /// `GET` or `HEAD` of exactly this path (any query; no `Upgrade: websocket` header) gets
    /// `200` with `ok` while the server serves, `503` with `draining` and `Retry-After`
    /// once [`drain`](crate::WebSocketServer::drain) was called. The connection closes
    /// after the answer and never becomes a peer (it counts as a pending handshake until
    /// then). It must start with `/` and hold no space, control character, `?` or `#`.
    /// Beyond Godot.
    pub health_path: Option<String>,
    #[cfg(not(target_arch = "wasm32"))]
    /// The `Retry-After` a draining server sends with its `503` answers, in whole seconds
    /// (rounded up). Default: 10 s. Beyond Godot.
    pub drain_retry_after: Duration,
    #[cfg(not(target_arch = "wasm32"))]
    /// The PROXY protocol header every connection must start with (off by default): set
    /// it when a load balancer in front sends one (HAProxy `send-proxy` / `send-proxy-v2`,
    /// nginx `proxy_protocol on`, AWS NLB). The header is read before TLS and HTTP, whole,
    /// within `handshake_timeout`; connections from a socket peer not in
    /// [`trusted_proxies`](Self::trusted_proxies) are closed at once (logged, counted in
    /// [`refused_connections`](crate::WebSocketServer::refused_connections)), and one
    /// without a valid header is closed with nothing sent (logged). A v2 `LOCAL` header
    /// (the balancer's own health check) is accepted, and the connection keeps the
    /// socket's address. Beyond Godot.
    pub proxy_protocol: Option<ProxyProtocol>,
    #[cfg(not(target_arch = "wasm32"))]
    /// The longest PROXY header accepted, in bytes (v2 TLVs included; a v1 header is at
    /// most 107 by its specification). Default: 4096. At least
    /// [`MIN_PROXY_HEADER_BYTES`](crate::proto::MIN_PROXY_HEADER_BYTES) (232), at most
    /// 65551 (the largest v2 header).
    pub max_proxy_header_bytes: usize,
    #[cfg(not(target_arch = "wasm32"))]
    /// The proxies and load balancers in front of this server (their addresses or
    /// networks: `"10.0.0.0/8".parse()`), trusted to tell the client's address: with a
    /// PROXY header ([`proxy_protocol`](Self::proxy_protocol)) or a forwarding header
    /// ([`forwarded_header`](Self::forwarded_header)). Required by both; empty by default.
    pub trusted_proxies: Vec<IpNetwork>,
    #[cfg(not(target_arch = "wasm32"))]
    /// The header a trusted proxy names the client in (off by default). The address
    /// reported is the first hop, walking from the right, that is not a trusted proxy:
    /// see [`client_address`](crate::proto::client_address). Ignored for connections whose
    /// socket peer is not trusted. Beyond Godot.
    pub forwarded_header: Option<ForwardedHeader>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            peer: PeerConfig::default(),
            handshake_timeout: Duration::from_secs(3),
            #[cfg(not(target_arch = "wasm32"))]
            max_pending_handshakes: 256,
            #[cfg(not(target_arch = "wasm32"))]
            max_accepts_per_poll: 64,
            #[cfg(not(target_arch = "wasm32"))]
            decide_upgrades: false,
            #[cfg(not(target_arch = "wasm32"))]
            health_path: None,
            #[cfg(not(target_arch = "wasm32"))]
            drain_retry_after: Duration::from_secs(10),
            #[cfg(not(target_arch = "wasm32"))]
            proxy_protocol: None,
            #[cfg(not(target_arch = "wasm32"))]
            max_proxy_header_bytes: 4096,
            #[cfg(not(target_arch = "wasm32"))]
            trusted_proxies: Vec::new(),
            #[cfg(not(target_arch = "wasm32"))]
            forwarded_header: None,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ServerConfig {
    /// Checks the listener's own values and the peers' settings, before any I/O.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        check_handshake_timeout(self.handshake_timeout)?;
        if let Some(path) = &self.health_path {
            let valid = path.starts_with('/')
                && !path
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
            if !valid {
                return Err(Error::InvalidConfig(format!(
                    "health_path {path:?} must start with '/' and hold no space, control \
                     character, '?' or '#'"
                )));
            }
        }
        if self.proxy_protocol.is_some() {
            let range = MIN_PROXY_HEADER_BYTES..=MAX_PROXY_HEADER_BYTES;
            if !range.contains(&self.max_proxy_header_bytes) {
                return Err(Error::InvalidConfig(format!(
                    "max_proxy_header_bytes {} is outside {MIN_PROXY_HEADER_BYTES}-\
                     {MAX_PROXY_HEADER_BYTES}",
                    self.max_proxy_header_bytes
                )));
            }
        }
        if self.trusted_proxies.is_empty() {
            for (setting, on) in [
                ("proxy_protocol", self.proxy_protocol.is_some()),
                ("forwarded_header", self.forwarded_header.is_some()),
            ] {
                if on {
                    return Err(Error::InvalidConfig(format!(
                        "{setting} needs trusted_proxies: the addresses of the proxies in front"
                    )));
                }
            }
        }
        self.peer.validate()
    }

    /// `drain_retry_after` in whole seconds, rounded up.
    pub(crate) fn retry_after_seconds(&self) -> u64 {
        let d = self.drain_retry_after;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

/// The largest v2 PROXY header: 16 bytes and a 16-bit length.
#[cfg(not(target_arch = "wasm32"))]
const MAX_PROXY_HEADER_BYTES: usize = 16 + u16::MAX as usize;

/// Refuses a zero handshake timeout, as Godot's `set_handshake_timeout` refuses `<= 0`.
pub(crate) fn check_handshake_timeout(timeout: Duration) -> Result<(), Error> {
    if timeout.is_zero() {
        return Err(Error::InvalidConfig(
            "handshake_timeout must be more than zero (with zero every handshake would time \
             out at once)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses() {
        let e = Proxy::new("127.0.0.1:3128").endpoint().unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authorization),
            ("127.0.0.1", 3128, None)
        );
        let e = Proxy::new("HTTP://[::1]:8080/").endpoint().unwrap();
        assert_eq!(
            (e.host.as_str(), e.display()),
            ("::1", "[::1]:8080".to_string())
        );
        // RFC 7617's example: Aladdin / open sesame.
        let e = Proxy::new("http://Aladdin:open sesame@proxy:1")
            .endpoint()
            .unwrap();
        assert_eq!(
            e.authorization.as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        let e = Proxy::new("http://x:y@proxy:1")
            .with_basic_auth("Aladdin", "open sesame")
            .endpoint()
            .unwrap();
        assert_eq!(
            e.authorization.as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        let e = Proxy::new("u:p:q@proxy:1").endpoint().unwrap();
        assert_eq!(e.authorization.as_deref(), Some("Basic dTpwOnE="));
        for bad in [
            "proxy",
            "proxy:",
            "proxy:x",
            "[::1:80",
            "ftp://proxy:21",
            "@:1",
        ] {
            assert!(
                matches!(Proxy::new(bad).endpoint(), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
        let debug = format!("{:?}", Proxy::new("http://me:pw@p:1"));
        assert!(
            debug.contains("me:***@p:1") && !debug.contains("pw"),
            "{debug}"
        );
    }

    #[test]
    fn defaults_are_godots_and_valid() {
        let config = PeerConfig::default();
        assert_eq!(config.inbound_buffer_size, 65535);
        assert_eq!(config.outbound_buffer_size, 65535);
        assert_eq!(config.max_queued_packets, 4096);
        assert!(config.heartbeat_interval.is_zero() && config.no_delay);
        assert_eq!(
            ServerConfig::default().handshake_timeout,
            Duration::from_secs(3)
        );
        config.validate().unwrap();
    }

    #[test]
    fn unusable_values_are_refused() {
        let broken: [fn(&mut PeerConfig); 6] = [
            |c| c.inbound_buffer_size = 0,
            |c| c.max_queued_packets = 0,
            |c| c.max_handshake_headers = 4,
            |c| c.max_handshake_bytes = 127,
            |c| c.handshake_headers = vec!["no colon".into()],
            |c| c.supported_protocols = vec!["has space".into()],
        ];
        for breaks in broken {
            let mut config = PeerConfig::default();
            breaks(&mut config);
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn a_zero_handshake_timeout_is_refused() {
        let mut config = ServerConfig::default();
        config.validate().unwrap();
        config.handshake_timeout = Duration::ZERO;
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
        config.handshake_timeout = Duration::from_nanos(1);
        config.validate().unwrap();
        // The peers' settings are checked too.
        config.peer.inbound_buffer_size = 0;
        assert!(config.validate().is_err());
    }
}
