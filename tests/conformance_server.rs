//! RFC 6455 conformance of the wspeer *server*, in the categories of the Autobahn|Testsuite.
//!
//! Each test runs a wspeer `WebSocketServer` with an echo loop (text as text, binary as
//! binary) on its own thread, and talks to it over a plain `std::net::TcpStream`: the test
//! writes the HTTP upgrade and every frame by hand (masked, as a client must, unless the
//! case is about masking) and parses every byte the server sends back, asserting the
//! exact frames (which must be unmasked and use the minimal length encoding), the close
//! code and reason, and that the server then closes the TCP connection.
//!
//! When the server fails a connection, the close frame is checked against what the RFC
//! requires, not against wspeer's wording: the close code, an unmasked final control
//! frame of at most 125 bytes, and a reason that is valid UTF-8 of at most 123 bytes
//! (§5.5, §5.5.1, §7.4). Reasons the client sent are echoed exactly.

mod rawws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rawws::*;
use wspeer::{Error, PeerConfig, ServerConfig, ServerEvent, WebSocketServer, WriteMode};

// ----- the echo server under test -----

/// What the server saw of one connection, recorded when it disconnected.
#[derive(Clone, Debug, Default)]
struct PeerRecord {
    /// The client's TCP port (our raw connection's local port).
    port: u16,
    close_request: Option<(i32, String)>,
    close_code: i32,
    close_reason: String,
    /// The close code of an `Error::Protocol`, if the peer failed the connection.
    protocol_code: Option<u16>,
    last_error: Option<String>,
    was_clean: bool,
    echoed: usize,
    echo_errors: Vec<String>,
}

/// A wspeer server echoing every message, polled on its own thread until dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<PeerRecord>>>,
    handle: Option<JoinHandle<()>>,
}

/// The server thread never outlives this, even if a test forgets to stop it.
const SERVER_LIFETIME: Duration = Duration::from_secs(30);

impl Echo {
    fn start(config: ServerConfig) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (stop2, records2) = (stop.clone(), records.clone());
        let handle = std::thread::spawn(move || serve(config, tx, stop2, records2));
        let addr = rx
            .recv_timeout(READ_TIMEOUT)
            .expect("the echo server did not start");
        Echo {
            addr,
            stop,
            records,
            handle: Some(handle),
        }
    }

    fn with_peer(peer: PeerConfig) -> Echo {
        Echo::start(ServerConfig {
            peer,
            ..ServerConfig::default()
        })
    }

    /// Default settings (inbound and outbound limits 65535 bytes).
    fn default_limits() -> Echo {
        Echo::start(ServerConfig::default())
    }

    /// Limits raised to `bytes` in both directions.
    fn with_limit(bytes: usize) -> Echo {
        Echo::with_peer(PeerConfig {
            inbound_buffer_size: bytes,
            outbound_buffer_size: bytes,
            ..PeerConfig::default()
        })
    }

    fn connect(&self) -> RawConn {
        RawConn::connect(self.addr, "/")
    }

    /// The server's record of `conn`, waiting (bounded) for it to disconnect.
    fn record(&self, conn: &RawConn) -> PeerRecord {
        let port = conn.stream.local_addr().unwrap().port();
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            if let Some(r) = self.records.lock().unwrap().iter().find(|r| r.port == port) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the server never reported the disconnection of the client on port {port}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let result = handle.join();
            if result.is_err() && !std::thread::panicking() {
                panic!("the echo server thread panicked");
            }
        }
    }
}

fn serve(
    config: ServerConfig,
    tx: mpsc::Sender<SocketAddr>,
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<PeerRecord>>>,
) {
    let mut server = WebSocketServer::with_config(config);
    server.listen_on("127.0.0.1", 0).expect("listen");
    tx.send(server.local_addr().unwrap()).unwrap();
    let start = Instant::now();
    let mut live: HashMap<i32, PeerRecord> = HashMap::new();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < SERVER_LIFETIME {
        server.poll_with_timeout(Duration::from_millis(2));
        while let Some(event) = server.pop_event() {
            match event {
                ServerEvent::ClientConnected { id, .. } => {
                    let port = server.get_peer_port(id).unwrap_or(0);
                    live.insert(
                        id,
                        PeerRecord {
                            port,
                            ..PeerRecord::default()
                        },
                    );
                }
                ServerEvent::DataReceived { id } => {
                    let record = live.entry(id).or_default();
                    let Some(peer) = server.get_peer(id) else {
                        continue;
                    };
                    let Some(packet) = peer.recv() else {
                        continue;
                    };
                    let mode = if packet.is_text() {
                        WriteMode::Text
                    } else {
                        WriteMode::Binary
                    };
                    match peer.send(packet.data(), mode) {
                        Ok(()) => record.echoed += 1,
                        Err(e) => record.echo_errors.push(e.to_string()),
                    }
                }
                ServerEvent::ClientCloseRequest { id, code, reason } => {
                    live.entry(id).or_default().close_request = Some((code, reason));
                }
                ServerEvent::ClientDisconnected { id, was_clean } => {
                    let mut record = live.remove(&id).unwrap_or_default();
                    record.was_clean = was_clean;
                    if let Some(peer) = server.get_peer(id) {
                        record.close_code = peer.get_close_code();
                        record.close_reason = peer.get_close_reason().to_string();
                        record.protocol_code = match peer.get_last_error() {
                            Some(Error::Protocol { code, .. }) => Some(*code),
                            _ => None,
                        };
                        record.last_error = peer.get_last_error().map(|e| e.to_string());
                    }
                    records.lock().unwrap().push(record);
                }
                _ => {}
            }
        }
    }
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.peer_count() > 0 && Instant::now() < deadline {
        server.poll_with_timeout(Duration::from_millis(2));
    }
}

