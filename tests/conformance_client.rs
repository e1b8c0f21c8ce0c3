//! RFC 6455 conformance of the wspeer *client*, in the categories of the Autobahn|Testsuite
//! that apply to a client.
//!
//! Each case runs a raw test server (`std::net::TcpListener` on 127.0.0.1, a hand-written
//! `101` response, unmasked frames written byte by byte as the case needs) on a thread,
//! while the test's own thread drives a wspeer `WebSocketPeer` like a game loop: `poll()`,
//! then echo every packet received (text as text, binary as binary). The raw server
//! asserts every frame the client sends (masked, exact payload, minimal length encoding)
//! and the test then checks the client's final state: close code, reason, error.

mod rawws;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use rawws::*;
use wspeer::{Error, PeerConfig, State, WebSocketPeer, WriteMode};

/// Every case ends well within this; only a broken client gets near it.
const CASE_TIMEOUT: Duration = Duration::from_secs(8);

/// What the client did in one case.
struct Run<T> {
    peer: WebSocketPeer,
    /// Packets the client received, in order: (is_text, payload).
    packets: Vec<(bool, Vec<u8>)>,
    /// What the raw server's script returned.
    script: T,
}

/// Runs `script` as the raw server (it gets the accepted connection and the upgrade
/// request, before any answer) and a wspeer client with `config` connecting to it at
/// `path`, echoing what it receives, until the client is closed and the script is done.
fn run_client<T: Send + 'static>(
    config: PeerConfig,
    path: &str,
    script: impl FnOnce(RawConn, RawRequest) -> T + Send + 'static,
) -> Run<T> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (conn, request) = RawConn::accept(&listener);
        script(conn, request)
    });
    let mut peer = WebSocketPeer::with_config(config);
    peer.connect_to_url(&format!("ws://{addr}{path}"), None)
        .expect("connect_to_url");
    let mut packets = Vec::new();
    let start = Instant::now();
    let mut timed_out = false;
    loop {
        peer.poll();
        while let Some(packet) = peer.recv() {
            if peer.get_ready_state() == State::Open {
                let mode = if packet.is_text() {
                    WriteMode::Text
                } else {
                    WriteMode::Binary
                };
                peer.send(packet.data(), mode)
                    .unwrap_or_else(|e| panic!("the client cannot echo: {e}"));
            }
            packets.push((packet.is_text(), packet.into_vec()));
        }
        if peer.get_ready_state() == State::Closed && server.is_finished() {
            break;
        }
        if start.elapsed() > CASE_TIMEOUT {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let state = peer.get_ready_state();
    // Drop the connection so that a script still waiting on it ends at once.
    let _ = peer.close(-1, "");
    let script = match server.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    assert!(
        !timed_out,
        "the client did not reach Closed within {CASE_TIMEOUT:?} (state {state:?}, close code \
         {}, error {:?})",
        peer.get_close_code(),
        peer.get_last_error()
    );
    Run {
        peer,
        packets,
        script,
    }
}

/// Config with both limits raised to `bytes`.
fn limits(bytes: usize) -> PeerConfig {
    PeerConfig {
        inbound_buffer_size: bytes,
        outbound_buffer_size: bytes,
        ..PeerConfig::default()
    }
}

/// Answers the upgrade with the standard 101.
fn accept(conn: &mut RawConn, request: &RawRequest) {
    conn.send(&RawConn::response_101(request));
}

/// A frame as a client must send it: masked (any key), final, minimal length encoding.
fn assert_client_frame(got: &Frame, opcode: u8, payload: &[u8], what: &str) {
    assert!(
        got.mask.is_some(),
        "{what}: client frames must be masked (RFC 6455 §5.3): {got:?}"
    );
    let want = Frame {
        mask: got.mask,
        ..Frame::server(opcode, payload)
    };
    assert_eq!(got, &want, "{what}");
}

/// Expects the client's close frame with `code` and `reason`.
fn expect_client_close(conn: &mut RawConn, code: u16, reason: &str, what: &str) {
    let got = conn.expect_frame(&format!("{what}: the client's close {code}"));
    assert_client_frame(
        &got,
        OP_CLOSE,
        &close_payload(code, reason.as_bytes()),
        what,
    );
}

/// The server closes cleanly: close 1000, the client's masked echo, then our TCP close.
fn server_closes(conn: &mut RawConn, what: &str) {
    conn.send(&server_close(1000, b"bye"));
    expect_client_close(conn, 1000, "bye", what);
}

/// Sends `frame` and expects the echo of the client application as one masked frame.
fn expect_echo(conn: &mut RawConn, opcode: u8, payload: &[u8], what: &str) -> Frame {
    conn.send(&server(opcode, payload));
    let got = conn.expect_frame(what);
    assert_client_frame(&got, opcode, payload, what);
    got
}

fn assert_clean_close<T>(run: &Run<T>, code: i32, reason: &str) {
    assert_eq!(
        (run.peer.get_close_code(), run.peer.get_close_reason()),
        (code, reason),
        "client close code/reason (error: {:?})",
        run.peer.get_last_error()
    );
    assert!(
        run.peer.get_last_error().is_none(),
        "{:?}",
        run.peer.get_last_error()
    );
}

/// The raw server sends `bytes` right after the 101; the client must fail the connection:
/// its masked close frame with `code`/`reason` is the first thing it sends, it delivers no
/// packet, and it ends reporting `code` and `Error::Protocol { code }`.
fn fail_case(
    config: PeerConfig,
    bytes: Vec<u8>,
    code: u16,
    reason: &'static str,
    what: &str,
) -> Run<()> {
    let label = what.to_string();
    let run = run_client(config, "/", move |mut conn, request| {
        accept(&mut conn, &request);
        conn.send(&bytes);
        expect_client_close(&mut conn, code, reason, &label);
        conn.send(&server_close(code, b""));
        // The server closes the TCP connection first (RFC 6455 §7.1.1).
    });
    assert_eq!(run.peer.get_close_code(), i32::from(code), "{what}");
    assert!(
        matches!(run.peer.get_last_error(), Some(Error::Protocol { code: c, .. }) if *c == code),
        "{what}: {:?}",
        run.peer.get_last_error()
    );
    assert!(run.packets.is_empty(), "{what}: {:?}", run.packets);
    run
}

const PROTOCOL_ERROR: &str = "Protocol error";
const INVALID_PAYLOAD: &str = "Invalid frame payload data";
const TOO_BIG: &str = "Message too big";

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ===== handshake =====

/// RFC 6455 §4.1: the client's request is a GET of the path and query with Host,
/// `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Version: 13` and a key of
/// 16 random bytes in base64 (24 characters); the handshake then completes.
#[test]
fn client_request_is_a_valid_upgrade() {
    let run = run_client(
        PeerConfig::default(),
        "/chat?room=1",
        |mut conn, request| {
            accept(&mut conn, &request);
            server_closes(&mut conn, "close");
            request
        },
    );
    let request = &run.script;
    assert_eq!(request.path, "/chat?room=1");
    assert!(
        request
            .header("Host")
            .is_some_and(|h| h.starts_with("127.0.0.1:"))
    );
    assert!(
        request
            .header("Upgrade")
            .is_some_and(|h| h.eq_ignore_ascii_case("websocket"))
    );
    assert!(
        request
            .header("Connection")
            .is_some_and(|h| h.to_ascii_lowercase().contains("upgrade"))
    );
    assert_eq!(request.header("Sec-WebSocket-Version"), Some("13"));
    let key = request.header("Sec-WebSocket-Key").unwrap_or_default();
    assert!(key.len() == 24 && key.ends_with("=="), "key {key:?}");
    assert_clean_close(&run, 1000, "bye");
}

/// RFC 6455 §4.1 (client step 1): a response other than 101 fails the connection: the
/// client ends Closed, close code -1, with `Error::Handshake` naming the status (403) and
/// the body.
#[test]
fn non_101_response_is_a_handshake_error() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, _| {
        conn.send(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n\
              forbidden",
        );
        conn.shutdown_write();
        // The client must close its side.
        conn.expect_end("after 403");
    });
    assert_eq!(run.peer.get_ready_state(), State::Closed);
    assert_eq!(run.peer.get_close_code(), -1);
    match run.peer.get_last_error() {
        Some(Error::Handshake(message)) => {
            assert!(message.contains("403"), "{message}");
            assert!(message.contains("forbidden"), "{message}");
        }
        other => panic!("expected Error::Handshake, got {other:?}"),
    }
}

