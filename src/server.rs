//! `WebSocketServer`: the listener, the peers it accepted, their ids, timers and the
//! ordered event queue the game drains after `poll()`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::{ServerConfig, check_handshake_timeout};
use crate::error::Error;
use crate::ids::PeerIds;
use crate::listen::listen_tcp;
use crate::peer::WebSocketPeer;
use crate::proto::{Event, HandshakeRequest, State, client_address};
use crate::sources::{LISTENER, SourceToken, Sources, WAKER};
use crate::tls::TlsOptions;

/// What happened on a [`WebSocketServer`], drained in order after `poll()` (Godot's
/// signals, as values).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A client finished its handshake (`client_connected(id, protocol)`); `protocol` is the
    /// selected sub-protocol or `""`.
    ClientConnected {
        /// The new peer's id.
        id: i32,
        /// The selected sub-protocol, or `""`.
        protocol: String,
    },
    /// A client sent a close frame (`client_close_request(id, code, reason)`). Its
    /// `ClientDisconnected` follows once the close handshake completes.
    ClientCloseRequest {
        /// The peer's id.
        id: i32,
        /// The close code the client sent (1005 if none).
        code: i32,
        /// The close reason the client sent.
        reason: String,
    },
    /// A client is gone (`client_disconnected(id, was_clean_close)`). Its unread packets
    /// stay readable through `get_peer(id)` until the next `poll()`.
    ClientDisconnected {
        /// The peer's id.
        id: i32,
        /// Whether the close handshake completed (the close code is not -1).
        was_clean: bool,
    },
    /// One message arrived from a client (`data_received(id)`): read it with
    /// `get_peer(id).get_packet()`.
    DataReceived {
        /// The peer's id.
        id: i32,
    },
    /// With [`ServerConfig::decide_upgrades`]: a client sent a complete, valid upgrade
    /// request, and it waits for
    /// [`accept_upgrade`](WebSocketServer::accept_upgrade) or
    /// [`reject_upgrade`](WebSocketServer::reject_upgrade) (in this poll or a later one,
    /// within `handshake_timeout`). Until accepted, `id` is no connected peer
    /// (`get_peer(id)` is `None`, no `ClientConnected`) and counts as a pending handshake.
    /// Beyond Godot.
    UpgradeRequested {
        /// The id the peer has if accepted (`ClientConnected` follows the accept).
        id: i32,
        /// The request: path, query and headers.
        request: HandshakeRequest,
        /// The client's address (IPv4 clients of a dual-stack listener as IPv4). Behind
        /// trusted proxies, the client's as they tell it
        /// ([`ServerConfig::proxy_protocol`], [`ServerConfig::forwarded_header`]); the
        /// socket's own peer is
        /// [`get_socket_peer_address`](WebSocketServer::get_socket_peer_address) once
        /// connected.
        address: SocketAddr,
    },
    /// A source registered with [`register_source`](WebSocketServer::register_source) is
    /// ready (mio's readiness, edge-triggered: read or write it until `WouldBlock`, or the
    /// next event may never come). Never reported for a token once it is deregistered.
    /// Beyond Godot.
    SourceReady {
        /// The source, as `register_source` returned it.
        token: SourceToken,
        /// It can be read (or its reading side closed: see `read_closed`).
        readable: bool,
        /// It can be written.
        writable: bool,
        /// Its reading side is closed (a hint: a read returning 0 is the proof).
        read_closed: bool,
        /// Its writing side is closed (a hint, as `read_closed`).
        write_closed: bool,
        /// It has an error pending (read it with the source's own `take_error`).
        error: bool,
    },
    /// The server's [`waker`](WebSocketServer::waker) was woken (from any thread) since the
    /// last poll; wakes between two polls make one event. Beyond Godot.
    Woken,
}

/// One accepted connection in the server's slab.
struct Slot {
    id: i32,
    peer: WebSocketPeer,
    /// `ClientConnected` was reported (the peer is visible to the application).
    connected: bool,
    /// `UpgradeRequested` was reported and no decision taken yet.
    awaiting: bool,
    /// The socket's peer, as accepted (IPv4 clients of a dual-stack listener as IPv4).
    address: SocketAddr,
    /// The deadline this slot has in the timer heap, if any.
    scheduled: Option<Instant>,
    /// Already in this poll's work list.
    queued: bool,
}