// ----- expectations -----

/// A close frame as RFC 6455 requires from a server failing the connection with `code`:
/// final, no RSV bits, unmasked (§5.1), minimal length (§5.2), a control frame payload
/// of at most 125 bytes (§5.5), the code in its first two bytes and a reason that is
/// valid UTF-8 (§5.5.1) and so at most 123 bytes. The wording of the reason is free.
fn assert_close_frame(close: &Frame, code: u16, what: &str) {
    assert_eq!(
        close.opcode, OP_CLOSE,
        "{what}: not a close frame: {close:?}"
    );
    assert!(close.fin && close.rsv == 0, "{what}: {close:?}");
    assert_eq!(close.mask, None, "{what}: a server frame is unmasked");
    assert_eq!(
        close.len_field,
        rawws::minimal_len_field(close.payload.len()),
        "{what}: minimal length"
    );
    let (got, reason) = close
        .close_code()
        .unwrap_or_else(|| panic!("{what}: no code"));
    assert_eq!(got, code, "{what}: close code: {close:?}");
    assert!(
        reason.len() <= 123,
        "{what}: reason of {} bytes",
        reason.len()
    );
    assert!(
        std::str::from_utf8(&reason).is_ok(),
        "{what}: the reason is not UTF-8: {reason:?}"
    );
}

/// Expects exactly `frames` next, in order.
fn expect_exact(conn: &mut RawConn, frames: &[Frame], what: &str) {
    for (i, want) in frames.iter().enumerate() {
        let got = conn.expect_frame(&format!("{what}: frame {} of {}", i + 1, frames.len()));
        assert_eq!(&got, want, "{what}: frame {} of {}", i + 1, frames.len());
    }
}

/// Sends `message` and expects it echoed as one unmasked frame of the same type.
fn expect_echo(conn: &mut RawConn, opcode: u8, payload: &[u8], what: &str) {
    conn.send(&client(opcode, payload));
    expect_exact(conn, &[Frame::server(opcode, payload)], what);
}

/// The clean close started by the client: close 1000 answered by close 1000, then the
/// server closes the TCP connection (RFC 6455 §5.5.1, §7.1.1).
fn close_cleanly(echo: &Echo, mut conn: RawConn, what: &str) -> PeerRecord {
    conn.send(&client_close(1000, b"done"));
    expect_exact(
        &mut conn,
        &[Frame::server_close(1000, "done")],
        &format!("{what}: close echo"),
    );
    conn.expect_fin(&format!("{what}: TCP close after the close handshake"));
    let record = echo.record(&conn);
    assert_eq!(
        (record.close_code, record.close_reason.as_str()),
        (1000, "done"),
        "{what}: server side close code: {record:?}"
    );
    assert!(record.echo_errors.is_empty(), "{what}: {record:?}");
    record
}

/// The server must fail the connection: a close frame with `code` (nothing
/// before it beyond `before`), then, once we answer the close, a TCP close; the server
/// reports the same code and an `Error::Protocol`.
fn expect_failure(
    echo: &Echo,
    mut conn: RawConn,
    before: &[Frame],
    code: u16,
    what: &str,
) -> PeerRecord {
    expect_exact(&mut conn, before, what);
    let close = conn.expect_frame(&format!("{what}: a close frame with {code}"));
    assert_close_frame(&close, code, what);
    conn.send(&client_close(code, b""));
    conn.shutdown_write();
    conn.expect_fin(&format!("{what}: TCP close after the failure"));
    let record = echo.record(&conn);
    assert_eq!(record.close_code, i32::from(code), "{what}: {record:?}");
    assert_eq!(record.protocol_code, Some(code), "{what}: {record:?}");
    record
}

