//! Drivers shared by the fuzz targets. Every input goes through real sockets on 127.0.0.1:
//!
//! - server side: a real [`WebSocketServer`], kept across inputs, gets one fresh TCP
//!   connection per input carrying the input bytes (optionally after a valid upgrade
//!   request); the harness polls it like a game loop, echoes what arrives, and checks
//!   that the connection's slot is gone within a bounded number of polls once the client
//!   side has hung up;
//! - client side: a real [`WebSocketPeer`] connects to a raw listener, which reads the
//!   upgrade request and answers with the input (optionally after a valid `101`); the
//!   peer must reach `Closed` within a bounded number of polls after the raw side's EOF.
//!
//! A panic anywhere in wspeer, or a broken invariant here (a slot or a connection that
//! outlives its remote, a peer that never ends), is a crash for libFuzzer.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use wspeer::{
    PeerConfig, ServerConfig, ServerEvent, State, WebSocketPeer, WebSocketServer, WriteMode,
};

/// Polls per input while the remote is still talking. Loopback delivers at once, so a
/// handful is enough; the bound keeps every input short.
pub const MAX_POLLS: usize = 64;

/// Polls allowed after the remote hung up for the connection to be gone.
pub const MAX_POLLS_TO_END: usize = 256;

/// A valid upgrade request (RFC 6455 §1.3's key), prepended by `server_frames` so the
/// input reaches the frame parser at once.
pub const UPGRADE_REQUEST: &[u8] = b"GET /fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Small limits, so that inputs of a few KiB reach every limit: 1009 (message too big),
/// back-pressure (queue full), the outbound budget, and 431 (head too large / too many
/// headers).
pub fn fuzz_limits() -> PeerConfig {
    PeerConfig {
        inbound_buffer_size: 4096,
        outbound_buffer_size: 4096,
        max_queued_packets: 16,
        max_handshake_bytes: 1024,
        max_handshake_headers: 16,
        close_timeout: Duration::from_secs(2),
        ..PeerConfig::default()
    }
}

/// What the application does with a received packet: echo it, or close/abort when it
/// says so, to reach the application-initiated close paths too.
fn answer_packet(peer: &mut WebSocketPeer) {
    while let Some(packet) = peer.recv() {
        let data = packet.data();
        if data.starts_with(b"close") {
            let _ = peer.close(4000, "fuzz close");
        } else if data.starts_with(b"abort") {
            let _ = peer.close(-1, "");
        } else {
            let mode = if packet.is_text() {
                WriteMode::Text
            } else {
                WriteMode::Binary
            };
            let _ = peer.send(data, mode);
        }
    }
}

