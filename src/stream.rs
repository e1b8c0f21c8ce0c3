//! One `Read + Write` over a non-blocking mio `TcpStream`, plain or TLS, with our own
//! outbound buffer and the readiness flags that edge-triggered polling requires.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

/// The byte pipe under tungstenite.
///
/// Writes never block and never fail with `WouldBlock`: tungstenite's frames land in
/// `outbound`, and [`push`](Self::push) moves them to the socket as far as it accepts.
/// So tungstenite never holds a half-written frame, the number of unsent bytes is
/// known exactly (`get_current_outbound_buffered_amount`), and the limits the peer
/// checks before queueing a message bound this buffer.
///
/// Reads pass `WouldBlock` through untouched. `readable`/`writable` record the last
/// readiness mio reported and are cleared only when the socket itself answers
/// `WouldBlock` (or, on Linux, returns less than asked: see [`read_socket`]): with
/// edge-triggered events, that is the only moment we may stop trying.
///
/// Plain sockets are read in large gulps into a scratch buffer from a small per-thread
/// pool; when tungstenite's small read buffer cannot take the whole gulp, the transport
/// keeps that scratch buffer (`read_ahead`) until it has handed everything on, then gives
/// it back. So an idle peer holds no read buffer of ours, a large message takes a few
/// system calls instead of one per read-buffer-full, and the steady state allocates
/// nothing.
pub(crate) struct Transport {
    tcp: TcpStream,
    tls: Option<Box<rustls::Connection>>,
    read_ahead: Option<ReadAhead>,
    outbound: VecDeque<u8>,
    /// Bytes ever moved out of `outbound` (to the socket or into rustls).
    pub(crate) bytes_sent: u64,
    readable: bool,
    writable: bool,
    /// The remote ended its side (or the socket failed): read until end of stream, since
    /// no further event will announce it.
    read_closed: bool,
    /// The first write failure; the connection is dead once this is set.
    write_error: Option<io::Error>,
    /// Only buffer what tungstenite writes; [`push`](Self::push) sends it later, so many
    /// messages share one system call (`PeerConfig::batch_writes`).
    pub(crate) batch_writes: bool,
}

/// After a burst has gone out, keep at most this much outbound capacity per peer, so idle
/// peers stay small (measured: shrinking also made 16 KiB echoes faster than keeping the
/// largest burst's capacity).
const RETAINED_CAPACITY: usize = 16 * 1024;

/// Even with `batch_writes`, a write this large goes to the socket at once: batching gains
/// nothing for it, and copying it into the outbound buffer would cost a copy (and keep the
/// buffer that large).
const WRITE_THROUGH_ALWAYS: usize = 64 * 1024;

/// One socket read takes at most this much (a scratch buffer's size).
const SCRATCH_SIZE: usize = 64 * 1024;

/// Scratch buffers kept for reuse per thread; more only exist while that many peers hold
/// unread gulps at once.
const POOLED_SCRATCH: usize = 4;

thread_local! {
    static SCRATCH_POOL: std::cell::RefCell<Vec<Box<[u8]>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn take_scratch() -> Box<[u8]> {
    SCRATCH_POOL
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; SCRATCH_SIZE].into_boxed_slice())
}

fn give_back_scratch(scratch: Box<[u8]>) {
    SCRATCH_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED_SCRATCH {
            pool.push(scratch);
        }
    });
}