/// Sends `bytes` on a fresh connection and expects the failure `code`.
fn fail_with(echo: &Echo, bytes: &[u8], code: u16, what: &str) -> PeerRecord {
    let mut conn = echo.connect();
    conn.send(bytes);
    expect_failure(echo, conn, &[], code, what)
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ===== 1. Framing =====

/// RFC 6455 §5.2 (payload length: 7-bit, 16-bit and 64-bit encodings) and §5.6:
/// text and binary messages of 0, 125, 126, 127, 65535 and 65536 bytes, each in one
/// frame, are echoed as one unmasked frame of the same type with the same payload and the
/// minimal length encoding (7-bit up to 125, 16-bit up to 65535, 64-bit above).
/// Limits raised to 1 MiB. Then a clean close.
#[test]
fn framing_payload_lengths_echoed() {
    let echo = Echo::with_limit(1 << 20);
    let mut conn = echo.connect();
    for len in [0, 125, 126, 127, 65535, 65536] {
        let text: Vec<u8> = pattern(len).iter().map(|b| b'a' + b % 26).collect();
        expect_echo(&mut conn, OP_TEXT, &text, &format!("text of {len} bytes"));
        expect_echo(
            &mut conn,
            OP_BINARY,
            &pattern(len),
            &format!("binary of {len} bytes"),
        );
    }
    let record = close_cleanly(&echo, conn, "lengths");
    assert_eq!(record.echoed, 12);
}

/// RFC 6455 §5.2: a 4 MiB binary message (64-bit length) with inbound_buffer_size and
/// outbound_buffer_size raised to 8 MiB is echoed byte for byte in one frame.
#[test]
fn framing_large_message_with_raised_limit() {
    let echo = Echo::with_limit(8 << 20);
    let mut conn = echo.connect();
    let payload = pattern(4 << 20);
    expect_echo(&mut conn, OP_BINARY, &payload, "4 MiB binary");
    close_cleanly(&echo, conn, "large");
}

/// RFC 6455 §5.2 / §5.4 ("intermediaries may coalesce or split"): a text frame with a
/// 16-bit length (130 bytes), written one byte per TCP write, is echoed once, whole.
#[test]
fn framing_chopped_writes() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    let text: Vec<u8> = pattern(130).iter().map(|b| b'A' + b % 26).collect();
    conn.send_chopped(&client(OP_TEXT, &text), Duration::from_millis(1));
    expect_exact(&mut conn, &[Frame::server(OP_TEXT, &text)], "chopped frame");
    // And a short frame (7-bit length) chopped the same way.
    conn.send_chopped(&client(OP_BINARY, b"tiny"), Duration::from_millis(1));
    expect_exact(
        &mut conn,
        &[Frame::server(OP_BINARY, b"tiny")],
        "chopped tiny",
    );
    let record = close_cleanly(&echo, conn, "chopped");
    assert_eq!(record.echoed, 2);
}

/// RFC 6455 §5.2: several complete frames in one TCP write (text, binary, empty text,
/// 300-byte binary) are each echoed, in order, as separate frames.
#[test]
fn framing_several_frames_in_one_write() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    let big = pattern(300);
    conn.send(&concat(&[
        client(OP_TEXT, b"one"),
        client(OP_BINARY, &[0, 1, 2]),
        client(OP_TEXT, b""),
        client(OP_BINARY, &big),
    ]));
    expect_exact(
        &mut conn,
        &[
            Frame::server(OP_TEXT, b"one"),
            Frame::server(OP_BINARY, &[0, 1, 2]),
            Frame::server(OP_TEXT, b""),
            Frame::server(OP_BINARY, &big),
        ],
        "batched frames",
    );
    let record = close_cleanly(&echo, conn, "batched");
    assert_eq!(record.echoed, 4);
}

// ===== 2. Ping / pong =====

/// RFC 6455 §5.5.2 / §5.5.3: a ping with an empty payload and one with 125 bytes (the
/// maximum, binary content) are each answered by a pong with the identical payload.
#[test]
fn ping_answered_with_identical_pong() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    conn.send(&client(OP_PING, b""));
    expect_exact(&mut conn, &[Frame::server(OP_PONG, b"")], "empty ping");
    let payload: Vec<u8> = (0..125).map(|i| (255 - i) as u8).collect();
    conn.send(&client(OP_PING, &payload));
    expect_exact(
        &mut conn,
        &[Frame::server(OP_PONG, &payload)],
        "125-byte ping",
    );
    let record = close_cleanly(&echo, conn, "pings");
    assert_eq!(record.echoed, 0, "pings are not messages");
}