/// RFC 6455 §4.1 (client step 4): a 101 whose `Sec-WebSocket-Accept` is not the hash of
/// our key fails the connection with `Error::Handshake`, and the client closes TCP.
#[test]
fn wrong_accept_key_is_a_handshake_error() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, _| {
        conn.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        );
        conn.expect_end("after a wrong accept key");
    });
    assert_eq!(run.peer.get_close_code(), -1);
    match run.peer.get_last_error() {
        Some(Error::Handshake(message)) => {
            assert!(message.contains("Sec-WebSocket-Accept"), "{message}")
        }
        other => panic!("expected Error::Handshake, got {other:?}"),
    }
}

/// RFC 6455 §4.1 (client step 5): "If the response includes a |Sec-WebSocket-Extensions|
/// header field [...] indicating an extension that was not present in the client's
/// handshake [...], the client MUST _Fail the WebSocket Connection_". wspeer offers no
/// extension, so a 101 answering `Sec-WebSocket-Extensions: permessage-deflate` must end
/// in `Error::Handshake` without the connection ever opening.
#[test]
fn unrequested_extension_in_101_is_a_handshake_error() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, request| {
        let mut response = RawConn::response_101(&request);
        response.truncate(response.len() - 2);
        response.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        conn.send(&response);
        // A client that wrongly opened gets a clean close so the case still ends.
        conn.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if conn.read_frame() == Err(End::Timeout) {
            conn.send(&server_close(1000, b""));
            let _ = conn.read_frame();
        }
    });
    assert!(
        matches!(run.peer.get_last_error(), Some(Error::Handshake(_))),
        "expected Error::Handshake, got close code {} and error {:?}",
        run.peer.get_close_code(),
        run.peer.get_last_error()
    );
}

