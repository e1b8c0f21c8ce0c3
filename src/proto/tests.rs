//! In-memory tests of `Connection`: a client and a server driven against each other with
//! simulated time, no sockets.
//!
//! Time starts at one instant taken from `crate::test_epoch()` and only moves when a test
//! moves it, so every timer is checked at its exact deadline and one microsecond before.
//! The harness is [`Pair`] (in the style of quinn-proto's test `Pair`): two connections and
//! the two directions of a simulated stream between them. Tests that need to play the
//! remote by hand use a lone connection and the raw-frame helpers below.

use std::io::Cursor;
use std::time::{Duration, Instant};

use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::FrameHeader;

use super::{Connection, Event, Packet, State, WriteMode};
use crate::{Error, PeerConfig};

// ----- harness -----

/// Time allowed for the upgrade in these tests.
const CONNECT: Duration = Duration::from_secs(5);
/// One microsecond: "not one tick before the deadline".
const TICK: Duration = Duration::from_micros(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// First-byte flags and opcodes of a frame header.
const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The key our hand-made client frames are masked with.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One direction of the simulated stream: bytes written and not yet read, and whether the
/// writer ended its side (the reader sees EOF once the bytes before it were read).
#[derive(Default)]
struct Pipe {
    bytes: Vec<u8>,
    shut: bool,
    eof_delivered: bool,
    /// Everything that ever went into this direction, for assertions on what was sent.
    log: Vec<u8>,
}

/// A client and a server connected by two in-memory pipes, with a hand-moved clock.
struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    to_server: Pipe,
    to_client: Pipe,
}

impl Pair {
    /// Both sides created, nothing moved yet.
    fn new(client: PeerConfig, server: PeerConfig) -> Self {
        Self::with_path(client, server, "/")
    }

    fn with_path(client: PeerConfig, server: PeerConfig, path: &str) -> Self {
        let now = crate::test_epoch();
        Pair {
            client: Connection::client(&client, "example.com:8080", path, now + CONNECT)
                .expect("valid client config"),
            server: Connection::server(&server, now + CONNECT).expect("valid server config"),
            now,
            to_server: Pipe::default(),
            to_client: Pipe::default(),
        }
    }

    /// Both sides open, their `Opened` events taken.
    fn connected(client: PeerConfig, server: PeerConfig) -> Self {
        let mut pair = Self::new(client, server);
        pair.drive();
        assert_eq!(pair.client.get_ready_state(), State::Open);
        assert_eq!(pair.server.get_ready_state(), State::Open);
        assert!(matches!(
            pair.client.poll_event(),
            Some(Event::Opened { .. })
        ));
        assert!(matches!(
            pair.server.poll_event(),
            Some(Event::Opened { .. })
        ));
        pair
    }

    fn open() -> Self {
        Self::connected(PeerConfig::default(), PeerConfig::default())
    }

    /// Moves bytes both ways (honouring `wants_input`), ends write sides when asked to,
    /// delivers EOFs and fires due timers, until nothing moves any more.
    fn drive(&mut self) {
        for _ in 0..100_000 {
            let now = self.now;
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
            let a = flow(&mut self.client, &mut self.to_server, &mut self.server, now);
            let b = flow(&mut self.server, &mut self.to_client, &mut self.client, now);
            if !a && !b {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    /// Moves the clock forward, then drives.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.drive();
    }

    /// The frames the client wrote after its upgrade request.
    fn client_frames(&self) -> Vec<Frame> {
        frames(after_head(&self.to_server.log))
    }

    /// The frames the server wrote after its `101`.
    fn server_frames(&self) -> Vec<Frame> {
        frames(after_head(&self.to_client.log))
    }
}

/// One step of one direction: the writer writes (or ends its side), the reader reads.
/// Returns whether anything happened.
fn flow(from: &mut Connection, pipe: &mut Pipe, to: &mut Connection, now: Instant) -> bool {
    let mut progress = false;
    if !pipe.shut {
        let before = pipe.bytes.len();
        from.transmit_into(&mut pipe.bytes);
        pipe.log.extend_from_slice(&pipe.bytes[before..]);
        progress |= pipe.bytes.len() != before;
        if from.wants_shutdown() {
            from.handle_shutdown(now);
            pipe.shut = true;
            progress = true;
        } else if from.is_closed() {
            // The driver drops the transport.
            pipe.shut = true;
            progress = true;
        }
    }
    if to.wants_input() && !pipe.bytes.is_empty() {
        let bytes = std::mem::take(&mut pipe.bytes);
        to.handle_input(now, &bytes);
        progress = true;
    }
    if pipe.shut && pipe.bytes.is_empty() && !pipe.eof_delivered && to.wants_input() {
        to.handle_eof(now);
        pipe.eof_delivered = true;
        progress = true;
    }
    progress
}

/// Every event waiting on `c`, in order.
fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Every packet waiting on `c`, in order.
fn packets(c: &mut Connection) -> Vec<Packet> {
    std::iter::from_fn(|| c.recv()).collect()
}

/// Everything `c` wants to send, taken as sent.
fn output(c: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    c.transmit_into(&mut out);
    out
}

fn closed(code: i32, reason: &str, clean: bool) -> Event {
    Event::Closed {
        code,
        reason: reason.into(),
        clean,
    }
}

fn close_requested(code: i32, reason: &str) -> Event {
    Event::CloseRequested {
        code,
        reason: reason.into(),
    }
}

fn opened(protocol: &str) -> Event {
    Event::Opened {
        protocol: protocol.into(),
    }
}

/// A frame as it went on the wire, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    masked: bool,
    payload: Vec<u8>,
}

impl Frame {
    /// The code and reason of a close frame (`None` for an empty close payload).
    fn close(&self) -> Option<(u16, String)> {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        if self.payload.is_empty() {
            return None;
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let reason = String::from_utf8(self.payload[2..].to_vec()).expect("UTF-8 reason");
        Some((code, reason))
    }
}

/// Parses whole frames out of bytes one side transmitted.
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut cursor = Cursor::new(bytes);
    let mut out = Vec::new();
    while (cursor.position() as usize) < bytes.len() {
        let (header, len) = FrameHeader::parse(&mut cursor)
            .expect("a valid frame header")
            .expect("a whole frame header");
        let start = cursor.position() as usize;
        let end = start + len as usize;
        assert!(end <= bytes.len(), "a truncated frame");
        let mut payload = bytes[start..end].to_vec();
        if let Some(mask) = header.mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        cursor.set_position(end as u64);
        out.push(Frame {
            fin: header.is_final,
            opcode: u8::from(header.opcode),
            masked: header.mask.is_some(),
            payload,
        });
    }
    out
}

/// What follows the HTTP head (the first blank line) in a logged direction.
fn after_head(log: &[u8]) -> &[u8] {
    let end = log
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    &log[end + 4..]
}

/// A frame with first byte `first` (FIN, RSV and opcode), masked with `mask` if given.
fn raw_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A frame as a client sends it (masked).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(first, payload, Some(KEY))
}

/// A frame as a server sends it (unmasked).
fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(first, payload, None)
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason.as_bytes());
    out
}

/// A valid upgrade request (RFC 6455 §1.3's key).
const REQUEST: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A lone server and the start of time.
fn lone_server(config: &PeerConfig) -> (Connection, Instant) {
    let t0 = crate::test_epoch();
    let server = Connection::server(config, t0 + CONNECT).expect("valid config");
    (server, t0)
}

/// A lone server that took `REQUEST` and answered `101`; its answer is taken.
fn open_server(config: &PeerConfig) -> (Connection, Instant) {
    let (mut server, t0) = lone_server(config);
    server.handle_input(t0, REQUEST.as_bytes());
    assert_eq!(server.get_ready_state(), State::Open);
    let answer = output(&mut server);
    assert!(answer.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert_eq!(events(&mut server), [opened("")]);
    (server, t0)
}

/// A lone client whose request is taken; returns the `Sec-WebSocket-Accept` it expects.
fn lone_client(config: &PeerConfig) -> (Connection, Instant, String) {
    let t0 = crate::test_epoch();
    let mut client =
        Connection::client(config, "example.com", "/", t0 + CONNECT).expect("valid config");
    let request = String::from_utf8(output(&mut client)).expect("an ASCII request");
    let key = request
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a key in the request");
    let accept = derive_accept_key(key.as_bytes());
    (client, t0, accept)
}

/// A `101` answer with this accept value and extra header lines (each ending in CRLF).
fn answer_101(accept: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
}

/// A lone client that took a valid `101`.
fn open_client(config: &PeerConfig) -> (Connection, Instant) {
    let (mut client, t0, accept) = lone_client(config);
    client.handle_input(t0, answer_101(&accept, "").as_bytes());
    assert_eq!(client.get_ready_state(), State::Open);
    assert_eq!(events(&mut client), [opened("")]);
    (client, t0)
}

/// Feeds `request` to a server with `config` and checks the whole refusal: the status line,
/// the body, the error, and the end after the write side and the input are over.
fn assert_refused(config: &PeerConfig, request: &[u8], status: u16, why: &str) {
    let (mut server, t0) = lone_server(config);
    server.handle_input(t0, request);
    assert_eq!(server.get_ready_state(), State::Closing);
    let answer = String::from_utf8(output(&mut server)).expect("an ASCII answer");
    let reason = match status {
        400 => "Bad Request",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => unreachable!(),
    };
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")),
        "{answer}"
    );
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert!(answer.ends_with(&format!("\r\n\r\n{why}\n")), "{answer}");
    let expected = format!("refused with HTTP {status}: {why}");
    assert!(
        matches!(server.error(), Some(Error::Handshake(m)) if *m == expected),
        "{:?}",
        server.error()
    );
    // Our side ends once the answer is out; the connection ends at the remote's EOF.
    assert!(server.wants_shutdown());
    server.handle_shutdown(t0);
    assert_eq!(server.get_ready_state(), State::Closing);
    server.handle_eof(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    assert_eq!(server.get_close_code(), -1);
    assert!(server.handshake_request().is_none());
}

/// Feeds `answer` to a fresh client and checks it failed with exactly `why`.
fn assert_client_refuses(config: &PeerConfig, answer: impl FnOnce(&str) -> String, why: &str) {
    let (mut client, t0, accept) = lone_client(config);
    client.handle_input(t0, answer(&accept).as_bytes());
    assert_eq!(client.get_ready_state(), State::Closed);
    assert!(
        matches!(client.error(), Some(Error::Handshake(m)) if m == why),
        "{:?}",
        client.error()
    );
    assert_eq!(events(&mut client), [closed(-1, "", false)]);
    assert_eq!(client.get_close_code(), -1);
    assert!(output(&mut client).is_empty());
    assert!(!client.wants_input());
}

fn protocols(names: &[&str]) -> PeerConfig {
    PeerConfig {
        supported_protocols: names.iter().map(|s| s.to_string()).collect(),
        ..PeerConfig::default()
    }
}

fn heartbeat(interval: Duration) -> PeerConfig {
    PeerConfig {
        heartbeat_interval: interval,
        ..PeerConfig::default()
    }
}

/// Fails a lone open server with `input` and checks the close frame it sends and its state.
fn assert_server_fails(input: &[u8], code: u16, reason: &str) -> Connection {
    let (mut server, t0) = open_server(&PeerConfig::default());
    server.handle_input(t0, input);
    assert_failed_with(&mut server, code, reason);
    server
}

/// Fails a lone open client with `input` and checks the close frame it sends and its state.
fn assert_client_fails(input: &[u8], code: u16, reason: &str) -> Connection {
    let (mut client, t0) = open_client(&PeerConfig::default());
    client.handle_input(t0, input);
    assert_failed_with(&mut client, code, reason);
    client
}

fn assert_failed_with(c: &mut Connection, code: u16, reason: &str) {
    assert_eq!(c.get_ready_state(), State::Closing);
    assert_eq!(c.get_close_code(), i32::from(code));
    assert_eq!(c.get_close_reason(), reason);
    assert!(
        matches!(c.error(), Some(Error::Protocol { code: c2, .. }) if *c2 == code),
        "{:?}",
        c.error()
    );
    let sent = frames(&output(c));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].masked, c.is_client());
    assert_eq!(sent[0].close(), Some((code, reason.to_string())));
    // No CloseRequested: we started the close.
    assert_eq!(events(c), []);
    assert!(matches!(c.send_text("late"), Err(Error::NotOpen)));
}

// ----- handshake: success -----

#[test]
fn upgrade_opens_both_sides_without_a_subprotocol() {
    let mut pair = Pair::new(PeerConfig::default(), PeerConfig::default());
    assert_eq!(pair.client.get_ready_state(), State::Connecting);
    assert_eq!(pair.server.get_ready_state(), State::Connecting);
    pair.drive();
    assert_eq!(events(&mut pair.client), [opened("")]);
    assert_eq!(events(&mut pair.server), [opened("")]);
    assert_eq!(pair.client.get_ready_state(), State::Open);
    assert_eq!(pair.server.get_ready_state(), State::Open);
    assert_eq!(pair.client.get_selected_protocol(), "");
    assert_eq!(pair.server.get_selected_protocol(), "");
    assert!(pair.client.is_client());
    assert!(!pair.server.is_client());
    // No heartbeat by default: nothing to wait for once open.
    assert_eq!(pair.client.poll_timeout(), None);
    assert_eq!(pair.server.poll_timeout(), None);
}