/// RFC 6455 §5.5: control frames carry at most 125 bytes. A ping with 126 bytes (16-bit
/// length) fails the connection with 1002 and is not answered.
#[test]
fn ping_with_126_bytes_fails_1002() {
    let echo = Echo::default_limits();
    fail_with(
        &echo,
        &client(OP_PING, &pattern(126)),
        1002,
        "126-byte ping",
    );
}

/// RFC 6455 §5.5.3: an unsolicited pong is ignored: nothing is sent back for it, and the
/// text that follows is echoed normally (the first frame we receive is that echo).
#[test]
fn unsolicited_pong_ignored() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    conn.send(&client(OP_PONG, b"unsolicited"));
    conn.send(&client(OP_PONG, b""));
    expect_echo(&mut conn, OP_TEXT, b"after pongs", "text after pongs");
    let record = close_cleanly(&echo, conn, "pongs");
    assert_eq!(record.echoed, 1);
}

/// RFC 6455 §5.5.2: a storm of 1000 pings (payloads "ping 0" .. "ping 999", written in
/// bursts of 100) is answered by 1000 pongs with the same payloads, in order.
#[test]
fn ping_storm_answered_in_order() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    for burst in 0..10 {
        let frames: Vec<Vec<u8>> = (burst * 100..burst * 100 + 100)
            .map(|i| client(OP_PING, format!("ping {i}").as_bytes()))
            .collect();
        conn.send(&frames.concat());
    }
    for i in 0..1000 {
        let got = conn.expect_frame(&format!("pong {i}"));
        assert_eq!(
            got,
            Frame::server(OP_PONG, format!("ping {i}").as_bytes()),
            "pong {i}"
        );
    }
    close_cleanly(&echo, conn, "ping storm");
}

// ===== 3. Reserved bits =====

/// RFC 6455 §5.2: RSV1-3 must be 0 when no extension is negotiated (wspeer negotiates
/// none). For each case a valid text is sent and its echo awaited first; then, in one
/// write, a frame with reserved bits set and a ping: the connection fails with 1002, the ping is
/// not answered. Cases (rsv bits, opcode): RSV1 text, RSV2 text, RSV3 text, RSV1+2
/// binary, RSV1+3 ping, RSV2+3 close, all three binary.
#[test]
fn reserved_bits_fail_1002() {
    let echo = Echo::default_limits();
    for (rsv, opcode, payload) in [
        (0b100, OP_TEXT, &b"rsv1"[..]),
        (0b010, OP_TEXT, b"rsv2"),
        (0b001, OP_TEXT, b"rsv3"),
        (0b110, OP_BINARY, b"\x01\x02"),
        (0b101, OP_PING, b"p"),
        (0b011, OP_CLOSE, b"\x03\xe8"),
        (0b111, OP_BINARY, b""),
    ] {
        let what = format!("rsv {rsv:#05b} on opcode {opcode:#x}");
        let mut conn = echo.connect();
        expect_echo(&mut conn, OP_TEXT, b"before", &what);
        conn.send(&concat(&[
            encode(true, rsv, opcode, Some(MASK), payload),
            client(OP_PING, b"after"),
        ]));
        let record = expect_failure(&echo, conn, &[], 1002, &what);
        assert_eq!(record.echoed, 1, "{what}");
    }
}

// ===== 4. Reserved opcodes =====

/// RFC 6455 §5.2: opcodes 0x3-0x7 (reserved data) and 0xB-0xF (reserved control) fail
/// the connection with 1002. Each is sent alone, with a 4-byte payload, on a fresh
/// connection; nothing is echoed.
#[test]
fn reserved_opcodes_fail_1002() {
    let echo = Echo::default_limits();
    for opcode in (3..=7).chain(11..=15) {
        let record = fail_with(
            &echo,
            &client(opcode, b"data"),
            1002,
            &format!("opcode {opcode:#x}"),
        );
        assert_eq!(record.echoed, 0);
    }
}

// ===== 5. Fragmentation =====

/// RFC 6455 §5.4: a text message in three fragments (text FIN=0, continuation FIN=0,
/// continuation FIN=1) and a binary message in three fragments (one of them empty) are
/// each echoed as one unfragmented frame with the concatenated payload.
#[test]
fn fragmented_message_echoed_as_one() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    conn.send(&masked(false, OP_TEXT, b"Hello, "));
    conn.send(&masked(false, OP_CONT, b"frag"));
    conn.send(&masked(true, OP_CONT, b"mented world"));
    expect_exact(
        &mut conn,
        &[Frame::server(OP_TEXT, b"Hello, fragmented world")],
        "text in 3 fragments",
    );
    conn.send(&concat(&[
        masked(false, OP_BINARY, &[1, 2]),
        masked(false, OP_CONT, &[]),
        masked(true, OP_CONT, &[3]),
    ]));
    expect_exact(
        &mut conn,
        &[Frame::server(OP_BINARY, &[1, 2, 3])],
        "binary in 3 fragments",
    );
    let record = close_cleanly(&echo, conn, "fragments");
    assert_eq!(record.echoed, 2);
}

