//! The HTTP upgrade, both sides: the client's request and its check of the `101` answer
//! (RFC 6455 §4.1), and the server's reading, validation (§4.2.1), sub-protocol choice and
//! answer.
//!
//! tungstenite's own handshakes fall short here: its server drops a bad request without an
//! answer and has fixed limits, and its client rejects a valid `Connection: keep-alive,
//! Upgrade` and accepts extensions it never offered. So the upgrade is done here (httparse
//! does the parsing) and tungstenite takes over the socket for the frames. Every refusal
//! gets the status a client can act on (400, 426, 431); limits come from
//! [`PeerConfig`](crate::PeerConfig).

use tungstenite::handshake::derive_accept_key;

/// The client's upgrade request, as a server saw it: path, query and every header.
/// Beyond Godot, which only exposes `get_requested_url()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The request path, e.g. `/game`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// Every header in arrival order, names lower-cased; values that are not UTF-8 are
    /// decoded lossily.
    pub headers: Vec<(String, String)>,
}

impl HandshakeRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header contains `token` (case-insensitive), across all of
    /// its lines.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The sub-protocols the client offered, in its order of preference.
    pub fn offered_protocols(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// Why a request was refused: the HTTP status sent back and a sentence for the logs and
/// the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) why: String,
    /// Seconds for `Retry-After` (a draining server's 503).
    pub(crate) retry_after: Option<u64>,
}

fn refuse(status: u16, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        why: why.into(),
        retry_after: None,
    }
}

/// A draining server's answer to an upgrade: 503 with `Retry-After`.
pub(crate) fn draining(retry_after: u64) -> Refusal {
    Refusal {
        retry_after: Some(retry_after),
        ..refuse(
            503,
            "this server is draining: connect again, the load balancer picks another one",
        )
    }
}

/// What the bytes read so far amount to.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// The head is not complete yet.
    Incomplete,
    /// A valid upgrade request whose head is `head_len` bytes long (anything after it is
    /// already WebSocket data).
    Upgrade {
        head_len: usize,
        request: HandshakeRequest,
        key: String,
    },
    Refused(Refusal),
    /// A plain `GET` or `HEAD` (no `Upgrade: websocket`) of the health path.
    Health {
        /// `HEAD`: the answer has no body.
        head_only: bool,
    },
}

/// Whether `buf` starts like a TLS record (handshake or alert), not like HTTP.
fn looks_like_tls(buf: &[u8]) -> bool {
    matches!(buf, [0x15 | 0x16, 0x03, ..])
}

