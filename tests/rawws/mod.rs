//! Raw RFC 6455 on a blocking `std::net::TcpStream`, written from the RFC and independent of
//! tungstenite: the HTTP upgrade by hand (with our own SHA-1 and base64 for the accept key),
//! frame encoding with any header bits (reserved bits, reserved opcodes, masked or not,
//! any length encoding), and a frame parser that reports exactly what arrived.
//!
//! Every read is bounded by [`READ_TIMEOUT`]; nothing here can hang a test.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The longest a single blocking read may wait: only a broken peer gets near it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The RFC 6455 §1.3 GUID appended to the key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// ----- SHA-1 (RFC 3174) and base64 (RFC 4648), just enough for the accept key -----

pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2 step 5.4).
pub fn accept_key(key: &str) -> String {
    base64(&sha1(format!("{key}{GUID}").as_bytes()))
}

// ----- frames -----

/// One frame as it was on the wire (payload unmasked).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1..3 as the three bits 0b100, 0b010, 0b001.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// The 7-bit length field as sent (126 / 127 announce a 16 / 64-bit length), so
    /// comparing frames also checks the minimal length encoding of RFC 6455 §5.2.
    pub len_field: u8,
    pub payload: Vec<u8>,
}

/// The 7-bit length field §5.2 requires for a payload of `len` bytes.
pub fn minimal_len_field(len: usize) -> u8 {
    match len {
        n if n <= 125 => n as u8,
        n if n <= 0xFFFF => 126,
        _ => 127,
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.opcode == OP_CLOSE && self.payload.len() >= 2 {
            let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
            format!(
                "close {code} {:?}",
                String::from_utf8_lossy(&self.payload[2..])
            )
        } else if self.payload.len() <= 64 {
            format!("{:?}", String::from_utf8_lossy(&self.payload))
        } else {
            format!("<{} bytes>", self.payload.len())
        };
        write!(
            f,
            "Frame {{ fin: {}, rsv: {:#05b}, opcode: {:#x}, mask: {:?}, len_field: {}, \
             payload: {shown} }}",
            self.fin, self.rsv, self.opcode, self.mask, self.len_field,
        )
    }
}

impl Frame {
    /// An unmasked final frame, as a server must send and as we expect from a server.
    pub fn server(opcode: u8, payload: &[u8]) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            len_field: minimal_len_field(payload.len()),
            payload: payload.to_vec(),
        }
    }

    /// The close frame carrying `code` and `reason`.
    pub fn server_close(code: u16, reason: &str) -> Frame {
        Frame::server(OP_CLOSE, &close_payload(code, reason.as_bytes()))
    }

    /// `(code, reason)` of a close frame's payload, `None` for an empty one.
    pub fn close_code(&self) -> Option<(u16, Vec<u8>)> {
        assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return None;
        }
        Some((
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            self.payload[2..].to_vec(),
        ))
    }
}

pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// Encodes a frame with every header field under the caller's control (RFC 6455 §5.2).
/// The shortest length encoding is used, as §5.2 requires.
pub fn encode(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push((u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    out.push(mask_bit | minimal_len_field(n));
    match minimal_len_field(n) {
        126 => out.extend_from_slice(&(n as u16).to_be_bytes()),
        127 => out.extend_from_slice(&(n as u64).to_be_bytes()),
        _ => {}
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

/// A fixed but non-trivial masking key (every byte differs, none is zero).
pub const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A masked frame from a client.
pub fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode(fin, 0, opcode, Some(MASK), payload)
}

/// A masked, final client frame.
pub fn client(opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked(true, opcode, payload)
}

/// A masked client close frame.
pub fn client_close(code: u16, reason: &[u8]) -> Vec<u8> {
    client(OP_CLOSE, &close_payload(code, reason))
}

/// An unmasked frame from a server.
pub fn unmasked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode(fin, 0, opcode, None, payload)
}

/// An unmasked, final server frame.
pub fn server(opcode: u8, payload: &[u8]) -> Vec<u8> {
    unmasked(true, opcode, payload)
}

/// An unmasked server close frame.
pub fn server_close(code: u16, reason: &[u8]) -> Vec<u8> {
    server(OP_CLOSE, &close_payload(code, reason))
}

/// Deterministic test bytes of length `n`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// How reading the next frame ended, when it did not produce one.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Orderly TCP end of stream (FIN) at a frame boundary.
    Eof,
    /// The connection was reset.
    Reset,
    /// Nothing arrived within the read timeout.
    Timeout,
    /// The stream ended inside a frame, or another error.
    Broken(String),
}

fn classify(e: &io::Error) -> End {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => End::Timeout,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => End::Reset,
        _ => End::Broken(e.to_string()),
    }
}