/// A WebSocket server driven by the game loop: Godot 3's `WebSocketServer`, in Rust.
///
/// Each [`poll`](Self::poll) accepts waiting connections (bounded per call), advances
/// handshakes, reads the peers that are ready (never scans idle ones), fires due timers,
/// and queues [`ServerEvent`]s for the game to drain with [`pop_event`](Self::pop_event).
///
/// ```no_run
/// use wspeer::{ServerEvent, WebSocketServer};
///
/// let mut server = WebSocketServer::new();
/// server.listen(9080)?;
/// loop {
///     server.poll();
///     while let Some(event) = server.pop_event() {
///         match event {
///             ServerEvent::ClientConnected { id, protocol } => {
///                 println!("Client {id} connected with protocol: {protocol}")
///             }
///             ServerEvent::DataReceived { id } => {
///                 let peer = server.get_peer(id).expect("reported peers exist");
///                 if let Some(packet) = peer.recv() {
///                     let _ = peer.put_packet(packet.data());
///                 }
///             }
///             _ => {}
///         }
///     }
///     std::thread::sleep(std::time::Duration::from_millis(16)); // the rest of your frame
/// }
/// # Ok::<(), wspeer::Error>(())
/// ```
pub struct WebSocketServer {
    config: ServerConfig,
    tls: Option<TlsOptions>,
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    /// The listener reported readiness and has not yet answered `WouldBlock`.
    listener_ready: bool,
    slots: Slab<Slot>,
    by_id: HashMap<i32, usize>,
    ids: PeerIds,
    queue: VecDeque<ServerEvent>,
    timers: BinaryHeap<Reverse<(Instant, usize, i32)>>,
    /// Peers the application touched since the last poll (it may have drained packets,
    /// sent, or closed): they are advanced even without a socket event.
    touched: Vec<usize>,
    /// Peers that ended in the last poll; removed at the start of the next.
    retired: Vec<usize>,
    work: Vec<usize>,
    pending: usize,
    connected: usize,
    refusing: bool,
    refused: u64,
    /// `drain()` was called (until `stop()`).
    draining: bool,
    /// Other sources sharing the poller, and its waker.
    sources: Sources,
}