#[test]
fn server_picks_the_first_protocol_in_the_clients_order_that_it_supports() {
    let mut pair = Pair::new(
        protocols(&["chat", "game", "raw"]),
        protocols(&["raw", "game"]),
    );
    pair.drive();
    assert_eq!(events(&mut pair.client), [opened("game")]);
    assert_eq!(events(&mut pair.server), [opened("game")]);
    assert_eq!(pair.client.get_selected_protocol(), "game");
    assert_eq!(pair.server.get_selected_protocol(), "game");
    let request = pair
        .server
        .handshake_request()
        .expect("the request is kept");
    assert_eq!(request.offered_protocols(), ["chat", "game", "raw"]);
}

#[test]
fn client_sees_the_servers_response_headers() {
    let server = PeerConfig {
        handshake_headers: vec!["X-Server: wspeer".into(), "X-Room: 7".into()],
        ..protocols(&["game"])
    };
    let mut pair = Pair::new(protocols(&["game"]), server);
    pair.drive();
    let headers = pair.client.response_headers();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("upgrade"), Some("websocket"));
    assert_eq!(get("connection"), Some("Upgrade"));
    assert_eq!(get("sec-websocket-protocol"), Some("game"));
    assert_eq!(get("x-server"), Some("wspeer"));
    assert_eq!(get("x-room"), Some("7"));
    assert_eq!(headers.len(), 6);
    // The server keeps no response headers and the client no request.
    assert!(pair.server.response_headers().is_empty());
    assert!(pair.client.handshake_request().is_none());
}

#[test]
fn server_sees_the_clients_request_path_query_and_headers() {
    let client = PeerConfig {
        handshake_headers: vec!["X-Token: abc123".into()],
        ..PeerConfig::default()
    };
    let mut pair = Pair::with_path(client, PeerConfig::default(), "/lobby/join?room=7&x=1");
    assert!(pair.server.handshake_request().is_none());
    pair.drive();
    let request = pair.server.handshake_request().expect("kept once open");
    assert_eq!(request.path, "/lobby/join");
    assert_eq!(request.query.as_deref(), Some("room=7&x=1"));
    assert_eq!(request.header("host"), Some("example.com:8080"));
    assert_eq!(request.header("X-TOKEN"), Some("abc123"));
    assert_eq!(request.header("sec-websocket-version"), Some("13"));
    assert_eq!(request.header("sec-websocket-protocol"), None);
    assert!(request.offered_protocols().is_empty());
}

// ----- handshake: the server's refusals -----

#[test]
fn server_refuses_a_method_other_than_get_with_400() {
    let request = REQUEST.replace("GET", "POST");
    let why = "a WebSocket upgrade must use GET, not POST";
    assert_refused(&PeerConfig::default(), request.as_bytes(), 400, why);
}

#[test]
fn server_refuses_http_1_0_with_400() {
    let request = REQUEST.replace("HTTP/1.1", "HTTP/1.0");
    let why = "a WebSocket upgrade needs HTTP/1.1";
    assert_refused(&PeerConfig::default(), request.as_bytes(), 400, why);
}

#[test]
fn server_refuses_a_missing_key_with_400() {
    let request = REQUEST.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let why = "missing or malformed Sec-WebSocket-Key";
    assert_refused(&PeerConfig::default(), request.as_bytes(), 400, why);
}

#[test]
fn server_refuses_a_malformed_key_with_400() {
    // 24 characters ending in "==" but with a character base64 does not use.
    let request = REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ*==");
    let why = "missing or malformed Sec-WebSocket-Key";
    assert_refused(&PeerConfig::default(), request.as_bytes(), 400, why);
}

#[test]
fn server_refuses_a_missing_upgrade_header_with_400() {
    let request = REQUEST.replace("Upgrade: websocket\r\n", "");
    let why = "missing \"Upgrade: websocket\"";
    assert_refused(&PeerConfig::default(), request.as_bytes(), 400, why);
}

#[test]
fn server_refuses_a_connection_header_without_upgrade_with_400() {
    let request = REQUEST.replace("Connection: Upgrade", "Connection: keep-alive");
    let why = "missing \"Connection: Upgrade\"";
    assert_refused(&PeerConfig::default(), request.as_bytes(), 400, why);
}

#[test]
fn server_refuses_a_missing_host_with_400() {
    let request = REQUEST.replace("Host: example.com\r\n", "");
    assert_refused(
        &PeerConfig::default(),
        request.as_bytes(),
        400,
        "missing Host header",
    );
}

#[test]
fn server_refuses_another_websocket_version_with_426() {
    let request = REQUEST.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let why = "only WebSocket version 13 is supported";
    assert_refused(&PeerConfig::default(), request.as_bytes(), 426, why);
    // The answer names the version we speak.
    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.handle_input(t0, request.as_bytes());
    let answer = String::from_utf8(output(&mut server)).unwrap();
    assert!(
        answer.contains("\r\nSec-WebSocket-Version: 13\r\n"),
        "{answer}"
    );
}

#[test]
fn server_refuses_a_complete_head_over_max_handshake_bytes_with_431() {
    let config = PeerConfig {
        max_handshake_bytes: 256,
        ..PeerConfig::default()
    };
    let padding = format!("X-Pad: {}\r\n", "p".repeat(100));
    let request = REQUEST.replacen("\r\n", &format!("\r\n{padding}"), 1);
    assert!(request.len() > 256 && request.len() < 400);
    assert_refused(
        &config,
        request.as_bytes(),
        431,
        "request head larger than 256 bytes",
    );
}

#[test]
fn server_refuses_an_unfinished_head_over_max_handshake_bytes_with_431() {
    let config = PeerConfig {
        max_handshake_bytes: 256,
        ..PeerConfig::default()
    };
    // No blank line yet, but already too long to ever fit.
    let request = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "b".repeat(300));
    assert_refused(
        &config,
        request.as_bytes(),
        431,
        "request head larger than 256 bytes",
    );
}

#[test]
fn server_refuses_more_headers_than_max_handshake_headers_with_431() {
    let config = PeerConfig {
        max_handshake_headers: 5,
        ..PeerConfig::default()
    };
    // The five required headers fit exactly...
    let (mut server, t0) = lone_server(&config);
    server.handle_input(t0, REQUEST.as_bytes());
    assert_eq!(server.get_ready_state(), State::Open);
    // ...one more does not.
    let request = REQUEST.replacen("\r\n", "\r\nX-Extra: 1\r\n", 1);
    assert_refused(&config, request.as_bytes(), 431, "more than 5 headers");
}

#[test]
fn server_refuses_a_client_offering_no_protocol_when_one_is_required() {
    let why = "a sub-protocol is required: game, chat";
    assert_refused(&protocols(&["game", "chat"]), REQUEST.as_bytes(), 400, why);
}

#[test]
fn server_refuses_a_client_offering_only_unsupported_protocols() {
    let request = REQUEST.replacen("\r\n\r\n", "\r\nSec-WebSocket-Protocol: x, y\r\n\r\n", 1);
    let why = "none of the offered sub-protocols is supported: x, y";
    assert_refused(&protocols(&["game"]), request.as_bytes(), 400, why);
}