/// RFC 6455 §5.4 / §5.5: control frames may be injected between fragments. A ping
/// between fragments 1 and 2 is answered at once (its pong arrives before the message is
/// complete), an unsolicited pong between fragments 2 and 3 is ignored, and the message is
/// echoed whole after the last fragment: exactly pong "p1", then the text.
#[test]
fn control_frames_between_fragments_answered() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    conn.send(&masked(false, OP_TEXT, b"frag1-"));
    conn.send(&client(OP_PING, b"p1"));
    // The pong must arrive while the message is still open.
    expect_exact(
        &mut conn,
        &[Frame::server(OP_PONG, b"p1")],
        "pong inside a message",
    );
    conn.send(&masked(false, OP_CONT, b"frag2-"));
    conn.send(&client(OP_PONG, b"ignored"));
    conn.send(&masked(true, OP_CONT, b"frag3"));
    expect_exact(
        &mut conn,
        &[Frame::server(OP_TEXT, b"frag1-frag2-frag3")],
        "message after control frames",
    );
    let record = close_cleanly(&echo, conn, "interleaved");
    assert_eq!(record.echoed, 1);
}

/// RFC 6455 §5.4: a continuation frame with no message open fails the connection with
/// 1002. Cases: a lone continuation FIN=1; continuation FIN=0 then FIN=1; a continuation
/// after a complete text message (whose echo is awaited first).
#[test]
fn continuation_without_start_fails_1002() {
    let echo = Echo::default_limits();
    fail_with(
        &echo,
        &masked(true, OP_CONT, b"orphan"),
        1002,
        "lone continuation",
    );
    fail_with(
        &echo,
        &concat(&[masked(false, OP_CONT, b"a"), masked(true, OP_CONT, b"b")]),
        1002,
        "fragmented orphan continuation",
    );
    let mut conn = echo.connect();
    expect_echo(&mut conn, OP_TEXT, b"complete", "complete message");
    conn.send(&masked(true, OP_CONT, b"late"));
    expect_failure(
        &echo,
        conn,
        &[],
        1002,
        "continuation after a complete message",
    );
}

/// RFC 6455 §5.4 / §5.5: control frames must not be fragmented. A ping with FIN=0
/// (followed by a continuation with FIN=1), a pong with FIN=0, and a close with FIN=0
/// each fail the connection with 1002; the ping is not answered.
#[test]
fn fragmented_control_frame_fails_1002() {
    let echo = Echo::default_limits();
    fail_with(
        &echo,
        &concat(&[
            masked(false, OP_PING, b"frag"),
            masked(true, OP_CONT, b"ment"),
        ]),
        1002,
        "fragmented ping",
    );
    fail_with(
        &echo,
        &masked(false, OP_PONG, b"frag"),
        1002,
        "fragmented pong",
    );
    fail_with(
        &echo,
        &masked(false, OP_CLOSE, &close_payload(1000, b"")),
        1002,
        "fragmented close",
    );
}

/// RFC 6455 §5.4: while a fragmented message is open, only continuation (and control)
/// frames may follow. A new text frame (FIN=1) after text FIN=0, and a binary frame
/// (FIN=0) after binary FIN=0, fail the connection with 1002; nothing is echoed.
#[test]
fn new_data_frame_inside_fragmented_message_fails_1002() {
    let echo = Echo::default_limits();
    fail_with(
        &echo,
        &concat(&[
            masked(false, OP_TEXT, b"open"),
            masked(true, OP_TEXT, b"new"),
        ]),
        1002,
        "text inside text",
    );
    let record = fail_with(
        &echo,
        &concat(&[
            masked(false, OP_BINARY, b"open"),
            masked(false, OP_BINARY, b"new"),
        ]),
        1002,
        "binary inside binary",
    );
    assert_eq!(record.echoed, 0);
}

// ===== 6. UTF-8 =====

/// The UTF-8 test strings of the Autobahn|Testsuite, section 6 (valid).
const VALID_UTF8: [&str; 4] = [
    "κόσμε",
    "Hello-µ@ßöäüàá-UTF-8!!",
    "\u{10FFFF}\u{FFFD}\u{0080}\u{07FF}\u{0800}\u{FFFF}\u{10000}",
    "𝄞 music",
];