impl Default for WebSocketServer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WebSocketServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketServer")
            .field("local_addr", &self.local_addr())
            .field("peers", &self.connected)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl WebSocketServer {
    /// A server with Godot's defaults, not yet listening.
    pub fn new() -> Self {
        Self::with_config(ServerConfig::default())
    }

    /// A server with the given settings, not yet listening.
    ///
    /// # Panics
    /// If `config.handshake_timeout` is zero, or if the OS refuses to create an
    /// epoll/kqueue instance (out of file descriptors);
    /// [`try_with_config`](Self::try_with_config) reports both as errors.
    pub fn with_config(config: ServerConfig) -> Self {
        match Self::try_with_config(config) {
            Ok(server) => server,
            Err(e) => panic!("wspeer: cannot create a server: {e}"),
        }
    }

    /// A server with the given settings. Fails with [`Error::InvalidConfig`] if
    /// `config.handshake_timeout` is zero, or with the OS error if no poller can be
    /// created. The peers' settings are checked by [`listen_on`](Self::listen_on), so the
    /// setters can still change them before.
    pub fn try_with_config(config: ServerConfig) -> Result<Self, Error> {
        check_handshake_timeout(config.handshake_timeout)?;
        Ok(WebSocketServer {
            config,
            tls: None,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            listener: None,
            listener_ready: false,
            slots: Slab::new(),
            by_id: HashMap::new(),
            ids: PeerIds::new(),
            queue: VecDeque::new(),
            timers: BinaryHeap::new(),
            touched: Vec::new(),
            retired: Vec::new(),
            work: Vec::new(),
            pending: 0,
            connected: 0,
            refusing: false,
            refused: 0,
            draining: false,
            sources: Sources::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Changes the settings; they apply to connections accepted afterwards. They are
    /// checked when the server starts listening; a connection accepted while they are
    /// invalid (changed after `listen`) is closed at once and logged.
    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }

    /// Godot's `supported_protocols` for every accepted peer.
    pub fn set_supported_protocols<S: AsRef<str>>(&mut self, protocols: &[S]) {
        self.config.peer.supported_protocols = protocols
            .iter()
            .map(|p| p.as_ref().trim().to_string())
            .collect();
    }

    /// Godot's `handshake_headers` (extra `"Name: value"` lines in every `101` response).
    pub fn set_handshake_headers<S: AsRef<str>>(&mut self, headers: &[S]) {
        self.config.peer.handshake_headers =
            headers.iter().map(|h| h.as_ref().to_string()).collect();
    }

    /// Godot's `handshake_timeout`: time allowed from TCP accept to an open WebSocket, TLS
    /// included. Zero is refused with [`Error::InvalidConfig`] and the previous value kept,
    /// as Godot's setter refuses `<= 0`. Applies to connections accepted afterwards.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        check_handshake_timeout(timeout)?;
        self.config.handshake_timeout = timeout;
        Ok(())
    }

    /// Godot's `handshake_timeout` getter.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.config.handshake_timeout
    }

    /// Serve `wss://` with these server options (`None`: plain `ws://`). Applies to
    /// connections accepted afterwards.
    pub fn set_tls_options(&mut self, tls: Option<TlsOptions>) -> Result<(), Error> {
        if let Some(options) = &tls {
            options.check_server()?;
        }
        self.tls = tls;
        Ok(())
    }

    /// Listens on `port` on every interface (Godot's `listen(port)` with `bind_ip "*"`).
    pub fn listen(&mut self, port: u16) -> Result<(), Error> {
        self.listen_on("*", port)
    }

    /// Listens on `bind` (an IP address, `"*"` for every interface, or `"localhost"`) and
    /// `port` (`0` picks a free port: see [`local_addr`](Self::local_addr)). `"*"` is one
    /// IPv6 socket that takes IPv4 clients too, on every system (`0.0.0.0` where there is
    /// no IPv6); the addresses and socket options are [`listen_tcp`](crate::listen_tcp)'s.
    pub fn listen_on(&mut self, bind: &str, port: u16) -> Result<(), Error> {
        if self.listener.is_some() {
            return Err(Error::AlreadyInUse);
        }
        self.config.validate()?;
        let mut listener = TcpListener::from_std(listen_tcp(bind, port)?);
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        self.listener = Some(listener);
        self.listener_ready = true;
        Ok(())
    }

    /// The address the server listens on, if it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Whether the server is listening.
    pub fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// While true, new connections are accepted and closed at once, and handshakes that
    /// finish are dropped (Godot's `refuse_new_connections`).
    pub fn set_refuse_new_connections(&mut self, refuse: bool) {
        self.refusing = refuse;
    }

    /// Godot's `refuse_new_connections` getter.
    pub fn is_refusing_new_connections(&self) -> bool {
        self.refusing
    }

    /// Connections closed at once because of `refuse_new_connections`, the pending
    /// handshake limit, or (with [`ServerConfig::proxy_protocol`]) a socket peer not in
    /// `trusted_proxies`, since the server started.
    pub fn refused_connections(&self) -> u64 {
        self.refused
    }

    /// Starts draining, before a deploy or a scale-down: the server keeps accepting
    /// connections and serving its peers, but every upgrade request that completes from
    /// now on is answered `503` with `Retry-After` ([`ServerConfig::drain_retry_after`]),
    /// and the health check ([`ServerConfig::health_path`]) answers `503`, so the load
    /// balancer takes the server out of rotation. Existing peers are untouched; with
    /// [`ServerConfig::decide_upgrades`], requests already reported as
    /// [`UpgradeRequested`](ServerEvent::UpgradeRequested) stay the application's to
    /// decide. Once the peers are gone (or at the deadline of your choice), call
    /// [`stop`](Self::stop). Lasts until `stop()`. Beyond Godot.
    pub fn drain(&mut self) {
        self.draining = true;
        let retry_after = Some(self.config.retry_after_seconds());
        for (_, slot) in self.slots.iter_mut() {
            if !slot.connected {
                if let Some(connection) = slot.peer.connection_mut() {
                    connection.set_draining(retry_after);
                }
            }
        }
    }

    /// Whether [`drain`](Self::drain) was called (and `stop()` not since).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Stops listening and starts closing every peer with 1001 ("going away"); their
    /// close frames are written now, as far as the sockets take them. Keep calling
    /// [`poll`](Self::poll) until [`peer_count`](Self::peer_count) is 0 to finish the
    /// close handshakes (each bounded by `close_timeout`) and flush what was queued.
    /// Connections still in their handshake are dropped. Ends [`drain`](Self::drain).
    pub fn stop(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.listener_ready = false;
        self.draining = false;
        for (key, slot) in self.slots.iter_mut() {
            let code = if slot.connected { 1001 } else { -1 };
            let _ = slot.peer.close(code, "Server stopping");
            if !slot.queued {
                slot.queued = true;
                self.touched.push(key);
            }
        }
    }

    // ----- the frame -----

    /// Does everything that is ready and returns at once; then drain
    /// [`pop_event`](Self::pop_event). Costs O(ready peers + due timers), not O(peers).
    pub fn poll(&mut self) {
        self.collect_readiness(Some(Duration::ZERO));
        self.process(Instant::now());
    }

    /// [`poll`](Self::poll) with the current time given, for tests and game clocks.
    pub fn poll_at(&mut self, now: Instant) {
        self.collect_readiness(Some(Duration::ZERO));
        self.process(now);
    }

    /// Like [`poll`](Self::poll), but when nothing is ready it sleeps in the OS until
    /// network activity, the next timer, or `max_wait`, whichever comes first. For headless
    /// servers with no frame to render: low latency without a busy loop.
    ///
    /// What the application did since the last poll (sends held by `batch_writes`, reads
    /// that made room) is carried out before the sleep, so an answer goes out at once and
    /// one wait per round trip is enough.
    pub fn poll_with_timeout(&mut self, max_wait: Duration) {
        let events_before = self.queue.len();
        let touched = std::mem::take(&mut self.touched);
        let now = Instant::now();
        for &key in &touched {
            self.advance_slot(key, now);
        }
        self.touched = touched;
        self.touched.clear();
        let mut wait = max_wait;
        if self.queue.len() != events_before || !self.retired.is_empty() || self.listener_ready {
            wait = Duration::ZERO;
        } else if let Some(Reverse((due, _, _))) = self.timers.peek() {
            wait = wait.min(due.saturating_duration_since(Instant::now()));
        }
        self.collect_readiness(Some(wait));
        self.process(Instant::now());
    }

    fn collect_readiness(&mut self, timeout: Option<Duration>) {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => {
                log::warn!("poll failed: {e}");
                return;
            }
        }
        for event in self.events.iter() {
            if event.token() == LISTENER {
                self.listener_ready = true;
                continue;
            }
            if event.token() == WAKER {
                self.queue.push_back(ServerEvent::Woken);
                continue;
            }
            if let Some(token) = self.sources.find(event.token()) {
                self.queue.push_back(ServerEvent::SourceReady {
                    token,
                    readable: event.is_readable(),
                    writable: event.is_writable(),
                    read_closed: event.is_read_closed(),
                    write_closed: event.is_write_closed(),
                    error: event.is_error(),
                });
                continue;
            }
            let key = event.token().0;
            if let Some(slot) = self.slots.get_mut(key) {
                slot.peer.on_ready(event);
                if !slot.queued {
                    slot.queued = true;
                    self.work.push(key);
                }
            }
        }
    }

    fn process(&mut self, now: Instant) {
        for key in self.retired.drain(..) {
            let slot = self.slots.remove(key);
            self.by_id.remove(&slot.id);
        }
        self.accept_waiting(now);
        while let Some(Reverse((due, key, id))) = self.timers.peek().copied() {
            if due > now {
                break;
            }
            self.timers.pop();
            if let Some(slot) = self.slots.get_mut(key) {
                if slot.id == id && slot.scheduled == Some(due) {
                    slot.scheduled = None;
                    if !slot.queued {
                        slot.queued = true;
                        self.work.push(key);
                    }
                }
            }
        }
        self.work.append(&mut self.touched);
        let work = std::mem::take(&mut self.work);
        for &key in &work {
            self.advance_slot(key, now);
        }
        self.work = work;
        self.work.clear();
    }

    fn accept_waiting(&mut self, now: Instant) {
        if !self.listener_ready {
            return;
        }
        for _ in 0..self.config.max_accepts_per_poll {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut tcp, addr) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, or the connection died in the backlog: try
                    // again next poll rather than spin now.
                    log::warn!("accept failed: {e}");
                    return;
                }
            };
            if self.refusing || self.pending >= self.config.max_pending_handshakes {
                log::debug!("refusing connection from {addr}");
                self.refused += 1;
                continue;
            }
            let trusted = || {
                self.config
                    .trusted_proxies
                    .iter()
                    .any(|n| n.contains(addr.ip()))
            };
            if self.config.proxy_protocol.is_some() && !trusted() {
                log::warn!(
                    "refusing connection from {addr}: PROXY protocol is on and {} is not in \
                     trusted_proxies",
                    addr.ip().to_canonical()
                );
                self.refused += 1;
                continue;
            }
            // Only reachable through config_mut after listen: a zero timeout would fail the
            // handshake anyway, so say why instead.
            if let Err(e) = check_handshake_timeout(self.config.handshake_timeout) {
                log::warn!("cannot start a handshake with {addr}: {e}");
                continue;
            }
            let entry = self.slots.vacant_entry();
            let key = entry.key();
            if let Err(e) = self.poll.registry().register(
                &mut tcp,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("cannot register connection from {addr}: {e}");
                continue;
            }
            let deadline = now + self.config.handshake_timeout;
            let mut peer = match WebSocketPeer::server_side(
                self.config.peer.clone(),
                tcp,
                self.tls.as_ref(),
                deadline,
                self.config.decide_upgrades,
                self.config
                    .proxy_protocol
                    .map(|p| (p, self.config.max_proxy_header_bytes)),
            ) {
                Ok(peer) => peer,
                Err(e) => {
                    log::warn!("cannot start a handshake with {addr}: {e}");
                    continue;
                }
            };
            if let Some(connection) = peer.connection_mut() {
                connection.serve_health_checks(self.config.health_path.clone());
                if self.draining {
                    connection.set_draining(Some(self.config.retry_after_seconds()));
                }
            }
            let Some(id) = self.ids.next() else {
                log::error!("peer ids exhausted; refusing {addr}");
                self.refused += 1;
                continue;
            };
            entry.insert(Slot {
                id,
                peer,
                connected: false,
                awaiting: false,
                address: SocketAddr::new(addr.ip().to_canonical(), addr.port()),
                scheduled: None,
                queued: true,
            });
            self.by_id.insert(id, key);
            self.pending += 1;
            self.work.push(key);
        }
    }

    fn advance_slot(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.queued = false;
        slot.peer.advance(now, None);
        let id = slot.id;
        while let Some(event) = slot.peer.poll_event() {
            match event {
                Event::UpgradeRequested { request } => {
                    if self.refusing {
                        // As a handshake that finishes while refusing.
                        let _ = slot.peer.close(-1, "");
                        self.refused += 1;
                        self.pending -= 1;
                        self.retired.push(key);
                        return;
                    }
                    slot.awaiting = true;
                    let address = client_address(
                        slot.address,
                        slot.peer.proxied_address(),
                        Some(&request),
                        self.config.forwarded_header,
                        &self.config.trusted_proxies,
                    );
                    slot.peer.set_client_address(address);
                    self.queue.push_back(ServerEvent::UpgradeRequested {
                        id,
                        request,
                        address,
                    });
                }
                Event::Opened { protocol } => {
                    self.pending -= 1;
                    if self.refusing {
                        // Godot drops handshakes that finish while refusing.
                        let _ = slot.peer.close(-1, "");
                        self.refused += 1;
                        self.retired.push(key);
                        return;
                    }
                    let address = client_address(
                        slot.address,
                        slot.peer.proxied_address(),
                        slot.peer.get_handshake_request(),
                        self.config.forwarded_header,
                        &self.config.trusted_proxies,
                    );
                    slot.peer.set_client_address(address);
                    slot.connected = true;
                    self.connected += 1;
                    self.queue
                        .push_back(ServerEvent::ClientConnected { id, protocol });
                }
                Event::Received { messages } => {
                    for _ in 0..messages {
                        self.queue.push_back(ServerEvent::DataReceived { id });
                    }
                }
                Event::CloseRequested { code, reason } => {
                    self.queue
                        .push_back(ServerEvent::ClientCloseRequest { id, code, reason });
                }
                Event::Closed { clean, .. } => {
                    if slot.connected {
                        self.connected -= 1;
                        self.queue.push_back(ServerEvent::ClientDisconnected {
                            id,
                            was_clean: clean,
                        });
                    } else {
                        self.pending -= 1;
                    }
                    // The peer dropped its socket when it ended; dropping a mio source
                    // deregisters it on every platform mio supports, so nothing is left in
                    // the poller.
                    self.retired.push(key);
                    return;
                }
            }
        }
        let next = slot.peer.next_deadline();
        if next != slot.scheduled {
            slot.scheduled = next;
            if let Some(due) = next {
                self.timers.push(Reverse((due, key, id)));
            }
        }
    }

    /// Writes what the application sent since the last `poll()` to every peer it touched,
    /// as far as the sockets take it. Only needed with `PeerConfig::batch_writes` (sends
    /// are written at once otherwise); the next `poll()` does it too.
    pub fn flush(&mut self) {
        for &key in &self.touched {
            if let Some(slot) = self.slots.get_mut(key) {
                slot.peer.flush();
            }
        }
    }

    /// Takes the oldest event, if any.
    pub fn pop_event(&mut self) -> Option<ServerEvent> {
        self.queue.pop_front()
    }

    /// The events in order (`for e in server.events() { ... }`). Each is taken off the
    /// queue only when the iterator yields it: events a loop does not reach (it broke
    /// early, or the iterator was dropped) stay queued for the next call.
    pub fn events(&mut self) -> impl Iterator<Item = ServerEvent> + '_ {
        std::iter::from_fn(move || self.pop_event())
    }

    // ----- other sources in the same poll -----

    /// Registers another mio [`Source`] (the socket of a message bus or a database
    /// connection, a `SourceFd` ...) with this server's poller, so that `poll()` and
    /// `poll_with_timeout()` report its readiness as [`ServerEvent::SourceReady`] in order
    /// with the other events, and `poll_with_timeout` wakes for it: other I/O shares the
    /// frame loop with no thread. Beyond Godot.
    ///
    /// Works before `listen` and after `stop()`: the poller lives as long as the server,
    /// and registrations with it. The returned token is never given out again by this
    /// server. When done, [`deregister_source`](Self::deregister_source) it: a source
    /// dropped while registered reports nothing more, but its token stays taken.
    pub fn register_source<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        interest: Interest,
    ) -> Result<SourceToken, Error> {
        let token = self.sources.next()?;
        self.poll
            .registry()
            .register(source, token.mio(), interest)?;
        self.sources.issue(token);
        Ok(token)
    }

    /// Changes the interest of a source registered with
    /// [`register_source`](Self::register_source) under `token` (mio's `reregister`). Fails
    /// with [`Error::SourceNotRegistered`] for a token this server does not have
    /// registered.
    pub fn reregister_source<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        token: SourceToken,
        interest: Interest,
    ) -> Result<(), Error> {
        self.sources.check(token)?;
        self.poll
            .registry()
            .reregister(source, token.mio(), interest)?;
        Ok(())
    }

    /// Takes a source registered under `token` out of the poller; its `SourceReady` events
    /// still queued are dropped, and none is reported for `token` again. Fails with
    /// [`Error::SourceNotRegistered`] for a token this server does not have registered,
    /// and with the OS error if `source` is not the one registered (nothing changes then).
    pub fn deregister_source<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        token: SourceToken,
    ) -> Result<(), Error> {
        self.sources.check(token)?;
        self.poll.registry().deregister(source)?;
        self.sources.forget(token);
        self.queue.retain(
            |event| !matches!(event, ServerEvent::SourceReady { token: t, .. } if *t == token),
        );
        Ok(())
    }

    /// The server's one [`Waker`] (created at the first call, the same one after): wake it
    /// from any thread and the server's current or next poll reports
    /// [`ServerEvent::Woken`], so a `poll_with_timeout` sleeping in the OS returns at once.
    /// For work that arrives on a channel (a thread of your own, a library that has one).
    /// Beyond Godot.
    pub fn waker(&mut self) -> Result<Arc<Waker>, Error> {
        self.sources.waker(self.poll.registry())
    }

    // ----- deciding upgrades -----

    /// The slot of `id` while its request waits for a decision.
    fn awaiting_slot(&mut self, id: i32) -> Result<(usize, &mut Slot), Error> {
        let key = *self.by_id.get(&id).ok_or(Error::PeerNotFound(id))?;
        let slot = self.slots.get_mut(key).ok_or(Error::PeerNotFound(id))?;
        if slot.connected || slot.peer.get_ready_state() == State::Closed {
            return Err(Error::PeerNotFound(id));
        }
        if !slot.awaiting {
            return Err(Error::NoUpgradePending);
        }
        Ok((key, slot))
    }

    /// Marks a slot for the next poll, which reports what the decision led to.
    fn touch(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            if !slot.queued {
                slot.queued = true;
                self.touched.push(key);
            }
        }
    }

    /// Accepts the upgrade request of `id` (after
    /// [`ServerEvent::UpgradeRequested`]): the `101` answer is written now, and the next
    /// `poll()` reports [`ClientConnected`](ServerEvent::ClientConnected). `protocol`:
    /// `None` for the server's own choice (the first sub-protocol in the client's order that
    /// `supported_protocols` lists, or none), or one the client offered. `headers`:
    /// `"Name: value"` lines added to the answer, after `handshake_headers`.
    ///
    /// Fails, changing nothing, with [`Error::PeerNotFound`] when `id` is gone (the client
    /// left, or `handshake_timeout` passed), [`Error::NoUpgradePending`] when it was
    /// already decided, [`Error::InvalidProtocol`] for a sub-protocol the client did not
    /// offer, and [`Error::InvalidHeader`] for a line that is not a valid header.
    pub fn accept_upgrade(
        &mut self,
        id: i32,
        protocol: Option<&str>,
        headers: &[&str],
    ) -> Result<(), Error> {
        let (key, slot) = self.awaiting_slot(id)?;
        slot.peer.accept_upgrade(protocol, headers)?;
        slot.awaiting = false;
        self.touch(key);
        Ok(())
    }

    /// Rejects the upgrade request of `id` (after [`ServerEvent::UpgradeRequested`]) with
    /// HTTP `status` (300–599), the `"Name: value"` lines in `headers`, and `body`, written
    /// now; the connection ends once the client has read it, with no further event. The
    /// answer is exactly the status line, `Connection: close`, `headers` in order,
    /// `Content-Length`, a blank line and `body`.
    ///
    /// Fails, changing nothing, with [`Error::PeerNotFound`] when `id` is gone,
    /// [`Error::NoUpgradePending`] when it was already decided, [`Error::InvalidConfig`]
    /// for a status outside 300–599, and [`Error::InvalidHeader`] for a line that is not a
    /// valid header or sets `Connection`, `Content-Length` or `Transfer-Encoding`.
    pub fn reject_upgrade(
        &mut self,
        id: i32,
        status: u16,
        headers: &[&str],
        body: &[u8],
    ) -> Result<(), Error> {
        let (key, slot) = self.awaiting_slot(id)?;
        slot.peer.reject_upgrade(status, headers, body)?;
        slot.awaiting = false;
        self.touch(key);
        Ok(())
    }

    // ----- peers -----

    fn connected_slot(&mut self, id: i32) -> Option<(usize, &mut Slot)> {
        let key = *self.by_id.get(&id)?;
        let slot = self.slots.get_mut(key)?;
        slot.connected.then_some((key, slot))
    }

    /// Peers in their handshake have ids, but the application has not been told them: to
    /// every lookup they do not exist yet.
    fn connected_slot_ref(&self, id: i32) -> Option<&Slot> {
        let slot = self.slots.get(*self.by_id.get(&id)?)?;
        slot.connected.then_some(slot)
    }

    /// The connected peer `id` (after `ClientConnected`, until the poll after its
    /// `ClientDisconnected`), to read its packets, send, or close it. Whatever you do to
    /// it is carried on by the next `poll()`.
    pub fn get_peer(&mut self, id: i32) -> Option<&mut WebSocketPeer> {
        let (key, slot) = self.connected_slot(id)?;
        if !slot.queued {
            slot.queued = true;
            self.touched.push(key);
        }
        let slot = self.slots.get_mut(key)?;
        Some(&mut slot.peer)
    }

    /// Whether peer `id` is connected (or just disconnected, until the next poll): whether
    /// [`get_peer`](Self::get_peer) finds it.
    pub fn has_peer(&self, id: i32) -> bool {
        self.connected_slot_ref(id).is_some()
    }

    /// Ids of the connected peers, in no particular order.
    pub fn peer_ids(&self) -> impl Iterator<Item = i32> + '_ {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.connected && slot.peer.get_ready_state() != State::Closed)
            .map(|(_, slot)| slot.id)
    }

    /// Connected peers (handshake done, not yet disconnected).
    pub fn peer_count(&self) -> usize {
        self.connected
    }

    /// Connections still in their TLS or WebSocket handshake (with
    /// [`ServerConfig::decide_upgrades`], those waiting for a decision too).
    pub fn pending_count(&self) -> usize {
        self.pending
    }

    /// Starts closing peer `id` with `code` and `reason` (negative code: drop at once).
    pub fn disconnect_peer(&mut self, id: i32, code: i32, reason: &str) -> Result<(), Error> {
        self.get_peer(id)
            .ok_or(Error::PeerNotFound(id))?
            .close(code, reason)
    }

    /// The remote IP address of the connected peer `id` (the peers
    /// [`get_peer`](Self::get_peer) knows: none while still in the handshake). Behind
    /// trusted proxies ([`ServerConfig::proxy_protocol`],
    /// [`ServerConfig::forwarded_header`]), the client's as they tell it.
    pub fn get_peer_address(&self, id: i32) -> Option<IpAddr> {
        self.connected_slot_ref(id)?.peer.get_connected_host()
    }

    /// The remote TCP port of the connected peer `id` (as
    /// [`get_peer_address`](Self::get_peer_address); 0 when a forwarding header named the
    /// client without a port).
    pub fn get_peer_port(&self, id: i32) -> Option<u16> {
        let peer = &self.connected_slot_ref(id)?.peer;
        peer.get_connected_host().map(|_| peer.get_connected_port())
    }

    /// The address at the other end of the connected peer `id`'s socket: behind a proxy,
    /// the proxy's (where [`get_peer_address`](Self::get_peer_address) gives the client's).
    /// Beyond Godot.
    pub fn get_socket_peer_address(&self, id: i32) -> Option<SocketAddr> {
        Some(self.connected_slot_ref(id)?.address)
    }

    /// Slab slots in use (connected, pending and just-closed peers): for leak checks.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls until `done`, for at most a few seconds.
    fn poll_until(
        server: &mut WebSocketServer,
        what: &str,
        done: impl Fn(&WebSocketServer) -> bool,
    ) {
        let start = Instant::now();
        while !done(server) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            server.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_peer_in_its_handshake_does_not_exist_yet() {
        let mut server = WebSocketServer::new();
        server.listen_on("127.0.0.1", 0).unwrap();
        let addr = server.local_addr().unwrap();
        // A TCP connection that never sends its upgrade request.
        let silent = std::net::TcpStream::connect(addr).unwrap();
        poll_until(&mut server, "accepted", |s| s.pending_count() == 1);
        let pending = *server.by_id.keys().next().expect("the pending peer's id");
        assert!(server.get_peer(pending).is_none());
        assert!(!server.has_peer(pending));
        assert_eq!(server.get_peer_address(pending), None);
        assert_eq!(server.get_peer_port(pending), None);
        assert!(matches!(
            server.disconnect_peer(pending, 1000, ""),
            Err(Error::PeerNotFound(id)) if id == pending
        ));
        assert_eq!(server.peer_ids().count(), 0);

        // Once it is reported connected, every lookup finds it.
        let mut client = WebSocketPeer::new();
        client
            .connect_to_url(&format!("ws://{addr}/"), None)
            .unwrap();
        let mut connected = None;
        let start = Instant::now();
        while connected.is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "client never connected"
            );
            server.poll();
            client.poll();
            while let Some(event) = server.pop_event() {
                if let ServerEvent::ClientConnected { id, .. } = event {
                    connected = Some(id);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let id = connected.unwrap();
        assert!(server.has_peer(id));
        assert_eq!(server.get_peer_address(id), Some(addr.ip()));
        assert!(server.get_peer_port(id).is_some_and(|port| port != 0));
        assert!(!server.has_peer(pending));
        drop(silent);
    }
}
