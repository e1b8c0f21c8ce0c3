//! The byte pipe between a non-blocking mio `TcpStream` (plain or TLS) and a
//! [`Connection`]: reads into a per-thread scratch buffer handed straight to the
//! connection, vectored writes of its output, and the readiness flags that edge-triggered
//! polling requires.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

use crate::error::Error;
use crate::proto::Connection;
use crate::tls::Session;

/// One connection's socket, plain or TLS.
///
/// `readable`/`writable` record the last readiness mio reported and are cleared only when
/// the socket itself answers `WouldBlock` (or, on Linux, returns less than asked: see
/// [`read_socket`]): with edge-triggered events, that is the only moment we may stop
/// trying.
pub(crate) struct Transport {
    tcp: TcpStream,
    tls: Option<Box<Session>>,
    readable: bool,
    writable: bool,
    /// The remote ended its side (or the socket failed): read until end of stream, since
    /// no further event will announce it.
    read_closed: bool,
    /// The first write failure; the connection is dead once this is set.
    write_error: Option<io::Error>,
}

/// One socket read takes at most this much (the scratch buffer's size).
const SCRATCH_SIZE: usize = 64 * 1024;

/// Slices per vectored write: enough for many queued frames, well under every IOV_MAX.
const WRITE_SLICES: usize = 64;

thread_local! {
    /// The read target of every connection on this thread: the connection takes what it
    /// can at once and keeps only what it cannot, so idle connections hold no read buffer.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; SCRATCH_SIZE].into_boxed_slice());
}

/// Reads once from the socket. A read that returns less than it asked for has emptied the
/// socket's receive queue; on Linux, edge-triggered epoll then signals any later arrival,
/// so the flag can drop without the extra `WouldBlock` read (a system call per message
/// saved). Not once the remote has closed its side: its end of stream was already
/// announced, so we read on until we see it. Elsewhere only `WouldBlock` clears the flag,
/// as mio documents.
fn read_socket(
    tcp: &mut TcpStream,
    readable: &mut bool,
    read_closed: bool,
    buf: &mut [u8],
) -> io::Result<usize> {
    match tcp.read(buf) {
        Ok(n) => {
            let short = n > 0 && n < buf.len() && !read_closed;
            if cfg!(any(target_os = "linux", target_os = "android")) && short {
                *readable = false;
            }
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            *readable = false;
            Err(e)
        }
        Err(e) => Err(e),
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

/// A read failure in words for the connection: TLS errors keep their kind; a socket error
/// during the upgrade is a failed handshake, later a lost connection.
fn read_error(e: io::Error, connection: &Connection) -> Error {
    let handshaking = connection.get_ready_state() == crate::proto::State::Connecting;
    match Error::from(e) {
        Error::Io(other) if handshaking => Error::Handshake(other.to_string()),
        Error::Io(other) if is_disconnect(&other) => Error::ConnectionLost(other.to_string()),
        error => error,
    }
}

impl Transport {
    /// Whether the TLS handshake resumed an earlier session (false without TLS).
    pub(crate) fn tls_resumed(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| crate::tls::resumed(tls))
    }

    pub(crate) fn new(tcp: TcpStream, tls: Option<Session>) -> Self {
        Transport {
            tcp,
            tls: tls.map(Box::new),
            // A fresh socket may already be ready; one attempt costs a syscall at most.
            readable: true,
            writable: true,
            read_closed: false,
            write_error: None,
        }
    }

    /// Records what a readiness event reported.
    pub(crate) fn on_ready(&mut self, event: &mio::event::Event) {
        let ended = event.is_read_closed() || event.is_error();
        self.read_closed |= ended;
        self.readable |= event.is_readable() || ended;
        self.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Hands TLS records that arrived before this transport existed (after an HTTP
    /// proxy's answer, in the same read) to rustls, as if read from the socket.
    pub(crate) fn feed_tls(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(());
        };
        while !bytes.is_empty() {
            tls.read_tls(&mut bytes)?;
            tls.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(())
    }

    /// Whether TLS records still wait to reach the socket.
    pub(crate) fn has_pending_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// The write failure that killed this connection, if any.
    pub(crate) fn take_write_error(&mut self) -> Option<io::Error> {
        self.write_error.take()
    }

    /// Moves input from the socket into `connection` while it wants input and the socket
    /// has some; the end of the stream and read errors are reported to it.
    pub(crate) fn receive(&mut self, connection: &mut Connection, now: Instant) {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            while connection.wants_input() {
                // The rest of a large message goes straight into its buffer; anything else
                // through the scratch buffer.
                let (result, in_place) = match connection.input_space() {
                    Some(space) => (self.read(space), true),
                    None => (self.read(&mut scratch), false),
                };
                match result {
                    Ok(0) => return connection.handle_eof(now),
                    Ok(n) if in_place => connection.handle_input_in_place(now, n),
                    Ok(n) => connection.handle_input(now, &scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let error = read_error(e, connection);
                        return connection.handle_transport_error(now, error);
                    }
                }
            }
        });
    }

    /// Writes the connection's output to the socket until it would block. Errors are kept
    /// for [`take_write_error`](Self::take_write_error).
    pub(crate) fn send(&mut self, connection: &mut Connection) {
        if self.write_error.is_some() {
            return;
        }
        let result = match self.tls.as_deref_mut() {
            None => send_plain(&mut self.tcp, connection, &mut self.writable),
            Some(tls) => send_tls(&mut self.tcp, tls, connection, &mut self.writable),
        };
        if let Err(e) = result {
            self.write_error = Some(e);
        }
    }

    /// Ends our direction of the stream: TLS close_notify (best effort), then TCP FIN.
    pub(crate) fn shutdown(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = flush_tls(&mut self.tcp, tls, &mut self.writable);
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
    }

    /// One read of plaintext: from the socket, or through rustls.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            if !self.readable {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            return read_socket(&mut self.tcp, &mut self.readable, self.read_closed, buf);
        };
        loop {
            match tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if !self.readable {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match tls.read_tls(&mut self.tcp) {
                Ok(_) => {
                    let processed = tls.process_new_packets();
                    // Handshake replies, key updates and alerts must go out even while the
                    // application is only reading.
                    if let Err(e) = flush_tls(&mut self.tcp, tls, &mut self.writable) {
                        self.write_error.get_or_insert(e);
                    }
                    if let Err(e) = processed {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn send_plain(
    tcp: &mut TcpStream,
    connection: &mut Connection,
    writable: &mut bool,
) -> io::Result<()> {
    while connection.has_output() && *writable {
        let written = {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let used = connection.transmit(&mut slices);
            tcp.write_vectored(&slices[..used])
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => connection.transmitted(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn send_tls(
    tcp: &mut TcpStream,
    tls: &mut Session,
    connection: &mut Connection,
    writable: &mut bool,
) -> io::Result<()> {
    loop {
        // Hand plaintext to rustls while its buffer takes it (Ok(0) = full, not an error).
        while connection.has_output() {
            let n = tls.writer().write(connection.transmit_front())?;
            if n == 0 {
                break;
            }
            connection.transmitted(n);
        }
        if !tls.wants_write() || !*writable {
            return Ok(());
        }
        flush_tls(tcp, tls, writable)?;
        if !*writable {
            return Ok(());
        }
    }
}

/// Writes TLS records to the socket until none wait or it would block.
fn flush_tls(tcp: &mut TcpStream, tls: &mut Session, writable: &mut bool) -> io::Result<()> {
    while tls.wants_write() && *writable {
        match tls.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
