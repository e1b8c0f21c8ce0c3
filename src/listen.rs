//! The TCP listener behind [`WebSocketServer::listen_on`](crate::WebSocketServer::listen_on),
//! also public as [`listen_tcp`] for applications that own their listener: what `"*"`,
//! `"localhost"` and an IP address mean, and the socket options.
//!
//! `"*"` is one IPv6 socket with `IPV6_V6ONLY` turned off, so it takes IPv4 clients too
//! (as IPv4-mapped addresses, `::ffff:a.b.c.d`) on every system, as Godot's `"*"` does.
//! mio's `TcpListener::bind` leaves that option at the system's default, which is
//! IPv6-only on Windows, OpenBSD, and Linux with `net.ipv6.bindv6only=1`. Where IPv6 is
//! missing or cannot be made dual-stack, `"*"` falls back to `0.0.0.0`.
//!
//! Every other setting is mio's (`TcpListener::bind`, mio 1.2): socket2's `Socket::new`
//! sets what mio's socket creation sets (close-on-exec; `SO_NOSIGPIPE` on Apple systems;
//! not inherited and overlapped on Windows), then non-blocking, `SO_REUSEADDR` except on
//! Windows, bind, and `listen` with mio's backlog.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

use crate::error::Error;

/// The backlog mio's `TcpListener::bind` passes to `listen` (the standard library's) on
/// every system but Horizon (20) and Haiku (32).
const BACKLOG: i32 = 128;

/// Opens a non-blocking TCP listener on `bind` and `port`, exactly as
/// [`WebSocketServer::listen_on`](crate::WebSocketServer::listen_on) does, for an
/// application that accepts connections itself and hands them to
/// [`WebSocketPeer::accept_stream`](crate::WebSocketPeer::accept_stream) (Godot's
/// `TCPServer.listen(port, bind_address)`; see `examples/chat_server.rs`).
///
/// `bind` is an IP address (IPv6 with or without brackets), `"*"` (or `""`) for every
/// interface, or `"localhost"`; port `0` picks a free port (see
/// [`TcpListener::local_addr`]).
/// - `"*"`: one IPv6 socket on `[::]` that also accepts IPv4 (`IPV6_V6ONLY` off, whatever
///   the system's default), so both `127.0.0.1` and `::1` reach it; if IPv6 is not
///   available, `0.0.0.0` (IPv4 only).
/// - `"localhost"`: `127.0.0.1`, or `::1` if that fails.
/// - An address: that address only; `"::"` keeps the system's default for `IPV6_V6ONLY`.
///
/// `SO_REUSEADDR` is set except on Windows (where it would let another socket take the
/// port), as mio does.
///
/// # Errors
/// [`Error::InvalidConfig`] if `bind` is none of the above; [`Error::Io`] with the last
/// attempt's error if no address could be bound.
pub fn listen_tcp(bind: &str, port: u16) -> Result<TcpListener, Error> {
    // (address, whether to accept IPv4 on an IPv6 socket)
    let candidates: Vec<(IpAddr, bool)> = match bind {
        "*" | "" => vec![
            (Ipv6Addr::UNSPECIFIED.into(), true),
            (Ipv4Addr::UNSPECIFIED.into(), false),
        ],
        "localhost" => vec![
            (Ipv4Addr::LOCALHOST.into(), false),
            (Ipv6Addr::LOCALHOST.into(), false),
        ],
        ip => vec![(
            ip.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| {
                    Error::InvalidConfig(format!(
                        "bind address {bind:?} is not an IP address, \"*\" or \"localhost\""
                    ))
                })?,
            false,
        )],
    };
    let mut last_error = None;
    for (ip, dual_stack) in candidates {
        let addr = SocketAddr::new(ip, port);
        match bind_one(addr, dual_stack) {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                log::debug!("cannot listen on {addr}: {e}");
                last_error = Some(e);
            }
        }
    }
    Err(Error::Io(
        last_error.unwrap_or_else(|| io::ErrorKind::AddrNotAvailable.into()),
    ))
}

/// One listening socket, set up as mio's `TcpListener::bind` does; `dual_stack` turns
/// `IPV6_V6ONLY` off first (IPv6 addresses only).
fn bind_one(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    // mio: "On platforms with Berkeley-derived sockets, this allows to quickly rebind a
    // socket ... On Windows, this allows rebinding sockets which are actively in use".
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
