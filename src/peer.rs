//! `WebSocketPeer`: a [`Connection`] driven over a mio socket (plain or TLS), with the
//! name lookup and connect attempts of a client, and a poller of its own when standalone.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::config::{PeerConfig, Proxy, ProxyEndpoint};
use crate::error::Error;
use crate::proto::{
    Connection, Event, HandshakeRequest, Packet, PeerStats, ProxyHeader, ProxyProtocol, State,
    WriteMode, read_proxy_header,
};
use crate::proxy::{Tunnel, TunnelStep};
use crate::stream::Transport;
use crate::target::{Lookup, Target, literal_addr};
use crate::tls::{Session, TlsOptions};
use crate::variant::{Variant, VariantError};

/// How far the socket under the connection has come.
enum Link {
    /// No socket (never connected, or finished).
    None,
    Resolving(Lookup),
    Connecting {
        tcp: TcpStream,
        remaining: VecDeque<SocketAddr>,
    },
    /// Connected to the HTTP proxy, asking it for a tunnel to the target.
    Tunneling(Tunnel),
    /// Server side, behind a balancer: waiting for the PROXY header, before TLS and HTTP.
    ProxyHeader(Box<AwaitingProxyHeader>),
    Streaming(Transport),
}

/// An accepted connection whose PROXY header has not fully arrived.
struct AwaitingProxyHeader {
    tcp: TcpStream,
    /// The TLS session that starts after the header (`wss://`).
    session: Option<Session>,
    expected: ProxyProtocol,
    max_bytes: usize,
    /// The remote ended its side (peeking cannot tell while bytes wait).
    ended: bool,
}

/// A standalone peer's own poller (a server's peers share the server's).
struct Poller {
    poll: Poll,
    events: Events,
}

const PEER_TOKEN: Token = Token(0);

/// Even with `batch_writes`, once this much waits it goes to the socket at once: batching
/// gains nothing for it, and holding it would keep the outbox that large.
const WRITE_THROUGH_ALWAYS: usize = 64 * 1024;

/// One WebSocket connection, client or server side: Godot's `WebSocketPeer`.
///
/// Nothing happens in the background: call [`poll`](Self::poll) once per frame and read
/// what arrived with [`get_available_packet_count`](Self::get_available_packet_count) /
/// [`get_packet`](Self::get_packet) (or [`recv`](Self::recv) /
/// [`packets`](Self::packets)).
///
/// ```no_run
/// use wspeer::{State, WebSocketPeer};
///
/// let mut socket = WebSocketPeer::new();
/// socket.connect_to_url("ws://127.0.0.1:9080", None)?;
/// loop {
///     socket.poll();
///     match socket.get_ready_state() {
///         State::Open => {
///             while let Some(packet) = socket.get_packet() {
///                 println!("Got data from server: {}", String::from_utf8_lossy(&packet));
///             }
///         }
///         State::Closed => {
///             println!("closed with code {}", socket.get_close_code());
///             break;
///         }
///         _ => {}
///     }
///     std::thread::sleep(std::time::Duration::from_millis(16)); // the rest of your frame
/// }
/// # Ok::<(), wspeer::Error>(())
/// ```
pub struct WebSocketPeer {
    config: PeerConfig,
    connection: Option<Connection>,
    link: Link,
    poller: Option<Poller>,
    target: Option<(Target, Option<TlsOptions>)>,
    /// The HTTP proxy this connection goes through, checked.
    proxy: Option<ProxyEndpoint>,
    /// `PeerConfig::batch_writes` as it was when this connection started.
    batch_writes: bool,
    /// Owned by a server, which drains the connection's events itself.
    server_owned: bool,
    last_was_string: bool,
    requested_url: String,
    remote_addr: Option<SocketAddr>,
    /// Server side: the client's address when a proxy in front tells another one than the
    /// socket's (a PROXY header, a forwarding header).
    client_addr: Option<SocketAddr>,
    /// Server side: the address the PROXY header gave, once read.
    proxied_addr: Option<SocketAddr>,
}

impl Default for WebSocketPeer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WebSocketPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketPeer")
            .field("state", &self.get_ready_state())
            .field("requested_url", &self.requested_url)
            .field("remote_addr", &self.remote_addr)
            .field("packets", &self.get_available_packet_count())
            .finish_non_exhaustive()
    }
}

fn socket_options(tcp: &TcpStream, no_delay: bool) {
    if let Err(e) = tcp.set_nodelay(no_delay) {
        log::debug!("set_nodelay failed: {e}");
    }
}

impl WebSocketPeer {
    /// A closed peer with Godot's default settings.
    pub fn new() -> Self {
        Self::with_config(PeerConfig::default())
    }

    /// A closed peer with the given settings.
    pub fn with_config(config: PeerConfig) -> Self {
        WebSocketPeer {
            config,
            connection: None,
            link: Link::None,
            poller: None,
            target: None,
            proxy: None,
            batch_writes: false,
            server_owned: false,
            last_was_string: false,
            requested_url: String::new(),
            remote_addr: None,
            client_addr: None,
            proxied_addr: None,
        }
    }

