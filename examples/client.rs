//! The seed page's minimal client: connect, send `Test packet`, print what comes back,
//! close, and report the close code.
//!
//! ```text
//! cargo run --example client -- ws://127.0.0.1:9080 [--insecure] [--ca FILE]
//! ```
//! Exits 0 after a clean close, 1 on any failure.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use wspeer::{State, TlsOptions, WebSocketPeer};

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
            "-h" | "--help" => return Err("usage: client URL [--insecure] [--ca FILE]".into()),
            other if url.is_none() && !other.starts_with("--") => url = Some(other.to_string()),
            other => return Err(format!("unexpected argument {other:?} (try --help)")),
        }
    }
    Ok((
        url.ok_or("usage: client URL [--insecure] [--ca FILE]")?,
        tls,
    ))
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
    if let Err(e) = socket.connect_to_url(&url, tls) {
        eprintln!("Unable to connect: {e}");
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let mut sent = false;
    let mut closing = false;
    loop {
        socket.poll();
        match socket.get_ready_state() {
            State::Open => {
                if !sent {
                    if let Err(e) = socket.send_text("Test packet") {
                        eprintln!("Unable to send: {e}");
                        return ExitCode::FAILURE;
                    }
                    sent = true;
                }
                while let Some(packet) = socket.get_packet() {
                    let text = String::from_utf8_lossy(&packet);
                    println!("Got data from server: {text}");
                    if text == "Test packet" && !closing {
                        let _ = socket.close(1000, "");
                        closing = true;
                    }
                }
            }
            State::Closing | State::Connecting => {}
            State::Closed => {
                let code = socket.get_close_code();
                println!("WebSocket closed with code: {code}. Clean: {}", code != -1);
                if let Some(error) = socket.get_last_error() {
                    eprintln!("Error: {error}");
                }
                return if code != -1 && sent {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                };
            }
        }
        if !closing && started.elapsed() > Duration::from_secs(10) {
            eprintln!("No echo within 10 s; closing");
            let _ = socket.close(1000, "timeout");
            closing = true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
