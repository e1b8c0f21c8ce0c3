//! `"*"` is dual-stack on every system: one IPv6 socket with `IPV6_V6ONLY` off, so an IPv4
//! client (`127.0.0.1`) and an IPv6 client (`::1`) reach the same listener, whatever the
//! system's default (IPv6-only on Windows, or on Linux with `net.ipv6.bindv6only=1`).
//! Checked on `wspeer::listen_tcp` (the option itself, then real connections), on
//! `WebSocketServer::listen("*")` with WebSocket clients of both families, and on the
//! `chat_server` example, which owns its listener (`--bind '*'`).
//!
//! A machine without an IPv6 loopback (binding `[::1]:0` fails) runs only the IPv4 half
//! and says so on stderr with a `SKIPPED:` line, printed past the test harness's output
//! capture so that it shows in a normal run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use wspeer::*;

/// Whether this machine has an IPv6 loopback; when it has none, says (past the output
/// capture) which part of `test` is skipped.
fn ipv6_loopback(test: &str) -> bool {
    match TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        Ok(_) => true,
        Err(e) => {
            // Straight to the process's stderr: `eprintln!` would be captured and shown
            // only if the test failed.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {test}: the IPv6 half (no IPv6 loopback here: binding [::1]:0 \
                 failed: {e}); only the IPv4 half ran"
            );
            false
        }
    }
}

fn v4(port: u16) -> SocketAddr {
    (Ipv4Addr::LOCALHOST, port).into()
}

fn v6(port: u16) -> SocketAddr {
    (Ipv6Addr::LOCALHOST, port).into()
}