/// Reads and throws away what is there; true once the stream ended (EOF or error).
fn drain(tcp: &mut TcpStream, scratch: &mut [u8]) -> bool {
    loop {
        match tcp.read(scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Writes as much of `out[*written..]` as the socket takes now; true when it failed.
fn write_some(tcp: &mut TcpStream, out: &[u8], written: &mut usize) -> bool {
    while *written < out.len() {
        match tcp.write(&out[*written..]) {
            Ok(0) => return true,
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}

// ----- server side -----

struct ServerHarness {
    server: WebSocketServer,
    addr: SocketAddr,
    scratch: Vec<u8>,
}

thread_local! {
    static SERVER: RefCell<Option<ServerHarness>> = const { RefCell::new(None) };
}

impl ServerHarness {
    fn new() -> ServerHarness {
        let config = ServerConfig {
            peer: fuzz_limits(),
            ..ServerConfig::default()
        };
        let mut server = WebSocketServer::with_config(config);
        server
            .listen_on("127.0.0.1", 0)
            .expect("listen on 127.0.0.1");
        let addr = server.local_addr().expect("listening");
        ServerHarness {
            server,
            addr,
            scratch: vec![0; 64 * 1024],
        }
    }

    fn serve(&mut self) {
        self.server.poll();
        while let Some(event) = self.server.pop_event() {
            if let ServerEvent::DataReceived { id } = event
                && let Some(peer) = self.server.get_peer(id)
            {
                answer_packet(peer);
            }
        }
    }

    fn run(&mut self, prefix: &[u8], data: &[u8]) {
        let mut tcp = TcpStream::connect(self.addr).expect("connect to the fuzzed server");
        tcp.set_nonblocking(true).expect("non-blocking");
        let _ = tcp.set_nodelay(true);
        let out = [prefix, data].concat();
        let (mut written, mut shut, mut ended) = (0, false, false);
        for _ in 0..MAX_POLLS {
            if !shut {
                ended |= write_some(&mut tcp, &out, &mut written);
                if written == out.len() {
                    // Half-close: the server sees the end of the input as EOF.
                    let _ = tcp.shutdown(Shutdown::Write);
                    shut = true;
                }
            }
            self.serve();
            ended |= drain(&mut tcp, &mut self.scratch);
            if ended {
                break;
            }
        }
        drop(tcp);
        // The remote is gone: its slot must be freed within a bounded number of polls,
        // whatever state the input left it in (handshake, open, lingering, closing).
        for _ in 0..MAX_POLLS_TO_END {
            if self.server.slot_count() == 0 {
                break;
            }
            self.serve();
        }
        assert_eq!(
            (
                self.server.slot_count(),
                self.server.pending_count(),
                self.server.peer_count()
            ),
            (0, 0, 0),
            "a connection outlived its client by {MAX_POLLS_TO_END} polls"
        );
    }
}

/// Server side: `prefix` then `data` on a fresh connection to the shared server.
pub fn server_input(prefix: &[u8], data: &[u8]) {
    SERVER.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(ServerHarness::new)
            .run(prefix, data);
    });
}

// ----- client side -----

thread_local! {
    static LISTENER: RefCell<Option<(TcpListener, SocketAddr)>> = const { RefCell::new(None) };
}

/// Polls `client` until `done` (bounded); panics with `what` if it never happens.
fn poll_client_until(
    client: &mut WebSocketPeer,
    what: &str,
    mut done: impl FnMut(&mut WebSocketPeer) -> bool,
) {
    for i in 0..10_000 {
        client.poll();
        if done(client) {
            return;
        }
        if i > 100 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    panic!("harness: {what} did not happen");
}

/// Client side: a real client connects; the raw listener answers its upgrade request with
/// a valid `101` then `data` (`after_101`), or with `data` alone.
pub fn client_input(after_101: bool, data: &[u8]) {
    LISTENER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (listener, addr) = cell.get_or_insert_with(|| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            listener.set_nonblocking(true).expect("non-blocking");
            let addr = listener.local_addr().expect("bound");
            (listener, addr)
        });
        run_client(listener, *addr, after_101, data);
    });
}

fn run_client(listener: &TcpListener, addr: SocketAddr, after_101: bool, data: &[u8]) {
    let mut client = WebSocketPeer::with_config(fuzz_limits());
    client
        .connect_to_url(&format!("ws://{addr}/fuzz"), None)
        .expect("connect_to_url");
    let mut raw = None;
    poll_client_until(&mut client, "accept", |_| match listener.accept() {
        Ok((tcp, _)) => {
            raw = Some(tcp);
            true
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    });
    let mut raw = raw.expect("accepted");
    raw.set_nonblocking(true).expect("non-blocking");
    let _ = raw.set_nodelay(true);
    // The client's upgrade request, to answer its key.
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    poll_client_until(&mut client, "the upgrade request", |_| {
        match raw.read(&mut chunk) {
            Ok(0) => panic!("the client hung up before its request"),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading the request: {e}"),
        }
        head.windows(4).any(|w| w == b"\r\n\r\n")
    });
    let mut out = Vec::with_capacity(data.len() + 160);
    if after_101 {
        let text = String::from_utf8_lossy(&head);
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("the client sent a key")
            .trim();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        out.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(data);
    let mut scratch = vec![0u8; 64 * 1024];
    let (mut written, mut shut) = (0, false);
    for _ in 0..MAX_POLLS + MAX_POLLS_TO_END {
        if !shut {
            let failed = write_some(&mut raw, &out, &mut written);
            if failed || written == out.len() {
                let _ = raw.shutdown(Shutdown::Write);
                shut = true;
            }
        }
        client.poll();
        if client.get_ready_state() == State::Open {
            answer_packet(&mut client);
        } else {
            // Packets stay readable after a close; reading them must be fine too.
            while client.recv().is_some() {}
        }
        drain(&mut raw, &mut scratch);
        if shut && client.get_ready_state() == State::Closed {
            return;
        }
    }
    panic!(
        "the client did not end after the server's EOF: {:?}, last error {:?}",
        client.get_ready_state(),
        client.get_last_error()
    );
}
