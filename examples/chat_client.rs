//! The websocket_chat demo's client, headless: joins a chat server with sub-protocol
//! `demo-chat`, prints every line it receives, and sends each line typed on stdin.
//!
//! ```text
//! cargo run --example chat_client -- [URL] [--insecure] [--ca FILE]
//! ```
//! URL defaults to the demo's `ws://localhost:8000/test/`; use `wss://` with `--ca FILE`
//! (trust that CA) or `--insecure` (trust anything) for a server with a test certificate.
//! When stdin ends the client leaves with code 1000, reason `Bye`. It prints the close
//! code and reason and exits 0 after a clean close, 1 otherwise.

use std::io::{self, BufRead};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use wspeer::{State, TlsOptions, WebSocketPeer};

const PROTOCOL: &str = "demo-chat";
const DEFAULT_URL: &str = "ws://localhost:8000/test/";
const USAGE: &str = "usage: chat_client [URL] [--insecure] [--ca FILE]";

fn parse_args() -> Result<(String, Option<TlsOptions>), String> {
    let mut url = None;
    let mut tls = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--insecure" => tls = Some(TlsOptions::client_unsafe().map_err(|e| e.to_string())?),
            "--ca" => {
                let path = args.next().ok_or("--ca needs a file")?;
                let pem = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
                tls = Some(TlsOptions::client_with_ca(&pem).map_err(|e| e.to_string())?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other if url.is_none() && !other.starts_with("--") => url = Some(other.to_string()),
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    Ok((url.unwrap_or_else(|| DEFAULT_URL.to_string()), tls))
}

fn main() -> ExitCode {
    let (url, tls) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut socket = WebSocketPeer::new();
    socket.set_supported_protocols(&[PROTOCOL]);
    println!("Connecting to host: {url}.");
    if let Err(e) = socket.connect_to_url(&url, tls) {
        println!("Error connecting to host: {url}: {e}");
        return ExitCode::FAILURE;
    }

    // The terminal is read on its own thread: a blocking read cannot sit in the frame.
    let (tx, typed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    let mut was_open = false;
    let mut leaving = false;
    loop {
        socket.poll();
        match socket.get_ready_state() {
            State::Open => {
                if !was_open {
                    was_open = true;
                    println!(
                        "Client just connected with protocol: {}",
                        socket.get_selected_protocol()
                    );
                }
                while let Some(packet) = socket.recv() {
                    println!("{}", String::from_utf8_lossy(packet.data()));
                }
                loop {
                    match typed.try_recv() {
                        Ok(line) if line.is_empty() => {}
                        Ok(line) => {
                            println!("Sending message: {line}");
                            if let Err(e) = socket.send_text(&line) {
                                println!("Cannot send: {e}");
                            }
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            if !leaving {
                                leaving = true;
                                let _ = socket.close(1000, "Bye");
                            }
                            break;
                        }
                    }
                }
            }
            State::Connecting | State::Closing => {}
            State::Closed => {
                // Lines that arrived just before the close.
                while let Some(packet) = socket.recv() {
                    println!("{}", String::from_utf8_lossy(packet.data()));
                }
                let code = socket.get_close_code();
                println!(
                    "Client just disconnected with code: {code}, reason: {}",
                    socket.get_close_reason()
                );
                if let Some(error) = socket.get_last_error() {
                    println!("Error: {error}");
                }
                return if was_open && code != -1 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                };
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