/// The value of header `name` in an HTTP head, if present.
pub fn header_of(head: &str, name: &str) -> Option<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// The request line and headers of an HTTP upgrade request as the raw server read it.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One blocking TCP connection speaking raw WebSocket.
pub struct RawConn {
    pub stream: TcpStream,
    /// Bytes read but not consumed yet.
    buf: Vec<u8>,
}

impl RawConn {
    pub fn new(stream: TcpStream) -> RawConn {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Client side: connects and performs the opening handshake (RFC 6455 §4.1),
    /// checking the 101 status and the accept key.
    pub fn connect(addr: SocketAddr, path: &str) -> RawConn {
        RawConn::connect_with(addr, path, "").0
    }

    /// [`connect`](Self::connect) with `extra` header lines (each ending in CRLF) in the
    /// request; also returns the response head.
    pub fn connect_with(addr: SocketAddr, path: &str, extra: &str) -> (RawConn, String) {
        let mut conn = RawConn::open(addr);
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        let head = conn.request(request.as_bytes());
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        assert!(
            status.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols, got: {head}"
        );
        assert_eq!(
            header_of(&head, "Sec-WebSocket-Accept"),
            Some(accept_key(key)),
            "bad Sec-WebSocket-Accept in: {head}"
        );
        (conn, head)
    }

    /// A TCP connection with nothing sent yet.
    pub fn open(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("raw connect");
        RawConn::new(stream)
    }

    /// Sends an HTTP request as given and returns the response head (panics if the
    /// connection ends without one).
    pub fn request(&mut self, request: &[u8]) -> String {
        self.send(request);
        match self.read_head() {
            Ok(head) => head,
            Err(end) => panic!(
                "no HTTP response to {:?}: the connection ended with {end:?}",
                String::from_utf8_lossy(request)
            ),
        }
    }

    /// Server side: accepts one connection within `READ_TIMEOUT` and reads its upgrade
    /// request (nothing is answered yet).
    pub fn accept(listener: &TcpListener) -> (RawConn, RawRequest) {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + READ_TIMEOUT;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "no client connected within {READ_TIMEOUT:?}"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept failed: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let mut conn = RawConn::new(stream);
        let head = conn.read_head().expect("the client's upgrade request");
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut parts = request_line.split(' ');
        assert_eq!(parts.next(), Some("GET"), "request line: {request_line}");
        let path = parts.next().unwrap_or_default().to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        (conn, RawRequest { path, headers })
    }

    /// The standard 101 answer to `request` (RFC 6455 §4.2.2).
    pub fn response_101(request: &RawRequest) -> Vec<u8> {
        let key = request
            .header("Sec-WebSocket-Key")
            .expect("the client sent Sec-WebSocket-Key");
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        )
        .into_bytes()
    }

