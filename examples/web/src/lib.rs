//! The browser example: `examples/client.rs` in a web page (`run`), and a Godot 4
//! multiplayer client for `examples/mp_server.rs` (`run_multiplayer`), each stepped once
//! per `requestAnimationFrame` with its lines appended to `<pre id="log">`. Built by
//! `build.sh`; `index.html` loads it and picks one by `?mode=`.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wspeer::{
    ConnectionStatus, MultiplayerEvent, MultiplayerPeer, State, TARGET_PEER_SERVER,
    WebSocketMultiplayerPeer, WebSocketPeer,
};

/// How long to wait for the echo before closing anyway, as the native client does.
const ECHO_TIMEOUT_MS: f64 = 10_000.0;

/// The sub-protocol `mp_server` (and Godot's websocket_multiplayer demo) asks for.
const MULTIPLAYER_PROTOCOL: &str = "ludus";

/// What the multiplayer client sends to the first other client it is told about.
const GREETING: &str = "Hello from the browser";

/// How long the multiplayer client waits to have sent its greeting and received one
/// before leaving anyway.
const EXCHANGE_TIMEOUT_MS: f64 = 10_000.0;

/// The frame callback, kept where it can reach itself to schedule the next frame.
type FrameCallback = Rc<RefCell<Option<Closure<dyn FnMut()>>>>;

/// The native client's state, and where its lines go.
struct Client {
    socket: WebSocketPeer,
    log: web_sys::Element,
    started_ms: f64,
    sent: bool,
    closing: bool,
}

/// Appends one line to the page's log.
fn print(log: &web_sys::Element, line: &str) {
    log.append_with_str_1(&format!("{line}\n")).ok();
}

impl Client {
    fn print(&self, line: &str) {
        print(&self.log, line);
    }

    /// One frame of `examples/client.rs`'s loop; false once the connection is closed.
    fn frame(&mut self) -> bool {
        self.socket.poll();
        match self.socket.get_ready_state() {
            State::Open => {
                if !self.sent {
                    if let Err(e) = self.socket.send_text("Test packet") {
                        self.print(&format!("Unable to send: {e}"));
                        let _ = self.socket.close(-1, "");
                        return false;
                    }
                    self.sent = true;
                }
                while let Some(packet) = self.socket.get_packet() {
                    let text = String::from_utf8_lossy(&packet).into_owned();
                    self.print(&format!("Got data from server: {text}"));
                    if text == "Test packet" && !self.closing {
                        let _ = self.socket.close(1000, "");
                        self.closing = true;
                    }
                }
            }
            State::Closing | State::Connecting => {}
            State::Closed => {
                let code = self.socket.get_close_code();
                self.print(&format!("WebSocket closed with code: {code}"));
                if let Some(error) = self.socket.get_last_error() {
                    self.print(&format!("Error: {error}"));
                }
                return false;
            }
        }
        if !self.closing && js_sys::Date::now() - self.started_ms > ECHO_TIMEOUT_MS {
            self.print("No echo within 10 s; closing");
            let _ = self.socket.close(1000, "timeout");
            self.closing = true;
        }
        true
    }
}

/// Connects to `url` and runs the client from `requestAnimationFrame`, appending its lines
/// to `log`; calls `on_done` once the connection is closed (or could not start).
#[wasm_bindgen]
pub fn run(url: &str, log: web_sys::Element, on_done: js_sys::Function) -> Result<(), JsValue> {
    let mut socket = WebSocketPeer::new();
    let connected = socket.connect_to_url(url);
    let mut client = Client {
        socket,
        log,
        started_ms: js_sys::Date::now(),
        sent: false,
        closing: false,
    };
    if let Err(e) = connected {
        client.print(&format!("Unable to connect: {e}"));
        on_done.call0(&JsValue::NULL)?;
        return Ok(());
    }
    every_frame(move || client.frame(), on_done)
}

/// A Godot 4 multiplayer client, as a game in a page would run one.
struct MultiplayerClient {
    game: WebSocketMultiplayerPeer,
    log: web_sys::Element,
    started_ms: f64,
    /// The other client the greeting went to, once sent.
    greeted: Option<i32>,
    /// A packet from another client arrived.
    answered: bool,
    leaving: bool,
}

impl MultiplayerClient {
    fn print(&self, line: &str) {
        print(&self.log, line);
    }