/// A gulp from the socket that the reader has not taken entirely yet.
struct ReadAhead {
    scratch: Box<[u8]>,
    len: usize,
    taken: usize,
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

impl Transport {
    pub(crate) fn new(tcp: TcpStream, tls: Option<rustls::Connection>) -> Self {
        Transport {
            tcp,
            tls: tls.map(Box::new),
            read_ahead: None,
            outbound: VecDeque::new(),
            bytes_sent: 0,
            // A fresh socket may already be ready; one attempt costs a syscall at most.
            readable: true,
            writable: true,
            read_closed: false,
            write_error: None,
            batch_writes: false,
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

    /// Bytes accepted from tungstenite but not yet handed to the socket (or to rustls).
    pub(crate) fn buffered(&self) -> usize {
        self.outbound.len()
    }

    /// Whether anything still waits to reach the socket, TLS records included.
    pub(crate) fn has_pending_output(&self) -> bool {
        !self.outbound.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// The write failure that killed this connection, if any.
    pub(crate) fn take_write_error(&mut self) -> Option<io::Error> {
        self.write_error.take()
    }

    pub(crate) fn has_write_error(&self) -> bool {
        self.write_error.is_some()
    }

    /// Moves buffered bytes to the socket until it would block. Errors are kept for
    /// [`take_write_error`](Self::take_write_error).
    pub(crate) fn push(&mut self) {
        if self.write_error.is_some() {
            return;
        }
        let result = match self.tls.as_deref_mut() {
            None => push_plain(
                &mut self.tcp,
                &mut self.outbound,
                &mut self.bytes_sent,
                &mut self.writable,
            ),
            Some(tls) => push_tls(
                &mut self.tcp,
                tls,
                &mut self.outbound,
                &mut self.bytes_sent,
                &mut self.writable,
            ),
        };
        if let Err(e) = result {
            self.write_error = Some(e);
        }
        if self.outbound.is_empty() && self.outbound.capacity() > RETAINED_CAPACITY {
            self.outbound.shrink_to(RETAINED_CAPACITY);
        }
    }

    /// Reads and throws away whatever arrives, until the socket would block. Returns true
    /// at end of stream (or on an error, which ends the stream just as well).
    pub(crate) fn discard_input(&mut self) -> bool {
        let mut scratch = [0u8; 4096];
        loop {
            match self.read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Ends our direction of the stream: TLS close_notify (best effort), then TCP FIN.
    pub(crate) fn shutdown(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
        }
        self.push();
        let _ = self.tcp.shutdown(Shutdown::Write);
    }
}

fn push_plain(
    tcp: &mut TcpStream,
    outbound: &mut VecDeque<u8>,
    bytes_sent: &mut u64,
    writable: &mut bool,
) -> io::Result<()> {
    while !outbound.is_empty() && *writable {
        let (front, back) = outbound.as_slices();
        let slices = [io::IoSlice::new(front), io::IoSlice::new(back)];
        match tcp.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                outbound.drain(..n);
                *bytes_sent += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn push_tls(
    tcp: &mut TcpStream,
    tls: &mut rustls::Connection,
    outbound: &mut VecDeque<u8>,
    bytes_sent: &mut u64,
    writable: &mut bool,
) -> io::Result<()> {
    loop {
        // Hand plaintext to rustls while its buffer takes it (Ok(0) = full, not an error).
        while !outbound.is_empty() {
            let (front, _) = outbound.as_slices();
            let n = tls.writer().write(front)?;
            if n == 0 {
                break;
            }
            outbound.drain(..n);
            *bytes_sent += n as u64;
        }
        if !tls.wants_write() || !*writable {
            return Ok(());
        }
        match tls.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Transport {
    /// Writes as much of `buf` as the socket (or rustls' buffer) takes right now.
    fn write_through(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = match self.tls.as_deref_mut() {
            Some(tls) => tls.writer().write(buf)?,
            None if !self.writable => 0,
            None => match self.tcp.write(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    0
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e),
            },
        };
        self.bytes_sent += written as u64;
        Ok(written)
    }

    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(ahead) = &mut self.read_ahead {
            let n = buf.len().min(ahead.len - ahead.taken);
            buf[..n].copy_from_slice(&ahead.scratch[ahead.taken..ahead.taken + n]);
            ahead.taken += n;
            if ahead.taken == ahead.len {
                if let Some(done) = self.read_ahead.take() {
                    give_back_scratch(done.scratch);
                }
            }
            return Ok(n);
        }
        if !self.readable {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if buf.len() >= SCRATCH_SIZE {
            return read_socket(&mut self.tcp, &mut self.readable, self.read_closed, buf);
        }
        let mut scratch = take_scratch();
        let got = match read_socket(
            &mut self.tcp,
            &mut self.readable,
            self.read_closed,
            &mut scratch,
        ) {
            Ok(got) => got,
            Err(e) => {
                give_back_scratch(scratch);
                return Err(e);
            }
        };
        let n = got.min(buf.len());
        buf[..n].copy_from_slice(&scratch[..n]);
        if got > n {
            self.read_ahead = Some(ReadAhead {
                scratch,
                len: got,
                taken: n,
            });
        } else {
            give_back_scratch(scratch);
        }
        Ok(n)
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.read_plain(buf);
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
                    if let Err(e) = push_tls(
                        &mut self.tcp,
                        tls,
                        &mut VecDeque::new(),
                        &mut 0,
                        &mut self.writable,
                    ) {
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

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.write_error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        let mut rest = buf;
        if self.outbound.is_empty() && (!self.batch_writes || buf.len() >= WRITE_THROUGH_ALWAYS) {
            // Nothing queued ahead of it: hand it on now and copy only what is refused.
            match self.write_through(buf) {
                Ok(n) => rest = &buf[n..],
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    self.write_error = Some(e);
                    return Err(copy);
                }
            }
        }
        self.outbound.extend(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push();
        match &self.write_error {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }
}