#[test]
fn refused_server_also_ends_when_eof_comes_before_its_shutdown() {
    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.handle_input(t0, REQUEST.replace("GET", "PUT").as_bytes());
    assert!(output(&mut server).starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    server.handle_eof(t0);
    assert_eq!(server.get_ready_state(), State::Closing);
    assert!(server.wants_shutdown());
    server.handle_shutdown(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
}

#[test]
fn refused_server_without_eof_ends_at_the_close_timeout() {
    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.handle_input(t0, REQUEST.replace("GET", "PUT").as_bytes());
    output(&mut server);
    server.handle_shutdown(t0);
    let deadline = t0 + PeerConfig::default().close_timeout;
    assert_eq!(server.poll_timeout(), Some(deadline));
    server.handle_timeout(deadline - TICK);
    assert_eq!(server.get_ready_state(), State::Closing);
    server.handle_timeout(deadline);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    assert!(matches!(server.error(), Some(Error::Handshake(_))));
}

#[test]
fn mismatched_protocols_end_both_sides_of_a_pair_with_the_400_in_the_clients_error() {
    let mut pair = Pair::new(protocols(&["x"]), protocols(&["y"]));
    pair.drive();
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    assert_eq!(pair.server.get_ready_state(), State::Closed);
    let why = "none of the offered sub-protocols is supported: x";
    let expected =
        format!("the server answered 400 Bad Request instead of 101 Switching Protocols: {why}");
    assert!(
        matches!(pair.client.error(), Some(Error::Handshake(m)) if *m == expected),
        "{:?}",
        pair.client.error()
    );
    let expected = format!("refused with HTTP 400: {why}");
    assert!(matches!(pair.server.error(), Some(Error::Handshake(m)) if *m == expected));
    assert_eq!(events(&mut pair.client), [closed(-1, "", false)]);
    assert_eq!(events(&mut pair.server), [closed(-1, "", false)]);
}

// ----- handshake: the client's refusals -----

#[test]
fn client_refuses_an_answer_other_than_101() {
    assert_client_refuses(
        &PeerConfig::default(),
        |_| "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope".into(),
        "the server answered 404 Not Found instead of 101 Switching Protocols: nope",
    );
}

#[test]
fn client_refuses_a_wrong_accept_key() {
    assert_client_refuses(
        &PeerConfig::default(),
        |_| answer_101("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ""),
        "the answer's Sec-WebSocket-Accept does not match our key",
    );
}

#[test]
fn client_refuses_a_protocol_when_it_offered_none() {
    assert_client_refuses(
        &PeerConfig::default(),
        |accept| answer_101(accept, "Sec-WebSocket-Protocol: game\r\n"),
        "the server selected sub-protocol \"game\", but we offered none",
    );
}

#[test]
fn client_refuses_a_protocol_it_did_not_offer() {
    assert_client_refuses(
        &protocols(&["a", "b"]),
        |accept| answer_101(accept, "Sec-WebSocket-Protocol: c\r\n"),
        "the server selected sub-protocol \"c\", which we did not offer",
    );
}

#[test]
fn client_refuses_an_answer_selecting_none_of_its_protocols() {
    assert_client_refuses(
        &protocols(&["a", "b"]),
        |accept| answer_101(accept, ""),
        "the server selected none of our sub-protocols (a, b)",
    );
}

#[test]
fn client_refuses_an_extension_it_did_not_offer() {
    assert_client_refuses(
        &PeerConfig::default(),
        |accept| answer_101(accept, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        "the server selected extension \"permessage-deflate\", which we did not offer",
    );
}

#[test]
fn client_refuses_an_answer_head_over_max_handshake_bytes() {
    let config = PeerConfig {
        max_handshake_bytes: 256,
        ..PeerConfig::default()
    };
    assert_client_refuses(
        &config,
        |_| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nX-Big: {}",
                "b".repeat(300)
            )
        },
        "the server's answer head is larger than 256 bytes (PeerConfig::max_handshake_bytes)",
    );
}

#[test]
fn client_refuses_a_complete_answer_head_over_max_handshake_bytes() {
    let config = PeerConfig {
        max_handshake_bytes: 256,
        ..PeerConfig::default()
    };
    // The whole head in one read: complete, valid, and still too large.
    assert_client_refuses(
        &config,
        |accept| answer_101(accept, &format!("X-Big: {}\r\n", "b".repeat(300))),
        "the server's answer head is larger than 256 bytes (PeerConfig::max_handshake_bytes)",
    );
}

#[test]
fn client_refuses_an_answer_with_more_headers_than_max_handshake_headers() {
    let config = PeerConfig {
        max_handshake_headers: 5,
        ..PeerConfig::default()
    };
    assert_client_refuses(
        &config,
        |accept| answer_101(accept, "X-A: 1\r\nX-B: 2\r\nX-C: 3\r\n"),
        "the server's answer has more than 5 headers (PeerConfig::max_handshake_headers)",
    );
}

#[test]
fn client_opens_on_an_answer_split_into_single_bytes() {
    let (mut client, t0, accept) = lone_client(&protocols(&["game"]));
    let answer = answer_101(&accept, "Sec-WebSocket-Protocol: game\r\n");
    let (last, head) = answer.as_bytes().split_last().unwrap();
    for byte in head {
        client.handle_input(t0, std::slice::from_ref(byte));
        assert_eq!(client.get_ready_state(), State::Connecting);
        assert!(client.wants_input());
    }
    assert_eq!(client.poll_event(), None);
    client.handle_input(t0, &[*last]);
    assert_eq!(client.get_ready_state(), State::Open);
    assert_eq!(events(&mut client), [opened("game")]);
}

#[test]
fn server_opens_on_a_request_split_into_single_bytes() {
    let (mut server, t0) = lone_server(&PeerConfig::default());
    for byte in REQUEST.as_bytes() {
        assert_eq!(server.get_ready_state(), State::Connecting);
        server.handle_input(t0, std::slice::from_ref(byte));
    }
    assert_eq!(server.get_ready_state(), State::Open);
    let answer = String::from_utf8(output(&mut server)).unwrap();
    assert!(answer.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_eq!(events(&mut server), [opened("")]);
}

#[test]
fn frames_in_the_same_input_as_the_101_are_received() {
    let (mut client, t0, accept) = lone_client(&PeerConfig::default());
    let mut input = answer_101(&accept, "").into_bytes();
    input.extend(server_frame(FIN | TEXT, b"first"));
    input.extend(server_frame(FIN | BINARY, &[1, 2, 3]));
    client.handle_input(t0, &input);
    assert_eq!(
        events(&mut client),
        [opened(""), Event::Received { messages: 2 }]
    );
    assert_eq!(
        packets(&mut client),
        [
            Packet::new(&b"first"[..], true),
            Packet::new(vec![1, 2, 3], false)
        ]
    );
}

#[test]
fn frames_in_the_same_input_as_the_request_are_received() {
    let (mut server, t0) = lone_server(&PeerConfig::default());
    let mut input = REQUEST.as_bytes().to_vec();
    input.extend(client_frame(FIN | TEXT, b"hello"));
    input.extend(client_frame(FIN | PING, b"p"));
    server.handle_input(t0, &input);
    assert_eq!(
        events(&mut server),
        [opened(""), Event::Received { messages: 1 }]
    );
    assert_eq!(server.recv().unwrap().as_text(), Some("hello"));
    // The 101 goes out first, then the pong.
    let out = output(&mut server);
    assert!(out.starts_with(b"HTTP/1.1 101 "));
    let sent = frames(after_head(&out));
    assert_eq!(
        sent,
        [Frame {
            fin: true,
            opcode: PONG,
            masked: false,
            payload: b"p".to_vec()
        }]
    );
}

#[test]
fn client_handshake_times_out_exactly_at_the_deadline() {
    let (mut client, t0, _) = lone_client(&PeerConfig::default());
    assert_eq!(client.poll_timeout(), Some(t0 + CONNECT));
    client.handle_timeout(t0 + CONNECT - TICK);
    assert_eq!(client.get_ready_state(), State::Connecting);
    assert!(client.error().is_none());
    client.handle_timeout(t0 + CONNECT);
    assert_eq!(client.get_ready_state(), State::Closed);
    assert!(matches!(client.error(), Some(Error::ConnectTimeout)));
    assert_eq!(events(&mut client), [closed(-1, "", false)]);
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn server_handshake_times_out_exactly_at_the_deadline() {
    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.handle_input(t0, &REQUEST.as_bytes()[..20]);
    server.handle_timeout(t0 + CONNECT - TICK);
    assert_eq!(server.get_ready_state(), State::Connecting);
    server.handle_timeout(t0 + CONNECT);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert!(matches!(server.error(), Some(Error::ConnectTimeout)));
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    assert!(output(&mut server).is_empty());
}

#[test]
fn an_open_connection_has_no_handshake_deadline_any_more() {
    let mut pair = Pair::open();
    pair.advance(CONNECT + secs(60));
    assert_eq!(pair.client.get_ready_state(), State::Open);
    assert_eq!(pair.server.get_ready_state(), State::Open);
}

#[test]
fn eof_during_the_handshake_fails_the_client() {
    let (mut client, t0, accept) = lone_client(&PeerConfig::default());
    client.handle_input(t0, &answer_101(&accept, "").as_bytes()[..30]);
    client.handle_eof(t0);
    assert_eq!(client.get_ready_state(), State::Closed);
    assert!(
        matches!(client.error(), Some(Error::Handshake(m)) if m == "the connection closed during the handshake")
    );
    assert_eq!(events(&mut client), [closed(-1, "", false)]);
}

#[test]
fn eof_during_the_handshake_fails_the_server() {
    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.handle_eof(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert!(
        matches!(server.error(), Some(Error::Handshake(m)) if m == "the connection closed during the handshake")
    );
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    assert!(output(&mut server).is_empty());
}

// ----- closing -----

#[test]
fn client_initiated_close_is_clean_on_both_sides() {
    let mut pair = Pair::open();
    pair.client.close(pair.now, 1000, "bye").unwrap();
    assert_eq!(pair.client.get_ready_state(), State::Closing);
    assert!(matches!(pair.client.send_text("x"), Err(Error::NotOpen)));
    pair.drive();
    assert_eq!(events(&mut pair.client), [closed(1000, "bye", true)]);
    assert_eq!(
        events(&mut pair.server),
        [close_requested(1000, "bye"), closed(1000, "bye", true)]
    );
    for side in [&pair.client, &pair.server] {
        assert_eq!(side.get_ready_state(), State::Closed);
        assert_eq!(side.get_close_code(), 1000);
        assert_eq!(side.get_close_reason(), "bye");
        assert!(side.error().is_none());
        assert!(side.is_closed());
    }
    let client_sent = pair.client_frames();
    assert_eq!(client_sent.len(), 1);
    assert_eq!(client_sent[0].close(), Some((1000, "bye".into())));
    // The server echoes the code and reason.
    let server_sent = pair.server_frames();
    assert_eq!(server_sent.len(), 1);
    assert_eq!(server_sent[0].close(), Some((1000, "bye".into())));
}

#[test]
fn server_initiated_close_is_clean_on_both_sides() {
    let mut pair = Pair::open();
    pair.server.close(pair.now, 4001, "game over").unwrap();
    assert_eq!(pair.server.get_ready_state(), State::Closing);
    pair.drive();
    assert_eq!(events(&mut pair.server), [closed(4001, "game over", true)]);
    assert_eq!(
        events(&mut pair.client),
        [
            close_requested(4001, "game over"),
            closed(4001, "game over", true)
        ]
    );
    assert_eq!(pair.client.get_close_code(), 4001);
    assert_eq!(pair.server.get_close_code(), 4001);
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    assert_eq!(pair.server.get_ready_state(), State::Closed);
    assert_eq!(
        pair.server_frames()[0].close(),
        Some((4001, "game over".into()))
    );
    assert_eq!(
        pair.client_frames()[0].close(),
        Some((4001, "game over".into()))
    );
}

#[test]
fn both_sides_closing_at_once_each_report_the_others_code() {
    let mut pair = Pair::open();
    pair.client.close(pair.now, 1001, "client away").unwrap();
    pair.server.close(pair.now, 1012, "restart").unwrap();
    pair.drive();
    assert_eq!(events(&mut pair.client), [closed(1012, "restart", true)]);
    assert_eq!(
        events(&mut pair.server),
        [closed(1001, "client away", true)]
    );
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    assert_eq!(pair.server.get_ready_state(), State::Closed);
}

#[test]
fn a_close_frame_without_a_code_reports_1005_and_is_echoed_empty() {
    let (mut client, t0) = open_client(&PeerConfig::default());
    client.handle_input(t0, &server_frame(FIN | CLOSE, &[]));
    assert_eq!(events(&mut client), [close_requested(1005, "")]);
    assert_eq!(client.get_close_code(), 1005);
    assert_eq!(client.get_ready_state(), State::Closing);
    let sent = frames(&output(&mut client));
    assert_eq!(sent.len(), 1);
    assert!(sent[0].masked);
    assert_eq!(sent[0].close(), None);
    assert!(client.wants_shutdown());
    client.handle_shutdown(t0);
    assert_eq!(client.get_ready_state(), State::Closed);
    assert_eq!(events(&mut client), [closed(1005, "", true)]);
}

#[test]
fn a_received_close_with_a_forbidden_code_is_answered_with_1002() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    server.handle_input(t0, &client_frame(FIN | CLOSE, &close_payload(1006, "x")));
    assert_eq!(
        events(&mut server),
        [close_requested(1002, "Protocol violation")]
    );
    let sent = frames(&output(&mut server));
    assert_eq!(sent[0].close(), Some((1002, "Protocol violation".into())));
}

#[test]
fn a_forbidden_code_in_the_reply_to_our_close_is_reported_as_1002() {
    let (mut client, t0) = open_client(&PeerConfig::default());
    client.close(t0, 1000, "bye").unwrap();
    let _ = output(&mut client);
    client.handle_input(t0, &server_frame(FIN | CLOSE, &close_payload(30758, "")));
    assert_eq!(client.get_close_code(), 1002);
    assert_eq!(client.get_close_reason(), "Protocol violation");
    assert!(matches!(
        client.error(),
        Some(Error::Protocol { code: 1002, .. })
    ));
    client.handle_shutdown(t0);
    assert_eq!(client.get_ready_state(), State::Closed);
    assert_eq!(
        events(&mut client),
        [closed(1002, "Protocol violation", true)]
    );
}

#[test]
fn close_times_out_exactly_when_the_remote_never_answers() {
    let mut pair = Pair::open();
    let start = pair.now;
    pair.client.close(start, 1000, "bye").unwrap();
    // The close frame is written, but the server is gone silent: nothing comes back.
    assert_eq!(
        frames(&output(&mut pair.client))[0].close(),
        Some((1000, "bye".into()))
    );
    let deadline = start + PeerConfig::default().close_timeout;
    assert_eq!(pair.client.poll_timeout(), Some(deadline));
    pair.client.handle_timeout(deadline - TICK);
    assert_eq!(pair.client.get_ready_state(), State::Closing);
    pair.client.handle_timeout(deadline);
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    assert_eq!(pair.client.get_close_code(), -1);
    assert_eq!(pair.client.get_close_reason(), "");
    assert!(matches!(pair.client.error(), Some(Error::CloseTimeout)));
    assert_eq!(events(&mut pair.client), [closed(-1, "", false)]);
}

#[test]
fn the_close_timeout_follows_the_configured_value() {
    let config = PeerConfig {
        close_timeout: ms(250),
        ..PeerConfig::default()
    };
    let (mut server, t0) = open_server(&config);
    server.close(t0 + ms(10), 1000, "").unwrap();
    assert_eq!(server.poll_timeout(), Some(t0 + ms(260)));
    server.handle_timeout(t0 + ms(260) - TICK);
    assert_eq!(server.get_ready_state(), State::Closing);
    server.handle_timeout(t0 + ms(260));
    assert!(matches!(server.error(), Some(Error::CloseTimeout)));
}

#[test]
fn the_side_answering_a_close_drains_until_its_write_side_ends() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    server.handle_input(t0, &client_frame(FIN | CLOSE, &close_payload(1000, "")));
    assert_eq!(server.get_ready_state(), State::Closing);
    // The echo waits: no shutdown before it is written.
    assert!(!server.wants_shutdown());
    assert!(server.wants_input());
    // Input while draining is read and thrown away.
    server.handle_input(t0, &client_frame(FIN | TEXT, b"ignored"));
    assert_eq!(server.get_available_packet_count(), 0);
    let sent = frames(&output(&mut server));
    assert_eq!(sent[0].close(), Some((1000, String::new())));
    assert!(server.wants_shutdown());
    assert_eq!(server.get_ready_state(), State::Closing);
    server.handle_shutdown(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(
        events(&mut server),
        [close_requested(1000, ""), closed(1000, "", true)]
    );
}

#[test]
fn draining_after_a_protocol_error_waits_for_the_remotes_eof() {
    let mut server = assert_server_fails(&client_frame(FIN | 0x3, b""), 1002, "Protocol error");
    let t0 = crate::test_epoch();
    assert!(server.wants_shutdown());
    server.handle_shutdown(t0);
    // Our side is done, but the remote has not ended its side yet.
    assert_eq!(server.get_ready_state(), State::Closing);
    assert!(server.wants_input());
    assert!(!server.wants_shutdown());
    server.handle_eof(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(events(&mut server), [closed(1002, "Protocol error", true)]);
    assert_eq!(server.get_close_code(), 1002);
}

#[test]
fn aborting_the_client_drops_it_at_once_and_the_server_sees_a_lost_connection() {
    let mut pair = Pair::open();
    pair.client.send_text("never sent").unwrap();
    pair.client.close(pair.now, -1, "").unwrap();
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    assert_eq!(pair.client.get_close_code(), -1);
    assert!(pair.client.error().is_none());
    assert!(!pair.client.has_output());
    assert_eq!(pair.client.get_current_outbound_buffered_amount(), 0);
    assert_eq!(events(&mut pair.client), [closed(-1, "", false)]);
    pair.drive();
    assert!(pair.client_frames().is_empty());
    assert_eq!(pair.server.get_ready_state(), State::Closed);
    assert_eq!(pair.server.get_close_code(), -1);
    assert!(
        matches!(pair.server.error(), Some(Error::ConnectionLost(m)) if m == "the remote closed the connection without a close frame"),
        "{:?}",
        pair.server.error()
    );
    assert_eq!(events(&mut pair.server), [closed(-1, "", false)]);
}

#[test]
fn aborting_the_server_drops_it_at_once_and_the_client_sees_a_lost_connection() {
    let mut pair = Pair::open();
    pair.server.abort(pair.now);
    assert_eq!(pair.server.get_ready_state(), State::Closed);
    assert_eq!(events(&mut pair.server), [closed(-1, "", false)]);
    pair.drive();
    assert!(pair.server_frames().is_empty());
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    assert!(matches!(
        pair.client.error(),
        Some(Error::ConnectionLost(_))
    ));
    assert_eq!(events(&mut pair.client), [closed(-1, "", false)]);
}

#[test]
fn aborting_while_awaiting_the_close_reply_ends_without_a_clean_close() {
    let mut pair = Pair::open();
    pair.client.close(pair.now, 1000, "").unwrap();
    pair.client.close(pair.now, -1, "").unwrap();
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    assert_eq!(pair.client.get_close_code(), -1);
    assert_eq!(events(&mut pair.client), [closed(-1, "", false)]);
    // The close frame was dropped with the rest.
    assert!(!pair.client.has_output());
}

#[test]
fn closing_before_the_upgrade_finished_drops_the_connection() {
    let (mut client, t0, _) = lone_client(&PeerConfig::default());
    client.close(t0, 1000, "changed my mind").unwrap();
    assert_eq!(client.get_ready_state(), State::Closed);
    assert_eq!(client.get_close_code(), -1);
    assert_eq!(events(&mut client), [closed(-1, "", false)]);
    assert_eq!(client.poll_timeout(), None);

    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.handle_input(t0, &REQUEST.as_bytes()[..10]);
    server.close(t0, 1001, "").unwrap();
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    assert!(output(&mut server).is_empty());
}

#[test]
fn closing_a_pair_before_the_request_was_sent_sends_nothing() {
    let mut pair = Pair::new(PeerConfig::default(), PeerConfig::default());
    pair.client.close(pair.now, 1000, "").unwrap();
    pair.drive();
    assert!(pair.to_server.log.is_empty());
    assert_eq!(pair.server.get_ready_state(), State::Closed);
    assert!(matches!(pair.server.error(), Some(Error::Handshake(_))));
}

#[test]
fn remote_eof_without_a_close_frame_is_a_lost_connection() {
    let (mut client, t0) = open_client(&PeerConfig::default());
    client.handle_input(t0, &server_frame(FIN | TEXT, b"last words"));
    client.handle_eof(t0);
    assert_eq!(client.get_ready_state(), State::Closed);
    assert_eq!(client.get_close_code(), -1);
    assert!(
        matches!(client.error(), Some(Error::ConnectionLost(m)) if m == "the remote closed the connection without a close frame"),
        "{:?}",
        client.error()
    );
    assert_eq!(
        events(&mut client),
        [Event::Received { messages: 1 }, closed(-1, "", false)]
    );
    // What arrived before the end can still be read.
    assert_eq!(client.recv().unwrap().as_text(), Some("last words"));
}

#[test]
fn remote_eof_in_the_middle_of_a_frame_is_a_lost_connection() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    let frame = client_frame(FIN | BINARY, &[9; 100]);
    server.handle_input(t0, &frame[..50]);
    assert_eq!(server.get_ready_state(), State::Open);
    server.handle_eof(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(server.get_close_code(), -1);
    assert!(matches!(server.error(), Some(Error::ConnectionLost(_))));
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    assert_eq!(server.get_available_packet_count(), 0);
}

#[test]
fn a_transport_error_fails_an_open_connection_with_that_error() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    server.send_text("unsent").unwrap();
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    server.handle_transport_error(t0, Error::Io(reset));
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(server.get_close_code(), -1);
    assert!(
        matches!(server.error(), Some(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    assert!(!server.has_output());
}

#[test]
fn a_transport_error_during_the_handshake_fails_with_that_error() {
    let (mut client, t0, _) = lone_client(&PeerConfig::default());
    client.handle_transport_error(t0, Error::ConnectionLost("reset".into()));
    assert_eq!(client.get_ready_state(), State::Closed);
    assert!(matches!(client.error(), Some(Error::ConnectionLost(m)) if m == "reset"));
    assert_eq!(events(&mut client), [closed(-1, "", false)]);
}

#[test]
fn a_transport_error_after_the_close_exchange_keeps_the_clean_close() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    server.handle_input(t0, &client_frame(FIN | CLOSE, &close_payload(1000, "done")));
    output(&mut server);
    server.handle_transport_error(t0, Error::ConnectionLost("reset".into()));
    server.handle_shutdown(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(server.get_close_code(), 1000);
    assert!(server.error().is_none());
    assert_eq!(
        events(&mut server),
        [close_requested(1000, "done"), closed(1000, "done", true)]
    );
}

#[test]
fn a_reserved_bit_fails_the_connection_with_1002() {
    assert_server_fails(
        &client_frame(FIN | RSV1 | TEXT, b"hi"),
        1002,
        "Protocol error",
    );
}

#[test]
fn an_unknown_data_opcode_fails_the_connection_with_1002() {
    assert_server_fails(&client_frame(FIN | 0x3, b"?"), 1002, "Protocol error");
}

#[test]
fn an_unknown_control_opcode_fails_the_connection_with_1002() {
    assert_client_fails(&server_frame(FIN | 0xB, b""), 1002, "Protocol error");
}

#[test]
fn an_unmasked_client_frame_fails_the_server_with_1002() {
    assert_server_fails(&server_frame(FIN | TEXT, b"bare"), 1002, "Protocol error");
}

#[test]
fn a_masked_server_frame_fails_the_client_with_1002() {
    assert_client_fails(&client_frame(FIN | TEXT, b"masked"), 1002, "Protocol error");
}

#[test]
fn a_fragmented_control_frame_fails_the_connection_with_1002() {
    assert_server_fails(&client_frame(PING, b"no fin"), 1002, "Protocol error");
}

#[test]
fn a_control_frame_over_125_bytes_fails_the_connection_with_1002() {
    assert_server_fails(&client_frame(FIN | PING, &[0; 126]), 1002, "Protocol error");
}

#[test]
fn a_continuation_without_a_start_fails_the_connection_with_1002() {
    assert_server_fails(&client_frame(FIN | CONT, b"orphan"), 1002, "Protocol error");
}

#[test]
fn a_new_message_inside_a_fragmented_one_fails_the_connection_with_1002() {
    let mut input = client_frame(TEXT, b"start");
    input.extend(client_frame(FIN | TEXT, b"restart"));
    assert_server_fails(&input, 1002, "Protocol error");
}

#[test]
fn invalid_utf8_text_fails_the_connection_with_1007() {
    let server = assert_server_fails(
        &client_frame(FIN | TEXT, &[b'o', b'k', 0xff, 0xfe]),
        1007,
        "Invalid frame payload data",
    );
    assert_eq!(server.get_available_packet_count(), 0);
}

#[test]
fn a_message_over_inbound_buffer_size_fails_the_connection_with_1009() {
    let config = PeerConfig {
        inbound_buffer_size: 1000,
        ..PeerConfig::default()
    };
    let mut pair = Pair::connected(PeerConfig::default(), config);
    pair.client.send(&[7; 1001], WriteMode::Binary).unwrap();
    pair.drive();
    assert_eq!(pair.server.get_close_code(), 1009);
    assert!(matches!(
        pair.server.error(),
        Some(Error::Protocol { code: 1009, .. })
    ));
    assert_eq!(
        pair.server_frames()[0].close(),
        Some((1009, "Message too big".into()))
    );
    // The client hears the close, echoes it and ends; the server ends at its EOF.
    assert_eq!(
        events(&mut pair.client),
        [
            close_requested(1009, "Message too big"),
            closed(1009, "Message too big", true)
        ]
    );
    assert_eq!(
        events(&mut pair.server),
        [closed(1009, "Message too big", true)]
    );
    assert_eq!(pair.server.get_ready_state(), State::Closed);
    assert_eq!(pair.server.get_available_packet_count(), 0);
}

#[test]
fn close_refuses_a_reason_over_123_bytes_and_changes_nothing() {
    let mut pair = Pair::open();
    let long = "r".repeat(124);
    assert!(matches!(
        pair.client.close(pair.now, 1000, &long),
        Err(Error::CloseReasonTooLong(124))
    ));
    assert_eq!(pair.client.get_ready_state(), State::Open);
    assert!(!pair.client.has_output());
    assert_eq!(pair.client.poll_timeout(), None);
    // 123 bytes fit.
    let fits = "r".repeat(123);
    pair.client.close(pair.now, 1000, &fits).unwrap();
    pair.drive();
    assert_eq!(pair.server.get_close_reason(), fits);
}

#[test]
fn close_refuses_codes_rfc_6455_forbids_and_changes_nothing() {
    let mut pair = Pair::open();
    for code in [0, 999, 1004, 1005, 1006, 1014, 1015, 2999, 5000, 70_000] {
        match pair.server.close(pair.now, code, "") {
            Err(Error::InvalidCloseCode(c)) => assert_eq!(c, code),
            other => panic!("close({code}) gave {other:?}"),
        }
        assert_eq!(pair.server.get_ready_state(), State::Open);
        assert!(!pair.server.has_output());
        assert_eq!(pair.server.poll_event(), None);
    }
    // Still fully usable.
    pair.server.send_text("still open").unwrap();
    pair.drive();
    assert_eq!(pair.client.recv().unwrap().as_text(), Some("still open"));
}

#[test]
fn sending_is_refused_unless_open() {
    let (mut client, t0, _) = lone_client(&PeerConfig::default());
    assert!(matches!(client.send_text("early"), Err(Error::NotOpen)));
    assert!(matches!(
        client.send(b"early", WriteMode::Binary),
        Err(Error::NotOpen)
    ));
    let mut pair = Pair::open();
    pair.server.close(pair.now, 1000, "").unwrap();
    assert!(matches!(
        pair.server.send_text("closing"),
        Err(Error::NotOpen)
    ));
    pair.drive();
    // The side that was asked to close cannot send either, nor anyone once closed.
    assert!(matches!(
        pair.client.send_text("closed"),
        Err(Error::NotOpen)
    ));
    assert!(matches!(
        pair.server.send_packet(&Packet::new(vec![1], false)),
        Err(Error::NotOpen)
    ));
    client.abort(t0);
    assert!(matches!(client.send_text("aborted"), Err(Error::NotOpen)));
}

#[test]
fn a_second_close_is_ignored() {
    let mut pair = Pair::open();
    pair.client.close(pair.now, 1000, "first").unwrap();
    let first = output(&mut pair.client);
    pair.client.close(pair.now + ms(1), 1001, "second").unwrap();
    assert!(!pair.client.has_output());
    assert_eq!(frames(&first)[0].close(), Some((1000, "first".into())));
    // The deadline is still the first one's.
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + PeerConfig::default().close_timeout)
    );
}

#[test]
fn packets_received_before_the_close_can_still_be_read() {
    let mut pair = Pair::open();
    pair.server.send_text("one").unwrap();
    pair.server.send_text("two").unwrap();
    pair.server.close(pair.now, 1000, "").unwrap();
    pair.drive();
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    assert_eq!(
        events(&mut pair.client),
        [
            Event::Received { messages: 2 },
            close_requested(1000, ""),
            closed(1000, "", true)
        ]
    );
    let texts: Vec<_> = packets(&mut pair.client)
        .iter()
        .map(|p| p.as_text().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["one", "two"]);
    // Nothing more happens once closed.
    pair.advance(secs(3600));
    assert_eq!(pair.client.poll_event(), None);
    assert_eq!(pair.client.poll_timeout(), None);
}

// ----- heartbeat -----

#[test]
fn a_ping_is_sent_at_each_interval() {
    let (mut server, t0) = open_server(&heartbeat(secs(1)));
    assert_eq!(server.poll_timeout(), Some(t0 + secs(1)));
    server.handle_timeout(t0 + secs(1) - TICK);
    assert!(!server.has_output());
    server.handle_timeout(t0 + secs(1));
    // Each ping carries its sequence number, for the round-trip time (see `PeerStats`).
    let ping = |seq: u64| Frame {
        fin: true,
        opcode: PING,
        masked: false,
        payload: seq.to_be_bytes().to_vec(),
    };
    assert_eq!(frames(&output(&mut server)), [ping(1)]);
    // The next one is due one interval later.
    assert_eq!(server.poll_timeout(), Some(t0 + secs(2)));
    server.handle_input(t0 + ms(1500), &client_frame(FIN | PONG, &ping(1).payload));
    server.handle_timeout(t0 + secs(2));
    assert_eq!(frames(&output(&mut server)), [ping(2)]);
    assert_eq!(server.poll_timeout(), Some(t0 + secs(3)));
}

#[test]
fn client_heartbeat_pings_are_masked() {
    let (mut client, t0) = open_client(&heartbeat(ms(500)));
    client.handle_timeout(t0 + ms(500));
    let sent = frames(&output(&mut client));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].opcode, PING);
    assert!(sent[0].masked);
}

#[test]
fn a_live_peer_stays_connected_across_many_intervals() {
    let mut pair = Pair::connected(heartbeat(secs(1)), heartbeat(secs(1)));
    for _ in 0..20 {
        pair.advance(ms(500));
    }
    assert_eq!(pair.client.get_ready_state(), State::Open);
    assert_eq!(pair.server.get_ready_state(), State::Open);
    let pings = |frames: Vec<Frame>| frames.iter().filter(|f| f.opcode == PING).count();
    let pongs = |frames: Vec<Frame>| frames.iter().filter(|f| f.opcode == PONG).count();
    assert_eq!(pings(pair.server_frames()), 10);
    assert_eq!(pongs(pair.client_frames()), 10);
    assert_eq!(pings(pair.client_frames()), 10);
    assert_eq!(pongs(pair.server_frames()), 10);
}

#[test]
fn a_silent_peer_fails_at_the_second_interval_and_not_before() {
    let (mut server, t0) = open_server(&heartbeat(secs(1)));
    server.handle_timeout(t0 + secs(1));
    output(&mut server);
    // Data is not an answer to a ping.
    server.handle_input(t0 + ms(1200), &client_frame(FIN | TEXT, b"busy"));
    server.handle_timeout(t0 + secs(2) - TICK);
    assert_eq!(server.get_ready_state(), State::Open);
    server.handle_timeout(t0 + secs(2));
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(server.get_close_code(), -1);
    assert!(matches!(server.error(), Some(Error::HeartbeatTimeout)));
    assert_eq!(
        events(&mut server),
        [Event::Received { messages: 1 }, closed(-1, "", false)]
    );
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn a_pair_with_a_peer_gone_silent_fails_by_heartbeat() {
    let mut pair = Pair::connected(PeerConfig::default(), heartbeat(secs(2)));
    pair.advance(secs(2));
    // The client stops answering: what the server sends is lost from now on.
    let t = pair.now;
    pair.server.handle_timeout(t + secs(2));
    output(&mut pair.server);
    pair.server.handle_timeout(t + secs(4) - TICK);
    assert_eq!(pair.server.get_ready_state(), State::Open);
    pair.server.handle_timeout(t + secs(4));
    assert!(matches!(pair.server.error(), Some(Error::HeartbeatTimeout)));
}

#[test]
fn a_late_timer_call_sends_one_ping_and_schedules_from_now() {
    let (mut server, t0) = open_server(&heartbeat(secs(1)));
    server.handle_timeout(t0 + ms(3500));
    let sent = frames(&output(&mut server));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].opcode, PING);
    assert_eq!(server.poll_timeout(), Some(t0 + ms(4500)));
}

#[test]
fn an_incoming_ping_is_answered_with_a_pong_carrying_its_payload() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    server.handle_input(t0, &client_frame(FIN | PING, b"are you there"));
    let sent = frames(&output(&mut server));
    assert_eq!(
        sent,
        [Frame {
            fin: true,
            opcode: PONG,
            masked: false,
            payload: b"are you there".to_vec()
        }]
    );
    assert_eq!(server.poll_event(), None);
}

#[test]
fn heartbeat_timers_do_not_outlive_the_start_of_the_close() {
    // After close() the heartbeat no longer applies; the only timer left is the close
    // deadline, and poll_timeout must not keep naming a moment already handled.
    let config = PeerConfig {
        heartbeat_interval: secs(1),
        close_timeout: secs(5),
        ..PeerConfig::default()
    };
    let (mut client, t0) = open_client(&config);
    client.close(t0 + ms(500), 1000, "").unwrap();
    output(&mut client);
    client.handle_timeout(t0 + secs(1));
    assert!(!client.has_output(), "no ping while closing");
    let next = client.poll_timeout().expect("the close deadline");
    assert!(
        next > t0 + secs(1),
        "poll_timeout {:?} after handle_timeout at +1s: a driver would spin until the close \
         deadline",
        next - t0
    );
    assert_eq!(next, t0 + ms(5500));
}

// ----- statistics -----

/// Hands everything `from` wants to send to `to` as read at `at`; returns the bytes.
fn deliver(from: &mut Connection, to: &mut Connection, at: Instant) -> Vec<u8> {
    let bytes = output(from);
    to.handle_input(at, &bytes);
    bytes
}

#[test]
fn rtt_is_the_time_from_queueing_a_ping_to_reading_its_pong() {
    let mut pair = Pair::connected(PeerConfig::default(), heartbeat(secs(1)));
    assert_eq!(pair.server.stats().rtt, None, "no ping yet");
    // The ping reaches the client 30 ms after it was queued; the pong is read 50 ms later.
    let t1 = pair.now + secs(1);
    pair.server.handle_timeout(t1);
    deliver(&mut pair.server, &mut pair.client, t1 + ms(30));
    deliver(&mut pair.client, &mut pair.server, t1 + ms(80));
    let stats = pair.server.stats();
    assert_eq!(stats.rtt, Some(ms(80)));
    assert_eq!(
        stats.smoothed_rtt,
        Some(ms(80)),
        "SRTT starts at the first sample"
    );
    assert_eq!(
        stats.rtt_variation,
        Some(ms(40)),
        "RTTVAR starts at half of it"
    );
    assert_eq!(stats.rtt_samples, 1);
    // The client answered but sent no ping of its own: it measured nothing.
    assert_eq!(pair.client.stats().rtt, None);
    assert_eq!(pair.client.stats().smoothed_rtt, None);
    // A second round, 40 ms: RTTVAR = 3/4 × 40 + 1/4 × |80 − 40| = 40;
    // SRTT = 7/8 × 80 + 1/8 × 40 = 75.
    let t2 = t1 + secs(1);
    pair.server.handle_timeout(t2);
    deliver(&mut pair.server, &mut pair.client, t2 + ms(5));
    deliver(&mut pair.client, &mut pair.server, t2 + ms(40));
    let stats = pair.server.stats();
    assert_eq!(stats.rtt, Some(ms(40)));
    assert_eq!(stats.smoothed_rtt, Some(ms(75)));
    assert_eq!(stats.rtt_variation, Some(ms(40)));
    assert_eq!(stats.rtt_samples, 2);
    assert_eq!(pair.server.get_ready_state(), State::Open);
}

#[test]
fn both_sides_measure_with_their_own_heartbeat() {
    let mut pair = Pair::connected(heartbeat(ms(500)), heartbeat(secs(1)));
    for _ in 0..4 {
        pair.advance(secs(1));
    }
    // The pair moves bytes without delay: every sample is zero, and there is one per ping.
    let (client, server) = (pair.client.stats(), pair.server.stats());
    assert_eq!(client.rtt, Some(Duration::ZERO));
    assert_eq!(server.smoothed_rtt, Some(Duration::ZERO));
    assert_eq!(
        client.rtt_samples, 4,
        "the client pings once per advance (late calls)"
    );
    assert_eq!(server.rtt_samples, 4);
    // Pings and pongs are bytes, not messages.
    assert_eq!((client.messages_sent, client.messages_received), (0, 0));
    assert_eq!((server.messages_sent, server.messages_received), (0, 0));
    assert_eq!(client.bytes_sent, pair.to_server.log.len() as u64);
    assert_eq!(server.bytes_sent, pair.to_client.log.len() as u64);
}

#[test]
fn an_unsolicited_or_stale_pong_gives_no_rtt_sample() {
    let (mut server, t0) = open_server(&heartbeat(secs(1)));
    // Before any ping: unsolicited pongs (RFC 6455 §5.5.3 allows them) are ignored.
    server.handle_input(t0 + ms(10), &client_frame(FIN | PONG, b""));
    server.handle_input(t0 + ms(20), &client_frame(FIN | PONG, &1u64.to_be_bytes()));
    assert_eq!(server.stats().rtt, None);
    assert_eq!(server.stats().rtt_samples, 0);
    // The heartbeat's ping, then one asked for: only the pong of the latest one counts.
    server.handle_timeout(t0 + secs(1));
    let first = frames(&output(&mut server))[0].payload.clone();
    server.send_ping(t0 + ms(1100)).unwrap();
    let second = frames(&output(&mut server));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].opcode, PING);
    let second = second[0].payload.clone();
    assert_ne!(first, second);
    server.handle_input(t0 + ms(1150), &client_frame(FIN | PONG, &first));
    server.handle_input(t0 + ms(1160), &client_frame(FIN | PONG, b"not ours"));
    assert_eq!(
        server.stats().rtt,
        None,
        "the first ping's pong came after the second ping"
    );
    server.handle_input(t0 + ms(1175), &client_frame(FIN | PONG, &second));
    assert_eq!(server.stats().rtt, Some(ms(75)));
    // The same pong again is no second sample.
    server.handle_input(t0 + ms(1900), &client_frame(FIN | PONG, &second));
    assert_eq!(server.stats().rtt, Some(ms(75)));
    assert_eq!(server.stats().rtt_samples, 1);
    // Any pong still answers the heartbeat: the connection lives on.
    server.handle_timeout(t0 + secs(2));
    assert_eq!(server.get_ready_state(), State::Open);
    assert!(events(&mut server).is_empty(), "pongs raise no event");
}