/// A `101` response larger than `PeerConfig::max_handshake_bytes` (8 KiB) or with more header
/// lines than `max_handshake_headers` (64) fails the connection before it opens, with an
/// `Error::Handshake` naming the setting, also when the whole head arrives complete in one
/// write. The limits apply to the client as they do to a server's request; raised, the same
/// responses open.
#[test]
fn oversized_101_response_is_a_handshake_error_naming_the_limit() {
    let many_headers: String = (0..64).map(|i| format!("X-Extra-{i}: v\r\n")).collect();
    let big_header = format!("X-Big: {}\r\n", "b".repeat(9000));
    let cases = [
        (
            many_headers,
            "the server's answer has more than 64 headers (PeerConfig::max_handshake_headers)",
        ),
        (
            big_header,
            "the server's answer head is larger than 8192 bytes (PeerConfig::max_handshake_bytes)",
        ),
    ];
    for (extra, why) in cases.clone() {
        let run = run_client(PeerConfig::default(), "/", move |mut conn, request| {
            let mut response = RawConn::response_101(&request);
            response.truncate(response.len() - 2);
            response.extend_from_slice(extra.as_bytes());
            response.extend_from_slice(b"\r\n");
            conn.send(&response); // one write: the head may arrive complete
            // The client must give up and close its side, sending no frame.
            let _ = conn.expect_end("after an oversized 101");
        });
        assert!(run.packets.is_empty(), "{why}: {:?}", run.packets);
        assert_eq!(run.peer.get_close_code(), -1, "{why}");
        match run.peer.get_last_error() {
            Some(Error::Handshake(message)) => assert_eq!(message, why),
            other => panic!("expected Error::Handshake({why:?}), got {other:?}"),
        }
    }
    // Within raised limits the same answers are accepted.
    for (extra, _) in cases {
        let config = PeerConfig {
            max_handshake_bytes: 16 * 1024,
            max_handshake_headers: 128,
            ..PeerConfig::default()
        };
        let run = run_client(config, "/", move |mut conn, request| {
            let mut response = RawConn::response_101(&request);
            response.truncate(response.len() - 2);
            response.extend_from_slice(extra.as_bytes());
            response.extend_from_slice(b"\r\n");
            conn.send(&response);
            server_closes(&mut conn, "close");
        });
        assert_clean_close(&run, 1000, "bye");
    }
}

