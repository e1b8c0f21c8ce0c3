//! `WebSocketPeer` on wasm32: the same poll model over the browser's own `WebSocket`
//! (web-sys), Godot's `EMWSPeer`. The browser's callbacks only queue; `poll()` makes
//! what they brought visible.

mod inbox;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::{Closure, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use self::inbox::{Admission, Inbox, Report};
use crate::config::PeerConfig;
use crate::error::Error;
use crate::proto::{Packet, State, WriteMode};
use crate::variant::{Variant, VariantError};

/// The browser's `WebSocket.readyState` values that still need a close.
const WS_CONNECTING: u16 = 0;
const WS_OPEN: u16 = 1;

/// The page's `WebSocket` with the callbacks it calls. Dropping it detaches them first, so
/// the browser never calls a closure that is gone, and closes a socket still in use.
struct Socket {
    ws: WebSocket,
    /// `outbound_buffer_size` as it was when this connection started.
    outbound_buffer_size: usize,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut()>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onerror(None);
        self.ws.set_onclose(None);
        if matches!(self.ws.ready_state(), WS_CONNECTING | WS_OPEN) {
            // Nothing would read it any more. Without a code: `close()` cannot throw.
            let _ = self.ws.close();
        }
    }
}

/// One WebSocket connection from a web page: Godot's `WebSocketPeer` in a Web export.
///
/// The API is the native one, less what a page cannot do (see `docs/web.md`): call
/// [`poll`](Self::poll) once per frame (from `requestAnimationFrame`) and read what arrived
/// with [`get_available_packet_count`](Self::get_available_packet_count) /
/// [`get_packet`](Self::get_packet). The browser's callbacks only queue what they report;
/// the open, each packet and the close become visible in `poll()`, in the order they
/// happened.
pub struct WebSocketPeer {
    config: PeerConfig,
    socket: Option<Socket>,
    /// What the callbacks of the current connection queue (kept after it ends: packets
    /// received before the close stay readable).
    inbox: Rc<RefCell<Inbox>>,
    state: State,
    close_code: i32,
    close_reason: String,
    /// The close code and reason were ours: a limit was exceeded.
    closed_by_limit: bool,
    selected_protocol: String,
    error: Option<Error>,
    last_was_string: bool,
    requested_url: String,
}

impl Default for WebSocketPeer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WebSocketPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketPeer")
            .field("state", &self.state)
            .field("requested_url", &self.requested_url)
            .field("packets", &self.get_available_packet_count())
            .finish_non_exhaustive()
    }
}

/// The text of a JavaScript exception.
fn js_message(value: &JsValue) -> String {
    match value.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.message()),
        None => value.as_string().unwrap_or_else(|| format!("{value:?}")),
    }
}

/// Checks what the browser's `WebSocket` constructor would throw for, with wspeer's errors:
/// an empty scheme means `ws://` (as in Godot); only `ws://` and `wss://` are taken.
fn browser_url(url: &str) -> Result<String, Error> {
    let url = url.trim();
    if url.is_empty() {
        return Err(Error::InvalidUrl("empty URL".into()));
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("ws", url));
    if !scheme.eq_ignore_ascii_case("ws") && !scheme.eq_ignore_ascii_case("wss") {
        return Err(Error::UnsupportedScheme(scheme.to_string()));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(Error::InvalidUrl(format!("{url:?} has no host")));
    }
    Ok(format!("{}://{rest}", scheme.to_ascii_lowercase()))
}

/// Checks `close`'s arguments as the browser would, before anything changes: `None` for a
/// negative code (drop the connection), else the code to send.
fn check_close(code: i32, reason: &str) -> Result<Option<u16>, Error> {
    if code < 0 {
        return Ok(None);
    }
    // `WebSocket.close()` throws for any other code.
    if code != 1000 && !(3000..=4999).contains(&code) {
        return Err(Error::InvalidCloseCode(code));
    }
    if reason.len() > 123 {
        return Err(Error::CloseReasonTooLong(reason.len()));
    }
    Ok(Some(code as u16))
}

impl WebSocketPeer {
    /// A closed peer with Godot's default settings.
    pub fn new() -> Self {
        Self::with_config(PeerConfig::default())
    }

    /// A closed peer with the given settings.
    pub fn with_config(config: PeerConfig) -> Self {
        let inbox = Inbox::new(config.inbound_buffer_size, config.max_queued_packets);
        WebSocketPeer {
            config,
            socket: None,
            inbox: Rc::new(RefCell::new(inbox)),
            state: State::Closed,
            close_code: -1,
            close_reason: String::new(),
            closed_by_limit: false,
            selected_protocol: String::new(),
            error: None,
            last_was_string: false,
            requested_url: String::new(),
        }
    }

    // ----- settings (Godot's properties) -----