/// RFC 6455 §5.6 / §8.1: valid multi-byte UTF-8 text (2-, 3- and 4-byte sequences,
/// boundary code points U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF) in one frame is
/// echoed unchanged.
#[test]
fn valid_utf8_in_one_frame_echoed() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    for text in VALID_UTF8 {
        expect_echo(&mut conn, OP_TEXT, text.as_bytes(), text);
    }
    close_cleanly(&echo, conn, "valid utf-8");
}

/// RFC 6455 §5.6 / §8.1: valid text fragmented one byte per frame, so fragments end
/// inside code points (Autobahn 6.2.3/6.2.4), and split in the middle of a 4-byte
/// sequence, is echoed as one text frame.
#[test]
fn valid_utf8_split_inside_code_points_echoed() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    for text in VALID_UTF8 {
        let bytes = text.as_bytes();
        let n = bytes.len();
        let frames: Vec<Vec<u8>> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let op = if i == 0 { OP_TEXT } else { OP_CONT };
                masked(i + 1 == n, op, std::slice::from_ref(b))
            })
            .collect();
        conn.send(&frames.concat());
        expect_exact(&mut conn, &[Frame::server(OP_TEXT, bytes)], text);
    }
    // "𝄞" is F0 9D 84 9E: split 2 + 2.
    conn.send(&masked(false, OP_TEXT, b"\xF0\x9D"));
    conn.send(&masked(true, OP_CONT, b"\x84\x9E"));
    expect_exact(
        &mut conn,
        &[Frame::server(OP_TEXT, "𝄞".as_bytes())],
        "4-byte code point split 2+2",
    );
    close_cleanly(&echo, conn, "split utf-8");
}

/// Invalid UTF-8 sequences (Autobahn 6.x): a lone 0xFF, an overlong '/', a surrogate
/// (ED A0 80), a code point above U+10FFFF (F4 90 80 80), a truncated 2-byte sequence at the
/// end of the message, a lone continuation byte.
const INVALID_UTF8: [&[u8]; 6] = [
    b"\xFF",
    b"\xC0\xAF",
    b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited",
    b"\xF4\x90\x80\x80",
    b"abc\xCE",
    b"\x80",
];

/// RFC 6455 §8.1: a text message whose payload is not valid UTF-8, in one frame, fails
/// the connection with 1007 (for each sequence of `INVALID_UTF8`); nothing is echoed.
#[test]
fn invalid_utf8_in_one_frame_fails_1007() {
    let echo = Echo::default_limits();
    for bytes in INVALID_UTF8 {
        let record = fail_with(&echo, &client(OP_TEXT, bytes), 1007, &format!("{bytes:x?}"));
        assert_eq!(record.echoed, 0);
    }
}

/// RFC 6455 §8.1 ("as soon as it detects invalid UTF-8, fail"): invalid text across
/// fragments fails with 1007 *before the message is finished*: only non-final fragments
/// are sent and the close must still arrive. Cases: valid first fragment then a surrogate
/// fragment; a code point split across fragments whose completion is invalid (F4 | 90 80
/// 80); invalid bytes in the very first fragment. Plus one at the end: a message ending
/// in the middle of a code point (last fragment empty) fails with 1007 too.
#[test]
fn invalid_utf8_across_fragments_fails_fast_1007() {
    let echo = Echo::default_limits();
    fail_with(
        &echo,
        &concat(&[
            masked(false, OP_TEXT, "κόσμε".as_bytes()),
            masked(false, OP_CONT, b"\xED\xA0\x80"),
        ]),
        1007,
        "surrogate in fragment 2 of an unfinished message",
    );
    fail_with(
        &echo,
        &concat(&[
            masked(false, OP_TEXT, b"ok\xF4"),
            masked(false, OP_CONT, b"\x90\x80\x80more"),
        ]),
        1007,
        "invalid code point split across fragments",
    );
    fail_with(
        &echo,
        &masked(false, OP_TEXT, b"\xFFfirst"),
        1007,
        "invalid first fragment",
    );
    fail_with(
        &echo,
        &concat(&[
            masked(false, OP_TEXT, b"ab\xCE"),
            masked(true, OP_CONT, b""),
        ]),
        1007,
        "message ends inside a code point",
    );
}

// ===== 7. Limits =====