    /// One frame: poll, report the events and packets, greet the first other client, and
    /// leave once the greeting is sent and one has arrived. False once disconnected.
    fn frame(&mut self) -> bool {
        self.game.poll();
        while let Some(event) = self.game.pop_event() {
            match event {
                MultiplayerEvent::ConnectedToServer => {
                    let id = self.game.get_unique_id();
                    self.print(&format!("Connected as peer {id}"));
                }
                MultiplayerEvent::PeerConnected(id) => {
                    self.print(&format!("Peer {id} connected"));
                    if id != TARGET_PEER_SERVER && self.greeted.is_none() {
                        self.greet(id);
                    }
                }
                MultiplayerEvent::PeerDisconnected(id) => {
                    self.print(&format!("Peer {id} disconnected"));
                }
                MultiplayerEvent::ConnectionFailed => self.print("Connection failed"),
                MultiplayerEvent::ServerDisconnected => self.print("Disconnected from the server"),
                // RPCs, replication and authentication: mp_server only relays packets
                // (and printing any event with `{:?}` would add a fifth to the download).
                _ => {}
            }
        }
        while let Some((from, packet)) = self.game.recv() {
            self.print(&format!(
                "from {from}: {}",
                String::from_utf8_lossy(&packet)
            ));
            self.answered |= from != TARGET_PEER_SERVER;
        }
        if self.game.get_connection_status() == ConnectionStatus::Disconnected {
            if let Some(error) = self.game.get_last_error() {
                self.print(&format!("Error: {error}"));
            }
            return false;
        }
        let timed_out = js_sys::Date::now() - self.started_ms > EXCHANGE_TIMEOUT_MS;
        if !self.leaving && ((self.greeted.is_some() && self.answered) || timed_out) {
            if timed_out {
                self.print("No exchange with another client within 10 s; leaving");
            }
            // A clean leave: the close frame follows the greeting, so the server relays it.
            if let Err(e) = self.game.disconnect_peer(TARGET_PEER_SERVER, false) {
                self.print(&format!("Unable to leave: {e}"));
                return false;
            }
            self.leaving = true;
        }
        true
    }

    fn greet(&mut self, id: i32) {
        match self.game.send_bytes(GREETING.as_bytes(), id) {
            Ok(()) => {
                self.print(&format!("Sent to {id}: {GREETING}"));
                self.greeted = Some(id);
            }
            Err(e) => self.print(&format!("Unable to send to {id}: {e}")),
        }
    }
}

/// Joins the multiplayer server at `url` (Godot 4 protocol, sub-protocol `ludus`) and runs
/// a client from `requestAnimationFrame`: it logs its id, the peers it is told about and
/// the packets it receives (`from <id>: <text>`), sends `Hello from the browser` to the
/// first other client, and leaves once it has received a packet from another client (or
/// after 10 s). Calls `on_done` once disconnected (or if it could not start).
#[wasm_bindgen]
pub fn run_multiplayer(
    url: &str,
    log: web_sys::Element,
    on_done: js_sys::Function,
) -> Result<(), JsValue> {
    let mut game = WebSocketMultiplayerPeer::new();
    game.set_supported_protocols(&[MULTIPLAYER_PROTOCOL]);
    let connected = game.create_client(url);
    let mut client = MultiplayerClient {
        game,
        log,
        started_ms: js_sys::Date::now(),
        greeted: None,
        answered: false,
        leaving: false,
    };
    if let Err(e) = connected {
        client.print(&format!("Unable to connect: {e}"));
        on_done.call0(&JsValue::NULL)?;
        return Ok(());
    }
    client.print(&format!(
        "Joining {url} (sub-protocol {MULTIPLAYER_PROTOCOL})"
    ));
    every_frame(move || client.frame(), on_done)
}

/// Calls `step` once per `requestAnimationFrame` until it returns false, then `on_done`.
fn every_frame(
    mut step: impl FnMut() -> bool + 'static,
    on_done: js_sys::Function,
) -> Result<(), JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    // The frame callback schedules itself: it holds its own closure until the step ends.
    let frame: FrameCallback = Rc::new(RefCell::new(None));
    let next = Rc::clone(&frame);
    let schedule = window.clone();
    *frame.borrow_mut() = Some(Closure::new(move || {
        if step() {
            if let Some(callback) = next.borrow().as_ref() {
                schedule
                    .request_animation_frame(callback.as_ref().unchecked_ref())
                    .ok();
            }
        } else {
            on_done.call0(&JsValue::NULL).ok();
            // Ends the cycle: the closure (and the client in it) is freed.
            next.borrow_mut().take();
        }
    }));
    if let Some(callback) = frame.borrow().as_ref() {
        window.request_animation_frame(callback.as_ref().unchecked_ref())?;
    }
    Ok(())
}