    /// The settings used by the next connection.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// Changes the settings used by the next connection.
    pub fn config_mut(&mut self) -> &mut PeerConfig {
        &mut self.config
    }

    /// Godot's `supported_protocols` setter (entries are trimmed, as in Godot).
    pub fn set_supported_protocols<S: AsRef<str>>(&mut self, protocols: &[S]) {
        self.config.supported_protocols = protocols
            .iter()
            .map(|p| p.as_ref().trim().to_string())
            .collect();
    }

    /// Godot's `supported_protocols` getter.
    pub fn get_supported_protocols(&self) -> &[String] {
        &self.config.supported_protocols
    }

    /// Godot's `inbound_buffer_size` setter: the largest message taken, and the unread
    /// bytes at which the connection is closed (a page cannot pause reading).
    pub fn set_inbound_buffer_size(&mut self, bytes: usize) {
        self.config.inbound_buffer_size = bytes;
    }

    /// Godot's `inbound_buffer_size` getter.
    pub fn get_inbound_buffer_size(&self) -> usize {
        self.config.inbound_buffer_size
    }

    /// Godot's `outbound_buffer_size` setter (`0` = no byte limit): checked against the
    /// browser's `bufferedAmount`.
    pub fn set_outbound_buffer_size(&mut self, bytes: usize) {
        self.config.outbound_buffer_size = bytes;
    }

    /// Godot's `outbound_buffer_size` getter.
    pub fn get_outbound_buffer_size(&self) -> usize {
        self.config.outbound_buffer_size
    }

    /// Godot's `max_queued_packets` setter: the unread packets at which the connection is
    /// closed (the browser does not count outgoing messages).
    pub fn set_max_queued_packets(&mut self, packets: usize) {
        self.config.max_queued_packets = packets;
    }

    /// Godot's `max_queued_packets` getter.
    pub fn get_max_queued_packets(&self) -> usize {
        self.config.max_queued_packets
    }

    // ----- starting a connection -----