#[test]
fn a_ping_asked_for_is_not_a_heartbeat_and_needs_an_open_connection() {
    let (mut client, t0, accept) = lone_client(&PeerConfig::default());
    assert!(matches!(client.send_ping(t0), Err(Error::NotOpen)));
    client.handle_input(t0, answer_101(&accept, "").as_bytes());
    events(&mut client);
    // With the heartbeat off, a ping asked for is the only way to a sample.
    client.send_ping(t0 + ms(100)).unwrap();
    let ping = frames(&output(&mut client));
    assert_eq!(ping.len(), 1);
    assert!(ping[0].masked);
    assert_eq!(ping[0].payload.len(), 8);
    // Unanswered, it drops nothing and starts no timer.
    assert_eq!(client.poll_timeout(), None);
    client.handle_timeout(t0 + secs(3600));
    assert_eq!(client.get_ready_state(), State::Open);
    client.handle_input(t0 + secs(3600), &server_frame(FIN | PONG, &ping[0].payload));
    assert_eq!(client.stats().rtt, Some(secs(3600) - ms(100)));
    client.close(t0 + secs(3601), 1000, "").unwrap();
    assert!(matches!(
        client.send_ping(t0 + secs(3601)),
        Err(Error::NotOpen)
    ));
}

#[test]
fn message_and_byte_counters_are_exact() {
    let big = PeerConfig {
        inbound_buffer_size: 1 << 20,
        outbound_buffer_size: 1 << 20,
        ..PeerConfig::default()
    };
    let mut pair = Pair::connected(big.clone(), big);
    let request = pair.to_server.log.len() as u64;
    let answer = pair.to_client.log.len() as u64;
    // The upgrade is the first traffic: bytes, but no messages.
    let (client, server) = (pair.client.stats(), pair.server.stats());
    assert_eq!(
        (client.bytes_sent, client.bytes_received),
        (request, answer)
    );
    assert_eq!(
        (server.bytes_sent, server.bytes_received),
        (answer, request)
    );
    assert_eq!(client.messages_sent + client.messages_received, 0);

    // Client frames are masked: 2 + 4 bytes of header for 5 bytes, 2 + 2 + 4 for 300.
    pair.client.send_text("hello").unwrap();
    pair.client.send(&[7; 300], WriteMode::Binary).unwrap();
    // Server frames are not: 2 + 2 bytes of header for 200 bytes, 2 + 8 for 70 000.
    pair.server.send(&[1; 200], WriteMode::Binary).unwrap();
    pair.server
        .send(&vec![2; 70_000], WriteMode::Binary)
        .unwrap();
    // Counted when queued; the wire counts when the bytes are handed out.
    assert_eq!(pair.client.stats().messages_sent, 2);
    assert_eq!(pair.client.stats().bytes_sent, request);
    pair.drive();
    let client_wire = (2 + 4 + 5) + (2 + 2 + 4 + 300);
    let server_wire = (2 + 2 + 200) + (2 + 8 + 70_000);
    let (client, server) = (pair.client.stats(), pair.server.stats());
    assert_eq!(client.messages_sent, 2);
    assert_eq!(client.payload_bytes_sent, 305);
    assert_eq!(client.bytes_sent, request + client_wire);
    assert_eq!(client.messages_received, 2);
    assert_eq!(client.payload_bytes_received, 70_200);
    assert_eq!(client.bytes_received, answer + server_wire);
    assert_eq!(server.messages_sent, 2);
    assert_eq!(server.payload_bytes_sent, 70_200);
    assert_eq!(server.bytes_sent, answer + server_wire);
    assert_eq!(server.messages_received, 2);
    assert_eq!(server.payload_bytes_received, 305);
    assert_eq!(server.bytes_received, request + client_wire);
    // A refused send counts nothing.
    pair.client.close(pair.now, 1000, "").unwrap();
    assert!(pair.client.send_text("late").is_err());
    pair.drive();
    assert_eq!(pair.client.get_ready_state(), State::Closed);
    // The close frames count as bytes (2 + 4 + 2 and 2 + 2 for code 1000), and the
    // figures stay readable after the close.
    let (client, server) = (pair.client.stats(), pair.server.stats());
    assert_eq!(client.messages_sent, 2);
    assert_eq!(client.bytes_sent, request + client_wire + 8);
    assert_eq!(client.bytes_received, answer + server_wire + 4);
    assert_eq!(server.bytes_received, client.bytes_sent);
    assert_eq!(server.bytes_sent, client.bytes_received);
}