/// wspeer's inbound_buffer_size (Godot's semantics) with RFC 6455 §7.4.1 code 1009: with
/// the default limit of 65535 bytes, a message of 65536 bytes fails the connection with
/// 1009 (message too big): in one frame; in two fragments of 32768; and a frame
/// announcing 2^40 bytes, whose header alone must trigger the close (no payload sent).
#[test]
fn message_over_inbound_limit_fails_1009() {
    let echo = Echo::default_limits();
    fail_with(
        &echo,
        &client(OP_BINARY, &pattern(65536)),
        1009,
        "65536 bytes in one frame",
    );
    fail_with(
        &echo,
        &concat(&[
            masked(false, OP_BINARY, &pattern(32768)),
            masked(true, OP_CONT, &pattern(32768)),
        ]),
        1009,
        "65536 bytes in two fragments",
    );
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge.extend_from_slice(&MASK);
    fail_with(&echo, &huge, 1009, "a frame announcing 2^40 bytes");
}

/// A message of exactly inbound_buffer_size (65535, the default) bytes is accepted and
/// echoed, in one frame and in three fragments (text).
#[test]
fn message_at_inbound_limit_echoed() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    let payload = pattern(65535);
    expect_echo(&mut conn, OP_BINARY, &payload, "65535 bytes");
    let text: Vec<u8> = pattern(65535).iter().map(|b| b'a' + b % 26).collect();
    conn.send(&concat(&[
        masked(false, OP_TEXT, &text[..30000]),
        masked(false, OP_CONT, &text[30000..60000]),
        masked(true, OP_CONT, &text[60000..]),
    ]));
    expect_exact(
        &mut conn,
        &[Frame::server(OP_TEXT, &text)],
        "65535 bytes in 3 fragments",
    );
    close_cleanly(&echo, conn, "at limit");
}

// ===== 8. Closing handshake =====

/// RFC 6455 §5.5.1 / §7.4.1 / §7.4.2: a close with each valid code (1000-1003,
/// 1007-1011, 3000, 4999) and a reason is answered by a close with the same code and
/// reason, then the server closes TCP; the server reports the code and reason as a close
/// request and as its close code.
#[test]
fn close_valid_codes_echoed() {
    let echo = Echo::default_limits();
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
    ] {
        let what = format!("close {code}");
        let mut conn = echo.connect();
        conn.send(&client_close(code, b"why"));
        expect_exact(&mut conn, &[Frame::server_close(code, "why")], &what);
        conn.expect_fin(&what);
        let record = echo.record(&conn);
        assert_eq!(
            record.close_request,
            Some((i32::from(code), "why".to_string())),
            "{what}"
        );
        assert_eq!(
            (record.close_code, record.close_reason.as_str()),
            (i32::from(code), "why"),
            "{what}"
        );
        assert!(record.last_error.is_none(), "{what}: {record:?}");
    }
}

/// RFC 6455 §5.5.1 / §7.1.5: a close frame with an empty payload is answered by a close
/// frame with an empty payload; the server reports code 1005 (no status received).
#[test]
fn close_empty_payload_echoed() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    conn.send(&client(OP_CLOSE, b""));
    expect_exact(&mut conn, &[Frame::server(OP_CLOSE, b"")], "empty close");
    conn.expect_fin("empty close");
    let record = echo.record(&conn);
    assert_eq!(record.close_code, 1005, "{record:?}");
    assert!(record.last_error.is_none(), "{record:?}");
}

/// RFC 6455 §7.4.1 / §7.4.2: codes that must not appear in a close frame (0, 999, 1004,
/// 1005, 1006, 1015, 1016, 2999, 5000) are answered with close 1002. The reason is
/// any valid reason; wspeer then reports close code 1002 as the remote's request
/// (tungstenite rewrites the received frame).
#[test]
fn close_invalid_codes_answered_1002() {
    let echo = Echo::default_limits();
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let what = format!("close {code}");
        let mut conn = echo.connect();
        conn.send(&client_close(code, b""));
        let close = conn.expect_frame(&what);
        assert_close_frame(&close, 1002, &what);
        conn.expect_fin(&what);
        let record = echo.record(&conn);
        assert_eq!(record.close_code, 1002, "{what}: {record:?}");
    }
}

/// RFC 6455 §5.5.1: a close payload of 1 byte cannot hold a code: 1002. And §5.5: a close
/// frame with a 124-byte reason (126-byte payload) is too big for a control frame: 1002.
#[test]
fn close_malformed_payload_fails_1002() {
    let echo = Echo::default_limits();
    fail_with(
        &echo,
        &client(OP_CLOSE, b"\x03"),
        1002,
        "1-byte close payload",
    );
    fail_with(
        &echo,
        &client_close(1000, &[b'r'; 124]),
        1002,
        "126-byte close payload",
    );
}