/// RFC 6455 §4.1 (client step 3: fail only if `Connection` "doesn't contain a token that
/// is an ASCII case-insensitive match for the value Upgrade") with RFC 9110 §7.6.1
/// (`Connection` is a comma-separated list of options): a 101 answering
/// `Connection: keep-alive, Upgrade` is valid and the connection must open.
#[test]
fn connection_header_token_list_accepted() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, request| {
        let response = String::from_utf8(RawConn::response_101(&request))
            .unwrap()
            .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        conn.send(response.as_bytes());
        // If the client refused, it simply closes; otherwise the usual exchange.
        conn.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if conn.read_frame() == Err(End::Timeout) {
            conn.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
            expect_echo(&mut conn, OP_TEXT, b"opened", "echo");
            server_closes(&mut conn, "close");
        }
    });
    assert_eq!(
        run.packets,
        vec![(true, b"opened".to_vec())],
        "the connection did not open: close code {}, error {:?}",
        run.peer.get_close_code(),
        run.peer.get_last_error()
    );
    assert_clean_close(&run, 1000, "bye");
}

/// RFC 6455 §4.1 / §5: a server may send its first frame right behind the 101 response,
/// in the same TCP write; the client delivers it (it must not be lost with the HTTP head).
#[test]
fn frame_in_the_same_write_as_the_101_is_delivered() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, request| {
        let mut bytes = RawConn::response_101(&request);
        bytes.extend_from_slice(&server(OP_TEXT, b"right behind the 101"));
        conn.send(&bytes);
        let echo = conn.expect_frame("echo of the early frame");
        assert_client_frame(&echo, OP_TEXT, b"right behind the 101", "early frame");
        server_closes(&mut conn, "close");
    });
    assert_eq!(run.packets, vec![(true, b"right behind the 101".to_vec())]);
    assert_clean_close(&run, 1000, "bye");
}

// ===== framing =====

/// RFC 6455 §5.2 / §5.3: text and binary messages of 0, 125, 126, 127, 65535 and 65536
/// bytes from the server are delivered intact (limits raised to 1 MiB), and the client's
/// echoes are masked (§5.3: a client MUST mask every frame), final, of the same type and
/// payload, with the minimal length encoding; the masking keys vary.
#[test]
fn lengths_delivered_and_client_frames_masked() {
    let run = run_client(limits(1 << 20), "/", |mut conn, request| {
        accept(&mut conn, &request);
        let mut masks = Vec::new();
        for len in [0, 125, 126, 127, 65535, 65536] {
            let text: Vec<u8> = pattern(len).iter().map(|b| b'a' + b % 26).collect();
            let a = expect_echo(&mut conn, OP_TEXT, &text, &format!("text {len}"));
            let b = expect_echo(&mut conn, OP_BINARY, &pattern(len), &format!("bin {len}"));
            masks.extend([a.mask, b.mask]);
        }
        server_closes(&mut conn, "close");
        masks
    });
    assert_eq!(run.packets.len(), 12);
    let mut masks = run.script.clone();
    masks.sort();
    masks.dedup();
    assert!(masks.len() > 1, "every frame used the same masking key");
    assert_clean_close(&run, 1000, "bye");
}

/// RFC 6455 §5.2: a 4 MiB binary message (64-bit length) is delivered intact with
/// inbound_buffer_size raised to 8 MiB.
#[test]
fn large_message_with_raised_limit() {
    let run = run_client(limits(8 << 20), "/", |mut conn, request| {
        accept(&mut conn, &request);
        expect_echo(&mut conn, OP_BINARY, &pattern(4 << 20), "4 MiB");
        server_closes(&mut conn, "close");
    });
    assert_eq!(run.packets.len(), 1);
    assert_eq!(run.packets[0].1, pattern(4 << 20));
}

/// RFC 6455 §5.2: a frame written one byte per TCP write (16-bit length) and four frames
/// in one write are delivered as whole messages, in order.
#[test]
fn chopped_and_batched_frames() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, request| {
        accept(&mut conn, &request);
        let text: Vec<u8> = pattern(130).iter().map(|b| b'A' + b % 26).collect();
        conn.send_chopped(&server(OP_TEXT, &text), Duration::from_millis(1));
        let got = conn.expect_frame("echo of the chopped frame");
        assert_client_frame(&got, OP_TEXT, &text, "chopped");
        conn.send(&concat(&[
            server(OP_TEXT, b"one"),
            server(OP_BINARY, &[2]),
            server(OP_TEXT, b""),
            server(OP_BINARY, &pattern(300)),
        ]));
        for (opcode, payload) in [
            (OP_TEXT, &b"one"[..]),
            (OP_BINARY, &[2]),
            (OP_TEXT, b""),
            (OP_BINARY, &pattern(300)),
        ] {
            let got = conn.expect_frame("echo of a batched frame");
            assert_client_frame(&got, opcode, payload, "batched");
        }
        server_closes(&mut conn, "close");
    });
    assert_eq!(run.packets.len(), 5);
}