#[test]
fn a_fragmented_message_counts_once_with_its_whole_payload() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    let mut input = client_frame(TEXT, b"ab");
    input.extend(client_frame(FIN | PING, b"?"));
    input.extend(client_frame(FIN | CONT, b"cde"));
    server.handle_input(t0, &input);
    let stats = server.stats();
    assert_eq!(stats.messages_received, 1);
    assert_eq!(stats.payload_bytes_received, 5);
    assert_eq!(
        stats.bytes_received,
        (REQUEST.len() + (6 + 2) + (6 + 1) + (6 + 3)) as u64
    );
    // The pong went out: bytes, not a message.
    output(&mut server);
    let sent = server.stats();
    assert_eq!(sent.messages_sent, 0);
    assert_eq!(sent.payload_bytes_sent, 0);
}

// ----- back-pressure and queue limits -----

#[test]
fn the_receive_queue_stops_at_max_queued_packets_and_loses_nothing() {
    let config = PeerConfig {
        max_queued_packets: 3,
        ..PeerConfig::default()
    };
    let (mut server, t0) = open_server(&config);
    let mut input = Vec::new();
    for i in 0..5u8 {
        input.extend(client_frame(FIN | BINARY, &[i; 4]));
    }
    server.handle_input(t0, &input);
    assert_eq!(server.get_available_packet_count(), 3);
    assert!(!server.wants_input());
    assert_eq!(events(&mut server), [Event::Received { messages: 3 }]);
    // Nothing more arrives without room, even on a timer call.
    server.handle_timeout(t0);
    assert_eq!(server.get_available_packet_count(), 3);
    assert_eq!(server.recv().unwrap().data(), [0; 4]);
    // The rest waits inside; a timer call (or more input) reads on.
    server.handle_timeout(t0);
    assert_eq!(server.get_available_packet_count(), 3);
    assert_eq!(events(&mut server), [Event::Received { messages: 1 }]);
    let rest: Vec<Vec<u8>> = packets(&mut server)
        .into_iter()
        .map(Packet::into_vec)
        .collect();
    assert_eq!(rest, [[1; 4], [2; 4], [3; 4]]);
    server.handle_timeout(t0);
    assert_eq!(server.recv().unwrap().data(), [4; 4]);
    assert_eq!(server.recv(), None);
    assert!(server.wants_input());
}