    /// Reads the HTTP head up to the blank line; later bytes stay buffered.
    fn read_head(&mut self) -> Result<String, End> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Ok(String::from_utf8_lossy(&head[..end]).into_owned());
            }
            self.fill()?;
        }
    }

    /// Reads more bytes into the buffer; `Err` when the stream ended or failed.
    fn fill(&mut self) -> Result<(), End> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(End::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(classify(&e)),
            }
        }
    }

    fn need(&mut self, n: usize) -> Result<(), End> {
        let at_boundary = self.buf.is_empty();
        while self.buf.len() < n {
            match self.fill() {
                Ok(()) => {}
                Err(End::Eof) if !at_boundary => {
                    return Err(End::Broken(format!(
                        "end of stream inside a frame ({} of {n} bytes)",
                        self.buf.len()
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next frame, exactly as sent (payload unmasked if it was masked).
    pub fn read_frame(&mut self) -> Result<Frame, End> {
        self.need(2)?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7F {
            126 => {
                self.need(4)?;
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                self.need(10)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            self.need(at + 4)?;
            let key = [
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ];
            at += 4;
            Some(key)
        } else {
            None
        };
        let len = usize::try_from(len).expect("frame length fits");
        self.need(at + len)?;
        let mut payload: Vec<u8> = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        if let Some(key) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        Ok(Frame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: b0 & 0x0F,
            mask,
            len_field: b1 & 0x7F,
            payload,
        })
    }

    /// The next frame, which must exist.
    pub fn expect_frame(&mut self, what: &str) -> Frame {
        match self.read_frame() {
            Ok(frame) => frame,
            Err(end) => panic!("expected {what}, got {end:?}"),
        }
    }

    /// The next `n` frames, which must exist.
    pub fn expect_frames(&mut self, n: usize, what: &str) -> Vec<Frame> {
        (0..n)
            .map(|i| self.expect_frame(&format!("{what} (frame {} of {n})", i + 1)))
            .collect()
    }

    /// The connection must end (FIN or reset) with no further frame.
    pub fn expect_end(&mut self, what: &str) -> End {
        match self.read_frame() {
            Ok(frame) => panic!("{what}: expected the connection to end, got {frame:?}"),
            Err(End::Timeout) => {
                panic!("{what}: the connection was not closed within {READ_TIMEOUT:?}")
            }
            Err(End::Broken(e)) => panic!("{what}: broken stream: {e}"),
            Err(end) => end,
        }
    }

    /// The connection must end with an orderly TCP close (FIN, not a reset) and no
    /// further frame.
    pub fn expect_fin(&mut self, what: &str) {
        let end = self.expect_end(what);
        assert_eq!(end, End::Eof, "{what}: expected an orderly TCP close");
    }

    /// Nothing must arrive for `quiet` (the connection stays open and silent).
    pub fn expect_silence(&mut self, quiet: Duration, what: &str) {
        if !self.buf.is_empty() {
            panic!("{what}: unexpected bytes {:?}", self.buf);
        }
        self.stream.set_read_timeout(Some(quiet)).unwrap();
        let result = self.read_frame();
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match result {
            Err(End::Timeout) => {}
            other => panic!("{what}: expected silence, got {other:?}"),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
    }

    /// Writes `bytes` one byte per `write` call, pausing so each lands in its own segment.
    pub fn send_chopped(&mut self, bytes: &[u8], pause: Duration) {
        for b in bytes {
            self.stream
                .write_all(std::slice::from_ref(b))
                .expect("raw write");
            std::thread::sleep(pause);
        }
    }

    /// Half-closes our side (TCP FIN).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

/// The helper itself: SHA-1 of "abc" (RFC 3174 test vector), base64 padding (RFC 4648
/// §10), and the accept key of RFC 6455 §1.3's worked example.
#[test]
fn sha1_and_accept_key_match_rfc_examples() {
    assert_eq!(
        base64(&sha1(b"abc")),
        base64(&[
            0xA9, 0x99, 0x3E, 0x36, 0x47, 0x06, 0x81, 0x6A, 0xBA, 0x3E, 0x25, 0x71, 0x78, 0x50,
            0xC2, 0x6C, 0x9C, 0xD0, 0xD8, 0x9D
        ])
    );
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    // RFC 6455 §1.3's worked example.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}
