//! `WebSocketPeer`: one connection's state machine, packet queue, outbound budget and
//! close handshake.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Bytes, Message, WebSocket};

use crate::config::PeerConfig;
use crate::error::Error;
use crate::stream::Transport;
use crate::target::{Lookup, Target};
use crate::tls::TlsOptions;
use crate::upgrade::{self, Answer, HandshakeRequest, Parsed, Refusal};

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

/// How [`WebSocketPeer::send`] frames a message, as Godot's `WriteMode`.
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
    data: Bytes,
    is_text: bool,
}

impl Packet {
    /// The payload.
    pub fn data(&self) -> &[u8] {
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

/// What happened to a server-owned peer during one `advance`, for the server's events.
#[derive(Default, Debug)]
pub(crate) struct Notices {
    pub(crate) opened: bool,
    pub(crate) packets: usize,
    pub(crate) close_request: Option<(i32, String)>,
    pub(crate) closed: bool,
}

/// The connection's life, one variant per stage; each owns exactly what that stage needs.
enum Phase {
    /// Never connected, or finished.
    Closed,
    Resolving(Lookup),
    Connecting {
        tcp: TcpStream,
        remaining: VecDeque<SocketAddr>,
    },
    /// Our upgrade request is queued; reading the server's answer.
    ClientHandshake {
        transport: Transport,
        head: Vec<u8>,
        expected_accept: String,
    },
    /// Reading the client's upgrade request (after TLS, when there is TLS).
    ServerHandshake {
        transport: Transport,
        head: Vec<u8>,
    },
    Open(Box<WebSocket<Transport>>),
    /// The WebSocket part is over; the last bytes (our close frame) still go out, then our
    /// side ends (FIN). Input that is already there is read and thrown away first, so it
    /// does not turn our close into a TCP reset that could destroy the close frame in
    /// flight. With `await_eof` (we closed because of the remote's error, so it may still be
    /// sending), we go on discarding until the remote closes too. Bounded by the close
    /// timeout.
    Lingering {
        transport: Transport,
        shut: bool,
        await_eof: bool,
    },
}

/// A standalone peer's own poller (a server's peers share the server's).
struct Poller {
    poll: Poll,
    events: Events,
}

const PEER_TOKEN: Token = Token(0);

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
    /// The settings this connection started with (Godot captures them at connect/accept).
    live: PeerConfig,
    phase: Phase,
    poller: Option<Poller>,
    target: Option<(Target, Option<TlsOptions>)>,
    is_client: bool,
    inbound: VecDeque<Packet>,
    inbound_bytes: usize,
    last_was_string: bool,
    /// For each queued outbound message, the transport byte count at which it is fully
    /// written: the count of unwritten messages, for `max_queued_packets`.
    outbound_ends: VecDeque<u64>,
    close_sent: bool,
    close_received: bool,
    close_code: i32,
    close_reason: String,
    deadline_open: Option<Instant>,
    deadline_close: Option<Instant>,
    next_ping: Option<Instant>,
    ping_outstanding: bool,
    requested_url: String,
    selected_protocol: String,
    remote_addr: Option<SocketAddr>,
    handshake_request: Option<HandshakeRequest>,
    response_headers: Vec<(String, String)>,
    last_error: Option<Error>,
    notices: Option<Notices>,
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
            .field("packets", &self.inbound.len())
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
            live: config.clone(),
            config,
            phase: Phase::Closed,
            poller: None,
            target: None,
            is_client: false,
            inbound: VecDeque::new(),
            inbound_bytes: 0,
            last_was_string: false,
            outbound_ends: VecDeque::new(),
            close_sent: false,
            close_received: false,
            close_code: -1,
            close_reason: String::new(),
            deadline_open: None,
            deadline_close: None,
            next_ping: None,
            ping_outstanding: false,
            requested_url: String::new(),
            selected_protocol: String::new(),
            remote_addr: None,
            handshake_request: None,
            response_headers: Vec::new(),
            last_error: None,
            notices: None,
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

    // ----- starting a connection -----

    /// Starts connecting to a `ws://` or `wss://` URL; the connection advances in
    /// [`poll`](Self::poll). `tls` applies to `wss://` (`None` = [`TlsOptions::client`]).
    ///
    /// Returns at once: host names are resolved on a short-lived helper thread (an IP
    /// literal never starts one) and every resolved address is tried in turn.
    pub fn connect_to_url(&mut self, url: &str, tls: Option<TlsOptions>) -> Result<(), Error> {
        self.check_reusable()?;
        let target = Target::parse(url)?;
        if let Some(options) = &tls {
            options.check_client()?;
        }
        let tls = match (target.secure, tls) {
            (true, None) => Some(TlsOptions::client()?),
            (true, Some(options)) => Some(options),
            (false, _) => None,
        };
        self.config.validate()?;
        self.reset_for_connection();
        self.is_client = true;
        self.requested_url = url.to_string();
        let now = Instant::now();
        self.deadline_open = Some(now + self.live.connect_timeout);
        let poll = Poll::new()?;
        self.phase = match target.literal_addr() {
            Some(addr) => {
                let tcp = Self::start_tcp(addr, Some(poll.registry()))?;
                Phase::Connecting {
                    tcp,
                    remaining: VecDeque::new(),
                }
            }
            None => Phase::Resolving(Lookup::start(
                target.host.clone(),
                target.port,
                self.live.resolver.clone(),
            )?),
        };
        self.target = Some((target, tls));
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
        self.start_server_side(tcp, tls, deadline)?;
        self.poller = Some(Poller {
            poll,
            events: Events::with_capacity(16),
        });
        Ok(())
    }

    /// A peer for a connection a [`WebSocketServer`](crate::WebSocketServer) accepted and
    /// registered with its own poller.
    pub(crate) fn server_side(
        config: PeerConfig,
        tcp: TcpStream,
        tls: Option<&TlsOptions>,
        deadline: Instant,
    ) -> Result<Self, Error> {
        let mut peer = Self::with_config(config);
        peer.start_server_side(tcp, tls, deadline)?;
        peer.notices = Some(Notices::default());
        Ok(peer)
    }

    fn start_server_side(
        &mut self,
        tcp: TcpStream,
        tls: Option<&TlsOptions>,
        deadline: Instant,
    ) -> Result<(), Error> {
        if let Some(options) = tls {
            options.check_server()?;
        }
        self.config.validate()?;
        self.reset_for_connection();
        socket_options(&tcp, self.live.no_delay);
        self.remote_addr = tcp.peer_addr().ok();
        let session = tls.map(TlsOptions::start_server).transpose()?;
        self.requested_url = if session.is_some() {
            "wss://".into()
        } else {
            "ws://".into()
        };
        self.phase = Phase::ServerHandshake {
            transport: Transport::new(tcp, session),
            head: Vec::new(),
        };
        self.deadline_open = Some(deadline);
        Ok(())
    }

    fn check_reusable(&self) -> Result<(), Error> {
        match self.get_ready_state() {
            State::Closed | State::Closing => Ok(()),
            _ => Err(Error::AlreadyInUse),
        }
    }

    /// Forgets the previous connection (Godot's `_clear()`), keeping the settings.
    fn reset_for_connection(&mut self) {
        let config = self.config.clone();
        let notices = self.notices.take();
        *self = Self::with_config(config);
        self.notices = notices;
    }

    fn ws_config(&self) -> WebSocketConfig {
        let limit = self.live.inbound_buffer_size;
        WebSocketConfig::default()
            // Allocated per connection, so small; the transport reads ahead in large gulps,
            // and a large frame grows the buffer only while it is being received.
            .read_buffer_size(limit.clamp(512, 4 * 1024))
            // Frames go straight into our transport, which never blocks a write.
            .write_buffer_size(0)
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit))
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
        if matches!(self.phase, Phase::Closed) {
            // Nothing left to watch; a new connection makes a new poller.
            return;
        }
        self.poller = Some(poller);
    }

    /// Records readiness reported by a poller.
    pub(crate) fn on_ready(&mut self, event: &mio::event::Event) {
        if let Some(transport) = self.transport_mut() {
            transport.on_ready(event);
        }
    }

    fn transport_mut(&mut self) -> Option<&mut Transport> {
        match &mut self.phase {
            Phase::ClientHandshake { transport, .. } => Some(transport),
            Phase::ServerHandshake { transport, .. } => Some(transport),
            Phase::Open(ws) => Some(ws.get_mut()),
            Phase::Lingering { transport, .. } => Some(transport),
            _ => None,
        }
    }

    fn transport(&self) -> Option<&Transport> {
        match &self.phase {
            Phase::ClientHandshake { transport, .. } => Some(transport),
            Phase::ServerHandshake { transport, .. } => Some(transport),
            Phase::Open(ws) => Some(ws.get_ref()),
            Phase::Lingering { transport, .. } => Some(transport),
            _ => None,
        }
    }

    /// Advances the connection as far as it can go without waiting.
    pub(crate) fn advance(&mut self, now: Instant, registry: Option<&Registry>) {
        // Each pass either changes the phase (then the next pass continues from there) or
        // settles; a phase never repeats within one call, so this ends.
        for _ in 0..8 {
            let before = std::mem::discriminant(&self.phase);
            self.step(now, registry);
            if std::mem::discriminant(&self.phase) == before {
                break;
            }
        }
    }

    fn step(&mut self, now: Instant, registry: Option<&Registry>) {
        if let (Some(deadline), State::Connecting) = (self.deadline_open, self.get_ready_state()) {
            if now >= deadline {
                self.fail(Error::ConnectTimeout);
                return;
            }
        }
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Closed => {}
            Phase::Resolving(lookup) => match lookup.try_result() {
                None => self.phase = Phase::Resolving(lookup),
                Some(Err(e)) => self.fail(e),
                Some(Ok(addrs)) => {
                    let remaining: VecDeque<SocketAddr> = addrs.into();
                    self.connect_next(remaining, None, registry);
                }
            },
            Phase::Connecting { tcp, remaining } => self.step_connect(tcp, remaining, registry),
            Phase::ClientHandshake {
                transport,
                head,
                expected_accept,
            } => self.step_client_handshake(transport, head, expected_accept, now),
            Phase::ServerHandshake { transport, head } => {
                self.step_server_handshake(transport, head, now)
            }
            Phase::Open(ws) => self.step_open(ws, now),
            Phase::Lingering {
                transport,
                shut,
                await_eof,
            } => self.step_lingering(transport, shut, await_eof, now),
        }
    }

    fn connect_next(
        &mut self,
        mut remaining: VecDeque<SocketAddr>,
        last_error: Option<io::Error>,
        registry: Option<&Registry>,
    ) {
        let mut last_error = last_error;
        while let Some(addr) = remaining.pop_front() {
            match Self::start_tcp(addr, registry) {
                Ok(tcp) => {
                    self.phase = Phase::Connecting { tcp, remaining };
                    return;
                }
                Err(Error::Io(e)) => last_error = Some(e),
                Err(e) => return self.fail(e),
            }
        }
        let why = last_error.map_or_else(|| "no address to try".to_string(), |e| e.to_string());
        self.fail(Error::Connect(why));
    }

    /// Non-blocking connect, mio's documented way: a pending error means failure, a peer
    /// address means connected, `NotConnected` means not yet.
    fn step_connect(
        &mut self,
        tcp: TcpStream,
        remaining: VecDeque<SocketAddr>,
        registry: Option<&Registry>,
    ) {
        let failure = match tcp.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match tcp.peer_addr() {
                Ok(addr) => {
                    self.remote_addr = Some(addr);
                    None
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    self.phase = Phase::Connecting { tcp, remaining };
                    return;
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failure {
            log::debug!("connect attempt failed: {e}");
            drop(tcp);
            return self.connect_next(remaining, Some(e), registry);
        }
        socket_options(&tcp, self.live.no_delay);
        let Some((target, tls)) = self.target.clone() else {
            return self.fail(Error::Connect("no target".into()));
        };
        let session = match tls
            .as_ref()
            .map(|t| t.start_client(&target.host))
            .transpose()
        {
            Ok(session) => session,
            Err(e) => return self.fail(e),
        };
        let authority = target
            .uri
            .authority()
            .map_or(target.host.as_str(), |a| a.as_str());
        let path = target.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let (request, expected_accept) = upgrade::client_request(
            authority,
            path,
            &self.live.supported_protocols,
            &self.live.handshake_headers,
        );
        let mut transport = Transport::new(tcp, session);
        // Cannot fail: the transport buffers everything and reports socket errors later.
        let _ = io::Write::write_all(&mut transport, &request);
        transport.push();
        self.phase = Phase::ClientHandshake {
            transport,
            head: Vec::new(),
            expected_accept,
        };
    }

    /// Reads the server's answer until it is complete, then checks it.
    fn step_client_handshake(
        &mut self,
        mut transport: Transport,
        mut head: Vec<u8>,
        expected_accept: String,
        now: Instant,
    ) {
        let mut chunk = [0u8; 1024];
        loop {
            match Self::read_handshake_chunk(&mut transport, &mut head, &mut chunk) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return self.fail(e),
            }
            let answer = upgrade::parse_answer(
                &head,
                self.live.max_handshake_bytes,
                self.live.max_handshake_headers,
                &expected_accept,
                &self.live.supported_protocols,
            );
            match answer {
                Answer::Incomplete => {}
                Answer::Failed(why) => return self.fail(Error::Handshake(why)),
                Answer::Accepted {
                    head_len,
                    protocol,
                    headers,
                } => {
                    self.selected_protocol = protocol;
                    self.response_headers = headers;
                    let tail = head.split_off(head_len);
                    let config = Some(self.ws_config());
                    let ws = WebSocket::from_partially_read(transport, tail, Role::Client, config);
                    return self.open(ws, now);
                }
            }
        }
        transport.push();
        self.phase = Phase::ClientHandshake {
            transport,
            head,
            expected_accept,
        };
    }

    /// Reads what is there of a handshake head: `Ok(true)` when bytes were added,
    /// `Ok(false)` when the socket has nothing more for now.
    fn read_handshake_chunk(
        transport: &mut Transport,
        head: &mut Vec<u8>,
        chunk: &mut [u8],
    ) -> Result<bool, Error> {
        loop {
            return match io::Read::read(transport, chunk) {
                Ok(0) => Err(Error::Handshake(
                    "the connection closed during the handshake".into(),
                )),
                Ok(n) => {
                    head.extend_from_slice(&chunk[..n]);
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(match Error::from(e) {
                    Error::Io(other) => Error::Handshake(other.to_string()),
                    tls => tls,
                }),
            };
        }
    }

    /// Reads the upgrade request until it is complete, then answers it.
    fn step_server_handshake(&mut self, mut transport: Transport, mut head: Vec<u8>, now: Instant) {
        let (max_bytes, max_headers) = (
            self.live.max_handshake_bytes,
            self.live.max_handshake_headers,
        );
        let mut chunk = [0u8; 1024];
        loop {
            match Self::read_handshake_chunk(&mut transport, &mut head, &mut chunk) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return self.fail(e),
            }
            match upgrade::parse_request(&head, max_bytes, max_headers) {
                Parsed::Incomplete => {}
                Parsed::Refused(refusal) => return self.refuse(transport, refusal, now),
                Parsed::Upgrade {
                    head_len,
                    request,
                    key,
                } => {
                    let tail = head.split_off(head_len);
                    return self.accept_upgrade(transport, request, &key, tail, now);
                }
            }
        }
        transport.push();
        self.phase = Phase::ServerHandshake { transport, head };
    }

    fn accept_upgrade(
        &mut self,
        mut transport: Transport,
        request: HandshakeRequest,
        key: &str,
        tail: Vec<u8>,
        now: Instant,
    ) {
        let protocol = match upgrade::select_protocol(
            &request.offered_protocols(),
            &self.live.supported_protocols,
        ) {
            Ok(protocol) => protocol,
            Err(refusal) => return self.refuse(transport, refusal, now),
        };
        let response = upgrade::accept_response(key, &protocol, &self.live.handshake_headers);
        // Cannot fail: the transport buffers everything and reports socket errors later.
        let _ = io::Write::write_all(&mut transport, &response);
        transport.push();
        let host = request.header("host").unwrap_or("").to_string();
        let target = match &request.query {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path.clone(),
        };
        self.requested_url = format!("{}{host}{target}", self.requested_url);
        self.selected_protocol = protocol;
        self.handshake_request = Some(request);
        let ws =
            WebSocket::from_partially_read(transport, tail, Role::Server, Some(self.ws_config()));
        self.open(ws, now);
    }

    /// Answers a bad upgrade request with its HTTP status, then closes once it is sent.
    fn refuse(&mut self, mut transport: Transport, refusal: Refusal, now: Instant) {
        log::debug!("refusing upgrade with {}: {}", refusal.status, refusal.why);
        let _ = io::Write::write_all(&mut transport, &upgrade::refusal_response(&refusal));
        self.last_error = Some(Error::Handshake(format!(
            "refused with HTTP {}: {}",
            refusal.status, refusal.why
        )));
        self.deadline_open = None;
        self.deadline_close = Some(now + self.live.close_timeout);
        self.phase = Phase::Lingering {
            transport,
            shut: false,
            await_eof: true,
        };
    }

    fn open(&mut self, mut ws: WebSocket<Transport>, now: Instant) {
        ws.get_mut().batch_writes = self.live.batch_writes;
        self.deadline_open = None;
        if !self.live.heartbeat_interval.is_zero() {
            self.next_ping = Some(now + self.live.heartbeat_interval);
        }
        if let Some(notices) = &mut self.notices {
            notices.opened = true;
        }
        self.phase = Phase::Open(Box::new(ws));
    }

    fn has_inbound_room(&self) -> bool {
        self.inbound.len() < self.live.max_queued_packets
            && self.inbound_bytes < self.live.inbound_buffer_size
    }

    fn step_open(&mut self, mut ws: Box<WebSocket<Transport>>, now: Instant) {
        if let Some(due) = self.next_ping.filter(|due| now >= *due && !self.close_sent) {
            if self.ping_outstanding {
                return self.fail(Error::HeartbeatTimeout);
            }
            // Ping frames are tiny and control frames bypass the outbound budget.
            let _ = ws.write(Message::Ping(Bytes::new()));
            self.ping_outstanding = true;
            let interval = self.live.heartbeat_interval;
            // Catch up without a burst if frames were far apart.
            let mut next = due + interval;
            if next <= now {
                next = now + interval;
            }
            self.next_ping = Some(next);
        }
        if self.deadline_close.is_some_and(|d| now >= d) {
            return self.finish_timed_out();
        }
        loop {
            // Stop reading while the application has not drained its queue, or while our
            // own replies pile up unsent: TCP flow control then slows the remote down.
            let outbound_full = self.live.outbound_buffer_size > 0
                && ws.get_ref().buffered() > self.live.outbound_buffer_size;
            if !self.has_inbound_room() || outbound_full {
                break;
            }
            match ws.read() {
                Ok(message) => {
                    if self.on_message(&mut ws, message, now) {
                        return self.finish_close_handshake(ws, now);
                    }
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed) => {
                    return self.finish_close_handshake(ws, now);
                }
                Err(e) => return self.on_read_error(ws, e, now),
            }
        }
        match ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::ConnectionClosed) => {
                return self.finish_close_handshake(ws, now);
            }
            Err(e) => return self.on_read_error(ws, e, now),
        }
        if let Some(e) = ws.get_mut().take_write_error() {
            return self.fail(Error::ConnectionLost(e.to_string()));
        }
        self.reap_outbound(ws.get_ref());
        self.phase = Phase::Open(ws);
    }

    /// Handles one message; true when the close handshake is complete.
    fn on_message(
        &mut self,
        ws: &mut WebSocket<Transport>,
        message: Message,
        now: Instant,
    ) -> bool {
        match message {
            Message::Text(text) => self.queue_packet(Packet {
                data: text.into(),
                is_text: true,
            }),
            Message::Binary(data) => self.queue_packet(Packet {
                data,
                is_text: false,
            }),
            Message::Pong(_) => self.ping_outstanding = false,
            Message::Ping(_) | Message::Frame(_) => {}
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(f) => (i32::from(u16::from(f.code)), f.reason.to_string()),
                    None => (1005, String::new()),
                };
                self.close_received = true;
                self.close_code = code;
                self.close_reason = reason.clone();
                if !self.close_sent {
                    // The remote started it; tungstenite has queued the echo.
                    self.close_sent = true;
                    self.deadline_close = Some(now + self.live.close_timeout);
                    if let Some(notices) = &mut self.notices {
                        notices.close_request = Some((code, reason));
                    }
                }
                // Push the echo (or nothing, if this was the answer to ours) now.
                return !matches!(ws.flush(), Err(tungstenite::Error::Io(_)));
            }
        }
        false
    }

    fn queue_packet(&mut self, packet: Packet) {
        self.inbound_bytes += packet.data.len();
        self.inbound.push_back(packet);
        if let Some(notices) = &mut self.notices {
            notices.packets += 1;
        }
    }

    fn on_read_error(
        &mut self,
        mut ws: Box<WebSocket<Transport>>,
        e: tungstenite::Error,
        now: Instant,
    ) {
        use tungstenite::error::{CapacityError, ProtocolError};
        let (code, detail) = match e {
            tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
                1009,
                format!("message of {size} bytes exceeds inbound_buffer_size {max_size}"),
            ),
            tungstenite::Error::Capacity(other) => (1009, other.to_string()),
            tungstenite::Error::Utf8(detail) => {
                (1007, format!("invalid UTF-8 in a text message: {detail}"))
            }
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                return self.lost(
                    ws,
                    "the remote closed the connection without a close frame".into(),
                );
            }
            tungstenite::Error::Protocol(p) => (1002, p.to_string()),
            tungstenite::Error::Io(io_error) => {
                let error = match Error::from(io_error) {
                    // The remote vanished: say so, like an end of stream without a close.
                    Error::Io(e) if is_disconnect(&e) => Error::ConnectionLost(e.to_string()),
                    other => other,
                };
                return self.lost_with(ws, error);
            }
            other => return self.lost(ws, other.to_string()),
        };
        let reason = match code {
            1009 => "Message too big",
            1007 => "Invalid frame payload data",
            _ => "Protocol error",
        };
        log::debug!("closing with {code}: {detail}");
        if !self.close_sent {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let _ = ws.close(Some(frame));
            self.close_sent = true;
        }
        let _ = ws.flush();
        self.close_code = i32::from(code);
        self.close_reason = reason.to_string();
        self.last_error = Some(Error::Protocol { code, detail });
        self.deadline_close = Some(now + self.live.close_timeout);
        self.phase = Phase::Lingering {
            transport: ws.into_inner(),
            shut: false,
            await_eof: true,
        };
    }

    /// The stream failed; a failure after the remote's close frame is still a clean close
    /// (TLS peers often skip close_notify).
    fn lost(&mut self, ws: Box<WebSocket<Transport>>, why: String) {
        self.lost_with(ws, Error::ConnectionLost(why));
    }

    fn lost_with(&mut self, ws: Box<WebSocket<Transport>>, error: Error) {
        if self.close_received {
            drop(ws);
            self.phase = Phase::Closed;
            self.finish_notice();
        } else {
            self.fail(error);
        }
    }

    fn finish_close_handshake(&mut self, ws: Box<WebSocket<Transport>>, now: Instant) {
        if self.deadline_close.is_none() {
            self.deadline_close = Some(now + self.live.close_timeout);
        }
        self.phase = Phase::Lingering {
            transport: ws.into_inner(),
            shut: false,
            await_eof: false,
        };
    }

    fn finish_timed_out(&mut self) {
        if self.close_received || self.last_error.is_some() {
            // The close frames were exchanged (or we closed because of the remote's
            // error); only the TCP teardown was slow.
            self.phase = Phase::Closed;
            self.finish_notice();
        } else {
            self.fail(Error::CloseTimeout);
        }
    }

    fn step_lingering(
        &mut self,
        mut transport: Transport,
        mut shut: bool,
        await_eof: bool,
        now: Instant,
    ) {
        if self.deadline_close.is_some_and(|d| now >= d) {
            return self.finish_timed_out();
        }
        transport.push();
        if transport.has_write_error() {
            return self.finish_timed_out();
        }
        if !transport.has_pending_output() {
            if !shut {
                transport.shutdown();
                shut = true;
            }
            if transport.discard_input() || !await_eof {
                self.phase = Phase::Closed;
                return self.finish_notice();
            }
        } else {
            transport.discard_input();
        }
        self.phase = Phase::Lingering {
            transport,
            shut,
            await_eof,
        };
    }

    /// Ends the connection uncleanly: close code -1, the error kept for the user.
    fn fail(&mut self, error: Error) {
        log::debug!("connection failed: {error}");
        self.phase = Phase::Closed;
        self.close_code = -1;
        self.close_reason.clear();
        self.last_error = Some(error);
        self.finish_notice();
    }

    fn finish_notice(&mut self) {
        self.deadline_open = None;
        self.deadline_close = None;
        self.next_ping = None;
        self.outbound_ends.clear();
        if let Some(notices) = &mut self.notices {
            notices.closed = true;
        }
    }

    /// Forgets outbound messages that have fully reached the socket.
    fn reap_outbound(&mut self, transport: &Transport) {
        while self
            .outbound_ends
            .front()
            .is_some_and(|end| *end <= transport.bytes_sent)
        {
            self.outbound_ends.pop_front();
        }
    }

    /// The earliest moment this peer needs `advance` without any socket event.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.deadline_open, self.deadline_close, self.next_ping]
            .into_iter()
            .flatten()
            .min()
    }

    /// Takes what happened since the last call (server-owned peers only).
    pub(crate) fn take_notices(&mut self) -> Notices {
        self.notices
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    // ----- sending -----

    /// Sends one message as text or binary. Fails without queueing anything when the
    /// connection is not open, the text is not UTF-8, or the message would exceed
    /// `outbound_buffer_size` bytes or `max_queued_packets` messages waiting.
    pub fn send(&mut self, data: &[u8], mode: WriteMode) -> Result<(), Error> {
        match mode {
            WriteMode::Text => {
                let text = std::str::from_utf8(data).map_err(|_| Error::InvalidUtf8)?;
                self.send_text(text)
            }
            WriteMode::Binary => {
                self.send_message(data.len(), || Message::Binary(Bytes::copy_from_slice(data)))
            }
        }
    }

    /// Sends a text message (Godot's `send_text`).
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_message(text.len(), || Message::Text(text.into()))
    }

    /// Sends a received packet on, as text or binary like it came, without copying its
    /// payload (an echo or a relay costs no allocation here).
    pub fn send_packet(&mut self, packet: &Packet) -> Result<(), Error> {
        let message = if packet.is_text {
            match tungstenite::Utf8Bytes::try_from(packet.data.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => return Err(Error::InvalidUtf8),
            }
        } else {
            Message::Binary(packet.data.clone())
        };
        self.send_message(packet.data.len(), || message)
    }

    /// Writes what `send` has queued, now, as far as the socket takes it. Only needed with
    /// `PeerConfig::batch_writes` (otherwise `send` writes at once); `poll()` does it too.
    pub fn flush(&mut self) {
        if let Some(transport) = self.transport_mut() {
            transport.push();
        }
    }

    /// Sends a binary message (Godot's `put_packet`, always binary as in Godot 4).
    pub fn put_packet(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send(data, WriteMode::Binary)
    }

    fn send_message(&mut self, len: usize, make: impl FnOnce() -> Message) -> Result<(), Error> {
        let (max_packets, limit) = (self.live.max_queued_packets, self.live.outbound_buffer_size);
        let Phase::Open(ws) = &mut self.phase else {
            return Err(Error::NotOpen);
        };
        if self.close_sent {
            return Err(Error::NotOpen);
        }
        let sent = ws.get_ref().bytes_sent;
        while self.outbound_ends.front().is_some_and(|end| *end <= sent) {
            self.outbound_ends.pop_front();
        }
        if self.outbound_ends.len() >= max_packets {
            return Err(Error::OutboundQueueFull { limit: max_packets });
        }
        let buffered = ws.get_ref().buffered();
        if limit > 0 {
            if len > limit {
                return Err(Error::MessageTooLarge { size: len, limit });
            }
            // As Godot: bytes already waiting plus the new payload must fit.
            if buffered + len > limit {
                return Err(Error::OutboundBufferFull {
                    buffered,
                    message: len,
                    limit,
                });
            }
        }
        match ws.write(make()) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) => {
                return self.send_failed(Error::ConnectionLost(e.to_string()));
            }
            Err(e) => return Err(Error::ConnectionLost(e.to_string())),
        }
        let transport = ws.get_mut();
        if !transport.batch_writes {
            transport.push();
        }
        if let Some(e) = transport.take_write_error() {
            return self.send_failed(Error::ConnectionLost(e.to_string()));
        }
        let end = transport.bytes_sent + transport.buffered() as u64;
        if end > transport.bytes_sent {
            self.outbound_ends.push_back(end);
        }
        Ok(())
    }

    fn send_failed(&mut self, error: Error) -> Result<(), Error> {
        let message = error.to_string();
        self.fail(error);
        Err(Error::ConnectionLost(message))
    }

    // ----- receiving -----

    /// Packets waiting to be read (Godot's `get_available_packet_count`). Unlike Godot,
    /// packets that arrived before a close stay readable after it.
    pub fn get_available_packet_count(&self) -> usize {
        self.inbound.len()
    }

    /// The next packet's payload, or `None` when the queue is empty (Godot's
    /// `get_packet`). [`was_string_packet`](Self::was_string_packet) then tells its type.
    pub fn get_packet(&mut self) -> Option<Vec<u8>> {
        self.recv().map(Packet::into_vec)
    }

    /// The next packet with its type, without copying the payload.
    pub fn recv(&mut self) -> Option<Packet> {
        let packet = self.inbound.pop_front()?;
        self.inbound_bytes -= packet.data.len();
        self.last_was_string = packet.is_text;
        Some(packet)
    }

    /// Drains the packet queue as an iterator (`for p in peer.packets() { ... }`).
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
        if code < 0 {
            if !matches!(self.phase, Phase::Closed) {
                self.phase = Phase::Closed;
                self.close_code = -1;
                self.close_reason.clear();
                self.finish_notice();
            }
            return Ok(());
        }
        let wire_code = u16::try_from(code).map_err(|_| Error::InvalidCloseCode(code))?;
        if !CloseCode::from(wire_code).is_allowed() || wire_code < 1000 {
            return Err(Error::InvalidCloseCode(code));
        }
        if reason.len() > 123 {
            return Err(Error::CloseReasonTooLong(reason.len()));
        }
        let now = Instant::now();
        match &mut self.phase {
            Phase::Open(ws) if !self.close_sent => {
                let frame = CloseFrame {
                    code: CloseCode::from(wire_code),
                    reason: reason.into(),
                };
                let _ = ws.close(Some(frame));
                self.close_sent = true;
                self.deadline_close = Some(now + self.live.close_timeout);
            }
            Phase::Open(_) | Phase::Lingering { .. } | Phase::Closed => {}
            _ => {
                self.phase = Phase::Closed;
                self.close_code = -1;
                self.close_reason.clear();
                self.finish_notice();
            }
        }
        Ok(())
    }

    /// The connection's state (Godot's `get_ready_state`).
    pub fn get_ready_state(&self) -> State {
        match &self.phase {
            Phase::Closed => State::Closed,
            Phase::Resolving(_)
            | Phase::Connecting { .. }
            | Phase::ClientHandshake { .. }
            | Phase::ServerHandshake { .. } => State::Connecting,
            Phase::Open(_) if self.close_sent => State::Closing,
            Phase::Open(_) => State::Open,
            Phase::Lingering { .. } => State::Closing,
        }
    }

    /// The close code the remote sent, or -1 when the connection did not close cleanly
    /// (Godot's `get_close_code`). 1005 means a close frame without a code. After we
    /// closed because of the remote's protocol error, the code we sent (1002, 1007, 1009).
    pub fn get_close_code(&self) -> i32 {
        self.close_code
    }

    /// The close reason that went with [`get_close_code`](Self::get_close_code).
    pub fn get_close_reason(&self) -> &str {
        &self.close_reason
    }

    /// Why the connection failed or closed uncleanly, if it did: the certificate error,
    /// the refused connection, the timeout, the protocol violation. Beyond Godot.
    pub fn get_last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    // ----- information -----

    /// The remote IP address, once connected (Godot's `get_connected_host`).
    pub fn get_connected_host(&self) -> Option<std::net::IpAddr> {
        self.remote_addr.map(|a| a.ip())
    }

    /// The remote TCP port, or 0 before a connection (Godot's `get_connected_port`).
    pub fn get_connected_port(&self) -> u16 {
        self.remote_addr.map_or(0, |a| a.port())
    }

    /// Client: the URL given to `connect_to_url`. Server side: `ws://` or `wss://` + the
    /// `Host` header + the request path (Godot's `get_requested_url`).
    pub fn get_requested_url(&self) -> &str {
        &self.requested_url
    }

    /// The negotiated sub-protocol, or `""` (Godot's `get_selected_protocol`).
    pub fn get_selected_protocol(&self) -> &str {
        &self.selected_protocol
    }

    /// Server side: the client's upgrade request (path, query, headers), once open.
    pub fn get_handshake_request(&self) -> Option<&HandshakeRequest> {
        self.handshake_request.as_ref()
    }

    /// Client side: the headers of the server's `101` response (names lower-cased), once
    /// open; empty before. Beyond Godot.
    pub fn get_handshake_response_headers(&self) -> &[(String, String)] {
        &self.response_headers
    }

    /// Turns `TCP_NODELAY` on or off for this connection (on by default, as in Godot).
    pub fn set_no_delay(&mut self, enabled: bool) -> Result<(), Error> {
        self.config.no_delay = enabled;
        self.live.no_delay = enabled;
        let tcp = match &self.phase {
            Phase::Connecting { tcp, .. } => Some(tcp),
            _ => self.transport().map(Transport::tcp),
        };
        if let Some(tcp) = tcp {
            tcp.set_nodelay(enabled)?;
        }
        Ok(())
    }

    /// Bytes queued but not yet written to the socket (Godot's
    /// `get_current_outbound_buffered_amount`), frame headers included.
    pub fn get_current_outbound_buffered_amount(&self) -> usize {
        self.transport().map_or(0, Transport::buffered)
    }
}

/// Errors that mean the remote end is gone rather than that something is misused.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
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
