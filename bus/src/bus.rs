//! `RoomBus`: rooms joined and published to over two Redis connections, envelopes, sequence numbers, events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo, Value};
use wspeer::{ServerEvent, SourceToken};

use crate::config::BusConfig;
use crate::envelope::{self, EnvelopeError};
use crate::error::BusError;
use crate::link::{Backoff, Link, LinkKind};
use crate::registrar::Registrar;
use crate::resp;

/// What happened on the bus, in order. Read with [`RoomBus::next_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A message another node published to a joined room.
    Message {
        /// The room.
        room: String,
        /// The node that published it.
        from: String,
        /// Its sequence number in `from`'s stream for this room.
        seq: u64,
        /// The publisher's bytes.
        payload: Vec<u8>,
    },
    /// Messages of `from` in `room` were lost (a reconnect, or Redis dropping a slow
    /// subscriber): the message just reported came `missed` numbers after the previous
    /// one. Reported before that message.
    Gap {
        /// The room.
        room: String,
        /// The node whose messages were lost.
        from: String,
        /// How many.
        missed: u64,
    },
    /// Redis confirmed the subscription to a joined room (after `join`, and again after
    /// every reconnect of the subscribe link).
    Subscribed {
        /// The room.
        room: String,
    },
    /// A connection to Redis is established.
    Connected {
        /// Which one.
        link: LinkKind,
    },
    /// A connection to Redis failed or was lost; the next attempt starts in `retry_in`.
    Disconnected {
        /// Which one.
        link: LinkKind,
        /// Why.
        reason: String,
        /// The back-off before the next attempt.
        retry_in: Duration,
    },
    /// Published messages were handed to Redis but the connection was lost before Redis
    /// answered: they may or may not have been delivered (delivery is at most once; they
    /// are not sent again). The receivers' sequence numbers tell them.
    Unconfirmed {
        /// How many messages.
        count: usize,
    },
    /// Redis answered a `PUBLISH` with an error.
    PublishFailed {
        /// Redis' error.
        error: String,
    },
    /// Bytes on a joined room's channel that are not an envelope this node accepts.
    Malformed {
        /// The room.
        room: String,
        /// What is wrong with them.
        error: EnvelopeError,
    },
}

/// A joined room.
struct Room {
    /// The sequence number of the last message this node published to the room.
    sent: u64,
    /// The last sequence number received from each other node.
    last_seen: HashMap<String, u64>,
}

/// A room bus over Redis pub/sub for one node: [`join`](RoomBus::join) rooms,
/// [`publish`](RoomBus::publish) to them, read what other nodes published with
/// [`next_event`](RoomBus::next_event).
///
/// It holds two non-blocking connections (one publishes, one subscribes) registered with
/// the caller's poller through a [`Registrar`]; it does I/O only inside
/// [`poll`](RoomBus::poll). The loop:
///
/// 1. when the poller reports a token, pass it to [`handle_ready`](RoomBus::handle_ready)
///    (it returns false for tokens that are not the bus's);
/// 2. call [`poll`](RoomBus::poll) with the time once per loop (it connects, writes,
///    reads and reconnects), then take every [`next_event`](RoomBus::next_event);
/// 3. wake the poller no later than [`next_deadline`](RoomBus::next_deadline).
pub struct RoomBus<T> {
    config: BusConfig,
    publisher: Link<T>,
    subscriber: Link<T>,
    rooms: BTreeMap<String, Room>,
    events: VecDeque<BusEvent>,
    /// The time given to the last `poll`.
    last_poll: Option<Instant>,
}

