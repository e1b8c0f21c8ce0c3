//! One non-blocking connection to Redis: connect with a deadline, queued commands written until `WouldBlock`, replies read, reconnect with exponential back-off.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wspeer::mio::Interest;
use wspeer::mio::net::TcpStream;

use crate::registrar::Registrar;
use crate::resp::{Reply, ReplyError, ReplyReader};

/// Which of the bus's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// The connection that sends `PUBLISH`.
    Publish,
    /// The connection that sends `SUBSCRIBE` and receives the rooms' messages.
    Subscribe,
}

/// How many slices one vectored write gathers.
const MAX_WRITE_SLICES: usize = 64;

enum State<T> {
    /// Not connected; the next attempt at `retry_at` (`None`: at once).
    Waiting { retry_at: Option<Instant> },
    /// A non-blocking connect in progress, given up at `deadline`.
    Connecting {
        stream: TcpStream,
        token: T,
        deadline: Instant,
    },
    /// Connected. `announced` is false until the bus has reported it.
    Up {
        stream: TcpStream,
        token: T,
        reader: ReplyReader,
        announced: bool,
    },
}

/// The timing of connection attempts.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first wait after a failure.
    pub min: Duration,
    /// The longest wait: each failure doubles the wait up to this.
    pub max: Duration,
    /// How long a connect may take.
    pub connect_timeout: Duration,
}

/// One connection to Redis and what it has to write.
pub struct Link<T> {
    kind: LinkKind,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    state: State<T>,
    readable: bool,
    writable: bool,
    backoff: Backoff,
    wait: Duration,
    max_reply: usize,
    /// Packed commands not yet wholly written; the first may be partly written.
    commands: VecDeque<Vec<u8>>,
    head_written: usize,
    queued_bytes: usize,
    /// Commands wholly written whose reply has not come (counted on the publish link only:
    /// one `PUBLISH`, one reply).
    awaiting_replies: usize,
    /// A write error met outside [`Link::advance`] (which has the registrar to drop the
    /// stream): reported by the next `advance`.
    broken: Option<String>,
}

/// What a failed connection lost.
pub struct Failure {
    /// Commands handed to Redis (wholly or partly written) without a reply: they may or
    /// may not have been carried out.
    pub unconfirmed: usize,
    /// When the next attempt starts, from the failure.
    pub retry_in: Duration,
}

impl<T: Copy + Eq + std::fmt::Debug> Link<T> {
    /// A link to the first of `addrs` that answers, not connected yet: the first attempt
    /// starts at the first [`Link::advance`].
    pub fn new(kind: LinkKind, addrs: Vec<SocketAddr>, backoff: Backoff, max_reply: usize) -> Self {
        Link {
            kind,
            addrs,
            next_addr: 0,
            state: State::Waiting { retry_at: None },
            readable: false,
            writable: false,
            backoff,
            wait: backoff.min,
            max_reply,
            commands: VecDeque::new(),
            head_written: 0,
            queued_bytes: 0,
            awaiting_replies: 0,
            broken: None,
        }
    }

    /// The token this link's stream is registered under, if it has one.
    pub fn token(&self) -> Option<T> {
        match &self.state {
            State::Waiting { .. } => None,
            State::Connecting { token, .. } | State::Up { token, .. } => Some(*token),
        }
    }

    /// Records readiness reported for this link's token.
    pub fn on_ready(&mut self, readable: bool, writable: bool) {
        self.readable |= readable;
        self.writable |= writable;
    }

    /// Whether the connection is up with bytes maybe left to read (reading paused while
    /// the bus's events wait to be taken).
    pub fn has_unread(&self) -> bool {
        self.readable && self.is_up()
    }

    /// Whether the connection is established.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// Commands queued and not yet answered (the publish link's outbound count).
    pub fn queued_messages(&self) -> usize {
        self.commands.len() + self.awaiting_replies
    }

    /// Bytes of the commands not yet wholly written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Queues a packed command and writes what the socket takes now, if connected; the
    /// rest is written by later [`Link::flush`]es. A write error is kept for the next
    /// [`Link::advance`].
    pub fn push(&mut self, command: Vec<u8>) {
        self.queued_bytes += command.len();
        self.commands.push_back(command);
        if self.broken.is_none() {
            if let Err(e) = self.flush() {
                self.broken = Some(format!("writing: {e}"));
            }
        }
    }

    /// Forgets every queued command (the subscribe link rebuilds its commands after a
    /// reconnect). Only called while not connected.
    pub fn clear_queue(&mut self) {
        self.commands.clear();
        self.head_written = 0;
        self.queued_bytes = 0;
    }