// ===== ping / pong =====

/// RFC 6455 §5.5.2 / §5.5.3: pings of 0 and 125 bytes are answered by masked pongs with
/// the identical payload; an unsolicited pong gets no answer (the next frame from the
/// client is the echo of the text that followed it); a storm of 200 pings in one write is
/// answered by 200 pongs in order. Pings are not delivered as packets.
#[test]
fn pings_answered_and_unsolicited_pong_ignored() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, request| {
        accept(&mut conn, &request);
        for payload in [Vec::new(), pattern(125)] {
            conn.send(&server(OP_PING, &payload));
            let got = conn.expect_frame("pong");
            assert_client_frame(&got, OP_PONG, &payload, "pong");
        }
        conn.send(&server(OP_PONG, b"unsolicited"));
        expect_echo(&mut conn, OP_TEXT, b"after pong", "text after a pong");
        let storm: Vec<Vec<u8>> = (0..200)
            .map(|i| server(OP_PING, format!("ping {i}").as_bytes()))
            .collect();
        conn.send(&storm.concat());
        for i in 0..200 {
            let got = conn.expect_frame(&format!("pong {i}"));
            assert_client_frame(&got, OP_PONG, format!("ping {i}").as_bytes(), "storm");
        }
        server_closes(&mut conn, "close");
    });
    assert_eq!(run.packets, vec![(true, b"after pong".to_vec())]);
    assert_clean_close(&run, 1000, "bye");
}

/// RFC 6455 §5.5: a ping with 126 bytes fails the connection with 1002.
#[test]
fn ping_with_126_bytes_fails_1002() {
    fail_case(
        PeerConfig::default(),
        server(OP_PING, &pattern(126)),
        1002,
        PROTOCOL_ERROR,
        "126-byte ping",
    );
}

// ===== reserved bits and opcodes, masking =====

/// RFC 6455 §5.2: RSV1, RSV2, RSV3 (and all three) set on a text frame, with no
/// extension negotiated, fail the connection with 1002.
#[test]
fn reserved_bits_fail_1002() {
    for rsv in [0b100, 0b010, 0b001, 0b111] {
        fail_case(
            PeerConfig::default(),
            encode(true, rsv, OP_TEXT, None, b"rsv"),
            1002,
            PROTOCOL_ERROR,
            &format!("rsv {rsv:#05b}"),
        );
    }
}

/// RFC 6455 §5.2: reserved opcodes 0x3-0x7 and 0xB-0xF fail the connection with 1002.
#[test]
fn reserved_opcodes_fail_1002() {
    for opcode in (3..=7).chain(11..=15) {
        fail_case(
            PeerConfig::default(),
            server(opcode, b"data"),
            1002,
            PROTOCOL_ERROR,
            &format!("opcode {opcode:#x}"),
        );
    }
}

/// RFC 6455 §5.1: "A client MUST close a connection if it detects a masked frame": a
/// masked text frame from the server fails the connection with 1002 and is not delivered.
#[test]
fn masked_server_frame_fails_1002() {
    fail_case(
        PeerConfig::default(),
        encode(true, 0, OP_TEXT, Some(MASK), b"masked"),
        1002,
        PROTOCOL_ERROR,
        "masked server frame",
    );
}

// ===== fragmentation =====

/// RFC 6455 §5.4: a text message in 3 fragments is delivered (and echoed) as one message;
/// a ping between its fragments is answered before the message completes.
#[test]
fn fragmented_message_with_interleaved_ping() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, request| {
        accept(&mut conn, &request);
        conn.send(&unmasked(false, OP_TEXT, b"Hello, "));
        conn.send(&server(OP_PING, b"mid"));
        let got = conn.expect_frame("pong inside a message");
        assert_client_frame(&got, OP_PONG, b"mid", "interleaved ping");
        conn.send(&unmasked(false, OP_CONT, b"frag"));
        conn.send(&unmasked(true, OP_CONT, b"mented world"));
        let got = conn.expect_frame("echo of the fragmented message");
        assert_client_frame(&got, OP_TEXT, b"Hello, fragmented world", "fragments");
        server_closes(&mut conn, "close");
    });
    assert_eq!(
        run.packets,
        vec![(true, b"Hello, fragmented world".to_vec())]
    );
    assert_clean_close(&run, 1000, "bye");
}