/// RFC 6455 §5.5.1: a close reason of 123 bytes (the maximum: 125 - 2), here with
/// multi-byte UTF-8, is echoed exactly.
#[test]
fn close_reason_of_123_bytes_echoed() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    let reason = format!("{}{}", "é".repeat(60), "abc");
    assert_eq!(reason.len(), 123);
    conn.send(&client_close(1000, reason.as_bytes()));
    expect_exact(
        &mut conn,
        &[Frame::server_close(1000, &reason)],
        "123-byte reason",
    );
    conn.expect_fin("123-byte reason");
    let record = echo.record(&conn);
    assert_eq!(record.close_reason, reason);
}

/// RFC 6455 §5.5.1 / §8.1: a close reason that is not valid UTF-8 fails the connection.
/// tungstenite reports it as a UTF-8 error (not a protocol error), so wspeer answers with
/// 1007 (invalid frame payload data).
#[test]
fn close_reason_invalid_utf8_fails_1007() {
    let echo = Echo::default_limits();
    fail_with(
        &echo,
        &client_close(1000, b"bad \xFF reason"),
        1007,
        "invalid UTF-8 reason",
    );
}

/// RFC 6455 §5.5.1 ("after sending a Close frame, the endpoint MUST NOT send any more
/// data frames"; the receiver discards what follows): a text frame and a ping written in
/// the same write right after our close are neither echoed nor answered; only the close
/// echo arrives, then the TCP close.
#[test]
fn data_after_close_ignored() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    conn.send(&concat(&[
        client_close(1000, b""),
        client(OP_TEXT, b"too late"),
        client(OP_PING, b"too late"),
    ]));
    expect_exact(&mut conn, &[Frame::server_close(1000, "")], "close echo");
    conn.expect_end("after close");
    let record = echo.record(&conn);
    assert_eq!(record.echoed, 0, "{record:?}");
    assert_eq!(record.close_code, 1000);
}

/// RFC 6455 §5.1: a server MUST close the connection upon an unmasked client frame: an
/// unmasked text frame fails the connection with 1002 and is not echoed.
#[test]
fn unmasked_client_frame_fails_1002() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    expect_echo(&mut conn, OP_TEXT, b"masked ok", "masked text");
    conn.send(&unmasked(true, OP_TEXT, b"unmasked"));
    let record = expect_failure(&echo, conn, &[], 1002, "unmasked frame");
    assert_eq!(record.echoed, 1);
}

/// RFC 6455 §5.4 / §5.5.1 (Autobahn 7.1.5): a close frame while a fragmented message is
/// open is answered by the close echo; the unfinished message is never echoed, and its
/// last fragment, sent after the close, is ignored.
#[test]
fn close_inside_fragmented_message() {
    let echo = Echo::default_limits();
    let mut conn = echo.connect();
    conn.send(&masked(false, OP_TEXT, b"fragment 1"));
    conn.send(&concat(&[
        client_close(1000, b""),
        masked(true, OP_CONT, b"fragment 2"),
    ]));
    expect_exact(&mut conn, &[Frame::server_close(1000, "")], "close echo");
    conn.expect_end("after close");
    let record = echo.record(&conn);
    assert_eq!((record.echoed, record.close_code), (0, 1000), "{record:?}");
}

// ===== 9. Opening handshake =====

/// RFC 6455 §9.1 / §4.2.2: wspeer supports no extension, so a request offering
/// `permessage-deflate` is answered with a 101 that has no `Sec-WebSocket-Extensions`
/// header, and frames then flow uncompressed (RSV1 clear).
#[test]
fn offered_extension_is_not_accepted() {
    let echo = Echo::default_limits();
    let (mut conn, head) = RawConn::connect_with(
        echo.addr,
        "/",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    );
    assert_eq!(header_of(&head, "Sec-WebSocket-Extensions"), None, "{head}");
    expect_echo(&mut conn, OP_TEXT, b"uncompressed", "echo");
    close_cleanly(&echo, conn, "extension offered");
}

/// RFC 6455 §4.2.1 ("if the server finds that the client handshake doesn't satisfy the
/// requirements, [it] MUST stop processing the client's handshake and return an HTTP
/// response with an appropriate error code (such as 400 Bad Request)") and §4.2.2 / §4.4
/// (an unsupported version is answered with 426 and `Sec-WebSocket-Version: 13`):
/// `Sec-WebSocket-Version: 8` must get a 4xx response naming version 13; a request without
/// `Sec-WebSocket-Key` must get a 400.
#[test]
fn invalid_upgrade_requests_get_an_http_error() {
    let echo = Echo::default_limits();
    let mut conn = RawConn::open(echo.addr);
    let head = conn.request(
        b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 4"), "version 8: {head}");
    assert_eq!(
        header_of(&head, "Sec-WebSocket-Version").as_deref(),
        Some("13"),
        "version 8: {head}"
    );
    let mut conn = RawConn::open(echo.addr);
    let head = conn.request(
        b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 400"), "no key: {head}");
}
