//! `examples/client.rs` in a web page: connect to the `?url=` of the page, send
//! `Test packet` once open, print what comes back, close with 1000 after the echo and
//! print the close code, one step per `requestAnimationFrame`, each line appended to
//! `<pre id="log">`. Built by `build.sh`; `index.html` loads it.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wspeer::{State, WebSocketPeer};

/// How long to wait for the echo before closing anyway, as the native client does.
const ECHO_TIMEOUT_MS: f64 = 10_000.0;

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

impl Client {
    fn print(&self, line: &str) {
        self.log.append_with_str_1(&format!("{line}\n")).ok();
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
    let window = web_sys::window().ok_or("no window")?;
    let mut socket = WebSocketPeer::new();
    let connected = socket.connect_to_url(url);
    let client = Client {
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
    // The frame callback schedules itself: it holds its own closure until the client ends.
    let client = RefCell::new(client);
    let frame: FrameCallback = Rc::new(RefCell::new(None));
    let next = Rc::clone(&frame);
    let schedule = window.clone();
    *frame.borrow_mut() = Some(Closure::new(move || {
        if client.borrow_mut().frame() {
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