#[test]
fn a_full_receive_queue_holds_the_stream_back_in_a_pair() {
    let config = PeerConfig {
        max_queued_packets: 4,
        ..PeerConfig::default()
    };
    let mut pair = Pair::connected(PeerConfig::default(), config);
    for i in 0..50u32 {
        pair.client.send_text(&i.to_string()).unwrap();
    }
    pair.drive();
    assert_eq!(pair.server.get_available_packet_count(), 4);
    assert!(!pair.server.wants_input());
    let mut got = Vec::new();
    while got.len() < 50 {
        let p = pair.server.recv().expect("more after making room");
        got.push(p.as_text().unwrap().parse::<u32>().unwrap());
        pair.drive();
        assert!(pair.server.get_available_packet_count() <= 4);
    }
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn inbound_buffer_size_pauses_reading_until_packets_are_read() {
    let config = PeerConfig {
        inbound_buffer_size: 100,
        ..PeerConfig::default()
    };
    let (mut server, t0) = open_server(&config);
    let mut input = Vec::new();
    for i in 0..3u8 {
        input.extend(client_frame(FIN | BINARY, &[i; 60]));
    }
    server.handle_input(t0, &input);
    // 60 bytes leave room, 120 do not.
    assert_eq!(server.get_available_packet_count(), 2);
    assert!(!server.wants_input());
    assert_eq!(server.recv().unwrap().data(), [0; 60]);
    server.handle_timeout(t0);
    assert_eq!(server.get_available_packet_count(), 2);
    assert_eq!(server.recv().unwrap().data(), [1; 60]);
    assert_eq!(server.recv().unwrap().data(), [2; 60]);
    assert!(server.wants_input());
    assert_eq!(server.get_ready_state(), State::Open);
}

#[test]
fn unsent_replies_over_outbound_buffer_size_pause_reading() {
    let config = PeerConfig {
        outbound_buffer_size: 100,
        ..PeerConfig::default()
    };
    let (mut server, t0) = open_server(&config);
    let mut input = Vec::new();
    for i in 0..20u8 {
        input.extend(client_frame(FIN | PING, &[i; 10]));
    }
    server.handle_input(t0, &input);
    assert!(!server.wants_input());
    assert!(server.get_current_outbound_buffered_amount() > 100);
    let mut pongs = Vec::new();
    for _ in 0..20 {
        pongs.extend(frames(&output(&mut server)));
        server.handle_timeout(t0);
        if pongs.len() == 20 {
            break;
        }
    }
    let payloads: Vec<u8> = pongs
        .iter()
        .inspect(|f| assert_eq!(f.opcode, PONG))
        .map(|f| f.payload[0])
        .collect();
    assert_eq!(payloads, (0..20).collect::<Vec<u8>>());
    assert!(server.wants_input());
}

#[test]
fn outbound_buffer_size_refuses_sends_until_bytes_are_transmitted() {
    let config = PeerConfig {
        outbound_buffer_size: 100,
        ..PeerConfig::default()
    };
    let (mut server, _) = open_server(&config);
    server.send(&[1; 60], WriteMode::Binary).unwrap();
    assert_eq!(server.get_current_outbound_buffered_amount(), 62);
    match server.send(&[2; 40], WriteMode::Binary) {
        Err(Error::OutboundBufferFull {
            buffered,
            message,
            limit,
        }) => assert_eq!((buffered, message, limit), (62, 40, 100)),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.get_current_outbound_buffered_amount(), 62);
    // Exactly up to the limit is fine.
    server.send(&[3; 38], WriteMode::Binary).unwrap();
    assert_eq!(server.get_current_outbound_buffered_amount(), 102);
    match server.send(&[4; 101], WriteMode::Binary) {
        Err(Error::MessageTooLarge { size, limit }) => assert_eq!((size, limit), (101, 100)),
        other => panic!("{other:?}"),
    }
    let sent = frames(&output(&mut server));
    assert_eq!(
        sent.iter().map(|f| f.payload.clone()).collect::<Vec<_>>(),
        [vec![1; 60], vec![3; 38]]
    );
    assert_eq!(server.get_current_outbound_buffered_amount(), 0);
    server.send(&[5; 100], WriteMode::Binary).unwrap();
}

#[test]
fn partially_transmitted_bytes_still_count_against_outbound_buffer_size() {
    let config = PeerConfig {
        outbound_buffer_size: 100,
        ..PeerConfig::default()
    };
    let (mut server, _) = open_server(&config);
    server.send(&[1; 80], WriteMode::Binary).unwrap();
    server.transmitted(50);
    assert_eq!(server.get_current_outbound_buffered_amount(), 32);
    assert!(matches!(
        server.send(&[2; 69], WriteMode::Binary),
        Err(Error::OutboundBufferFull {
            buffered: 32,
            message: 69,
            limit: 100
        })
    ));
    server.send(&[2; 68], WriteMode::Binary).unwrap();
}

#[test]
fn outbound_buffer_size_zero_disables_the_byte_check() {
    let config = PeerConfig {
        outbound_buffer_size: 0,
        ..PeerConfig::default()
    };
    let (mut server, _) = open_server(&config);
    server.send(&vec![0; 200_000], WriteMode::Binary).unwrap();
    server.send(&vec![0; 200_000], WriteMode::Binary).unwrap();
    assert_eq!(
        server.get_current_outbound_buffered_amount(),
        2 * (10 + 200_000)
    );
}

#[test]
fn max_queued_packets_refuses_sends_until_a_whole_message_is_transmitted() {
    let config = PeerConfig {
        max_queued_packets: 2,
        ..PeerConfig::default()
    };
    let (mut client, _) = open_client(&config);
    client.send_text("a").unwrap();
    client.send_text("b").unwrap();
    assert!(matches!(
        client.send_text("c"),
        Err(Error::OutboundQueueFull { limit: 2 })
    ));
    // Each masked frame of one byte is 2 + 4 + 1 bytes; half a message frees nothing.
    assert_eq!(client.get_current_outbound_buffered_amount(), 14);
    client.transmitted(6);
    assert!(matches!(
        client.send_text("c"),
        Err(Error::OutboundQueueFull { limit: 2 })
    ));
    client.transmitted(1);
    client.send_text("c").unwrap();
    assert!(matches!(
        client.send_text("d"),
        Err(Error::OutboundQueueFull { limit: 2 })
    ));
    let texts: Vec<Vec<u8>> = frames(&output(&mut client))
        .into_iter()
        .map(|f| f.payload)
        .collect();
    assert_eq!(texts, [b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn the_outbound_buffered_amount_counts_frame_headers() {
    let config = PeerConfig {
        outbound_buffer_size: 0,
        ..PeerConfig::default()
    };
    let (mut server, _) = open_server(&config);
    server.send(&[0; 10], WriteMode::Binary).unwrap();
    assert_eq!(server.get_current_outbound_buffered_amount(), 2 + 10);
    server.send(&[0; 126], WriteMode::Binary).unwrap();
    assert_eq!(server.get_current_outbound_buffered_amount(), 12 + 4 + 126);
    server.send(&vec![0; 65_536], WriteMode::Binary).unwrap();
    assert_eq!(
        server.get_current_outbound_buffered_amount(),
        142 + 10 + 65_536
    );
    let (mut client, _) = open_client(&config);
    client.send(&[0; 10], WriteMode::Binary).unwrap();
    assert_eq!(client.get_current_outbound_buffered_amount(), 2 + 4 + 10);
    client.send_text(&"x".repeat(200)).unwrap();
    assert_eq!(
        client.get_current_outbound_buffered_amount(),
        16 + 4 + 4 + 200
    );
    client.transmitted(5);
    assert_eq!(client.get_current_outbound_buffered_amount(), 219);
}

#[test]
fn received_events_count_many_messages_in_one_event() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    let mut input = Vec::new();
    for i in 0..10u8 {
        input.extend(client_frame(FIN | BINARY, &[i]));
    }
    server.handle_input(t0, &input);
    // A later arrival before the event was taken joins it.
    server.handle_input(t0, &client_frame(FIN | TEXT, b"eleven"));
    assert_eq!(events(&mut server), [Event::Received { messages: 11 }]);
    assert_eq!(server.get_available_packet_count(), 11);
    server.handle_input(t0, &client_frame(FIN | TEXT, b"twelve"));
    assert_eq!(events(&mut server), [Event::Received { messages: 1 }]);
}

// ----- fragmentation -----

#[test]
fn a_fragmented_text_message_is_reassembled() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    server.handle_input(t0, &client_frame(TEXT, b"Hel"));
    server.handle_input(t0, &client_frame(CONT, b"lo, "));
    assert_eq!(server.get_available_packet_count(), 0);
    server.handle_input(t0, &client_frame(FIN | CONT, b"world"));
    assert_eq!(events(&mut server), [Event::Received { messages: 1 }]);
    let packet = server.recv().unwrap();
    assert!(packet.is_text());
    assert_eq!(packet.as_text(), Some("Hello, world"));
}

#[test]
fn a_fragmented_binary_message_from_the_server_is_reassembled() {
    let (mut client, t0) = open_client(&PeerConfig::default());
    let mut input = server_frame(BINARY, &[1, 2]);
    input.extend(server_frame(CONT, &[]));
    input.extend(server_frame(FIN | CONT, &[3]));
    client.handle_input(t0, &input);
    assert_eq!(client.recv(), Some(Packet::new(vec![1, 2, 3], false)));
}

#[test]
fn a_ping_between_fragments_is_answered_before_the_message_completes() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    let mut input = client_frame(TEXT, b"part one, ");
    input.extend(client_frame(FIN | PING, b"mid"));
    server.handle_input(t0, &input);
    assert_eq!(server.get_available_packet_count(), 0);
    let sent = frames(&output(&mut server));
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].opcode, sent[0].payload.as_slice()),
        (PONG, &b"mid"[..])
    );
    server.handle_input(t0, &client_frame(FIN | CONT, b"part two"));
    assert_eq!(server.recv().unwrap().as_text(), Some("part one, part two"));
}

