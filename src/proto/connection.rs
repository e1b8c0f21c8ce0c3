//! `Connection`: the whole life of one WebSocket connection — upgrade, frames, queues,
//! budgets, heartbeat, close handshake, timers — with no I/O and no clock.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use super::close::{CloseEffect, CloseInput, CloseState};
use super::frames::{FrameReader, FrameWriter, Incoming, Payload};
use super::handshake::{self, Answer, HandshakeRequest, Parsed, Refusal};
use super::message::{Packet, State, WriteMode};
use super::outbox::Outbox;
use super::stats::{PeerStats, RoundTrip};
use crate::config::PeerConfig;
use crate::error::Error;

/// Something that happened to a [`Connection`], in order, from
/// [`Connection::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Server side, for a connection made with
    /// [`Connection::server_deciding`]: a complete, valid upgrade request arrived and waits
    /// for [`Connection::accept_upgrade`] or [`Connection::reject_upgrade`]. It passed every
    /// check the server makes by itself (HTTP, RFC 6455, the sub-protocol rule of
    /// `supported_protocols`); the upgrade deadline still runs.
    UpgradeRequested {
        /// The request: path, query and headers (also
        /// [`Connection::handshake_request`] from now on).
        request: HandshakeRequest,
    },
    /// The upgrade finished; `protocol` is the selected sub-protocol or `""`.
    Opened {
        /// The selected sub-protocol, or `""`.
        protocol: String,
    },
    /// This many messages were added to the receive queue: take them with
    /// [`Connection::recv`]. Consecutive arrivals are counted in one event, so the event
    /// queue stays a few entries long however many messages wait.
    Received {
        /// How many messages arrived.
        messages: usize,
    },
    /// The remote started the close handshake with this code (1005: none) and reason; our
    /// answer is already queued.
    CloseRequested {
        /// The remote's close code.
        code: i32,
        /// The remote's close reason.
        reason: String,
    },
    /// The connection is over; drop the transport. `clean` is false when it ended without
    /// a close code (then `code` is -1, and [`Connection::error`] says why unless the
    /// application itself aborted).
    Closed {
        /// The remote's close code, the code we failed the connection with, or -1.
        code: i32,
        /// The reason that went with `code`.
        reason: String,
        /// Whether the connection ended with a close code (`code` is not -1): the close
        /// handshake completed, or we failed the connection with 1002/1007/1009.
        clean: bool,
    },
}

/// The upgrade, until it is done.
enum Upgrade {
    /// Our request is queued; reading the server's answer.
    Client {
        head: Vec<u8>,
        expected_accept: String,
    },
    /// Reading the client's request.
    Server {
        head: Vec<u8>,
    },
    /// A valid request waits for the application's decision; `tail` is what the client
    /// sent after it, and `protocol` the sub-protocol the server would choose itself.
    Awaiting {
        key: String,
        tail: Vec<u8>,
        protocol: String,
    },
    Done,
}

/// The limits and settings a connection keeps from its [`PeerConfig`].
struct Settings {
    supported_protocols: Vec<String>,
    handshake_headers: Vec<String>,
    inbound_buffer_size: usize,
    outbound_buffer_size: usize,
    max_queued_packets: usize,
    heartbeat_interval: Duration,
    close_timeout: Duration,
    max_handshake_bytes: usize,
    max_handshake_headers: usize,
    /// Server side: a valid request waits for the application instead of being answered.
    decide_upgrade: bool,
}

/// Input bytes handed to [`Connection::handle_input`] that could not be processed yet
/// (the receive queue was full). Kept until the application makes room.
#[derive(Default)]
struct Backlog {
    bytes: Vec<u8>,
    read: usize,
}