    /// When [`Link::advance`] has a timer to act on.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Waiting { retry_at } => *retry_at,
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Up { .. } => None,
        }
    }

    /// Starts a due connection attempt and completes a pending connect. Returns `Ok(true)`
    /// once when the link has just come up (for the bus to announce and resubscribe).
    pub fn advance<R: Registrar<Token = T>>(
        &mut self,
        registrar: &mut R,
        now: Instant,
    ) -> Result<bool, String> {
        if let Some(reason) = self.broken.take() {
            return Err(reason);
        }
        if let State::Waiting { retry_at } = self.state {
            if retry_at.is_some_and(|at| now < at) {
                return Ok(false);
            }
            self.start_connect(registrar, now)?;
        }
        if let State::Connecting {
            stream, deadline, ..
        } = &mut self.state
        {
            if self.readable || self.writable {
                if let Some(err) = stream.take_error().map_err(|e| e.to_string())? {
                    return Err(format!("connecting: {err}"));
                }
                match stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        self.readable = false;
                        self.writable = false;
                    }
                    Err(e) => return Err(format!("connecting: {e}")),
                }
            }
            if !self.readable && !self.writable {
                if now >= *deadline {
                    return Err(format!(
                        "connect timed out after {:?}",
                        self.backoff.connect_timeout
                    ));
                }
                return Ok(false);
            }
            // Connected: latency matters more than packet count on a bus.
            let State::Connecting { stream, token, .. } =
                std::mem::replace(&mut self.state, State::Waiting { retry_at: None })
            else {
                unreachable!("matched above")
            };
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            self.wait = self.backoff.min;
            self.state = State::Up {
                stream,
                token,
                reader: ReplyReader::new(self.max_reply),
                announced: false,
            };
        }
        if let State::Up { announced, .. } = &mut self.state {
            if !*announced {
                *announced = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn start_connect<R: Registrar<Token = T>>(
        &mut self,
        registrar: &mut R,
        now: Instant,
    ) -> Result<(), String> {
        let addr = self.addrs[self.next_addr % self.addrs.len()];
        self.next_addr = self.next_addr.wrapping_add(1);
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let token = registrar
            .register(&mut stream, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("registering the stream to {addr}: {e}"))?;
        self.readable = false;
        self.writable = false;
        self.state = State::Connecting {
            stream,
            token,
            deadline: now + self.backoff.connect_timeout,
        };
        Ok(())
    }

    /// The next reply, if the stream has one; `Ok(None)` when it has nothing more now.
    pub fn read_reply(&mut self) -> Result<Option<redis::Value>, ReplyError> {
        let State::Up { stream, reader, .. } = &mut self.state else {
            return Ok(None);
        };
        if !self.readable {
            return Ok(None);
        }
        match reader.read(stream)? {
            Reply::Value(value) => {
                if self.kind == LinkKind::Publish {
                    self.awaiting_replies = self.awaiting_replies.saturating_sub(1);
                }
                Ok(Some(value))
            }
            Reply::WouldBlock => {
                self.readable = false;
                Ok(None)
            }
        }
    }

    /// Writes queued commands until they are all written or the socket says `WouldBlock`.
    pub fn flush(&mut self) -> io::Result<()> {
        let State::Up { stream, .. } = &mut self.state else {
            return Ok(());
        };
        if self.broken.is_some() {
            return Ok(());
        }
        while self.writable && !self.commands.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
            let mut count = 0;
            for (i, command) in self.commands.iter().take(MAX_WRITE_SLICES).enumerate() {
                let start = if i == 0 { self.head_written } else { 0 };
                slices[i] = IoSlice::new(&command[start..]);
                count += 1;
            }
            let mut written = match stream.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            while written > 0 {
                let head_left = self.commands[0].len() - self.head_written;
                if written < head_left {
                    self.head_written += written;
                    self.queued_bytes -= written;
                    break;
                }
                written -= head_left;
                self.queued_bytes -= head_left;
                self.head_written = 0;
                self.commands.pop_front();
                if self.kind == LinkKind::Publish {
                    self.awaiting_replies += 1;
                }
            }
        }
        Ok(())
    }

    /// Drops the connection after `reason`, schedules the next attempt after the current
    /// back-off (which then doubles, up to its maximum) and says what was lost: a partly
    /// written command is dropped (its start may have reached Redis), commands waiting
    /// for a reply are forgotten, the rest stays queued for the next connection.
    pub fn fail<R: Registrar<Token = T>>(&mut self, registrar: &mut R, now: Instant) -> Failure {
        let old = std::mem::replace(&mut self.state, State::Waiting { retry_at: None });
        match old {
            State::Connecting {
                mut stream, token, ..
            }
            | State::Up {
                mut stream, token, ..
            } => {
                if let Err(e) = registrar.deregister(&mut stream, token) {
                    log::warn!("wspeer-bus: deregistering a failed Redis stream: {e}");
                }
            }
            State::Waiting { .. } => {}
        }
        let mut unconfirmed = std::mem::take(&mut self.awaiting_replies);
        if self.head_written > 0 {
            let head = self.commands.pop_front().expect("partly written command");
            self.queued_bytes -= head.len() - self.head_written;
            self.head_written = 0;
            unconfirmed += 1;
        }
        self.readable = false;
        self.writable = false;
        self.broken = None;
        let retry_in = self.wait;
        self.wait = (self.wait * 2).min(self.backoff.max);
        self.state = State::Waiting {
            retry_at: Some(now + retry_in),
        };
        Failure {
            unconfirmed,
            retry_in,
        }
    }
}