#[test]
fn a_message_of_exactly_inbound_buffer_size_is_accepted() {
    let config = PeerConfig {
        inbound_buffer_size: 1000,
        ..PeerConfig::default()
    };
    let mut pair = Pair::connected(PeerConfig::default(), config);
    let payload: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
    pair.client.send(&payload, WriteMode::Binary).unwrap();
    pair.drive();
    assert_eq!(pair.server.get_ready_state(), State::Open);
    assert_eq!(pair.server.recv().unwrap().into_vec(), payload);
}

#[test]
fn fragments_adding_up_to_one_byte_over_inbound_buffer_size_fail_with_1009() {
    let config = PeerConfig {
        inbound_buffer_size: 1000,
        ..PeerConfig::default()
    };
    let (mut server, t0) = lone_server(&config);
    server.handle_input(t0, REQUEST.as_bytes());
    output(&mut server);
    events(&mut server);
    // Two fragments of exactly the limit in total are fine...
    let mut input = client_frame(BINARY, &[1; 600]);
    input.extend(client_frame(FIN | CONT, &[2; 400]));
    server.handle_input(t0, &input);
    assert_eq!(server.recv().unwrap().data().len(), 1000);
    assert_eq!(events(&mut server), [Event::Received { messages: 1 }]);
    // ...one byte more is not.
    let mut input = client_frame(BINARY, &[1; 600]);
    input.extend(client_frame(FIN | CONT, &[2; 401]));
    server.handle_input(t0, &input);
    assert_failed_with(&mut server, 1009, "Message too big");
}

#[test]
fn text_split_inside_a_utf8_sequence_across_fragments_is_accepted() {
    let (mut server, t0) = open_server(&PeerConfig::default());
    let text = "naïve €";
    let bytes = text.as_bytes();
    // Split inside "ï" (2 bytes) and inside "€" (3 bytes).
    let i = text.find('ï').unwrap() + 1;
    let e = text.find('€').unwrap() + 2;
    let mut input = client_frame(TEXT, &bytes[..i]);
    input.extend(client_frame(CONT, &bytes[i..e]));
    input.extend(client_frame(FIN | CONT, &bytes[e..]));
    server.handle_input(t0, &input);
    assert_eq!(server.get_ready_state(), State::Open);
    assert_eq!(server.recv().unwrap().as_text(), Some(text));
}

#[test]
fn invalid_utf8_across_fragments_fails_with_1007() {
    let mut input = client_frame(TEXT, "ok".as_bytes());
    input.extend(client_frame(FIN | CONT, &[0xc3, 0x28]));
    assert_server_fails(&input, 1007, "Invalid frame payload data");
}

// ----- sending -----

#[test]
fn text_and_binary_go_out_with_their_opcodes() {
    let mut pair = Pair::open();
    pair.server.send_text("hi").unwrap();
    pair.server.send(b"hi", WriteMode::Text).unwrap();
    pair.server.send(b"hi", WriteMode::Binary).unwrap();
    pair.server
        .send_packet(&Packet::new(&b"hi"[..], true))
        .unwrap();
    pair.drive();
    let opcodes: Vec<u8> = pair.server_frames().iter().map(|f| f.opcode).collect();
    assert_eq!(opcodes, [TEXT, TEXT, BINARY, TEXT]);
    let kinds: Vec<(bool, Option<String>)> = packets(&mut pair.client)
        .iter()
        .map(|p| (p.is_text(), p.as_text().map(str::to_string)))
        .collect();
    assert_eq!(
        kinds,
        [
            (true, Some("hi".into())),
            (true, Some("hi".into())),
            (false, None),
            (true, Some("hi".into()))
        ]
    );
}

#[test]
fn server_frames_are_unmasked_and_client_frames_masked() {
    let mut pair = Pair::open();
    pair.server.send_text("down").unwrap();
    pair.client.send_text("up").unwrap();
    pair.client.send(&[1, 2, 3], WriteMode::Binary).unwrap();
    pair.drive();
    let server_sent = pair.server_frames();
    let client_sent = pair.client_frames();
    assert_eq!(server_sent.len(), 1);
    assert_eq!(client_sent.len(), 2);
    assert!(server_sent.iter().all(|f| !f.masked && f.fin));
    assert!(client_sent.iter().all(|f| f.masked && f.fin));
    // The mask bit on the wire, and the payload not sent in the clear.
    let after = after_head(&pair.to_server.log);
    assert_eq!(after[1] & 0x80, 0x80);
    assert_eq!(after_head(&pair.to_client.log)[1] & 0x80, 0);
    assert_eq!(pair.server.recv().unwrap().as_text(), Some("up"));
    assert_eq!(pair.server.recv().unwrap().data(), [1, 2, 3]);
    assert_eq!(pair.client.recv().unwrap().as_text(), Some("down"));
}

#[test]
fn a_large_shared_packet_arrives_intact_both_ways() {
    let big = PeerConfig {
        inbound_buffer_size: 300_000,
        outbound_buffer_size: 300_000,
        ..PeerConfig::default()
    };
    let mut pair = Pair::connected(big.clone(), big);
    let payload: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let packet = Packet::new(payload.clone(), false);
    pair.server.send_packet(&packet).unwrap();
    assert_eq!(
        pair.server.get_current_outbound_buffered_amount(),
        10 + payload.len()
    );
    pair.client.send_packet(&packet).unwrap();
    pair.drive();
    assert_eq!(pair.client.recv(), Some(packet.clone()));
    assert_eq!(pair.server.recv(), Some(packet));
}

#[test]
fn a_received_packet_can_be_sent_on_as_it_is() {
    let mut pair = Pair::open();
    pair.client.send_text("relay me").unwrap();
    pair.drive();
    let packet = pair.server.recv().unwrap();
    pair.server.send_packet(&packet).unwrap();
    pair.drive();
    assert_eq!(
        pair.client.recv(),
        Some(Packet::new(&b"relay me"[..], true))
    );
}

#[test]
fn text_that_is_not_utf8_is_refused_before_anything_is_queued() {
    let (mut server, _) = open_server(&PeerConfig::default());
    assert!(matches!(
        server.send_packet(&Packet::new(vec![0x66, 0xff], true)),
        Err(Error::InvalidUtf8)
    ));
    assert!(matches!(
        server.send(&[0xc3], WriteMode::Text),
        Err(Error::InvalidUtf8)
    ));
    assert_eq!(server.get_current_outbound_buffered_amount(), 0);
    // The same bytes as binary are fine.
    server
        .send_packet(&Packet::new(vec![0x66, 0xff], false))
        .unwrap();
    let (mut client, _) = open_client(&PeerConfig::default());
    assert!(matches!(
        client.send_packet(&Packet::new(vec![0xff], true)),
        Err(Error::InvalidUtf8)
    ));
    assert!(!client.has_output());
}

#[test]
fn a_100_kb_message_delivered_one_byte_at_a_time_arrives_once_and_intact() {
    let big = PeerConfig {
        inbound_buffer_size: 200_000,
        outbound_buffer_size: 200_000,
        ..PeerConfig::default()
    };
    let (mut client, t0) = open_client(&big);
    let (mut server, _) = open_server(&big);
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    client.send(&payload, WriteMode::Binary).unwrap();
    let wire = output(&mut client);
    let (last, head) = wire.split_last().unwrap();
    for byte in head {
        server.handle_input(t0, std::slice::from_ref(byte));
    }
    assert_eq!(server.poll_event(), None);
    server.handle_input(t0, &[*last]);
    assert_eq!(events(&mut server), [Event::Received { messages: 1 }]);
    assert_eq!(server.recv().unwrap().into_vec(), payload);
}

#[test]
fn empty_messages_are_sent_and_received() {
    let mut pair = Pair::open();
    pair.client.send_text("").unwrap();
    pair.server.send(&[], WriteMode::Binary).unwrap();
    pair.drive();
    assert_eq!(pair.server.recv(), Some(Packet::new(Vec::new(), true)));
    assert_eq!(pair.client.recv(), Some(Packet::new(Vec::new(), false)));
    assert_eq!(pair.client.recv(), None);
}

#[test]
fn transmit_hands_out_slices_in_order_and_transmitted_consumes_them() {
    let (mut server, _) = open_server(&PeerConfig::default());
    server.send_text("abc").unwrap();
    // Large enough to be queued by reference: a slice of its own.
    server.send(&[5; 4096], WriteMode::Binary).unwrap();
    server.send_text("z").unwrap();
    let mut all = Vec::new();
    while server.has_output() {
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let used = server.transmit(&mut slices);
        assert!(used >= 1);
        let bytes: Vec<u8> = slices[..used]
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        assert_eq!(server.transmit_front(), &slices[0][..]);
        // A short write: at most 1000 bytes at a time.
        let n = bytes.len().min(1000);
        all.extend_from_slice(&bytes[..n]);
        server.transmitted(n);
    }
    assert!(server.transmit_front().is_empty());
    let sent = frames(&all);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].payload, b"abc");
    assert_eq!(sent[1].payload, vec![5; 4096]);
    assert_eq!(sent[2].payload, b"z");
}

#[test]
fn eof_behind_a_full_receive_queue_is_seen_once_the_packets_are_read() {
    let config = PeerConfig {
        max_queued_packets: 1,
        ..PeerConfig::default()
    };
    let (mut server, t0) = open_server(&config);
    let mut input = client_frame(FIN | TEXT, b"one");
    input.extend(client_frame(FIN | TEXT, b"two"));
    server.handle_input(t0, &input);
    server.handle_eof(t0);
    // The packets come first: still open while one waits unread.
    assert_eq!(server.get_ready_state(), State::Open);
    assert_eq!(server.recv().unwrap().as_text(), Some("one"));
    server.handle_timeout(t0);
    assert_eq!(server.recv().unwrap().as_text(), Some("two"));
    server.handle_timeout(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert!(matches!(server.error(), Some(Error::ConnectionLost(_))));
    assert_eq!(
        events(&mut server),
        // Both arrivals in one event: it was not taken in between.
        [Event::Received { messages: 2 }, closed(-1, "", false)]
    );
}

#[test]
fn a_failed_side_that_never_hears_back_ends_at_the_close_timeout_with_its_code() {
    let mut server = assert_server_fails(
        &client_frame(FIN | RSV1 | BINARY, b""),
        1002,
        "Protocol error",
    );
    let t0 = crate::test_epoch();
    server.handle_shutdown(t0);
    let deadline = server.poll_timeout().expect("the drain deadline");
    server.handle_timeout(deadline - TICK);
    assert_eq!(server.get_ready_state(), State::Closing);
    server.handle_timeout(deadline);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(server.get_close_code(), 1002);
    assert!(matches!(
        server.error(),
        Some(Error::Protocol { code: 1002, .. })
    ));
    assert_eq!(events(&mut server), [closed(1002, "Protocol error", true)]);
}

#[test]
fn no_heartbeat_ping_before_the_upgrade_finished() {
    let (mut client, t0, _) = lone_client(&heartbeat(ms(100)));
    assert_eq!(client.poll_timeout(), Some(t0 + CONNECT));
    client.handle_timeout(t0 + secs(1));
    assert!(!client.has_output());
    assert_eq!(client.get_ready_state(), State::Connecting);
}

#[test]
fn a_large_message_can_be_read_straight_into_its_buffer() {
    let config = PeerConfig {
        inbound_buffer_size: 1 << 20,
        max_queued_packets: 1,
        ..PeerConfig::default()
    };
    let (mut server, t0) = open_server(&config);
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 249) as u8).collect();
    let wire = client_frame(FIN | BINARY, &payload);
    assert!(server.input_space().is_none(), "nothing started yet");
    server.handle_input(t0, &wire[..1000]);
    let mut sent = 1000;
    while let Some(space) = server.input_space() {
        // The rest of this frame, and never more.
        assert_eq!(space.len(), wire.len() - sent);
        let n = space.len().min(70_000);
        space[..n].copy_from_slice(&wire[sent..sent + n]);
        sent += n;
        server.handle_input_in_place(t0, n);
    }
    assert_eq!(sent, wire.len());
    assert_eq!(events(&mut server), [Event::Received { messages: 1 }]);
    let stats = server.stats();
    assert_eq!(
        stats.bytes_received,
        (REQUEST.len() + wire.len()) as u64,
        "bytes read in place count as received"
    );
    assert_eq!(stats.payload_bytes_received, payload.len() as u64);
    assert_eq!(stats.messages_received, 1);
    // The queue (one packet) is full: no space is offered until the packet is read.
    server.handle_input(t0, &client_frame(FIN | BINARY, &payload)[..1000]);
    assert!(server.input_space().is_none());
    assert_eq!(server.recv().unwrap().data(), &payload[..]);
    server.handle_timeout(t0);
    assert!(server.input_space().is_some());
    assert_eq!(server.get_ready_state(), State::Open);
}