/// Accepts one connection from the non-blocking `listener` within [`TIMEOUT`].
fn accept_one(listener: &TcpListener) -> SocketAddr {
    let start = std::time::Instant::now();
    loop {
        match listener.accept() {
            Ok((_, from)) => return from,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < TIMEOUT, "no connection accepted");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn listen_tcp_star_is_one_dual_stack_socket_with_mios_options() {
    let has_v6 = ipv6_loopback("listen_tcp_star_is_one_dual_stack_socket_with_mios_options");
    let listener = listen_tcp("*", 0).expect("listen on *");
    let local = listener.local_addr().unwrap();
    let socket = socket2::SockRef::from(&listener);
    if has_v6 {
        assert_eq!(local.ip(), IpAddr::from(Ipv6Addr::UNSPECIFIED), "{local}");
        // Set by wspeer, not left to the system's default (net.ipv6.bindv6only here).
        assert!(!socket.only_v6().unwrap(), "IPV6_V6ONLY is on");
    } else {
        // IPv6 sockets may still exist (`[::]` then takes IPv4) or not (`0.0.0.0`).
        assert!(local.ip().is_unspecified(), "{local}");
    }
    // mio's TcpListener::bind sets SO_REUSEADDR on every system but Windows.
    assert_eq!(socket.reuse_address().unwrap(), cfg!(not(windows)));
    // Non-blocking, as mio needs and as an application's frame loop needs.
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );

    let port = local.port();
    let _c4 = TcpStream::connect(v4(port)).expect("connect to 127.0.0.1");
    let from = accept_one(&listener);
    assert_eq!(from.ip().to_canonical(), IpAddr::from(Ipv4Addr::LOCALHOST));
    if has_v6 {
        let _c6 = TcpStream::connect(v6(port)).expect("connect to ::1");
        let from = accept_one(&listener);
        assert_eq!(from.ip(), IpAddr::from(Ipv6Addr::LOCALHOST));
    }
}

#[test]
fn listen_tcp_keeps_localhost_and_explicit_addresses() {
    let has_v6 = ipv6_loopback("listen_tcp_keeps_localhost_and_explicit_addresses");
    let localhost = listen_tcp("localhost", 0).unwrap();
    assert_eq!(
        localhost.local_addr().unwrap().ip(),
        IpAddr::from(Ipv4Addr::LOCALHOST)
    );
    let v4only = listen_tcp("127.0.0.1", 0).unwrap();
    assert_eq!(
        v4only.local_addr().unwrap().ip(),
        IpAddr::from(Ipv4Addr::LOCALHOST)
    );
    if has_v6 {
        for bind in ["::1", "[::1]"] {
            let listener = listen_tcp(bind, 0).unwrap();
            assert_eq!(
                listener.local_addr().unwrap().ip(),
                IpAddr::from(Ipv6Addr::LOCALHOST),
                "{bind}"
            );
        }
    }
    assert!(matches!(
        listen_tcp("example.com", 0),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn server_on_star_accepts_ipv4_and_ipv6_clients() {
    let has_v6 = ipv6_loopback("server_on_star_accepts_ipv4_and_ipv6_clients");
    let mut server = WebSocketServer::new();
    server.listen_on("*", 0).expect("listen on *");
    let port = server.local_addr().unwrap().port();
    let mut targets = vec![(v4(port), IpAddr::from(Ipv4Addr::LOCALHOST))];
    if has_v6 {
        targets.push((v6(port), IpAddr::from(Ipv6Addr::LOCALHOST)));
    }

    for (addr, expected) in targets {
        let mut client = WebSocketPeer::new();
        client
            .connect_to_url(&format!("ws://{addr}/"), None)
            .expect("connect_to_url");
        let mut events = Vec::new();
        run_until(
            &mut server,
            &mut [&mut client],
            &mut events,
            &format!("a client on {addr} connected"),
            |_, c, ev| {
                c[0].get_ready_state() == State::Open
                    && ev
                        .iter()
                        .any(|e| matches!(e, ServerEvent::ClientConnected { .. }))
            },
        );
        let id = events
            .iter()
            .find_map(|e| match e {
                ServerEvent::ClientConnected { id, .. } => Some(*id),
                _ => None,
            })
            .unwrap();
        // An IPv4 client of the IPv6 socket is reported as the IPv4 address it is, not as
        // ::ffff:127.0.0.1.
        let seen = server.get_peer_address(id).expect("peer address");
        assert_eq!(seen, expected, "{addr}: seen as {seen}");

        // And it is a working connection, both ways.
        client.send_text(&format!("hello over {addr}")).unwrap();
        let mut echoed = false;
        run_until(
            &mut server,
            &mut [&mut client],
            &mut events,
            &format!("a message over {addr}, both ways"),
            |s, c, _| {
                if let Some(peer) = s.get_peer(id) {
                    if let Some(data) = peer.get_packet() {
                        peer.put_packet(&data).unwrap();
                    }
                }
                match c[0].get_packet() {
                    Some(data) => {
                        echoed = data == format!("hello over {addr}").as_bytes();
                        true
                    }
                    None => false,
                }
            },
        );
        assert!(echoed, "{addr}: the echo differs");
        client.close(1000, "").unwrap();
        run_until(
            &mut server,
            &mut [&mut client],
            &mut events,
            &format!("the client on {addr} closed"),
            |_, c, _| c[0].get_ready_state() == State::Closed,
        );
    }
}

#[test]
fn chat_server_bind_star_takes_both_families() {
    let has_v6 = ipv6_loopback("chat_server_bind_star_takes_both_families");
    let mut child = Command::new(example_bin("chat_server"))
        .args(["--bind", "*", "--port", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start chat_server");
    let stdout = child.stdout.take().unwrap();
    let _child = KillOnDrop(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let listening = lines
        .recv_timeout(TIMEOUT)
        .expect("chat_server prints where it listens");
    let addr: SocketAddr = listening
        .strip_prefix("Listening on ws://")
        .unwrap_or_else(|| panic!("unexpected first line {listening:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_unspecified(), "{listening}");
    if has_v6 {
        assert!(addr.is_ipv6(), "{listening}");
    }

    let mut targets = vec![v4(addr.port())];
    if has_v6 {
        targets.push(v6(addr.port()));
    }
    for target in targets {
        let mut client = WebSocketPeer::new();
        client.set_supported_protocols(&["demo-chat"]);
        client
            .connect_to_url(&format!("ws://{target}/"), None)
            .unwrap();
        run_clients_until(
            &mut [&mut client],
            &format!("chat_server accepts a client on {target}"),
            |c| c[0].get_ready_state() != State::Connecting,
        );
        assert_eq!(
            client.get_ready_state(),
            State::Open,
            "{target}: {:?}",
            client.get_last_error()
        );
        assert_eq!(client.get_selected_protocol(), "demo-chat");
    }
}