/// One WebSocket connection as a state machine, with no I/O: the protocol half of
/// [`WebSocketPeer`](crate::WebSocketPeer), for engines that bring their own transport
/// (their own sockets, a relay, an in-process pipe, a platform SDK).
///
/// Bytes come in through [`handle_input`](Self::handle_input); bytes to send go out
/// through [`transmit`](Self::transmit) / [`transmitted`](Self::transmitted); time is a
/// parameter of every call that can start, check or end a timer, and
/// [`poll_timeout`](Self::poll_timeout) says when the next one is due. What happens comes
/// out of one queue ([`poll_event`](Self::poll_event)); received messages wait in the
/// receive queue ([`recv`](Self::recv)), and reading pauses
/// ([`wants_input`](Self::wants_input) is false) while it is full.
///
/// A driver's loop, for any byte stream:
/// 1. While [`wants_input`](Self::wants_input), read from the transport and pass the bytes
///    to [`handle_input`](Self::handle_input) (or, while [`input_space`](Self::input_space)
///    offers a large message's buffer, read into that and call
///    [`handle_input_in_place`](Self::handle_input_in_place)); at its end, call
///    [`handle_eof`](Self::handle_eof); on a transport error,
///    [`handle_transport_error`](Self::handle_transport_error).
/// 2. Write what [`transmit`](Self::transmit) hands out and report it with
///    [`transmitted`](Self::transmitted).
/// 3. When [`wants_shutdown`](Self::wants_shutdown) and everything was written, end the
///    transport's write side and call [`handle_shutdown`](Self::handle_shutdown).
/// 4. Call [`handle_timeout`](Self::handle_timeout) once
///    [`poll_timeout`](Self::poll_timeout) has passed, and after the application has read
///    packets (it resumes reading that the full queue paused).
/// 5. Drop the transport once [`is_closed`](Self::is_closed).
///
/// A client and a server connected in memory (this example runs as a test; it lives in
/// `docs/embedding.md`, the embedding guide):
///
#[doc = include_str!("../../docs/embedding.md")]
pub struct Connection {
    settings: Settings,
    is_client: bool,
    upgrade: Upgrade,
    /// The frame reader, while frames flow (open, or awaiting the close reply).
    frames: Option<Box<FrameReader>>,
    writer: FrameWriter,
    close: CloseState,
    /// `Closed` was reported; nothing happens any more.
    ended: bool,
    backlog: Backlog,
    /// Reading stopped because the receive queue (or our unsent replies) had no room.
    read_paused: bool,
    eof: bool,
    outbox: Outbox,
    /// For each queued outbound message, the outbox position at which it is fully sent:
    /// the count of unsent messages, for `max_queued_packets`.
    outbound_ends: VecDeque<u64>,
    inbound: VecDeque<Packet>,
    inbound_bytes: usize,
    /// Messages received since the start.
    inbound_total: u64,
    /// Payload bytes of those messages.
    inbound_payload_total: u64,
    /// Bytes taken from the transport since the start.
    input_total: u64,
    /// Messages queued to send since the start, and their payload bytes.
    outbound_total: u64,
    outbound_payload_total: u64,
    /// The round-trip estimator and the ping it waits for.
    round_trip: RoundTrip,
    /// Whether a frame was ever queued after the upgrade (a message, a ping or a pong):
    /// from then on the send buffers are kept for reuse, so neither messages nor a
    /// heartbeat allocate; until then an idle connection keeps none.
    keeps_send_buffers: bool,
    events: VecDeque<Event>,
    open_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    ping_outstanding: bool,
    close_received: bool,
    close_code: i32,
    close_reason: String,
    error: Option<Error>,
    selected_protocol: String,
    handshake_request: Option<HandshakeRequest>,
    response_headers: Vec<(String, String)>,
    /// Server side: the path answered as a health check instead of refused.
    health_path: Option<String>,
    /// Server side, while its server drains: the `Retry-After` seconds of the 503 that
    /// upgrade requests (and health checks) get.
    draining: Option<u64>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("client", &self.is_client)
            .field("state", &self.get_ready_state())
            .field("close", &self.close)
            .field("packets", &self.inbound.len())
            .field("buffered", &self.outbox.buffered())
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(config: &PeerConfig, is_client: bool, upgrade: Upgrade, open_deadline: Instant) -> Self {
        Connection {
            settings: Settings {
                supported_protocols: config.supported_protocols.clone(),
                handshake_headers: config.handshake_headers.clone(),
                inbound_buffer_size: config.inbound_buffer_size,
                outbound_buffer_size: config.outbound_buffer_size,
                max_queued_packets: config.max_queued_packets,
                heartbeat_interval: config.heartbeat_interval,
                close_timeout: config.close_timeout,
                max_handshake_bytes: config.max_handshake_bytes,
                max_handshake_headers: config.max_handshake_headers,
                decide_upgrade: false,
            },
            is_client,
            upgrade,
            frames: None,
            writer: FrameWriter::new(is_client),
            close: CloseState::NotStarted,
            ended: false,
            backlog: Backlog::default(),
            read_paused: false,
            eof: false,
            outbox: Outbox::default(),
            outbound_ends: VecDeque::new(),
            inbound: VecDeque::new(),
            inbound_bytes: 0,
            inbound_total: 0,
            inbound_payload_total: 0,
            input_total: 0,
            outbound_total: 0,
            outbound_payload_total: 0,
            round_trip: RoundTrip::default(),
            keeps_send_buffers: false,
            events: VecDeque::new(),
            open_deadline: Some(open_deadline),
            next_ping: None,
            ping_outstanding: false,
            close_received: false,
            close_code: -1,
            close_reason: String::new(),
            error: None,
            selected_protocol: String::new(),
            handshake_request: None,
            response_headers: Vec::new(),
            health_path: None,
            draining: None,
        }
    }

    /// The client side of a connection to `authority` (the `Host` header: `host` or
    /// `host:port`) for `path_and_query`; its upgrade request is queued for
    /// [`transmit`](Self::transmit) at once. The upgrade must finish by `open_deadline`.
    pub fn client(
        config: &PeerConfig,
        authority: &str,
        path_and_query: &str,
        open_deadline: Instant,
    ) -> Result<Self, Error> {
        config.validate()?;
        let (request, expected_accept) = handshake::client_request(
            authority,
            path_and_query,
            &config.supported_protocols,
            &config.handshake_headers,
        );
        let upgrade = Upgrade::Client {
            head: Vec::new(),
            expected_accept,
        };
        let mut connection = Self::new(config, true, upgrade, open_deadline);
        connection.outbox.push_copy(&request);
        Ok(connection)
    }

    /// The server side of a connection: it reads the client's upgrade request, then answers
    /// `101` or refuses with an HTTP status. The upgrade must finish by `open_deadline`.
    pub fn server(config: &PeerConfig, open_deadline: Instant) -> Result<Self, Error> {
        config.validate()?;
        let upgrade = Upgrade::Server { head: Vec::new() };
        Ok(Self::new(config, false, upgrade, open_deadline))
    }

    /// The server side of a connection whose upgrade the application decides: a request
    /// the server would answer `101` is reported as [`Event::UpgradeRequested`] instead,
    /// and the connection waits (in [`State::Connecting`]) for
    /// [`accept_upgrade`](Self::accept_upgrade) or [`reject_upgrade`](Self::reject_upgrade).
    /// Requests the server refuses by itself are refused as by [`server`](Self::server),
    /// without an event. An undecided request ends at `open_deadline` like any slow
    /// upgrade ([`Error::ConnectTimeout`], no answer sent).
    pub fn server_deciding(config: &PeerConfig, open_deadline: Instant) -> Result<Self, Error> {
        let mut connection = Self::server(config, open_deadline)?;
        connection.settings.decide_upgrade = true;
        Ok(connection)
    }