    // ----- settings (Godot's properties) -----

    /// The settings used by the next connection.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// Changes the settings used by the next connection.
    pub fn config_mut(&mut self) -> &mut PeerConfig {
        &mut self.config
    }

    /// Godot's `supported_protocols` setter (entries are trimmed, as in Godot).
    pub fn set_supported_protocols<S: AsRef<str>>(&mut self, protocols: &[S]) {
        self.config.supported_protocols = protocols
            .iter()
            .map(|p| p.as_ref().trim().to_string())
            .collect();
    }

    /// Godot's `supported_protocols` getter.
    pub fn get_supported_protocols(&self) -> &[String] {
        &self.config.supported_protocols
    }

    /// Godot's `handshake_headers` setter: `"Name: value"` lines, checked at connect time.
    pub fn set_handshake_headers<S: AsRef<str>>(&mut self, headers: &[S]) {
        self.config.handshake_headers = headers.iter().map(|h| h.as_ref().to_string()).collect();
    }

    /// Godot's `handshake_headers` getter.
    pub fn get_handshake_headers(&self) -> &[String] {
        &self.config.handshake_headers
    }

    /// Godot's `inbound_buffer_size` setter.
    pub fn set_inbound_buffer_size(&mut self, bytes: usize) {
        self.config.inbound_buffer_size = bytes;
    }

    /// Godot's `inbound_buffer_size` getter.
    pub fn get_inbound_buffer_size(&self) -> usize {
        self.config.inbound_buffer_size
    }

    /// Godot's `outbound_buffer_size` setter (`0` = no byte limit).
    pub fn set_outbound_buffer_size(&mut self, bytes: usize) {
        self.config.outbound_buffer_size = bytes;
    }

    /// Godot's `outbound_buffer_size` getter.
    pub fn get_outbound_buffer_size(&self) -> usize {
        self.config.outbound_buffer_size
    }

    /// Godot's `max_queued_packets` setter.
    pub fn set_max_queued_packets(&mut self, packets: usize) {
        self.config.max_queued_packets = packets;
    }

    /// Godot's `max_queued_packets` getter.
    pub fn get_max_queued_packets(&self) -> usize {
        self.config.max_queued_packets
    }

    /// Godot's `heartbeat_interval` setter (`Duration::ZERO` = off).
    pub fn set_heartbeat_interval(&mut self, interval: Duration) {
        self.config.heartbeat_interval = interval;
    }

    /// Godot's `heartbeat_interval` getter.
    pub fn get_heartbeat_interval(&self) -> Duration {
        self.config.heartbeat_interval
    }

    /// Sets the HTTP proxy the next connections go through (`None`: direct), as
    /// [`PeerConfig::proxy`]. The address is checked by `connect_to_url`. Beyond Godot.
    pub fn set_proxy(&mut self, proxy: Option<Proxy>) {
        self.config.proxy = proxy;
    }

    /// The HTTP proxy the next connections go through, if any.
    pub fn get_proxy(&self) -> Option<&Proxy> {
        self.config.proxy.as_ref()
    }

    // ----- starting a connection -----