/// RFC 6455 §5.4 / §5.5: each fails the connection with 1002: a continuation without a
/// start, a fragmented ping (FIN=0), a new text frame while a fragmented message is open.
#[test]
fn fragmentation_violations_fail_1002() {
    fail_case(
        PeerConfig::default(),
        server(OP_CONT, b"orphan"),
        1002,
        PROTOCOL_ERROR,
        "continuation without start",
    );
    fail_case(
        PeerConfig::default(),
        concat(&[
            unmasked(false, OP_PING, b"a"),
            unmasked(true, OP_CONT, b"b"),
        ]),
        1002,
        PROTOCOL_ERROR,
        "fragmented ping",
    );
    fail_case(
        PeerConfig::default(),
        concat(&[
            unmasked(false, OP_TEXT, b"a"),
            unmasked(true, OP_TEXT, b"b"),
        ]),
        1002,
        PROTOCOL_ERROR,
        "new message inside a fragmented one",
    );
}

// ===== UTF-8 =====

/// RFC 6455 §5.6 / §8.1: valid multi-byte text in one frame and fragmented one byte per
/// frame (fragment boundaries inside code points) is delivered and echoed unchanged.
#[test]
fn valid_utf8_delivered() {
    let text = "κόσμε 𝄞 \u{10FFFF}";
    let run = run_client(PeerConfig::default(), "/", move |mut conn, request| {
        accept(&mut conn, &request);
        expect_echo(&mut conn, OP_TEXT, text.as_bytes(), "one frame");
        let bytes = text.as_bytes();
        let frames: Vec<Vec<u8>> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let op = if i == 0 { OP_TEXT } else { OP_CONT };
                unmasked(i + 1 == bytes.len(), op, std::slice::from_ref(b))
            })
            .collect();
        conn.send(&frames.concat());
        let got = conn.expect_frame("echo of the split text");
        assert_client_frame(&got, OP_TEXT, bytes, "split");
        server_closes(&mut conn, "close");
    });
    assert_eq!(run.packets.len(), 2);
    assert_eq!(run.packets[1], (true, text.as_bytes().to_vec()));
}

/// RFC 6455 §8.1: invalid UTF-8 in one text frame (0xFF; a surrogate) fails with 1007;
/// invalid bytes in a non-final fragment fail with 1007 before the message is finished
/// (the last fragment is never sent).
#[test]
fn invalid_utf8_fails_1007() {
    fail_case(
        PeerConfig::default(),
        server(OP_TEXT, b"\xFF"),
        1007,
        INVALID_PAYLOAD,
        "0xFF",
    );
    fail_case(
        PeerConfig::default(),
        server(OP_TEXT, b"a\xED\xA0\x80b"),
        1007,
        INVALID_PAYLOAD,
        "surrogate",
    );
    fail_case(
        PeerConfig::default(),
        concat(&[
            unmasked(false, OP_TEXT, "κόσμε".as_bytes()),
            unmasked(false, OP_CONT, b"\xF4\x90\x80\x80"),
        ]),
        1007,
        INVALID_PAYLOAD,
        "invalid fragment of an unfinished message",
    );
}

// ===== limits =====

/// inbound_buffer_size (default 65535) with RFC 6455 §7.4.1 code 1009: a 65536-byte
/// message fails with 1009, in one frame and in two fragments; a 65535-byte message is
/// delivered.
#[test]
fn inbound_limit() {
    fail_case(
        PeerConfig::default(),
        server(OP_BINARY, &pattern(65536)),
        1009,
        TOO_BIG,
        "65536 bytes",
    );
    fail_case(
        PeerConfig::default(),
        concat(&[
            unmasked(false, OP_BINARY, &pattern(40000)),
            unmasked(true, OP_CONT, &pattern(25536)),
        ]),
        1009,
        TOO_BIG,
        "65536 bytes in two fragments",
    );
    let run = run_client(PeerConfig::default(), "/", |mut conn, request| {
        accept(&mut conn, &request);
        expect_echo(&mut conn, OP_BINARY, &pattern(65535), "65535 bytes");
        server_closes(&mut conn, "close");
    });
    assert_eq!(run.packets.len(), 1);
    assert_clean_close(&run, 1000, "bye");
}

// ===== closing handshake =====