    // ----- input -----

    /// Whether the connection takes more input now. False while the receive queue is full
    /// (or our own replies pile up unsent): stop reading the transport then, so its flow
    /// control slows the remote down.
    pub fn wants_input(&self) -> bool {
        match self.close {
            CloseState::Closed => false,
            CloseState::Draining { .. } => true,
            _ if self.frames.is_some() => {
                self.backlog.read == self.backlog.bytes.len() && self.has_room()
            }
            // A client should send nothing before our answer: what it does send waits, up
            // to a bound, and reading pauses beyond it.
            _ => match &self.upgrade {
                Upgrade::Awaiting { tail, .. } => tail.len() < self.settings.max_handshake_bytes,
                _ => true,
            },
        }
    }

    /// Bytes received from the transport. All of them are taken: what cannot be processed
    /// yet (the receive queue is full) waits inside until the application makes room, so
    /// read only while [`wants_input`](Self::wants_input).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.close != CloseState::Closed {
            self.input_total += data.len() as u64;
        }
        match self.close {
            CloseState::Closed => return,
            // The WebSocket part is over: input is only read to see the stream's end.
            CloseState::Draining { .. } => return,
            _ => {}
        }
        match &mut self.upgrade {
            Upgrade::Client { head, .. } | Upgrade::Server { head } => {
                head.extend_from_slice(data);
                self.advance_upgrade(now);
                self.read_frames(now, &[]);
            }
            Upgrade::Awaiting { tail, .. } => tail.extend_from_slice(data),
            Upgrade::Done => self.read_frames(now, data),
        }
    }

    /// Where the next read from the transport can land directly, skipping the copy that
    /// [`handle_input`](Self::handle_input) makes: the rest of a large message being
    /// received (a single frame of 64 KiB or more). Read into it and report the count with
    /// [`handle_input_in_place`](Self::handle_input_in_place). `None`: read into your own
    /// buffer and call `handle_input`.
    pub fn input_space(&mut self) -> Option<&mut [u8]> {
        if !self.wants_input()
            || !matches!(
                self.close,
                CloseState::NotStarted | CloseState::AwaitingReply { .. }
            )
        {
            return None;
        }
        self.frames.as_deref_mut()?.direct_space()
    }

    /// The transport put `count` bytes at the start of [`input_space`](Self::input_space).
    pub fn handle_input_in_place(&mut self, now: Instant, count: usize) {
        let Some(reader) = self.frames.as_deref_mut() else {
            return;
        };
        self.input_total += count as u64;
        match reader.filled(count) {
            Ok(Some(incoming)) => self.on_incoming(incoming, now),
            Ok(None) => {}
            Err(e) => self.on_frame_error(e, now),
        }
        self.read_paused = self.frames.is_some() && !self.has_room();
    }

    /// The transport's input ended (a read returned 0 bytes).
    pub fn handle_eof(&mut self, now: Instant) {
        if self.eof {
            return;
        }
        self.eof = true;
        match self.close {
            CloseState::Closed => {}
            CloseState::Draining { .. } => self.apply(CloseInput::RemoteEof, now),
            _ if !matches!(self.upgrade, Upgrade::Done) => self.fail(Error::Handshake(
                "the connection closed during the handshake".into(),
            )),
            // Whatever input waits is read first; then the end is seen.
            _ => self.read_frames(now, &[]),
        }
    }

    /// The transport failed (reset, TLS error, ...). During the handshake or while frames
    /// flow the connection fails with `error`; once the close frames were exchanged it
    /// simply ends.
    pub fn handle_transport_error(&mut self, now: Instant, error: Error) {
        match self.close {
            CloseState::Closed => {}
            CloseState::Draining { .. } => self.apply(CloseInput::RemoteEof, now),
            _ => self.fail(error),
        }
    }

    fn advance_upgrade(&mut self, now: Instant) {
        match std::mem::replace(&mut self.upgrade, Upgrade::Done) {
            Upgrade::Done => {}
            awaiting @ Upgrade::Awaiting { .. } => self.upgrade = awaiting,
            Upgrade::Client {
                mut head,
                expected_accept,
            } => {
                let answer = handshake::parse_answer(
                    &head,
                    self.settings.max_handshake_bytes,
                    self.settings.max_handshake_headers,
                    &expected_accept,
                    &self.settings.supported_protocols,
                );
                match answer {
                    Answer::Incomplete => {
                        self.upgrade = Upgrade::Client {
                            head,
                            expected_accept,
                        }
                    }
                    Answer::Failed(why) => self.fail(Error::Handshake(why)),
                    Answer::Accepted {
                        head_len,
                        protocol,
                        headers,
                    } => {
                        self.response_headers = headers;
                        let tail = head.split_off(head_len);
                        self.open(protocol, tail, now);
                    }
                }
            }
            Upgrade::Server { mut head } => {
                let parsed = handshake::parse_request(
                    &head,
                    self.settings.max_handshake_bytes,
                    self.settings.max_handshake_headers,
                    self.health_path.as_deref(),
                );
                match parsed {
                    Parsed::Incomplete => self.upgrade = Upgrade::Server { head },
                    Parsed::Refused(refusal) => self.refuse(refusal, now),
                    Parsed::Health { head_only } => {
                        let response = handshake::health_response(self.draining, head_only);
                        let error = Error::Handshake("answered a health check".into());
                        self.end_with_http(&response, error, now);
                    }
                    Parsed::Upgrade { .. } if self.draining.is_some() => {
                        let seconds = self.draining.unwrap_or_default();
                        self.refuse(handshake::draining(seconds), now);
                    }
                    Parsed::Upgrade {
                        head_len,
                        request,
                        key,
                    } => {
                        let offered = request.offered_protocols();
                        match handshake::select_protocol(
                            &offered,
                            &self.settings.supported_protocols,
                        ) {
                            Err(refusal) => self.refuse(refusal, now),
                            Ok(protocol) if self.settings.decide_upgrade => {
                                self.handshake_request = Some(request.clone());
                                self.upgrade = Upgrade::Awaiting {
                                    key,
                                    tail: head.split_off(head_len),
                                    protocol,
                                };
                                self.events.push_back(Event::UpgradeRequested { request });
                            }
                            Ok(protocol) => {
                                let response = handshake::accept_response(
                                    &key,
                                    &protocol,
                                    &self.settings.handshake_headers,
                                );
                                self.outbox.push_copy(&response);
                                self.handshake_request = Some(request);
                                let tail = head.split_off(head_len);
                                self.open(protocol, tail, now);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Answers a bad upgrade request with its HTTP status, then ends once it is sent.
    fn refuse(&mut self, refusal: Refusal, now: Instant) {
        log::debug!("refusing upgrade with {}: {}", refusal.status, refusal.why);
        let response = handshake::refusal_response(&refusal);
        let error = Error::Handshake(format!(
            "refused with HTTP {}: {}",
            refusal.status, refusal.why
        ));
        self.end_with_http(&response, error, now);
    }

    /// Queues an HTTP answer that ends the connection: our side ends once it is sent, and
    /// the connection once the client closes its side (or `close_timeout` passes).
    fn end_with_http(&mut self, response: &[u8], error: Error, now: Instant) {
        self.outbox.push_copy(response);
        self.error = Some(error);
        self.open_deadline = None;
        self.apply(CloseInput::LocalFailure, now);
    }

    /// Server side, after [`Event::UpgradeRequested`]: answers `101` and opens the
    /// connection ([`Event::Opened`] follows). `protocol`: `None` for the sub-protocol the
    /// server chooses itself (the first one in the client's order that
    /// `supported_protocols` lists, or none), or one the client offered. `headers`:
    /// `"Name: value"` lines sent after `handshake_headers`.
    ///
    /// Fails, and changes nothing, with [`Error::NoUpgradePending`] when no request waits,
    /// [`Error::InvalidProtocol`] for a sub-protocol the client did not offer, and
    /// [`Error::InvalidHeader`] for a line that is not a valid header.
    pub fn accept_upgrade(
        &mut self,
        now: Instant,
        protocol: Option<&str>,
        headers: &[&str],
    ) -> Result<(), Error> {
        let Upgrade::Awaiting {
            protocol: chosen, ..
        } = &self.upgrade
        else {
            return Err(Error::NoUpgradePending);
        };
        let protocol = match protocol {
            None => chosen.clone(),
            Some(p) => {
                let offered = self
                    .handshake_request
                    .as_ref()
                    .is_some_and(|r| r.offered_protocols().contains(&p));
                if !offered {
                    return Err(Error::InvalidProtocol(p.to_string()));
                }
                p.to_string()
            }
        };
        for line in headers {
            crate::config::parse_header_line(line)?;
        }
        let Upgrade::Awaiting { key, tail, .. } =
            std::mem::replace(&mut self.upgrade, Upgrade::Done)
        else {
            unreachable!("checked above");
        };
        let mut lines = self.settings.handshake_headers.clone();
        lines.extend(headers.iter().map(|h| h.to_string()));
        let response = handshake::accept_response(&key, &protocol, &lines);
        self.outbox.push_copy(&response);
        self.open(protocol, tail, now);
        self.read_frames(now, &[]);
        Ok(())
    }

    /// Server side, after [`Event::UpgradeRequested`]: answers with HTTP `status`
    /// (300–599), the `"Name: value"` lines in `headers`, and `body`, then ends the
    /// connection once that is sent ([`Event::Closed`], close code -1, and
    /// [`error`](Self::error) says it was rejected). The answer is exactly: the status line,
    /// `Connection: close`, `headers` in order, `Content-Length`, a blank line and `body`.
    ///
    /// Fails, and changes nothing, with [`Error::NoUpgradePending`] when no request waits,
    /// [`Error::InvalidConfig`] for a status outside 300–599, and [`Error::InvalidHeader`]
    /// for a line that is not a valid header or that sets `Connection`, `Content-Length`
    /// or `Transfer-Encoding` (the answer's own).
    pub fn reject_upgrade(
        &mut self,
        now: Instant,
        status: u16,
        headers: &[&str],
        body: &[u8],
    ) -> Result<(), Error> {
        if !matches!(self.upgrade, Upgrade::Awaiting { .. }) {
            return Err(Error::NoUpgradePending);
        }
        if !(300..=599).contains(&status) {
            return Err(Error::InvalidConfig(format!(
                "HTTP status {status} cannot reject an upgrade: use 300-599"
            )));
        }
        for line in headers {
            let (name, _) = crate::config::parse_header_line(line)?;
            if ["connection", "content-length", "transfer-encoding"].contains(&name.as_str()) {
                return Err(Error::InvalidHeader(line.to_string()));
            }
        }
        log::debug!("the application rejected the upgrade with {status}");
        self.upgrade = Upgrade::Done;
        let response = handshake::rejection_response(status, headers, body);
        let error = Error::Handshake(format!("rejected by the application with HTTP {status}"));
        self.end_with_http(&response, error, now);
        Ok(())
    }

    /// Server side: answer plain `GET` / `HEAD` requests of `path` (no `Upgrade` header) as
    /// a health check, `200` while serving and `503` while draining, instead of refusing
    /// them with `400`. Before the request arrives.
    pub(crate) fn serve_health_checks(&mut self, path: Option<String>) {
        self.health_path = path;
    }

    /// Server side: while `Some(seconds)`, a complete upgrade request not yet answered gets
    /// `503` with `Retry-After: seconds` (a request already waiting for the application's
    /// decision stays the application's), and health checks `503`.
    pub(crate) fn set_draining(&mut self, retry_after: Option<u64>) {
        self.draining = retry_after;
    }

    /// Server side: whether a valid upgrade request waits for
    /// [`accept_upgrade`](Self::accept_upgrade) or [`reject_upgrade`](Self::reject_upgrade).
    pub fn is_awaiting_decision(&self) -> bool {
        matches!(self.upgrade, Upgrade::Awaiting { .. })
    }

    /// The upgrade is done; `tail` is what followed it in the input (read next).
    fn open(&mut self, protocol: String, tail: Vec<u8>, now: Instant) {
        self.frames = Some(Box::new(FrameReader::new(
            !self.is_client,
            self.settings.inbound_buffer_size,
        )));
        self.backlog = Backlog {
            bytes: tail,
            read: 0,
        };
        self.open_deadline = None;
        if !self.settings.heartbeat_interval.is_zero() {
            self.next_ping = Some(now + self.settings.heartbeat_interval);
        }
        self.selected_protocol = protocol.clone();
        self.events.push_back(Event::Opened { protocol });
    }

    fn has_room(&self) -> bool {
        let outbound_full = self.settings.outbound_buffer_size > 0
            && self.outbox.buffered() > self.settings.outbound_buffer_size;
        self.inbound.len() < self.settings.max_queued_packets
            && self.inbound_bytes < self.settings.inbound_buffer_size
            && !outbound_full
    }

    /// Reads messages from the backlog, then from `fresh`, while there is room; keeps what
    /// is left of `fresh` in the backlog.
    fn read_frames(&mut self, now: Instant, fresh: &[u8]) {
        let mut fresh_read = 0;
        while self.has_room() {
            let Some(reader) = self.frames.as_deref_mut() else {
                break;
            };
            let backlog = &mut self.backlog;
            let (source, cursor) = if backlog.read < backlog.bytes.len() {
                (&backlog.bytes[..], &mut backlog.read)
            } else {
                (fresh, &mut fresh_read)
            };
            let mut input = &source[*cursor..];
            if input.is_empty() {
                if self.eof {
                    // The stream ended with no close frame (after one, `frames` is gone).
                    self.frames = None;
                    self.lost(Error::ConnectionLost(
                        "the remote closed the connection without a close frame".into(),
                    ));
                }
                break;
            }
            let result = reader.next(&mut input);
            *cursor = source.len() - input.len();
            match result {
                Ok(Some(incoming)) => self.on_incoming(incoming, now),
                Ok(None) => {}
                Err(e) => self.on_frame_error(e, now),
            }
        }
        // Stopped for want of room, not of bytes: `handle_timeout` resumes once there is.
        self.read_paused = self.frames.is_some() && !self.has_room();
        self.keep_unread(&fresh[fresh_read..]);
    }

    /// Queues our close frame.
    fn send_close_frame(&mut self, code: u16, reason: &str) {
        self.writer.close(&mut self.outbox, Some((code, reason)));
    }

    fn keep_unread(&mut self, rest: &[u8]) {
        let backlog = &mut self.backlog;
        if backlog.read == backlog.bytes.len() {
            backlog.bytes.clear();
            backlog.read = 0;
        }
        if self.frames.is_some() {
            backlog.bytes.extend_from_slice(rest);
        }
        if backlog.bytes.is_empty() && backlog.bytes.capacity() > 0 {
            // An idle connection holds no input buffer.
            backlog.bytes = Vec::new();
        }
    }

    fn on_incoming(&mut self, incoming: Incoming, now: Instant) {
        match incoming {
            Incoming::Message { data, is_text } => self.queue_packet(Packet { data, is_text }),
            Incoming::Pong(payload) => {
                // Any pong shows the remote alive; only the latest ping's is timed.
                self.ping_outstanding = false;
                self.round_trip.pong(payload.as_slice(), now);
            }
            Incoming::Ping(payload) => {
                // Once our close is sent, no more frames but the close reply (§5.5.1).
                if self.close == CloseState::NotStarted {
                    self.writer
                        .control(&mut self.outbox, Control::Pong, payload.as_slice());
                    self.keeps_send_buffers = true;
                }
            }
            Incoming::Close(frame) => self.on_close_frame(frame, now),
        }
    }

    /// The remote's close frame: the start of its close (answered at once) or the answer
    /// to ours.
    fn on_close_frame(&mut self, frame: Option<(u16, String)>, now: Instant) {
        self.close_received = true;
        self.frames = None;
        let answering = self.close == CloseState::NotStarted;
        let (code, reason) = match frame {
            None => {
                if answering {
                    self.writer.close(&mut self.outbox, None);
                }
                (1005, String::new())
            }
            Some((code, reason)) if code >= 1000 && CloseCode::from(code).is_allowed() => {
                if answering {
                    self.writer.close(&mut self.outbox, Some((code, &reason)));
                }
                (i32::from(code), reason)
            }
            Some((code, _)) => {
                // A code that may not be on the wire: answered with 1002, and reported as
                // that 1002 (a protocol error), never as a clean close with the bad code.
                if answering {
                    self.writer
                        .close(&mut self.outbox, Some((1002, "Protocol violation")));
                } else {
                    self.error = Some(Error::Protocol {
                        code: 1002,
                        detail: format!("close code {code} may not be sent on the wire"),
                    });
                }
                (1002, "Protocol violation".to_string())
            }
        };
        self.close_code = code;
        self.close_reason = reason;
        self.apply(CloseInput::RemoteClose, now);
    }

    fn queue_packet(&mut self, packet: Packet) {
        self.inbound_total += 1;
        self.inbound_payload_total += packet.data.len() as u64;
        self.inbound_bytes += packet.data.len();
        self.inbound.push_back(packet);
        if let Some(Event::Received { messages }) = self.events.back_mut() {
            *messages += 1;
        } else {
            self.events.push_back(Event::Received { messages: 1 });
        }
    }

    fn on_frame_error(&mut self, e: tungstenite::Error, now: Instant) {
        use tungstenite::error::CapacityError;
        let (code, detail) = match e {
            tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
                1009,
                format!("message of {size} bytes exceeds inbound_buffer_size {max_size}"),
            ),
            tungstenite::Error::Capacity(other) => (1009, other.to_string()),
            tungstenite::Error::Utf8(detail) => {
                (1007, format!("invalid UTF-8 in a text message: {detail}"))
            }
            tungstenite::Error::Protocol(p) => (1002, p.to_string()),
            other => {
                self.frames = None;
                return self.lost(Error::ConnectionLost(other.to_string()));
            }
        };
        let reason = match code {
            1009 => "Message too big",
            1007 => "Invalid frame payload data",
            _ => "Protocol error",
        };
        log::debug!("closing with {code}: {detail}");
        if self.close == CloseState::NotStarted {
            self.send_close_frame(code, reason);
        }
        self.frames = None;
        self.close_code = i32::from(code);
        self.close_reason = reason.to_string();
        self.error = Some(Error::Protocol { code, detail });
        self.apply(CloseInput::LocalFailure, now);
    }

    /// The stream ended or broke; after the remote's close frame that is still a clean
    /// close (TLS peers often skip close_notify).
    fn lost(&mut self, error: Error) {
        if self.close_received {
            self.finish();
        } else {
            self.fail(error);
        }
    }

    /// Runs one close-handshake transition and carries out its effect.
    fn apply(&mut self, input: CloseInput, now: Instant) {
        let (next, effect) = self.close.on(input, now, self.settings.close_timeout);
        self.close = next;
        if next != CloseState::NotStarted {
            // Once the close starts, no more pings: the close deadline bounds what is left.
            self.next_ping = None;
        }
        match effect {
            CloseEffect::Nothing | CloseEffect::SendClose => {}
            CloseEffect::ReportRequest => self.events.push_back(Event::CloseRequested {
                code: self.close_code,
                reason: self.close_reason.clone(),
            }),
            CloseEffect::Finished => self.finish(),
            CloseEffect::Failed => {
                let error = match input {
                    CloseInput::Timeout => Some(Error::CloseTimeout),
                    CloseInput::RemoteEof => Some(Error::ConnectionLost(
                        "the remote closed the connection without a close frame".into(),
                    )),
                    _ => None,
                };
                self.close_code = -1;
                self.close_reason.clear();
                if error.is_some() {
                    self.error = error;
                }
                self.finish();
            }
        }
    }

    /// Ends the connection uncleanly: close code -1, the error kept for the application.
    fn fail(&mut self, error: Error) {
        if self.ended {
            return;
        }
        log::debug!("connection failed: {error}");
        self.close_code = -1;
        self.close_reason.clear();
        self.error = Some(error);
        self.finish();
    }

    /// The end, as recorded: timers stop, unsent bytes are dropped, `Closed` is reported.
    fn finish(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.close = CloseState::Closed;
        self.frames = None;
        self.upgrade = Upgrade::Done;
        self.open_deadline = None;
        self.next_ping = None;
        self.outbound_ends.clear();
        self.outbox.clear();
        self.backlog = Backlog::default();
        self.events.push_back(Event::Closed {
            code: self.close_code,
            reason: self.close_reason.clone(),
            clean: self.close_code != -1,
        });
    }

    // ----- time -----

    /// The earliest moment this connection needs [`handle_timeout`](Self::handle_timeout)
    /// without any input: the upgrade deadline, the next heartbeat ping, or the close
    /// handshake's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.open_deadline, self.next_ping, self.close.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires the timers due at `now` (upgrade deadline, heartbeat, close deadline) and
    /// resumes reading that a full receive queue paused. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.open_deadline.is_some_and(|deadline| now >= deadline) {
            return self.fail(Error::ConnectTimeout);
        }
        if let (Some(due), CloseState::NotStarted) = (self.next_ping, self.close) {
            if now >= due {
                if self.ping_outstanding {
                    return self.fail(Error::HeartbeatTimeout);
                }
                self.queue_ping(now);
                let interval = self.settings.heartbeat_interval;
                // Catch up without a burst if calls were far apart.
                let mut next = due + interval;
                if next <= now {
                    next = now + interval;
                }
                self.next_ping = Some(next);
            }
        }
        if self
            .close
            .deadline()
            .is_some_and(|deadline| now >= deadline)
        {
            return self.apply(CloseInput::Timeout, now);
        }
        // Only when reading was paused: otherwise there is nothing waiting to be read.
        if self.read_paused {
            self.read_frames(now, &[]);
        }
    }

    /// The heartbeat's ping: a reply is due by the next interval.
    fn queue_ping(&mut self, now: Instant) {
        if self.frames.is_some() {
            self.write_ping(now);
            self.ping_outstanding = true;
        }
    }

    /// Queues a ping whose payload is the next sequence number, so that its pong can be
    /// timed (see [`PeerStats`]). Ping frames are tiny and control frames bypass the
    /// outbound budget; the payload lives on the stack, so a heartbeat allocates nothing.
    fn write_ping(&mut self, now: Instant) {
        let payload = self.round_trip.ping(now);
        self.writer
            .control(&mut self.outbox, Control::Ping, &payload);
        self.keeps_send_buffers = true;
    }

    /// Queues a ping now, to measure the round-trip time without waiting for the heartbeat
    /// (or with the heartbeat off): its pong updates [`stats`](Self::stats). A pong still
    /// due for an earlier ping then no longer counts as a sample. It does not take the
    /// place of the heartbeat's ping, nor count as one. Fails with [`Error::NotOpen`]
    /// unless the connection is open.
    pub fn send_ping(&mut self, now: Instant) -> Result<(), Error> {
        if self.frames.is_none() || self.close != CloseState::NotStarted {
            return Err(Error::NotOpen);
        }
        self.write_ping(now);
        Ok(())
    }

    // ----- output -----

    /// Fills `slices` with the bytes waiting to be sent, in order, for one vectored write;
    /// returns how many slices were filled (0: nothing to send).
    pub fn transmit<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.outbox.slices(slices)
    }

    /// The first bytes waiting to be sent, as one slice (for transports without vectored
    /// writes); empty when nothing waits.
    pub fn transmit_front(&self) -> &[u8] {
        self.outbox.front()
    }

    /// Appends every byte waiting to be sent to `out` and counts them as sent.
    pub fn transmit_into(&mut self, out: &mut Vec<u8>) {
        loop {
            let taken = {
                let mut slices = [IoSlice::new(&[]); 16];
                let used = self.outbox.slices(&mut slices);
                for slice in &slices[..used] {
                    out.extend_from_slice(slice);
                }
                slices[..used].iter().map(|s| s.len()).sum::<usize>()
            };
            if taken == 0 {
                return;
            }
            self.transmitted(taken);
        }
    }

    /// The transport took the first `count` bytes that [`transmit`](Self::transmit)
    /// handed out (a count beyond what waits is cut to it).
    pub fn transmitted(&mut self, count: usize) {
        self.outbox.advance(count);
        if !self.keeps_send_buffers {
            // Only the handshake went out: keep no buffer while idle.
            self.outbox.release_if_empty();
        }
        let sent = self.outbox.sent_total();
        while self.outbound_ends.front().is_some_and(|end| *end <= sent) {
            self.outbound_ends.pop_front();
        }
    }

    /// Whether the send queue holds any allocation, for tests of what idle connections keep.
    #[cfg(test)]
    pub(crate) fn holds_send_buffers(&self) -> bool {
        self.outbox.holds_buffers()
    }

    /// Whether bytes wait to be sent.
    pub fn has_output(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Bytes queued but not yet handed to the transport (Godot's
    /// `get_current_outbound_buffered_amount`), frame headers included.
    pub fn get_current_outbound_buffered_amount(&self) -> usize {
        self.outbox.buffered()
    }

    /// True once the WebSocket part is over and every queued byte was handed out: end the
    /// transport's write side (TLS close_notify, TCP FIN), then call
    /// [`handle_shutdown`](Self::handle_shutdown).
    pub fn wants_shutdown(&self) -> bool {
        matches!(
            self.close,
            CloseState::Draining {
                write_shut: false,
                ..
            }
        ) && self.outbox.is_empty()
    }

    /// The transport's write side has ended (see [`wants_shutdown`](Self::wants_shutdown)).
    pub fn handle_shutdown(&mut self, now: Instant) {
        if self.wants_shutdown() {
            self.apply(CloseInput::WriteShut, now);
        }
    }

    // ----- sending -----

    /// Queues one message as text or binary. Fails without queueing anything when the
    /// connection is not open, the text is not UTF-8, or the message would exceed
    /// `outbound_buffer_size` bytes or `max_queued_packets` messages waiting.
    pub fn send(&mut self, data: &[u8], mode: WriteMode) -> Result<(), Error> {
        match mode {
            WriteMode::Text => {
                let text = std::str::from_utf8(data).map_err(|_| Error::InvalidUtf8)?;
                self.send_text(text)
            }
            WriteMode::Binary => self.queue_message(Payload::Borrowed(data), false),
        }
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.queue_message(Payload::Borrowed(text.as_bytes()), true)
    }

    /// Queues a packet (received or built with [`Packet::new`]) as text or binary like it
    /// is, without copying a large payload.
    pub fn send_packet(&mut self, packet: &Packet) -> Result<(), Error> {
        if packet.is_text && std::str::from_utf8(&packet.data).is_err() {
            return Err(Error::InvalidUtf8);
        }
        self.queue_message(Payload::Shared(&packet.data), packet.is_text)
    }

    fn check_budget(&mut self, len: usize) -> Result<(), Error> {
        if self.frames.is_none() || self.close != CloseState::NotStarted {
            return Err(Error::NotOpen);
        }
        let sent = self.outbox.sent_total();
        while self.outbound_ends.front().is_some_and(|end| *end <= sent) {
            self.outbound_ends.pop_front();
        }
        let max_packets = self.settings.max_queued_packets;
        if self.outbound_ends.len() >= max_packets {
            return Err(Error::OutboundQueueFull { limit: max_packets });
        }
        let limit = self.settings.outbound_buffer_size;
        let buffered = self.outbox.buffered();
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
        Ok(())
    }

    fn queue_message(&mut self, payload: Payload<'_>, is_text: bool) -> Result<(), Error> {
        self.check_budget(payload.len())?;
        self.keeps_send_buffers = true;
        self.outbound_total += 1;
        self.outbound_payload_total += payload.len() as u64;
        let opcode = OpCode::Data(if is_text { Data::Text } else { Data::Binary });
        // Server frames go out unmasked, a large shared payload without a copy; client
        // frames are masked as they are copied.
        self.writer.write(&mut self.outbox, opcode, payload);
        let end = self.outbox.end_position();
        if end > self.outbox.sent_total() {
            self.outbound_ends.push_back(end);
        }
        Ok(())
    }

    // ----- receiving -----

    /// Packets waiting to be read.
    pub fn get_available_packet_count(&self) -> usize {
        self.inbound.len()
    }

    /// The next received message, if any. Reading makes room: call
    /// [`handle_timeout`](Self::handle_timeout) afterwards to resume paused reading.
    pub fn recv(&mut self) -> Option<Packet> {
        let packet = self.inbound.pop_front()?;
        self.inbound_bytes -= packet.data.len();
        Some(packet)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if self.events.is_empty() && self.inbound_total == 0 {
            // Until messages flow, an empty queue keeps no allocation (idle connections
            // stay small); after that, its capacity is reused for every message.
            self.events = VecDeque::new();
        }
        event
    }

    // ----- closing -----

    /// Starts the close handshake with `code` and `reason`. A negative code drops the
    /// connection at once without a close frame (close code -1); so does any code before
    /// the upgrade finished.
    ///
    /// Fails (and changes nothing) for a code RFC 6455 forbids on the wire or a reason
    /// over 123 bytes.
    pub fn close(&mut self, now: Instant, code: i32, reason: &str) -> Result<(), Error> {
        let Some(wire_code) = check_close(code, reason)? else {
            self.abort(now);
            return Ok(());
        };
        if self.close != CloseState::NotStarted {
            return Ok(());
        }
        if self.frames.is_none() {
            self.abort(now);
            return Ok(());
        }
        self.send_close_frame(wire_code, reason);
        self.apply(CloseInput::LocalClose, now);
        Ok(())
    }

    /// Drops the connection at once, without a close frame (close code -1).
    pub fn abort(&mut self, now: Instant) {
        self.apply(CloseInput::Abort, now);
    }

    // ----- information -----

    /// The connection's state (Godot's `get_ready_state`).
    pub fn get_ready_state(&self) -> State {
        match self.close {
            CloseState::Closed => State::Closed,
            CloseState::AwaitingReply { .. } | CloseState::Draining { .. } => State::Closing,
            CloseState::NotStarted if self.frames.is_some() => State::Open,
            CloseState::NotStarted => State::Connecting,
        }
    }

    /// Whether the connection is over (drop the transport).
    pub fn is_closed(&self) -> bool {
        self.close == CloseState::Closed
    }

    /// Whether this is the client side.
    pub fn is_client(&self) -> bool {
        self.is_client
    }

    /// The remote's close code, the code we failed the connection with (1002, 1007, 1009),
    /// or -1 when the connection did not close cleanly (Godot's `get_close_code`).
    pub fn get_close_code(&self) -> i32 {
        self.close_code
    }

    /// The reason that went with [`get_close_code`](Self::get_close_code).
    pub fn get_close_reason(&self) -> &str {
        &self.close_reason
    }

    /// Why the connection failed or was refused, if it was.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The negotiated sub-protocol, or `""`.
    pub fn get_selected_protocol(&self) -> &str {
        &self.selected_protocol
    }

    /// Server side: the client's upgrade request, once open (or, for
    /// [`server_deciding`](Self::server_deciding), once it waits for the decision).
    pub fn handshake_request(&self) -> Option<&HandshakeRequest> {
        self.handshake_request.as_ref()
    }

    /// Client side: the headers of the server's `101` answer (names lower-cased).
    pub fn response_headers(&self) -> &[(String, String)] {
        &self.response_headers
    }

    /// Traffic counters and round-trip times so far (see [`PeerStats`] for what each
    /// counts). Cheap: a copy of a few counters.
    pub fn stats(&self) -> PeerStats {
        let mut stats = PeerStats {
            messages_sent: self.outbound_total,
            messages_received: self.inbound_total,
            payload_bytes_sent: self.outbound_payload_total,
            payload_bytes_received: self.inbound_payload_total,
            bytes_sent: self.outbox.sent_total(),
            bytes_received: self.input_total,
            ..PeerStats::default()
        };
        self.round_trip.fill(&mut stats);
        stats
    }
}

/// Checks a close code and reason before anything changes: `None` for a negative code (drop
/// without a close frame), else the code as it goes on the wire.
pub(crate) fn check_close(code: i32, reason: &str) -> Result<Option<u16>, Error> {
    if code < 0 {
        return Ok(None);
    }
    let wire_code = u16::try_from(code).map_err(|_| Error::InvalidCloseCode(code))?;
    if !CloseCode::from(wire_code).is_allowed() || wire_code < 1000 {
        return Err(Error::InvalidCloseCode(code));
    }
    if reason.len() > 123 {
        return Err(Error::CloseReasonTooLong(reason.len()));
    }
    Ok(Some(wire_code))
}