#[test]
fn idle_connections_keep_no_send_buffer_until_a_heartbeat_which_then_allocates_nothing() {
    let (mut server, t0) = open_server(&heartbeat(secs(30)));
    assert!(
        !server.holds_send_buffers(),
        "the 101 answer's buffer is let go"
    );
    server.handle_timeout(t0 + secs(30));
    let ping = output(&mut server);
    assert_eq!(frames(&ping).len(), 1, "one ping");
    // Kept from the first ping on, so each later ping reuses the same buffers.
    assert!(server.holds_send_buffers());
    let pong = client_frame(FIN | PONG, &frames(&ping)[0].payload);
    server.handle_input(t0 + secs(31), &pong);
    assert_eq!(server.stats().rtt, Some(secs(1)), "the pong was timed");
    server.handle_timeout(t0 + secs(60));
    assert_eq!(frames(&output(&mut server)).len(), 1, "the next ping");
    assert!(server.holds_send_buffers());
    assert_eq!(server.get_ready_state(), State::Open);
}

// ----- handshake: the application decides (`Connection::server_deciding`) -----

/// A deciding server that took `request`; returns the request its event carried.
fn deciding_server(config: &PeerConfig, request: &str) -> (Connection, Instant) {
    let t0 = crate::test_epoch();
    let mut server = Connection::server_deciding(config, t0 + CONNECT).expect("valid config");
    server.handle_input(t0, request.as_bytes());
    (server, t0)
}

const OFFERING: &str = "GET /play?token=s3cret HTTP/1.1\r\nHost: example.com\r\n\
    Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\nOrigin: https://game.example\r\n\
    Sec-WebSocket-Protocol: a, b\r\n\r\n";

#[test]
fn deciding_server_reports_the_request_and_answers_nothing_yet() {
    let (mut server, _) = deciding_server(&protocols(&["a"]), OFFERING);
    assert_eq!(server.get_ready_state(), State::Connecting);
    assert!(server.is_awaiting_decision());
    assert!(
        output(&mut server).is_empty(),
        "no answer before the decision"
    );
    let events = events(&mut server);
    let [Event::UpgradeRequested { request }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(request.path, "/play");
    assert_eq!(request.query.as_deref(), Some("token=s3cret"));
    assert_eq!(request.header("origin"), Some("https://game.example"));
    assert_eq!(request.offered_protocols(), ["a", "b"]);
    assert_eq!(server.handshake_request(), Some(request));
    assert!(matches!(server.send_text("early"), Err(Error::NotOpen)));
}

#[test]
fn deciding_server_accepts_with_the_chosen_protocol_and_extra_headers() {
    let (mut server, t0) = deciding_server(&protocols(&["a"]), OFFERING);
    let _ = events(&mut server);
    server
        .accept_upgrade(
            t0 + ms(50),
            Some("b"),
            &["X-Session: 42", "Set-Cookie: s=1"],
        )
        .unwrap();
    assert_eq!(server.get_ready_state(), State::Open);
    assert_eq!(server.get_selected_protocol(), "b");
    assert_eq!(events(&mut server), [opened("b")]);
    let answer = String::from_utf8(output(&mut server)).unwrap();
    assert_eq!(
        answer,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: b\r\n\
         X-Session: 42\r\nSet-Cookie: s=1\r\n\r\n"
    );
    assert!(!server.is_awaiting_decision());
    assert!(matches!(
        server.accept_upgrade(t0, None, &[]),
        Err(Error::NoUpgradePending)
    ));
    server.send_text("hi").unwrap();
}

#[test]
fn deciding_server_accept_without_a_protocol_takes_the_servers_choice() {
    let (mut server, t0) = deciding_server(&protocols(&["b"]), OFFERING);
    server.accept_upgrade(t0, None, &[]).unwrap();
    let events = events(&mut server);
    assert_eq!(events.last(), Some(&opened("b")));
}

#[test]
fn deciding_server_refuses_a_protocol_the_client_did_not_offer() {
    let (mut server, t0) = deciding_server(&PeerConfig::default(), REQUEST);
    let _ = events(&mut server);
    assert!(matches!(
        server.accept_upgrade(t0, Some("chat"), &[]),
        Err(Error::InvalidProtocol(p)) if p == "chat"
    ));
    assert!(matches!(
        server.accept_upgrade(t0, None, &["no colon"]),
        Err(Error::InvalidHeader(_))
    ));
    // Nothing changed: the request still waits, and can be accepted.
    assert!(server.is_awaiting_decision());
    assert!(output(&mut server).is_empty());
    assert_eq!(events(&mut server), []);
    server.accept_upgrade(t0, None, &[]).unwrap();
    assert_eq!(events(&mut server), [opened("")]);
}

#[test]
fn deciding_server_rejects_with_exactly_the_given_answer_then_closes() {
    let (mut server, t0) = deciding_server(&protocols(&["a"]), OFFERING);
    let _ = events(&mut server);
    assert!(matches!(
        server.reject_upgrade(t0, 101, &[], b""),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        server.reject_upgrade(t0, 401, &["Content-Length: 3"], b""),
        Err(Error::InvalidHeader(_))
    ));
    server
        .reject_upgrade(
            t0,
            401,
            &["WWW-Authenticate: Bearer", "Content-Type: text/plain"],
            b"bad token\n",
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(output(&mut server)).unwrap(),
        "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nWWW-Authenticate: Bearer\r\n\
         Content-Type: text/plain\r\nContent-Length: 10\r\n\r\nbad token\n"
    );
    assert_eq!(server.get_ready_state(), State::Closing);
    assert!(
        matches!(server.error(), Some(Error::Handshake(m)) if m == "rejected by the application with HTTP 401")
    );
    assert!(matches!(
        server.accept_upgrade(t0, None, &[]),
        Err(Error::NoUpgradePending)
    ));
    assert!(server.wants_shutdown());
    server.handle_shutdown(t0);
    server.handle_eof(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
}

#[test]
fn deciding_server_times_out_when_never_decided() {
    let (mut server, t0) = deciding_server(&PeerConfig::default(), REQUEST);
    let _ = events(&mut server);
    assert_eq!(server.poll_timeout(), Some(t0 + CONNECT));
    server.handle_timeout(t0 + CONNECT - TICK);
    assert!(server.is_awaiting_decision());
    server.handle_timeout(t0 + CONNECT);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert!(matches!(server.error(), Some(Error::ConnectTimeout)));
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    assert!(output(&mut server).is_empty());
    assert!(matches!(
        server.accept_upgrade(t0 + CONNECT, None, &[]),
        Err(Error::NoUpgradePending)
    ));
}

#[test]
fn deciding_server_still_refuses_invalid_requests_by_itself() {
    let (mut server, _) = deciding_server(&PeerConfig::default(), &REQUEST.replace("GET", "PUT"));
    assert!(!server.is_awaiting_decision());
    let answer = String::from_utf8(output(&mut server)).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert_eq!(events(&mut server), []);
}

#[test]
fn deciding_server_keeps_early_frames_for_after_the_accept() {
    let mut input = REQUEST.as_bytes().to_vec();
    input.extend_from_slice(&client_frame(FIN | TEXT, b"first"));
    let (mut server, t0) = deciding_server(&PeerConfig::default(), "");
    server.handle_input(t0, &input[..REQUEST.len() + 3]);
    server.handle_input(t0, &input[REQUEST.len() + 3..]);
    assert!(server.is_awaiting_decision());
    assert_eq!(server.get_available_packet_count(), 0);
    server.accept_upgrade(t0, None, &[]).unwrap();
    let packets = packets(&mut server);
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].as_text(), Some("first"));
}

#[test]
fn deciding_server_ends_when_the_client_leaves_undecided() {
    let (mut server, t0) = deciding_server(&PeerConfig::default(), REQUEST);
    let _ = events(&mut server);
    assert!(
        server.wants_input(),
        "reading goes on, to see the client leave"
    );
    server.handle_eof(t0);
    assert_eq!(server.get_ready_state(), State::Closed);
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
}

// ----- health checks and draining (a server's `health_path` and `drain()`) -----

const HEALTH_GET: &str = "GET /healthz?from=lb HTTP/1.1\r\nHost: 10.0.0.5\r\n\r\n";

/// A lone server answering health checks on `/healthz`, draining when `retry_after` is set.
fn health_server(retry_after: Option<u64>) -> (Connection, Instant) {
    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.serve_health_checks(Some("/healthz".into()));
    server.set_draining(retry_after);
    (server, t0)
}

/// Feeds `request`; returns the whole answer, and checks the connection ends as a refused
/// one does (no `Opened`, no request kept, `Closed` with -1 at the client's EOF).
fn answer_to(mut server: Connection, t0: Instant, request: &str) -> String {
    server.handle_input(t0, request.as_bytes());
    assert_eq!(server.get_ready_state(), State::Closing);
    let answer = String::from_utf8(output(&mut server)).expect("an ASCII answer");
    assert!(server.handshake_request().is_none());
    assert!(server.wants_shutdown());
    server.handle_shutdown(t0);
    server.handle_eof(t0);
    assert_eq!(events(&mut server), [closed(-1, "", false)]);
    answer
}

#[test]
fn a_health_check_gets_200_ok_while_serving() {
    let (server, t0) = health_server(None);
    assert_eq!(
        answer_to(server, t0, HEALTH_GET),
        "HTTP/1.1 200 OK\r\nConnection: close\r\nCache-Control: no-store\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nok\n"
    );
    // HEAD: the same head, no body.
    let (server, t0) = health_server(None);
    let head = "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(
        answer_to(server, t0, head),
        "HTTP/1.1 200 OK\r\nConnection: close\r\nCache-Control: no-store\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\n"
    );
    // Cut in pieces, as a slow balancer may send it.
    let (mut server, t0) = health_server(None);
    for byte in HEALTH_GET.as_bytes() {
        server.handle_input(t0, &[*byte]);
    }
    assert!(output(&mut server).starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_health_check_gets_503_with_retry_after_while_draining() {
    let (server, t0) = health_server(Some(7));
    assert_eq!(
        answer_to(server, t0, HEALTH_GET),
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 7\r\n\
         Cache-Control: no-store\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 9\r\n\r\ndraining\n"
    );
}

#[test]
fn only_a_plain_get_or_head_of_the_exact_health_path_is_a_health_check() {
    // Another path, another method: refused as before.
    for request in [
        "GET /healthz/more HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ] {
        let (server, t0) = health_server(None);
        let answer = answer_to(server, t0, request);
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
    }
    // Without a health path, the balancer's GET is a bad upgrade (the issue's 400).
    let (server, t0) = lone_server(&PeerConfig::default());
    let answer = answer_to(server, t0, HEALTH_GET);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    // An upgrade of the health path is an upgrade.
    let (mut server, t0) = health_server(None);
    server.handle_input(t0, REQUEST.replace("/chat?room=1", "/healthz").as_bytes());
    assert_eq!(server.get_ready_state(), State::Open);
}

#[test]
fn a_draining_server_answers_upgrades_503_with_retry_after() {
    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.set_draining(Some(30));
    server.handle_input(t0, REQUEST.as_bytes());
    let answer = String::from_utf8(output(&mut server)).unwrap();
    assert!(
        answer.starts_with(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 30\r\n"
        ),
        "{answer}"
    );
    assert!(answer.ends_with("draining: connect again, the load balancer picks another one\n"));
    assert!(
        matches!(server.error(), Some(Error::Handshake(m)) if m.starts_with("refused with HTTP 503")),
        "{:?}",
        server.error()
    );
    assert!(events(&mut server).is_empty(), "never opened");
    // A bad request while draining is still told what is wrong with it.
    let (mut server, t0) = lone_server(&PeerConfig::default());
    server.set_draining(Some(30));
    server.handle_input(t0, b"GET / HTTP/1.0\r\n\r\n");
    assert!(output(&mut server).starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
}

#[test]
fn draining_leaves_a_request_awaiting_the_applications_decision_to_it() {
    let (mut server, t0) = deciding_server(&protocols(&["a"]), OFFERING);
    assert!(matches!(
        &events(&mut server)[..],
        [Event::UpgradeRequested { .. }]
    ));
    server.set_draining(Some(5));
    server.handle_input(t0, &[]);
    assert!(server.is_awaiting_decision());
    server.accept_upgrade(t0, None, &[]).unwrap();
    assert!(output(&mut server).starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert_eq!(server.get_ready_state(), State::Open);
    // A request completing while draining is refused before the application sees it.
    let t0 = crate::test_epoch();
    let mut server = Connection::server_deciding(&protocols(&["a"]), t0 + CONNECT).unwrap();
    server.set_draining(Some(5));
    server.handle_input(t0, OFFERING.as_bytes());
    assert!(output(&mut server).starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"));
    assert!(events(&mut server).is_empty());
}