/// Resolves `redis://HOST:PORT`, refusing what the bus does not support (TLS, Unix
/// sockets, passwords, databases other than 0, which pub/sub ignores anyway).
fn resolve(url: &str) -> Result<Vec<SocketAddr>, BusError> {
    let info = url
        .into_connection_info()
        .map_err(|e| BusError::InvalidUrl(e.to_string()))?;
    let (host, port) = match info.addr() {
        ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        _ => return Err(BusError::InvalidUrl("only plain TCP is supported".into())),
    };
    let settings = info.redis_settings();
    if settings.password().is_some() || settings.username().is_some() {
        return Err(BusError::InvalidUrl(
            "user names and passwords are not supported".into(),
        ));
    }
    if settings.db() != 0 {
        return Err(BusError::InvalidUrl(
            "a database number is meaningless for pub/sub: leave it out".into(),
        ));
    }
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| BusError::Resolve(format!("{host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(BusError::Resolve(format!("{host}: no address")));
    }
    Ok(addrs)
}

impl<T: Copy + Eq + std::fmt::Debug> RoomBus<T> {
    /// A bus to the Redis at `redis_url` (`redis://HOST:PORT`). A host name is looked up
    /// here, once, blocking (give an IP address to avoid that); nothing is connected until
    /// the first [`poll`](RoomBus::poll).
    pub fn new(redis_url: &str, config: BusConfig) -> Result<Self, BusError> {
        config.validate()?;
        let addrs = resolve(redis_url)?;
        let backoff = Backoff {
            min: config.reconnect_min,
            max: config.reconnect_max,
            connect_timeout: config.connect_timeout,
        };
        // The largest reply: a message array around the channel name and the envelope.
        let max_reply = 128
            + config.channel_prefix.len()
            + config.max_room_name
            + envelope::overhead(envelope::MAX_NODE_ID_LEN)
            + config.max_payload;
        Ok(RoomBus {
            publisher: Link::new(LinkKind::Publish, addrs.clone(), backoff, max_reply),
            subscriber: Link::new(LinkKind::Subscribe, addrs, backoff, max_reply),
            rooms: BTreeMap::new(),
            events: VecDeque::new(),
            last_poll: None,
            config,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Whether both connections are established.
    pub fn is_connected(&self) -> bool {
        self.publisher.is_up() && self.subscriber.is_up()
    }

    /// Whether `room` is joined.
    pub fn is_joined(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Messages published and not yet answered by Redis.
    pub fn queued_messages(&self) -> usize {
        self.publisher.queued_messages()
    }

    fn channel(&self, room: &str) -> Vec<u8> {
        let mut channel = Vec::with_capacity(self.config.channel_prefix.len() + room.len());
        channel.extend_from_slice(self.config.channel_prefix.as_bytes());
        channel.extend_from_slice(room.as_bytes());
        channel
    }

    fn check_room(&self, room: &str) -> Result<(), BusError> {
        if room.is_empty() || room.len() > self.config.max_room_name {
            return Err(BusError::InvalidRoom {
                len: room.len(),
                max: self.config.max_room_name,
            });
        }
        Ok(())
    }

    /// Subscribes to `room` (now if connected, else on connecting); a
    /// [`BusEvent::Subscribed`] follows once Redis confirms. Joining a joined room does
    /// nothing.
    pub fn join(&mut self, room: &str) -> Result<(), BusError> {
        self.check_room(room)?;
        if self.rooms.contains_key(room) {
            return Ok(());
        }
        if self.rooms.len() >= self.config.max_rooms {
            return Err(BusError::TooManyRooms {
                max: self.config.max_rooms,
            });
        }
        if self.subscriber.is_up() {
            let channel = self.channel(room);
            self.subscriber.push(resp::subscribe([channel.as_slice()]));
        }
        self.rooms.insert(
            room.to_owned(),
            Room {
                sent: 0,
                last_seen: HashMap::new(),
            },
        );
        Ok(())
    }

    /// Unsubscribes from `room`: its messages stop being reported at once, and its
    /// sequence numbers start again from 1 if it is joined again. Leaving a room not
    /// joined does nothing.
    pub fn leave(&mut self, room: &str) {
        if self.rooms.remove(room).is_some() && self.subscriber.is_up() {
            let channel = self.channel(room);
            self.subscriber.push(resp::unsubscribe(&channel));
        }
    }

    /// Queues `payload` for every other node's members of `room` (joined), in an envelope
    /// with the next sequence number. It is written now as far as the socket takes it, the
    /// rest by the next [`poll`](RoomBus::poll)s (or after a reconnect); a refused message
    /// changes nothing.
    pub fn publish(&mut self, room: &str, payload: &[u8]) -> Result<(), BusError> {
        if payload.len() > self.config.max_payload {
            return Err(BusError::PayloadTooLarge {
                len: payload.len(),
                max: self.config.max_payload,
            });
        }
        let channel = self.channel(room);
        let Some(state) = self.rooms.get(room) else {
            return Err(BusError::NotJoined(room.to_owned()));
        };
        let seq = state.sent + 1;
        let command = resp::publish(
            &channel,
            &envelope::encode(&self.config.node_id, seq, payload),
        );
        let messages = self.publisher.queued_messages();
        let bytes = self.publisher.queued_bytes();
        if messages >= self.config.max_outbound_messages
            || bytes + command.len() > self.config.max_outbound_bytes
        {
            return Err(BusError::QueueFull { messages, bytes });
        }
        self.publisher.push(command);
        if let Some(state) = self.rooms.get_mut(room) {
            state.sent = seq;
        }
        Ok(())
    }

    /// Records readiness the poller reported for `token`; returns false when the token
    /// is not one of the bus's. The work happens in the next [`poll`](RoomBus::poll).
    pub fn handle_ready(&mut self, token: T, readable: bool, writable: bool) -> bool {
        if self.publisher.token() == Some(token) {
            self.publisher.on_ready(readable, writable);
            true
        } else if self.subscriber.token() == Some(token) {
            self.subscriber.on_ready(readable, writable);
            true
        } else {
            false
        }
    }

    /// When [`poll`](RoomBus::poll) has work to do without a readiness event: a
    /// reconnect or a connect deadline, or (as the last poll's time, so at once) reading
    /// that paused at `max_queued_events`; `None` when only readiness can bring work.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.publisher.has_unread() || self.subscriber.has_unread() {
            return self.last_poll;
        }
        match (self.publisher.deadline(), self.subscriber.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does the bus's I/O: starts due connection attempts, completes connects,
    /// resubscribes every joined room after a reconnect, reads until `WouldBlock` (or
    /// until `max_queued_events` wait) and writes queued commands until `WouldBlock`.
    pub fn poll<R: Registrar<Token = T>>(&mut self, registrar: &mut R, now: Instant) {
        self.last_poll = Some(now);
        self.poll_publisher(registrar, now);
        self.poll_subscriber(registrar, now);
    }

    fn poll_publisher<R: Registrar<Token = T>>(&mut self, registrar: &mut R, now: Instant) {
        match self.publisher.advance(registrar, now) {
            Ok(true) => self.events.push_back(BusEvent::Connected {
                link: LinkKind::Publish,
            }),
            Ok(false) => {}
            Err(reason) => return self.fail(LinkKind::Publish, registrar, now, reason),
        }
        if let Err(e) = self.publisher.flush() {
            return self.fail(LinkKind::Publish, registrar, now, format!("writing: {e}"));
        }
        while self.events.len() < self.config.max_queued_events {
            match self.publisher.read_reply() {
                Ok(None) => break,
                Ok(Some(Value::Int(_))) => {}
                Ok(Some(Value::ServerError(e))) => self.events.push_back(BusEvent::PublishFailed {
                    error: e.to_string(),
                }),
                Ok(Some(other)) => {
                    let reason = format!("unexpected reply to PUBLISH: {other:?}");
                    return self.fail(LinkKind::Publish, registrar, now, reason);
                }
                Err(e) => return self.fail(LinkKind::Publish, registrar, now, e.to_string()),
            }
        }
    }

    fn poll_subscriber<R: Registrar<Token = T>>(&mut self, registrar: &mut R, now: Instant) {
        match self.subscriber.advance(registrar, now) {
            Ok(true) => {
                self.events.push_back(BusEvent::Connected {
                    link: LinkKind::Subscribe,
                });
                if !self.rooms.is_empty() {
                    let channels: Vec<Vec<u8>> =
                        self.rooms.keys().map(|room| self.channel(room)).collect();
                    self.subscriber
                        .push(resp::subscribe(channels.iter().map(Vec::as_slice)));
                }
            }
            Ok(false) => {}
            Err(reason) => return self.fail(LinkKind::Subscribe, registrar, now, reason),
        }
        if let Err(e) = self.subscriber.flush() {
            return self.fail(LinkKind::Subscribe, registrar, now, format!("writing: {e}"));
        }
        while self.events.len() < self.config.max_queued_events {
            match self.subscriber.read_reply() {
                Ok(None) => break,
                Ok(Some(value)) => {
                    if let Err(reason) = self.on_subscriber_reply(value) {
                        return self.fail(LinkKind::Subscribe, registrar, now, reason);
                    }
                }
                Err(e) => return self.fail(LinkKind::Subscribe, registrar, now, e.to_string()),
            }
        }
    }

    fn fail<R: Registrar<Token = T>>(
        &mut self,
        link: LinkKind,
        registrar: &mut R,
        now: Instant,
        reason: String,
    ) {
        log::info!("wspeer-bus: {link:?} link to Redis: {reason}");
        let failure = match link {
            LinkKind::Publish => self.publisher.fail(registrar, now),
            LinkKind::Subscribe => {
                let failure = self.subscriber.fail(registrar, now);
                // Every joined room is subscribed again, in one command, on reconnecting.
                self.subscriber.clear_queue();
                failure
            }
        };
        self.events.push_back(BusEvent::Disconnected {
            link,
            reason,
            retry_in: failure.retry_in,
        });
        if link == LinkKind::Publish && failure.unconfirmed > 0 {
            self.events.push_back(BusEvent::Unconfirmed {
                count: failure.unconfirmed,
            });
        }
    }

    /// A reply on the subscribe link: a subscription confirmed or ended, or a message.
    /// `Err` for anything else (the connection is then dropped and made again).
    fn on_subscriber_reply(&mut self, value: Value) -> Result<(), String> {
        let parts = match value {
            Value::Array(parts) => parts,
            Value::ServerError(e) => return Err(format!("Redis refused: {e}")),
            other => return Err(format!("unexpected reply on the subscribe link: {other:?}")),
        };
        let mut parts = parts.into_iter();
        let (Some(Value::BulkString(kind)), Some(Value::BulkString(channel)), Some(third)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err("a pub/sub reply that is not [kind, channel, data]".to_owned());
        };
        let room = channel
            .strip_prefix(self.config.channel_prefix.as_bytes())
            .and_then(|room| std::str::from_utf8(room).ok());
        let Some(room) = room.filter(|room| self.rooms.contains_key(*room)) else {
            // A room left since (its messages may still be on the way), or a confirmation
            // of leaving it.
            return Ok(());
        };
        let room = room.to_owned();
        match (kind.as_slice(), third) {
            (b"subscribe", _) => self.events.push_back(BusEvent::Subscribed { room }),
            (b"unsubscribe", _) => {}
            (b"message", Value::BulkString(bytes)) => self.on_message(room, &bytes),
            (kind, _) => {
                return Err(format!(
                    "unexpected pub/sub reply {:?}",
                    String::from_utf8_lossy(kind)
                ));
            }
        }
        Ok(())
    }

    fn on_message(&mut self, room: String, bytes: &[u8]) {
        let envelope = match envelope::decode(bytes, self.config.max_payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.events.push_back(BusEvent::Malformed { room, error });
                return;
            }
        };
        if envelope.node == self.config.node_id {
            return;
        }
        let max_tracked = self.config.max_tracked_nodes;
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        let previous = state.last_seen.get(envelope.node).copied();
        if previous.is_none() && state.last_seen.len() >= max_tracked {
            state.last_seen.clear();
        }
        state
            .last_seen
            .insert(envelope.node.to_owned(), envelope.seq);
        // No previous number: the first message heard from that node since joining.
        // A number not above the previous one: that node restarted its stream (it left
        // and joined the room again, or restarted): followed from here.
        if let Some(previous) = previous {
            if envelope.seq > previous + 1 {
                self.events.push_back(BusEvent::Gap {
                    room: room.clone(),
                    from: envelope.node.to_owned(),
                    missed: envelope.seq - previous - 1,
                });
            }
        }
        self.events.push_back(BusEvent::Message {
            room,
            from: envelope.node.to_owned(),
            seq: envelope.seq,
            payload: envelope.payload.to_vec(),
        });
    }

    /// The next event, oldest first.
    pub fn next_event(&mut self) -> Option<BusEvent> {
        self.events.pop_front()
    }
}

impl RoomBus<SourceToken> {
    /// [`handle_ready`](RoomBus::handle_ready) for a `ServerEvent::SourceReady` of a
    /// [`WebSocketServer`](wspeer::WebSocketServer) the bus is registered with (closed and
    /// error flags count as both directions: the next read or write finds out what
    /// happened). Returns false for every other event and for other sources' tokens.
    pub fn handle_server_event(&mut self, event: &ServerEvent) -> bool {
        let ServerEvent::SourceReady {
            token,
            readable,
            writable,
            read_closed,
            write_closed,
            error,
        } = event
        else {
            return false;
        };
        self.handle_ready(
            *token,
            *readable || *read_closed || *error,
            *writable || *write_closed || *error,
        )
    }
}