/// RFC 6455 §5.5.1 / §7.4: a close from the server with each valid code (1000-1003,
/// 1007-1011, 3000, 4999) and a reason is answered by a masked close with the same code
/// and reason; the client reports that code and reason, with no error.
#[test]
fn close_valid_codes_echoed() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
    ] {
        let run = run_client(PeerConfig::default(), "/", move |mut conn, request| {
            accept(&mut conn, &request);
            conn.send(&server_close(code, b"why"));
            expect_client_close(&mut conn, code, "why", &format!("close {code}"));
        });
        assert_clean_close(&run, i32::from(code), "why");
    }
}

/// RFC 6455 §5.5.1 / §7.1.5: an empty close is answered by an empty close; close code 1005.
#[test]
fn close_empty_payload_echoed() {
    let run = run_client(PeerConfig::default(), "/", |mut conn, request| {
        accept(&mut conn, &request);
        conn.send(&server(OP_CLOSE, b""));
        let got = conn.expect_frame("empty close");
        assert_client_frame(&got, OP_CLOSE, b"", "empty close");
    });
    assert_clean_close(&run, 1005, "");
}

/// RFC 6455 §7.4: codes that must not be sent (0, 999, 1004, 1005, 1006, 1015, 1016,
/// 2999, 5000) are answered with close 1002 (tungstenite's reply, "Protocol violation").
#[test]
fn close_invalid_codes_answered_1002() {
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let run = run_client(PeerConfig::default(), "/", move |mut conn, request| {
            accept(&mut conn, &request);
            conn.send(&server_close(code, b""));
            expect_client_close(
                &mut conn,
                1002,
                "Protocol violation",
                &format!("close {code}"),
            );
        });
        assert_eq!(run.peer.get_close_code(), 1002, "close {code}");
    }
}

/// RFC 6455 §5.5.1: a 1-byte close payload fails with 1002; §8.1: a close reason that is
/// not UTF-8 fails with 1007 (tungstenite reports it as a UTF-8 error).
#[test]
fn close_malformed_payloads_fail() {
    fail_case(
        PeerConfig::default(),
        server(OP_CLOSE, b"\x03"),
        1002,
        PROTOCOL_ERROR,
        "1-byte close",
    );
    fail_case(
        PeerConfig::default(),
        server_close(1000, b"\xFF"),
        1007,
        INVALID_PAYLOAD,
        "invalid UTF-8 reason",
    );
}

/// RFC 6455 §5.5.1: a reason of 123 bytes (the maximum) is echoed exactly; a text frame
/// sent right after the server's close (same write) is not delivered.
#[test]
fn close_reason_123_bytes_and_data_after_close() {
    let reason = format!("{}{}", "é".repeat(60), "abc");
    let expected = reason.clone();
    let run = run_client(PeerConfig::default(), "/", move |mut conn, request| {
        accept(&mut conn, &request);
        conn.send(&concat(&[
            server_close(1000, reason.as_bytes()),
            server(OP_TEXT, b"too late"),
        ]));
        expect_client_close(&mut conn, 1000, &reason, "123-byte reason");
    });
    assert!(run.packets.is_empty(), "{:?}", run.packets);
    assert_clean_close(&run, 1000, &expected);
}

/// RFC 6455 §7.1.2: `close(4000, "bye")` sends a masked close with that code and reason;
/// after the server's answer the client is Closed with the server's code.
#[test]
fn client_initiated_close() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, request) = RawConn::accept(&listener);
        accept(&mut conn, &request);
        expect_client_close(&mut conn, 4000, "bye", "client close");
        conn.send(&server_close(4000, b"bye"));
        conn.expect_fin("after the close handshake");
    });
    let mut peer = WebSocketPeer::new();
    peer.connect_to_url(&format!("ws://{addr}/"), None).unwrap();
    let start = Instant::now();
    let mut closing = false;
    while peer.get_ready_state() != State::Closed && start.elapsed() < CASE_TIMEOUT {
        peer.poll();
        if peer.get_ready_state() == State::Open && !closing {
            peer.close(4000, "bye").unwrap();
            closing = true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let state = peer.get_ready_state();
    let _ = peer.close(-1, "");
    if let Err(panic) = server.join() {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(state, State::Closed);
    assert_eq!(
        (peer.get_close_code(), peer.get_close_reason()),
        (4000, "bye")
    );
    assert!(
        peer.get_last_error().is_none(),
        "{:?}",
        peer.get_last_error()
    );
}