    /// Starts connecting to a `ws://` or `wss://` URL through the page's `WebSocket`; the
    /// connection's progress shows in [`poll`](Self::poll). There is no TLS parameter: the
    /// browser does `wss://` itself, with its own trust store. The
    /// [`supported_protocols`](PeerConfig::supported_protocols) are offered.
    ///
    /// Fails with [`Error::AlreadyInUse`] unless the peer is closed or closing, with the
    /// URL and setting errors of the native peer, and with [`Error::Browser`] when the
    /// browser refuses the URL.
    pub fn connect_to_url(&mut self, url: &str) -> Result<(), Error> {
        if !matches!(self.state, State::Closed | State::Closing) {
            return Err(Error::AlreadyInUse);
        }
        self.config.validate()?;
        let browser_url = browser_url(url)?;
        let ws = if self.config.supported_protocols.is_empty() {
            WebSocket::new(&browser_url)
        } else {
            let protocols: Array = self
                .config
                .supported_protocols
                .iter()
                .map(|p| JsValue::from_str(p))
                .collect();
            WebSocket::new_with_str_sequence(&browser_url, &protocols)
        }
        .map_err(|e| Error::Browser(js_message(&e)))?;
        ws.set_binary_type(BinaryType::Arraybuffer);

        let inbox = Rc::new(RefCell::new(Inbox::new(
            self.config.inbound_buffer_size,
            self.config.max_queued_packets,
        )));
        let on_open = {
            let inbox = Rc::clone(&inbox);
            let ws = ws.clone();
            Closure::<dyn FnMut()>::new(move || inbox.borrow_mut().opened(ws.protocol()))
        };
        let on_message = {
            let inbox = Rc::clone(&inbox);
            let ws = ws.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let admission = take_message(&mut inbox.borrow_mut(), event.data());
                // After the borrow: closing calls into the browser.
                if let Admission::Close { wire_code, reason } = admission {
                    if let Err(e) = ws.close_with_code_and_reason(wire_code, &reason) {
                        log::warn!("closing after a limit was exceeded: {}", js_message(&e));
                    }
                }
            })
        };
        let on_error = {
            let inbox = Rc::clone(&inbox);
            Closure::<dyn FnMut()>::new(move || inbox.borrow_mut().errored())
        };
        let on_close = {
            let inbox = Rc::clone(&inbox);
            Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                inbox
                    .borrow_mut()
                    .closed(event.code(), event.reason(), event.was_clean())
            })
        };
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));

        // The previous connection's socket (if still closing) goes now, callbacks first.
        self.socket = Some(Socket {
            ws,
            outbound_buffer_size: self.config.outbound_buffer_size,
            _on_open: on_open,
            _on_message: on_message,
            _on_error: on_error,
            _on_close: on_close,
        });
        self.inbox = inbox;
        self.state = State::Connecting;
        self.close_code = -1;
        self.close_reason.clear();
        self.closed_by_limit = false;
        self.selected_protocol.clear();
        self.error = None;
        self.last_was_string = false;
        self.requested_url = url.to_string();
        Ok(())
    }

    // ----- the frame -----

    /// Makes visible what the browser reported since the last call, in order: the open
    /// (with the selected sub-protocol), received packets, a limit exceeded, the close.
    /// Returns at once; call it once per frame.
    pub fn poll(&mut self) {
        let reports = self.inbox.borrow_mut().drain();
        for report in reports {
            self.apply(report);
        }
    }

    fn apply(&mut self, report: Report) {
        if self.state == State::Closed {
            // Dropped with `close(-1)`: what its socket still reported does not count.
            return;
        }
        match report {
            Report::Open { protocol } => {
                if self.state == State::Connecting {
                    self.state = State::Open;
                    self.selected_protocol = protocol;
                }
            }
            Report::Failed {
                code,
                reason,
                error,
            } => {
                log::warn!("closing the connection: {error}");
                self.state = State::Closing;
                self.close_code = i32::from(code);
                self.close_reason = reason;
                self.closed_by_limit = true;
                self.error = Some(error);
            }
            Report::Error => {
                if self.error.is_none() {
                    self.error = Some(if self.state == State::Connecting {
                        Error::Connect(
                            "the browser could not open the WebSocket (it does not say why; \
                             see the browser's console)"
                                .into(),
                        )
                    } else {
                        Error::ConnectionLost("the browser reported a WebSocket error".into())
                    });
                }
            }
            Report::Closed {
                code,
                reason,
                clean,
            } => {
                self.state = State::Closed;
                if !self.closed_by_limit {
                    if clean {
                        self.close_code = i32::from(code);
                        self.close_reason = reason;
                    } else {
                        self.close_code = -1;
                        if self.error.is_none() {
                            self.error = Some(Error::ConnectionLost(format!(
                                "closed without a close handshake (browser code {code})"
                            )));
                        }
                    }
                }
                self.socket = None;
            }
        }
    }

    // ----- sending -----

    /// Sends one message as text or binary. Fails without sending anything when the
    /// connection is not open, the text is not UTF-8, or the message would take the
    /// browser's `bufferedAmount` over `outbound_buffer_size` bytes.
    pub fn send(&mut self, data: &[u8], mode: WriteMode) -> Result<(), Error> {
        match mode {
            WriteMode::Text => {
                let text = std::str::from_utf8(data).map_err(|_| Error::InvalidUtf8)?;
                self.send_text(text)
            }
            WriteMode::Binary => {
                let ws = self.open_socket(data.len())?;
                ws.send_with_u8_array(data)
                    .map_err(|e| Error::Browser(js_message(&e)))
            }
        }
    }

    /// Sends a text message (Godot's `send_text`).
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        let ws = self.open_socket(text.len())?;
        ws.send_with_str(text)
            .map_err(|e| Error::Browser(js_message(&e)))
    }

    /// Sends a received packet on, as text or binary like it came.
    pub fn send_packet(&mut self, packet: &Packet) -> Result<(), Error> {
        let mode = if packet.is_text() {
            WriteMode::Text
        } else {
            WriteMode::Binary
        };
        self.send(packet.data(), mode)
    }

    /// Sends a binary message (Godot's `put_packet`, always binary as in Godot 4).
    pub fn put_packet(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send(data, WriteMode::Binary)
    }

    /// Sends `value` as one binary message (Godot's `put_var`), in the format of
    /// [`PeerConfig::variant_version`].
    pub fn put_var(&mut self, value: &Variant) -> Result<(), Error> {
        let bytes = value.to_bytes(self.config.variant_version)?;
        self.put_packet(&bytes)
    }

    /// The open socket, if `len` more bytes fit `outbound_buffer_size`.
    fn open_socket(&self, len: usize) -> Result<&WebSocket, Error> {
        let socket = match &self.socket {
            Some(socket) if self.state == State::Open => socket,
            _ => return Err(Error::NotOpen),
        };
        let limit = socket.outbound_buffer_size;
        if limit > 0 {
            if len > limit {
                return Err(Error::MessageTooLarge { size: len, limit });
            }
            let buffered = socket.ws.buffered_amount() as usize;
            if buffered + len > limit {
                return Err(Error::OutboundBufferFull {
                    buffered,
                    message: len,
                    limit,
                });
            }
        }
        Ok(&socket.ws)
    }

    // ----- receiving -----

    /// Packets waiting to be read (Godot's `get_available_packet_count`). Packets that
    /// arrived before a close stay readable after it.
    pub fn get_available_packet_count(&self) -> usize {
        self.inbox.borrow().readable()
    }

    /// The next packet's payload, or `None` when the queue is empty (Godot's
    /// `get_packet`). [`was_string_packet`](Self::was_string_packet) then tells its type.
    pub fn get_packet(&mut self) -> Option<Vec<u8>> {
        self.recv().map(Packet::into_vec)
    }

    /// Takes the next packet and decodes it as one Variant (Godot's `get_var`).
    pub fn get_var(&mut self) -> Option<Result<Variant, VariantError>> {
        let packet = self.recv()?;
        Some(Variant::from_bytes(
            packet.data(),
            self.config.variant_version,
            &self.config.variant_limits,
        ))
    }

    /// The next packet with its type.
    pub fn recv(&mut self) -> Option<Packet> {
        let packet = self.inbox.borrow_mut().pop()?;
        self.last_was_string = packet.is_text();
        Some(packet)
    }

    /// The queued packets in order; each is taken off the queue only when yielded.
    pub fn packets(&mut self) -> impl Iterator<Item = Packet> + '_ {
        std::iter::from_fn(move || self.recv())
    }

    /// Whether the last packet returned by `get_packet`/`recv` was a text frame.
    pub fn was_string_packet(&self) -> bool {
        self.last_was_string
    }

    // ----- closing -----

    /// Starts the close handshake with `code` and `reason` (Godot's `close`); keep polling
    /// until [`State::Closed`]. A negative code drops the connection at once (close code
    /// -1). While connecting, the attempt is abandoned.
    ///
    /// Browsers only let a page send 1000 or 3000–4999: any other code fails with
    /// [`Error::InvalidCloseCode`], a reason over 123 bytes with
    /// [`Error::CloseReasonTooLong`], and nothing changes.
    pub fn close(&mut self, code: i32, reason: &str) -> Result<(), Error> {
        let wire_code = check_close(code, reason)?;
        match (wire_code, self.state) {
            (_, State::Closed | State::Closing) => {}
            (Some(wire_code), State::Open) => {
                if let Some(socket) = &self.socket {
                    socket
                        .ws
                        .close_with_code_and_reason(wire_code, reason)
                        .map_err(|e| Error::Browser(js_message(&e)))?;
                }
                self.state = State::Closing;
            }
            (None, _) | (_, State::Connecting) => {
                // Dropping the socket detaches its callbacks and closes it.
                self.socket = None;
                self.state = State::Closed;
                self.close_code = -1;
                self.close_reason.clear();
            }
        }
        Ok(())
    }

    /// The connection's state (Godot's `get_ready_state`), as of the last `poll()`.
    pub fn get_ready_state(&self) -> State {
        self.state
    }

    /// The close code the remote sent, or -1 when the connection did not close cleanly
    /// (Godot's `get_close_code`). After we closed because a limit was exceeded, the code
    /// that says so (1008, 1009; on the wire 4008, 4009, as browsers only send
    /// 3000–4999).
    pub fn get_close_code(&self) -> i32 {
        self.close_code
    }

    /// The close reason that went with [`get_close_code`](Self::get_close_code).
    pub fn get_close_reason(&self) -> &str {
        &self.close_reason
    }

    /// Why the connection failed or closed uncleanly, if it did. Browsers do not say why a
    /// connection could not open (refused, bad certificate, ...): their console does.
    /// Beyond Godot.
    pub fn get_last_error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    // ----- information -----

    /// The URL given to `connect_to_url` (Godot's `get_requested_url`).
    pub fn get_requested_url(&self) -> &str {
        &self.requested_url
    }

    /// The negotiated sub-protocol, or `""` (Godot's `get_selected_protocol`).
    pub fn get_selected_protocol(&self) -> &str {
        &self.selected_protocol
    }

    /// Bytes sent but not yet handed to the network: the browser's `bufferedAmount`
    /// (payload bytes, no frame headers), 0 without a connection (Godot's
    /// `get_current_outbound_buffered_amount`).
    pub fn get_current_outbound_buffered_amount(&self) -> usize {
        self.socket
            .as_ref()
            .map_or(0, |socket| socket.ws.buffered_amount() as usize)
    }
}

/// Takes one `message` event's data into the inbox, within its limits: text arrives as a
/// string, binary as an `ArrayBuffer` (measured before it is copied).
fn take_message(inbox: &mut Inbox, data: JsValue) -> Admission {
    if let Some(text) = data.as_string() {
        let admission = inbox.admit(text.len());
        if admission == Admission::Queued {
            inbox.push(text, true);
        }
        return admission;
    }
    match data.dyn_into::<ArrayBuffer>() {
        Ok(buffer) => {
            let admission = inbox.admit(buffer.byte_length() as usize);
            if admission == Admission::Queued {
                inbox.push(Uint8Array::new(&buffer).to_vec(), false);
            }
            admission
        }
        Err(other) => {
            // binaryType is "arraybuffer": the browser sends nothing else.
            log::warn!("ignored a message of unexpected type: {other:?}");
            Admission::Dropped
        }
    }
}
