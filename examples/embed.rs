//! Embedding wspeer in an engine that owns its sockets: a WebSocket client that drives a
//! sans-IO [`wspeer::proto::Connection`] over a plain blocking `std::net::TcpStream`.
//! No mio, no `WebSocketPeer`: the engine reads, writes and keeps time, the `Connection`
//! does the protocol (upgrade, frames, close handshake, timers).
//!
//! ```text
//! cargo run --example embed -- ws://127.0.0.1:9080/chat
//! ```
//! It connects, sends the text `Test packet`, prints `Got data from server: <text>` for
//! the echo, closes with 1000 and prints `WebSocket closed with code: <code>`. Exits 0
//! after that clean close, 1 with a message on stderr on any failure, within 10 s.
//! Plain TCP only: `wss://` would need a TLS layer between the socket and the
//! `Connection` (the engine's own; wspeer's drivers use rustls).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wspeer::PeerConfig;
use wspeer::proto::{Connection, Event};

/// Everything, connect included, must be over by then: a failure is reported within 10 s.
const TIME_LIMIT: Duration = Duration::from_secs(9);

/// The longest a blocking read waits. Reads are where this loop sleeps, so this bounds how
/// late a timer (handshake deadline, close timeout) can fire.
const READ_TIMEOUT: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: embed ws://HOST:PORT/PATH");
        return ExitCode::FAILURE;
    };
    match run(&url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("embed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What the client needs from a `ws://` URL.
struct Target {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header: the URL's authority as written.
    authority: String,
    /// The request target, `/` at least.
    path: String,
}

/// A deliberately small URL parser: `ws://host[:port][/path][?query]`.
fn parse_url(url: &str) -> Result<Target, String> {
    if url.starts_with("wss://") {
        return Err(format!(
            "{url}: wss:// is not supported, the embed example is plain TCP (no TLS); \
             use a ws:// URL"
        ));
    }
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: expected a ws://HOST:PORT/PATH URL"))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(format!("{url}: the URL has no host"));
    }
    // A port is what follows the last ':' unless that ':' is inside an [IPv6] literal.
    let has_port = authority
        .rfind(':')
        .is_some_and(|colon| !authority[colon..].contains(']'));
    let address = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(Target {
        address,
        authority: authority.to_string(),
        path,
    })
}

/// Opens the TCP connection, trying each resolved address within the time left.
fn connect(address: &str, give_up: Instant) -> Result<TcpStream, String> {
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?;
    let mut last_error = format!("{address} resolved to no address");
    for addr in addrs {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last_error = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last_error)
}

/// Writes everything the connection has queued. The socket is blocking, so each vectored
/// write takes at least one byte (or fails); `transmitted` tells the connection how much.
fn write_output(tcp: &mut TcpStream, connection: &mut Connection) -> io::Result<()> {
    while connection.has_output() {
        let mut slices = [IoSlice::new(&[]); 8];
        let count = connection.transmit(&mut slices);
        let written = tcp.write_vectored(&slices[..count])?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        connection.transmitted(written);
    }
    Ok(())
}

fn run(url: &str) -> Result<(), String> {
    let target = parse_url(url)?;
    let give_up = Instant::now() + TIME_LIMIT;
    let mut tcp = connect(&target.address, give_up)?;
    // Small messages should leave at once, not wait for Nagle's algorithm.
    let _ = tcp.set_nodelay(true);
    // A blocking read returns after READ_TIMEOUT even when nothing arrived, so the loop
    // below gets to check its timers; a write that cannot finish in time is a failure.
    tcp.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| format!("cannot set a read timeout: {e}"))?;
    tcp.set_write_timeout(Some(TIME_LIMIT))
        .map_err(|e| format!("cannot set a write timeout: {e}"))?;

    // The connection never reads the clock: every deadline is an Instant we give it. The
    // upgrade must finish before our own time limit.
    let config = PeerConfig::default();
    let mut connection = Connection::client(&config, &target.authority, &target.path, give_up)
        .map_err(|e| format!("cannot start the connection: {e}"))?;

    let mut buffer = vec![0u8; 16 * 1024];
    let mut got_echo = false;
    let mut input_ended = false;
    loop {
        let now = Instant::now();
        // Timers: the connection says when it next needs us (upgrade deadline, close
        // timeout). Calling it after reading packets also resumes paused reading.
        if connection.poll_timeout().is_some_and(|due| now >= due) {
            connection.handle_timeout(now);
        }

        // What happened, in order. The application's reactions queue more output.
        while let Some(event) = connection.poll_event() {
            match event {
                Event::Opened { .. } => connection
                    .send_text("Test packet")
                    .map_err(|e| format!("cannot send: {e}"))?,
                Event::Received { .. } => {
                    while let Some(packet) = connection.recv() {
                        let text = String::from_utf8_lossy(packet.data());
                        println!("Got data from server: {text}");
                        if !got_echo {
                            got_echo = true;
                            // A no-op if the server already started closing.
                            connection
                                .close(now, 1000, "")
                                .map_err(|e| format!("cannot close: {e}"))?;
                        }
                    }
                    connection.handle_timeout(now);
                }
                Event::Closed { code, clean, .. } => {
                    println!("WebSocket closed with code: {code}");
                    return match (clean, connection.error()) {
                        (true, _) if got_echo => Ok(()),
                        (true, _) => Err("the server closed before echoing".into()),
                        (false, Some(error)) => Err(error.to_string()),
                        (false, None) => Err("the connection was not closed cleanly".into()),
                    };
                }
                // The remote started the close; the connection already queued its answer.
                Event::CloseRequested { .. } => {}
                _ => {}
            }
        }

        // Hand the queued bytes (the upgrade request, our frames, close answers) to the
        // socket. A failed write ends the connection: the next pass reports it.
        if let Err(e) = write_output(&mut tcp, &mut connection) {
            connection.handle_transport_error(now, wspeer::Error::Io(e));
            continue;
        }
        // Once the close frames are exchanged and everything is written, our side of the
        // stream ends with a FIN; the connection then finishes its close handshake.
        if connection.wants_shutdown() {
            let _ = tcp.shutdown(Shutdown::Write);
            connection.handle_shutdown(now);
            continue;
        }

        if now >= give_up {
            // The connection's own timers normally end it before this; this is the backstop
            // for a server that accepts frames but never answers them.
            connection.abort(now);
            return Err(format!("no clean close within {} s", TIME_LIMIT.as_secs()));
        }

        // Read only while the connection takes input (it pauses while its receive queue is
        // full), and not after the stream ended: a read would only return 0 again.
        if !connection.wants_input() || input_ended {
            std::thread::sleep(READ_TIMEOUT);
            continue;
        }
        match tcp.read(&mut buffer) {
            Ok(0) => {
                input_ended = true;
                connection.handle_eof(Instant::now());
            }
            Ok(n) => connection.handle_input(Instant::now(), &buffer[..n]),
            // The read timeout passed with nothing to read: go round to check the timers.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => connection.handle_transport_error(Instant::now(), wspeer::Error::Io(e)),
        }
    }
}