    /// Starts connecting to a `ws://` or `wss://` URL; the connection advances in
    /// [`poll`](Self::poll). `tls` applies to `wss://` (`None` = [`TlsOptions::client`]).
    ///
    /// Returns at once: host names are resolved on a short-lived helper thread (an IP
    /// literal never starts one) and every resolved address is tried in turn.
    ///
    /// With a [`proxy`](PeerConfig::proxy), the proxy's host is resolved and connected to
    /// instead, and the connection goes through the tunnel it opens (see [`Proxy`]).
    pub fn connect_to_url(&mut self, url: &str, tls: Option<TlsOptions>) -> Result<(), Error> {
        self.check_reusable()?;
        let target = Target::parse(url)?;
        let proxy = self
            .config
            .proxy
            .as_ref()
            .map(Proxy::endpoint)
            .transpose()?;
        if let Some(options) = &tls {
            options.check_client()?;
        }
        let tls = match (target.secure, tls) {
            (true, None) => Some(TlsOptions::client()?),
            (true, Some(options)) => Some(options),
            (false, _) => None,
        };
        let now = Instant::now();
        let authority = target
            .uri
            .authority()
            .map_or(target.host.as_str(), |a| a.as_str());
        let path = target.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let connection = Connection::client(
            &self.config,
            authority,
            path,
            now + self.config.connect_timeout,
        )?;
        let poll = Poll::new()?;
        // Where the TCP connection goes: the proxy, or the target itself.
        let (host, port) = match &proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (target.host.as_str(), target.port),
        };
        let link = match literal_addr(host, port) {
            Some(addr) => Link::Connecting {
                tcp: Self::start_tcp(addr, Some(poll.registry()))?,
                remaining: VecDeque::new(),
            },
            None => Link::Resolving(Lookup::start(
                host.to_string(),
                port,
                self.config.resolver.clone(),
            )?),
        };
        self.start(connection, link);
        self.requested_url = url.to_string();
        self.target = Some((target, tls));
        self.proxy = proxy;
        self.poller = Some(Poller {
            poll,
            events: Events::with_capacity(16),
        });
        Ok(())
    }

    /// Takes an accepted TCP connection and runs the server side of the handshake (TLS
    /// first, with server `tls` options) inside [`poll`](Self::poll), as Godot's
    /// `accept_stream`. The handshake must finish within `connect_timeout`.
    pub fn accept_stream(
        &mut self,
        stream: std::net::TcpStream,
        tls: Option<&TlsOptions>,
    ) -> Result<(), Error> {
        self.check_reusable()?;
        stream.set_nonblocking(true)?;
        let mut tcp = TcpStream::from_std(stream);
        let poll = Poll::new()?;
        poll.registry().register(
            &mut tcp,
            PEER_TOKEN,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let deadline = Instant::now() + self.config.connect_timeout;
        self.start_server_side(tcp, tls, deadline, false, None)?;
        self.poller = Some(Poller {
            poll,
            events: Events::with_capacity(16),
        });
        Ok(())
    }

    /// A peer for a connection a [`WebSocketServer`](crate::WebSocketServer) accepted and
    /// registered with its own poller; `decide`: the server's application decides the
    /// upgrade ([`ServerConfig::decide_upgrades`](crate::ServerConfig::decide_upgrades));
    /// `proxy_header`: the PROXY header expected first, and its size limit.
    pub(crate) fn server_side(
        config: PeerConfig,
        tcp: TcpStream,
        tls: Option<&TlsOptions>,
        deadline: Instant,
        decide: bool,
        proxy_header: Option<(ProxyProtocol, usize)>,
    ) -> Result<Self, Error> {
        let mut peer = Self::with_config(config);
        peer.start_server_side(tcp, tls, deadline, decide, proxy_header)?;
        peer.server_owned = true;
        Ok(peer)
    }

    fn start_server_side(
        &mut self,
        tcp: TcpStream,
        tls: Option<&TlsOptions>,
        deadline: Instant,
        decide: bool,
        proxy_header: Option<(ProxyProtocol, usize)>,
    ) -> Result<(), Error> {
        if let Some(options) = tls {
            options.check_server()?;
        }
        let connection = if decide {
            Connection::server_deciding(&self.config, deadline)?
        } else {
            Connection::server(&self.config, deadline)?
        };
        socket_options(&tcp, self.config.no_delay);
        let remote_addr = tcp.peer_addr().ok();
        let session = tls.map(TlsOptions::start_server).transpose()?;
        let scheme = if session.is_some() { "wss://" } else { "ws://" };
        let link = match proxy_header {
            Some((expected, max_bytes)) => Link::ProxyHeader(Box::new(AwaitingProxyHeader {
                tcp,
                session,
                expected,
                max_bytes,
                ended: false,
            })),
            None => Link::Streaming(Transport::new(tcp, session)),
        };
        self.start(connection, link);
        self.requested_url = scheme.into();
        self.remote_addr = remote_addr;
        Ok(())
    }

    /// Forgets the previous connection (Godot's `_clear()`), keeping the settings.
    fn start(&mut self, connection: Connection, link: Link) {
        self.connection = Some(connection);
        self.link = link;
        self.poller = None;
        self.target = None;
        self.proxy = None;
        self.batch_writes = self.config.batch_writes;
        self.last_was_string = false;
        self.requested_url.clear();
        self.remote_addr = None;
        self.client_addr = None;
        self.proxied_addr = None;
    }

    fn check_reusable(&self) -> Result<(), Error> {
        match self.get_ready_state() {
            State::Closed | State::Closing => Ok(()),
            _ => Err(Error::AlreadyInUse),
        }
    }

    fn start_tcp(addr: SocketAddr, registry: Option<&Registry>) -> Result<TcpStream, Error> {
        let mut tcp = TcpStream::connect(addr)?;
        if let Some(registry) = registry {
            registry.register(
                &mut tcp,
                PEER_TOKEN,
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        Ok(tcp)
    }

    // ----- the frame -----

    /// Does everything that is ready (connect, handshake, read, write, timers) and returns
    /// at once. Call it once per frame; packets only arrive here.
    ///
    /// A peer owned by a [`WebSocketServer`](crate::WebSocketServer) is advanced by the
    /// server's `poll()`; calling this on it does nothing.
    pub fn poll(&mut self) {
        self.poll_at(Instant::now());
    }

    /// [`poll`](Self::poll) with the current time given, so timeouts can be tested (or
    /// driven by a game clock) without sleeping.
    pub fn poll_at(&mut self, now: Instant) {
        let Some(mut poller) = self.poller.take() else {
            return;
        };
        match poller.poll.poll(&mut poller.events, Some(Duration::ZERO)) {
            Ok(()) => {
                for event in poller.events.iter() {
                    self.on_ready(event);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => log::warn!("poll failed: {e}"),
        }
        self.advance(now, Some(poller.poll.registry()));
        // A standalone peer's state is read from the connection, not from its events.
        while self.poll_event().is_some() {}
        if matches!(self.link, Link::None) {
            // Nothing left to watch; a new connection makes a new poller.
            return;
        }
        self.poller = Some(poller);
    }

    /// Records readiness reported by a poller.
    pub(crate) fn on_ready(&mut self, event: &mio::event::Event) {
        match &mut self.link {
            Link::Streaming(transport) => transport.on_ready(event),
            Link::ProxyHeader(awaiting) => {
                awaiting.ended |= event.is_read_closed() || event.is_error();
            }
            _ => {}
        }
    }

    /// The connection's next event (server-owned peers: the server turns them into
    /// [`ServerEvent`](crate::ServerEvent)s).
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.connection.as_mut()?.poll_event()
    }

    /// Advances the socket and the connection as far as they go without waiting.
    pub(crate) fn advance(&mut self, now: Instant, registry: Option<&Registry>) {
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        match std::mem::replace(&mut self.link, Link::None) {
            Link::None => {}
            Link::Resolving(mut lookup) => match lookup.try_result() {
                None => self.link = Link::Resolving(lookup),
                Some(Err(Error::Resolve(why))) if self.proxy.is_some() => {
                    let proxy = self.proxy.as_ref().map(ProxyEndpoint::display);
                    let why = format!("proxy {}: {why}", proxy.unwrap_or_default());
                    connection.handle_transport_error(now, Error::Resolve(why));
                }
                Some(Err(e)) => connection.handle_transport_error(now, e),
                Some(Ok(addrs)) => self.link = self.connect_next(addrs.into(), None, registry),
            },
            Link::Connecting { tcp, remaining } => {
                // A tunnel's request goes out at once, in the same frame as the connect.
                self.link = match self.step_connect(tcp, remaining, registry) {
                    Link::Tunneling(tunnel) => self.step_tunnel(tunnel, now),
                    link => link,
                };
            }
            Link::Tunneling(tunnel) => self.link = self.step_tunnel(tunnel, now),
            Link::ProxyHeader(awaiting) => self.link = self.step_proxy_header(awaiting),
            link @ Link::Streaming(_) => self.link = link,
        }
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        let Link::Streaming(transport) = &mut self.link else {
            connection.handle_timeout(now);
            if connection.is_closed() && matches!(self.link, Link::ProxyHeader(_)) {
                log::warn!(
                    "refusing the connection from {}: no whole PROXY header within the \
                     handshake timeout",
                    self.proxy_header_sender()
                );
            }
            return self.drop_link_when_closed();
        };
        // Input first, so an answer already in the socket (a pong, a close reply) counts
        // before its timer fires; then timers, which also resume reading that a full
        // queue paused; then whatever that made room for.
        transport.receive(connection, now);
        connection.handle_timeout(now);
        transport.receive(connection, now);
        transport.send(connection);
        if let Some(e) = transport.take_write_error() {
            connection.handle_transport_error(now, Error::ConnectionLost(e.to_string()));
        }
        if connection.wants_shutdown() && !transport.has_pending_output() {
            transport.shutdown();
            connection.handle_shutdown(now);
        }
        if let Some(request) = connection.handshake_request() {
            // Server side, once open: Godot's requested URL is scheme + Host + target.
            if self.requested_url.ends_with("://") {
                let host = request.header("host").unwrap_or("");
                let query = request
                    .query
                    .as_deref()
                    .map_or(String::new(), |q| format!("?{q}"));
                self.requested_url = format!("{}{host}{}{query}", self.requested_url, request.path);
            }
        }
        self.drop_link_when_closed();
    }

    fn drop_link_when_closed(&mut self) {
        if self.connection.as_ref().is_none_or(Connection::is_closed) {
            self.link = Link::None;
        }
    }

    /// Starts the next connect attempt, or fails the connection when none is left.
    fn connect_next(
        &mut self,
        mut remaining: VecDeque<SocketAddr>,
        mut last_error: Option<io::Error>,
        registry: Option<&Registry>,
    ) -> Link {
        while let Some(addr) = remaining.pop_front() {
            match Self::start_tcp(addr, registry) {
                Ok(tcp) => return Link::Connecting { tcp, remaining },
                Err(Error::Io(e)) => last_error = Some(e),
                Err(e) => return self.fail_link(e),
            }
        }
        let mut why = last_error.map_or_else(|| "no address to try".to_string(), |e| e.to_string());
        if let Some(proxy) = &self.proxy {
            why = format!("proxy {}: {why}", proxy.display());
        }
        self.fail_link(Error::Connect(why))
    }

    fn fail_link(&mut self, error: Error) -> Link {
        if let Some(connection) = &mut self.connection {
            connection.handle_transport_error(Instant::now(), error);
        }
        Link::None
    }

    /// Non-blocking connect, mio's documented way: a pending error means failure, a peer
    /// address means connected, `NotConnected` means not yet.
    fn step_connect(
        &mut self,
        tcp: TcpStream,
        remaining: VecDeque<SocketAddr>,
        registry: Option<&Registry>,
    ) -> Link {
        let failure = match tcp.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match tcp.peer_addr() {
                Ok(addr) => {
                    self.remote_addr = Some(addr);
                    None
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    return Link::Connecting { tcp, remaining };
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failure {
            log::debug!("connect attempt failed: {e}");
            drop(tcp);
            return self.connect_next(remaining, Some(e), registry);
        }
        socket_options(&tcp, self.config.no_delay);
        let Some((target, _)) = &self.target else {
            return self.fail_link(Error::Connect("no target".into()));
        };
        match &self.proxy {
            Some(proxy) => Link::Tunneling(Tunnel::new(tcp, proxy, &target.host, target.port)),
            None => self.start_stream(tcp, Vec::new(), Instant::now()),
        }
    }

    /// Advances the proxy's `CONNECT`; once the tunnel is open, TLS and the WebSocket
    /// handshake start through it.
    fn step_tunnel(&mut self, tunnel: Tunnel, now: Instant) -> Link {
        let step = tunnel.step(
            self.config.max_handshake_bytes,
            self.config.max_handshake_headers,
        );
        match step {
            TunnelStep::Pending(tunnel) => Link::Tunneling(tunnel),
            TunnelStep::Open { tcp, leftover } => self.start_stream(tcp, leftover, now),
            TunnelStep::Failed(e) => self.fail_link(e),
        }
    }

    /// Looks at what arrived (without taking it) until a whole PROXY header is there, then
    /// takes exactly the header: TLS or HTTP read the rest from the socket as they would
    /// without one. A connection that cannot be a valid header is refused (logged).
    fn step_proxy_header(&mut self, awaiting: Box<AwaitingProxyHeader>) -> Link {
        let from = self.proxy_header_sender();
        let mut head = vec![0u8; awaiting.max_bytes];
        let seen = match awaiting.tcp.peek(&mut head) {
            Ok(0) => {
                log::warn!("{from} closed the connection before its PROXY header");
                return self.fail_link(Error::Handshake(
                    "the connection closed before its PROXY header".into(),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return self.fail_link(Error::ConnectionLost(e.to_string())),
        };
        let header = read_proxy_header(&head[..seen], awaiting.expected, awaiting.max_bytes);
        let (len, source) = match header {
            ProxyHeader::Incomplete if awaiting.ended => {
                log::warn!("refusing the connection from {from}: it ended inside its PROXY header");
                return self.fail_link(Error::Handshake(
                    "the connection closed inside its PROXY header".into(),
                ));
            }
            ProxyHeader::Incomplete => return Link::ProxyHeader(awaiting),
            ProxyHeader::Invalid(why) => {
                log::warn!("refusing the connection from {from}: {why}");
                return self.fail_link(Error::Handshake(why));
            }
            ProxyHeader::Complete { len, source } => (len, source),
        };
        // The peeked bytes are still in the socket: a read of `len` takes exactly them.
        let AwaitingProxyHeader { tcp, session, .. } = *awaiting;
        let mut taken = 0;
        while taken < len {
            match (&tcp).read(&mut head[taken..len]) {
                Ok(0) => break,
                Ok(n) => taken += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail_link(Error::ConnectionLost(e.to_string())),
            }
        }
        if taken < len {
            return self.fail_link(Error::ConnectionLost(
                "the connection closed inside its PROXY header".into(),
            ));
        }
        self.proxied_addr = source;
        Link::Streaming(Transport::new(tcp, session))
    }

    /// Who sent the PROXY header being read, for the logs.
    fn proxy_header_sender(&self) -> String {
        self.remote_addr
            .map_or_else(|| "?".into(), |a| a.to_string())
    }

    /// TLS (for `wss://`) and the WebSocket handshake over a connected socket. `leftover`:
    /// bytes from the server that came with the proxy's answer, read before they could
    /// reach the transport.
    fn start_stream(&mut self, tcp: TcpStream, leftover: Vec<u8>, now: Instant) -> Link {
        let Some((target, tls)) = &self.target else {
            return self.fail_link(Error::Connect("no target".into()));
        };
        let session = match tls
            .as_ref()
            .map(|t| t.start_client(&target.host))
            .transpose()
        {
            Ok(session) => session,
            Err(e) => return self.fail_link(e),
        };
        let secure = session.is_some();
        let mut transport = Transport::new(tcp, session);
        if !leftover.is_empty() {
            if secure {
                if let Err(e) = transport.feed_tls(&leftover) {
                    return self.fail_link(Error::from(e));
                }
            } else if let Some(connection) = &mut self.connection {
                connection.handle_input(now, &leftover);
            }
        }
        Link::Streaming(transport)
    }

    /// The connection, for a server that sets what it answers besides upgrades.
    pub(crate) fn connection_mut(&mut self) -> Option<&mut Connection> {
        self.connection.as_mut()
    }

    /// The earliest moment this peer needs `advance` without any socket event.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.connection.as_ref()?.poll_timeout()
    }

    // ----- sending -----

    /// Sends one message as text or binary. Fails without queueing anything when the
    /// connection is not open, the text is not UTF-8, or the message would exceed
    /// `outbound_buffer_size` bytes or `max_queued_packets` messages waiting.
    pub fn send(&mut self, data: &[u8], mode: WriteMode) -> Result<(), Error> {
        if mode == WriteMode::Text && std::str::from_utf8(data).is_err() {
            return Err(Error::InvalidUtf8);
        }
        self.open_connection()?.send(data, mode)?;
        self.write_now()
    }

    /// Sends a text message (Godot's `send_text`).
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.open_connection()?.send_text(text)?;
        self.write_now()
    }

    /// Sends a received packet on, as text or binary like it came, without copying its
    /// payload (an echo or a relay costs no allocation here).
    pub fn send_packet(&mut self, packet: &Packet) -> Result<(), Error> {
        self.open_connection()?.send_packet(packet)?;
        self.write_now()
    }

    /// Sends a binary message (Godot's `put_packet`, always binary as in Godot 4).
    pub fn put_packet(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send(data, WriteMode::Binary)
    }

    /// Sends `value` as one binary message (Godot's `put_var`), in the format of
    /// [`PeerConfig::variant_version`] (Godot 4's by default). Fails with
    /// [`Error::Variant`] for a value that format cannot hold.
    pub fn put_var(&mut self, value: &Variant) -> Result<(), Error> {
        let bytes = value.to_bytes(self.config.variant_version)?;
        self.put_packet(&bytes)
    }

    /// Sends a ping now, to measure the round-trip time without waiting for the heartbeat
    /// (or with the heartbeat off); its pong, read in a later `poll()`, updates
    /// [`get_stats`](Self::get_stats). The ping carries a sequence number, so only the pong
    /// of the latest ping counts (with `batch_writes`, the ping waits for the next `flush`
    /// or `poll`, and that wait is part of the sample). It is not a heartbeat ping: an
    /// unanswered one drops nothing. Fails with [`Error::NotOpen`] unless the connection is
    /// open. Beyond Godot.
    pub fn send_ping(&mut self) -> Result<(), Error> {
        self.open_connection()?.send_ping(Instant::now())?;
        self.write_now()
    }

    fn open_connection(&mut self) -> Result<&mut Connection, Error> {
        self.connection.as_mut().ok_or(Error::NotOpen)
    }

    /// Writes what `send` has queued, now, as far as the socket takes it. Only needed with
    /// `PeerConfig::batch_writes` (otherwise `send` writes at once); `poll()` does it too.
    pub fn flush(&mut self) {
        if let (Some(connection), Link::Streaming(transport)) =
            (&mut self.connection, &mut self.link)
        {
            transport.send(connection);
        }
    }

    /// As Godot, a message goes to the socket inside `send` unless writes are batched; a
    /// socket that failed fails the connection and the send.
    fn write_now(&mut self) -> Result<(), Error> {
        let (Some(connection), Link::Streaming(transport)) = (&mut self.connection, &mut self.link)
        else {
            return Ok(());
        };
        if self.batch_writes
            && connection.get_current_outbound_buffered_amount() < WRITE_THROUGH_ALWAYS
        {
            return Ok(());
        }
        transport.send(connection);
        match transport.take_write_error() {
            None => Ok(()),
            Some(e) => {
                let message = e.to_string();
                connection
                    .handle_transport_error(Instant::now(), Error::ConnectionLost(message.clone()));
                self.drop_link_when_closed();
                Err(Error::ConnectionLost(message))
            }
        }
    }

    // ----- receiving -----

    /// Packets waiting to be read (Godot's `get_available_packet_count`). Unlike Godot,
    /// packets that arrived before a close stay readable after it.
    pub fn get_available_packet_count(&self) -> usize {
        self.connection
            .as_ref()
            .map_or(0, Connection::get_available_packet_count)
    }

    /// The next packet's payload, or `None` when the queue is empty (Godot's
    /// `get_packet`). [`was_string_packet`](Self::was_string_packet) then tells its type.
    pub fn get_packet(&mut self) -> Option<Vec<u8>> {
        self.recv().map(Packet::into_vec)
    }

    /// Takes the next packet and decodes it as one Variant (Godot's `get_var`), in the
    /// format of [`PeerConfig::variant_version`] within `variant_limits`: `None` when no
    /// packet waits; a packet that is not exactly one Variant is consumed and gives the
    /// error.
    pub fn get_var(&mut self) -> Option<Result<Variant, VariantError>> {
        let packet = self.recv()?;
        Some(Variant::from_bytes(
            packet.data(),
            self.config.variant_version,
            &self.config.variant_limits,
        ))
    }

    /// The next packet with its type, without copying the payload.
    pub fn recv(&mut self) -> Option<Packet> {
        let packet = self.connection.as_mut()?.recv()?;
        self.last_was_string = packet.is_text();
        Some(packet)
    }

    /// The queued packets in order (`for p in peer.packets() { ... }`). Each is taken off
    /// the queue only when the iterator yields it: packets a loop does not reach stay
    /// queued.
    pub fn packets(&mut self) -> impl Iterator<Item = Packet> + '_ {
        std::iter::from_fn(move || self.recv())
    }

    /// Whether the last packet returned by `get_packet`/`recv` was a text frame.
    pub fn was_string_packet(&self) -> bool {
        self.last_was_string
    }

    // ----- closing -----

    /// Starts the close handshake with `code` and `reason` (Godot's `close`); keep polling
    /// until [`State::Closed`]. A negative code drops the connection at once without a
    /// close frame (close code -1). While connecting, the attempt is abandoned.
    ///
    /// Fails (and changes nothing) for a code RFC 6455 forbids on the wire or a reason
    /// over 123 bytes.
    pub fn close(&mut self, code: i32, reason: &str) -> Result<(), Error> {
        crate::proto::check_close(code, reason)?;
        if let Some(connection) = &mut self.connection {
            connection.close(Instant::now(), code, reason)?;
            if connection.is_closed() {
                // Dropped at once: the socket goes now, not at the next poll.
                self.link = Link::None;
            } else {
                // The close frame goes out now, batching or not.
                self.flush();
            }
        }
        Ok(())
    }

    /// The connection's state (Godot's `get_ready_state`).
    pub fn get_ready_state(&self) -> State {
        self.connection
            .as_ref()
            .map_or(State::Closed, Connection::get_ready_state)
    }

    /// The close code the remote sent, or -1 when the connection did not close cleanly
    /// (Godot's `get_close_code`). 1005 means a close frame without a code. After we
    /// closed because of the remote's protocol error, the code we sent (1002, 1007, 1009).
    pub fn get_close_code(&self) -> i32 {
        self.connection
            .as_ref()
            .map_or(-1, Connection::get_close_code)
    }

    /// The close reason that went with [`get_close_code`](Self::get_close_code).
    pub fn get_close_reason(&self) -> &str {
        self.connection
            .as_ref()
            .map_or("", Connection::get_close_reason)
    }

    /// Why the connection failed or closed uncleanly, if it did: the certificate error,
    /// the refused connection, the timeout, the protocol violation. Beyond Godot.
    pub fn get_last_error(&self) -> Option<&Error> {
        self.connection.as_ref()?.error()
    }

    // ----- information -----

    /// The remote IP address, once connected (Godot's `get_connected_host`). On a server,
    /// behind trusted proxies ([`ServerConfig::proxy_protocol`](crate::ServerConfig),
    /// `forwarded_header`), the client's as they report it, once known;
    /// [`get_socket_peer_address`](Self::get_socket_peer_address) keeps the socket's.
    pub fn get_connected_host(&self) -> Option<std::net::IpAddr> {
        // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`; report the
        // IPv4 address it is, as Godot does.
        self.client_addr
            .or(self.remote_addr)
            .map(|a| a.ip().to_canonical())
    }

    /// The remote TCP port, or 0 before a connection (Godot's `get_connected_port`); the
    /// client's, as [`get_connected_host`](Self::get_connected_host) (0 when a forwarding
    /// header gave no port).
    pub fn get_connected_port(&self) -> u16 {
        self.client_addr
            .or(self.remote_addr)
            .map_or(0, |a| a.port())
    }

    /// The address at the other end of the socket itself, once connected: on a server
    /// behind a proxy, the proxy's (IPv4 clients of a dual-stack listener as IPv4).
    /// Beyond Godot.
    pub fn get_socket_peer_address(&self) -> Option<SocketAddr> {
        self.remote_addr
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
    }

    /// Server side: the client address a PROXY header gave, once read.
    pub(crate) fn proxied_address(&self) -> Option<SocketAddr> {
        self.proxied_addr
    }

    /// Server side: the client's address as the server worked it out.
    pub(crate) fn set_client_address(&mut self, address: SocketAddr) {
        self.client_addr = Some(address);
    }

    /// Client: the URL given to `connect_to_url`. Server side: `ws://` or `wss://` + the
    /// `Host` header + the request path (Godot's `get_requested_url`).
    pub fn get_requested_url(&self) -> &str {
        &self.requested_url
    }

    /// Whether this connection's TLS handshake resumed an earlier session (a reconnect
    /// with the same [`TlsOptions`], or the default options, skips the certificate
    /// exchange). False for `ws://`, before the handshake and once the connection is
    /// closed. Beyond Godot.
    pub fn is_tls_session_resumed(&self) -> bool {
        matches!(&self.link, Link::Streaming(transport) if transport.tls_resumed())
    }

    /// The negotiated sub-protocol, or `""` (Godot's `get_selected_protocol`).
    pub fn get_selected_protocol(&self) -> &str {
        self.connection
            .as_ref()
            .map_or("", Connection::get_selected_protocol)
    }

    /// Server side: the client's upgrade request (path, query, headers), once open.
    pub fn get_handshake_request(&self) -> Option<&HandshakeRequest> {
        self.connection.as_ref()?.handshake_request()
    }

    /// Server side, for a [`WebSocketServer`](crate::WebSocketServer) that decides
    /// upgrades: answers the waiting request with `101`, written now.
    pub(crate) fn accept_upgrade(
        &mut self,
        protocol: Option<&str>,
        headers: &[&str],
    ) -> Result<(), Error> {
        self.open_connection()?
            .accept_upgrade(Instant::now(), protocol, headers)?;
        self.flush();
        Ok(())
    }

    /// Server side: refuses the waiting request with an HTTP answer, written now.
    pub(crate) fn reject_upgrade(
        &mut self,
        status: u16,
        headers: &[&str],
        body: &[u8],
    ) -> Result<(), Error> {
        self.open_connection()?
            .reject_upgrade(Instant::now(), status, headers, body)?;
        self.flush();
        Ok(())
    }

    /// Client side: the headers of the server's `101` response (names lower-cased), once
    /// open; empty before. Beyond Godot.
    pub fn get_handshake_response_headers(&self) -> &[(String, String)] {
        self.connection
            .as_ref()
            .map_or(&[], Connection::response_headers)
    }

    /// Turns `TCP_NODELAY` on or off for this connection (on by default, as in Godot).
    pub fn set_no_delay(&mut self, enabled: bool) -> Result<(), Error> {
        self.config.no_delay = enabled;
        let tcp = match &self.link {
            Link::Connecting { tcp, .. } => Some(tcp),
            Link::Tunneling(tunnel) => Some(tunnel.tcp()),
            Link::ProxyHeader(awaiting) => Some(&awaiting.tcp),
            Link::Streaming(transport) => Some(transport.tcp()),
            _ => None,
        };
        if let Some(tcp) = tcp {
            tcp.set_nodelay(enabled)?;
        }
        Ok(())
    }

    /// Whether `TCP_NODELAY` is on for this connection, read back from the socket itself
    /// (not from the configuration). `Err(Error::NotOpen)` when there is no socket (before
    /// `connect_to_url`'s lookup finishes, or after the close); `Err(Error::Io)` if the OS
    /// refuses the query. Beyond Godot.
    pub fn is_no_delay(&self) -> Result<bool, Error> {
        let tcp = match &self.link {
            Link::Connecting { tcp, .. } => tcp,
            Link::Tunneling(tunnel) => tunnel.tcp(),
            Link::ProxyHeader(awaiting) => &awaiting.tcp,
            Link::Streaming(transport) => transport.tcp(),
            _ => return Err(Error::NotOpen),
        };
        Ok(tcp.nodelay()?)
    }

    /// Bytes queued but not yet written to the socket (Godot's
    /// `get_current_outbound_buffered_amount`), frame headers included.
    pub fn get_current_outbound_buffered_amount(&self) -> usize {
        self.connection
            .as_ref()
            .map_or(0, Connection::get_current_outbound_buffered_amount)
    }

    /// This connection's round-trip time (from the heartbeat's pings, or
    /// [`send_ping`](Self::send_ping)'s) and its bytes and messages in and out, for a
    /// network overlay: see [`PeerStats`] for what each field counts. Server side, the
    /// same through [`WebSocketServer::get_peer`](crate::WebSocketServer::get_peer). The
    /// figures start at zero with each connection and stay readable after its close; all
    /// zero (and no round-trip time) before the first. Beyond Godot.
    ///
    /// ```
    /// use wspeer::WebSocketPeer;
    ///
    /// fn overlay(peer: &WebSocketPeer) -> String {
    ///     let stats = peer.get_stats();
    ///     let rtt = stats.smoothed_rtt.map_or("-".into(), |d| format!("{} ms", d.as_millis()));
    ///     format!(
    ///         "rtt {rtt}  in {} msg / {} B  out {} msg / {} B",
    ///         stats.messages_received, stats.bytes_received, stats.messages_sent, stats.bytes_sent
    ///     )
    /// }
    /// assert_eq!(overlay(&WebSocketPeer::new()), "rtt -  in 0 msg / 0 B  out 0 msg / 0 B");
    /// ```
    pub fn get_stats(&self) -> PeerStats {
        self.connection
            .as_ref()
            .map_or_else(PeerStats::default, Connection::stats)
    }

    /// The same as [`get_stats`](Self::get_stats).
    pub fn stats(&self) -> PeerStats {
        self.get_stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_validation() {
        let mut peer = WebSocketPeer::new();
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000, 70000] {
            assert!(matches!(peer.close(bad, ""), Err(Error::InvalidCloseCode(c)) if c == bad));
        }
        assert!(matches!(
            peer.close(1000, &"x".repeat(124)),
            Err(Error::CloseReasonTooLong(124))
        ));
        assert!(peer.close(1000, &"x".repeat(123)).is_ok());
        assert!(peer.close(4999, "").is_ok());
    }

    #[test]
    fn idle_peer_refuses_to_send() {
        let mut peer = WebSocketPeer::new();
        assert!(matches!(peer.send_text("x"), Err(Error::NotOpen)));
        assert!(matches!(
            peer.send(&[0xff], WriteMode::Text),
            Err(Error::InvalidUtf8)
        ));
        assert_eq!(peer.get_ready_state(), State::Closed);
        assert_eq!(peer.get_close_code(), -1);
    }
}