/// Parses and validates the request head in `buf`; `health_path`: the path answered as a
/// health check (exact match, query ignored).
pub(crate) fn parse_request(
    buf: &[u8],
    max_bytes: usize,
    max_headers: usize,
    health_path: Option<&str>,
) -> Parsed {
    if looks_like_tls(buf) {
        return Parsed::Refused(refuse(
            400,
            "a TLS handshake on a plain ws:// port: connect with ws://, or serve wss:// here",
        ));
    }
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > max_bytes => {
            return Parsed::Refused(refuse(
                431,
                format!("request head larger than {max_bytes} bytes"),
            ));
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(refuse(431, format!("more than {max_headers} headers")));
        }
        Err(e) => return Parsed::Refused(refuse(400, format!("malformed HTTP request: {e}"))),
    };
    if head_len > max_bytes {
        return Parsed::Refused(refuse(
            431,
            format!("request head larger than {max_bytes} bytes"),
        ));
    }
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (target.to_string(), None),
    };
    let request = HandshakeRequest {
        path,
        query,
        headers: header_list(parsed.headers),
    };
    let method = parsed.method.unwrap_or("");
    if Some(request.path.as_str()) == health_path
        && matches!(method, "GET" | "HEAD")
        && !request.has_token("upgrade", "websocket")
    {
        return Parsed::Health {
            head_only: method == "HEAD",
        };
    }
    if parsed.method != Some("GET") {
        let method = parsed.method.unwrap_or("");
        return Parsed::Refused(refuse(
            400,
            format!("a WebSocket upgrade must use GET, not {method}"),
        ));
    }
    if parsed.version != Some(1) {
        return Parsed::Refused(refuse(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    if request.header("host").is_none() {
        return Parsed::Refused(refuse(400, "missing Host header"));
    }
    if !request.has_token("upgrade", "websocket") {
        return Parsed::Refused(refuse(400, "missing \"Upgrade: websocket\""));
    }
    if !request.has_token("connection", "upgrade") {
        return Parsed::Refused(refuse(400, "missing \"Connection: Upgrade\""));
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Parsed::Refused(refuse(426, "only WebSocket version 13 is supported"));
    }
    let key = request.header("sec-websocket-key").unwrap_or("").trim();
    if !is_valid_key(key) {
        return Parsed::Refused(refuse(400, "missing or malformed Sec-WebSocket-Key"));
    }
    Parsed::Upgrade {
        head_len,
        key: key.to_string(),
        request,
    }
}

/// Header names lower-cased, values decoded lossily, in arrival order.
fn header_list(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// A key is base64 of 16 bytes: 22 base64 characters and `==` (RFC 6455 §4.1).
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Godot's rule: the first protocol in the client's order that we support. A client that
/// offers none is refused when we require one, and one that offers only unknown ones too.
pub(crate) fn select_protocol(offered: &[&str], supported: &[String]) -> Result<String, Refusal> {
    if offered.is_empty() {
        if supported.is_empty() {
            return Ok(String::new());
        }
        return Err(refuse(
            400,
            format!("a sub-protocol is required: {}", supported.join(", ")),
        ));
    }
    offered
        .iter()
        .find(|p| supported.iter().any(|s| s == *p))
        .map(|p| p.to_string())
        .ok_or_else(|| {
            refuse(
                400,
                format!(
                    "none of the offered sub-protocols is supported: {}",
                    offered.join(", ")
                ),
            )
        })
}

/// The `101 Switching Protocols` answer.
pub(crate) fn accept_response(key: &str, protocol: &str, extra_headers: &[String]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if !protocol.is_empty() {
        out.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    for line in extra_headers {
        out.push_str(line.trim());
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The reason phrase of an HTTP status (`"Error"` for one not listed).
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// The application's refusal of a request it was asked to decide: the status line,
/// `Connection: close`, the application's header lines in order, `Content-Length`, and the
/// body as given.
pub(crate) fn rejection_response(status: u16, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n",
        reason_phrase(status)
    );
    for line in headers {
        out.push_str(line.trim());
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// An HTTP error answer that closes the connection; the body says why.
pub(crate) fn refusal_response(refusal: &Refusal) -> Vec<u8> {
    let reason = reason_phrase(refusal.status);
    let mut extra = String::new();
    if refusal.status == 426 {
        extra.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    if let Some(seconds) = refusal.retry_after {
        extra.push_str(&format!("Retry-After: {seconds}\r\n"));
    }
    let body = format!("{}\n", refusal.why);
    format!(
        "HTTP/1.1 {} {reason}\r\nConnection: close\r\n{extra}Content-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        refusal.status,
        body.len()
    )
    .into_bytes()
}

/// The answer to a health check: `200` and `ok` while serving, `503`, `draining` and
/// `Retry-After` while draining (`retry_after` is `Some`). Never cached; `HEAD` gets the
/// same head and no body.
pub(crate) fn health_response(retry_after: Option<u64>, head_only: bool) -> Vec<u8> {
    let (status, retry, body) = match retry_after {
        None => (200, String::new(), "ok\n"),
        Some(seconds) => (503, format!("Retry-After: {seconds}\r\n"), "draining\n"),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n{retry}Cache-Control: no-store\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

/// The client's upgrade request for `path_and_query` on `authority`; returns it with the
/// `Sec-WebSocket-Accept` value the server must answer.
pub(crate) fn client_request(
    authority: &str,
    path_and_query: &str,
    protocols: &[String],
    extra_headers: &[String],
) -> (Vec<u8>, String) {
    let key = tungstenite::handshake::client::generate_key();
    let mut out = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        out.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ));
    }
    for line in extra_headers {
        out.push_str(line.trim());
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    (out.into_bytes(), derive_accept_key(key.as_bytes()))
}

/// What the server's answer amounts to, for a client.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The head is not complete yet.
    Incomplete,
    /// A valid `101`: the head is `head_len` bytes long (what follows is already frames).
    Accepted {
        head_len: usize,
        protocol: String,
        headers: Vec<(String, String)>,
    },
    /// Anything else, in words.
    Failed(String),
}

/// Parses and checks the server's answer to our upgrade request (RFC 6455 §4.1, steps 1–6).
pub(crate) fn parse_answer(
    buf: &[u8],
    max_bytes: usize,
    max_headers: usize,
    expected_accept: &str,
    offered: &[String],
) -> Answer {
    if looks_like_tls(buf) {
        return Answer::Failed("the server answered with TLS, not HTTP: use wss://".into());
    }
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Response::new(&mut headers);
    let too_large = || {
        Answer::Failed(format!(
            "the server's answer head is larger than {max_bytes} bytes \
             (PeerConfig::max_handshake_bytes)"
        ))
    };
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > max_bytes => return too_large(),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > max_bytes => return too_large(),
        Ok(httparse::Status::Partial) => return Answer::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Answer::Failed(format!(
                "the server's answer has more than {max_headers} headers \
                 (PeerConfig::max_handshake_headers)"
            ));
        }
        Err(e) => return Answer::Failed(format!("the server's answer is not valid HTTP: {e}")),
    };
    let answer = HandshakeRequest {
        headers: header_list(parsed.headers),
        ..HandshakeRequest::default()
    };
    let code = parsed.code.unwrap_or(0);
    if code != 101 {
        let body = String::from_utf8_lossy(&buf[head_len..]);
        let body = body.trim();
        let detail = if body.is_empty() {
            String::new()
        } else {
            format!(": {}", truncate(body, 200))
        };
        return Answer::Failed(format!(
            "the server answered {code} {} instead of 101 Switching Protocols{detail}",
            parsed.reason.unwrap_or("")
        ));
    }
    if !answer.has_token("upgrade", "websocket") {
        return Answer::Failed("the answer lacks \"Upgrade: websocket\"".into());
    }
    if !answer.has_token("connection", "upgrade") {
        return Answer::Failed("the answer lacks \"Connection: Upgrade\"".into());
    }
    if answer.header("sec-websocket-accept").map(str::trim) != Some(expected_accept) {
        return Answer::Failed("the answer's Sec-WebSocket-Accept does not match our key".into());
    }
    if let Some(extension) = answer
        .header("sec-websocket-extensions")
        .filter(|v| !v.trim().is_empty())
    {
        return Answer::Failed(format!(
            "the server selected extension {extension:?}, which we did not offer"
        ));
    }
    let protocol = answer
        .header("sec-websocket-protocol")
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    match (offered.is_empty(), protocol.is_empty()) {
        (true, false) => {
            return Answer::Failed(format!(
                "the server selected sub-protocol {protocol:?}, but we offered none"
            ));
        }
        (false, true) => {
            return Answer::Failed(format!(
                "the server selected none of our sub-protocols ({})",
                offered.join(", ")
            ));
        }
        (false, false) if !offered.contains(&protocol) => {
            return Answer::Failed(format!(
                "the server selected sub-protocol {protocol:?}, which we did not offer"
            ));
        }
        _ => {}
    }
    Answer::Accepted {
        head_len,
        protocol,
        headers: answer.headers,
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\n\r\n";

    fn status_of(request: &str) -> u16 {
        match parse_request(request.as_bytes(), 8192, 64, None) {
            Parsed::Refused(r) => r.status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_valid_request_and_keeps_the_tail() {
        let mut bytes = GOOD.as_bytes().to_vec();
        bytes.extend_from_slice(&[0x81, 0x80]);
        let Parsed::Upgrade {
            head_len,
            request,
            key,
        } = parse_request(&bytes, 8192, 64, None)
        else {
            panic!("not accepted")
        };
        assert_eq!(head_len, GOOD.len());
        assert_eq!(
            (request.path.as_str(), request.query.as_deref()),
            ("/chat", Some("room=1"))
        );
        assert_eq!(request.offered_protocols(), ["a", "b"]);
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        // RFC 6455 §1.3's example.
        let response = String::from_utf8(accept_response(&key, "b", &[])).unwrap();
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: b\r\n"));
    }

    #[test]
    fn incomplete_until_the_blank_line() {
        assert!(matches!(
            parse_request(&GOOD.as_bytes()[..40], 8192, 64, None),
            Parsed::Incomplete
        ));
    }

    #[test]
    fn refusals_carry_the_right_status() {
        assert_eq!(status_of(&GOOD.replace("GET", "POST")), 400);
        assert_eq!(status_of(&GOOD.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert_eq!(status_of(&GOOD.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(
            status_of(&GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            400
        );
        assert_eq!(
            status_of(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
            400
        );
        assert_eq!(
            status_of(&GOOD.replace("Upgrade: websocket", "Upgrade: h2c")),
            400
        );
        assert_eq!(
            status_of(&GOOD.replace("keep-alive, Upgrade", "keep-alive")),
            400
        );
        assert_eq!(status_of(&GOOD.replace("Host: example.com\r\n", "")), 400);
        assert_eq!(status_of("NOT HTTP AT ALL\r\n\r\n"), 400);
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00];
        match parse_request(&hello, 8192, 64, None) {
            Parsed::Refused(r) => assert!(r.why.contains("TLS handshake on a plain ws://")),
            other => panic!("{other:?}"),
        }
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status_of(&GOOD.replacen("\r\n", &format!("\r\n{many}"), 1)),
            431
        );
        let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(9000));
        assert_eq!(status_of(&huge), 431);
    }

    #[test]
    fn protocol_selection_follows_the_client_order() {
        let supported = vec!["b".to_string(), "c".to_string()];
        assert_eq!(select_protocol(&["a", "c", "b"], &supported).unwrap(), "c");
        assert_eq!(select_protocol(&[], &[]).unwrap(), "");
        assert_eq!(select_protocol(&["x"], &supported).unwrap_err().status, 400);
        assert_eq!(select_protocol(&[], &supported).unwrap_err().status, 400);
        assert_eq!(select_protocol(&["x"], &[]).unwrap_err().status, 400);
    }

    fn answer(head: &str, offered: &[&str]) -> Answer {
        let offered: Vec<String> = offered.iter().map(|s| s.to_string()).collect();
        let accept = derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        parse_answer(head.as_bytes(), 8192, 64, &accept, &offered)
    }

    const ANSWER: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

    #[test]
    fn client_accepts_a_valid_answer_with_a_token_list() {
        let head = format!("{ANSWER}Sec-WebSocket-Protocol: b\r\n\r\n");
        match answer(&head, &["a", "b"]) {
            Answer::Accepted {
                head_len, protocol, ..
            } => {
                assert_eq!((head_len, protocol.as_str()), (head.len(), "b"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(answer(&ANSWER[..30], &[]), Answer::Incomplete));
    }

    #[test]
    fn client_refuses_what_rfc_6455_forbids() {
        let failed = |head: String, offered: &[&str], needle: &str| match answer(&head, offered) {
            Answer::Failed(why) => assert!(why.contains(needle), "{why}"),
            other => panic!("accepted {head:?}: {other:?}"),
        };
        failed(
            format!("{ANSWER}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
            &[],
            "extension",
        );
        failed(
            format!("{ANSWER}Sec-WebSocket-Protocol: x\r\n\r\n"),
            &[],
            "offered none",
        );
        failed(
            format!("{ANSWER}Sec-WebSocket-Protocol: x\r\n\r\n"),
            &["a"],
            "did not offer",
        );
        failed(format!("{ANSWER}\r\n"), &["a"], "none of our");
        failed(ANSWER.replace("s3pP", "AAAA") + "\r\n", &[], "Accept");
        failed(
            ANSWER.replace("keep-alive, Upgrade", "keep-alive") + "\r\n",
            &[],
            "Connection",
        );
        failed(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nnope".into(),
            &[],
            "400 Bad Request",
        );
    }

    #[test]
    fn client_request_carries_protocols_and_headers() {
        let (request, accept) =
            client_request("h:1", "/p?q", &["a".into(), "b".into()], &["X-Y: z".into()]);
        let text = String::from_utf8(request).unwrap();
        assert!(text.starts_with("GET /p?q HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: a, b\r\nX-Y: z\r\n\r\n"));
        let Parsed::Upgrade { key, .. } = parse_request(text.as_bytes(), 8192, 64, None) else {
            panic!()
        };
        assert_eq!(derive_accept_key(key.as_bytes()), accept);
    }

    #[test]
    fn refusal_response_is_well_formed() {
        let text = String::from_utf8(refusal_response(&refuse(426, "v13 only"))).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(text.ends_with("\r\n\r\nv13 only\n"));
    }
}
