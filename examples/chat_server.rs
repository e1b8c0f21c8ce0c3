//! The websocket_chat demo's server, headless: everyone who joins (sub-protocol
//! `demo-chat`) gets an id, and every line is passed to everyone else.
//!
//! ```text
//! cargo run --example chat_server -- [--port 8000] [--bind 127.0.0.1] [--cert FILE --key FILE]
//! ```
//! - `--bind` takes what `WebSocketServer::listen_on` takes: an IP, `localhost`, or `*` for
//!   every interface, IPv4 and IPv6 on one socket (`wspeer::listen_tcp`).
//! - Broadcasts `[id] connected`, `[id] Says: text` and `[id] disconnected` as text
//!   messages to everyone but that client, and prints them; logs each client's close
//!   code and reason.
//! - Lines typed on stdin go to everyone as `Server says: text`.
//! - On plain `ws://` it also serves `examples/chat.html` at `http://<addr>/`, on the same
//!   port, so a browser can join; with `--cert/--key` it serves `wss://` only (open the page
//!   from disk and give it the URL: `chat.html?url=wss://...`).
//!
//! Like Godot's demo (`websocket/WebSocketServer.gd`), it owns the TCP listener and hands
//! each WebSocket connection to a `WebSocketPeer` with `accept_stream`; that is what lets
//! it look at a request first (parsed with `httparse`) and answer plain HTTP itself. Like
//! everything else in the frame loop, the page is served without ever waiting: each frame
//! reads and writes what the socket takes at once, so a slow browser never stalls the
//! chat. Ctrl-C closes every client with 1001 and exits.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wspeer::{State, TlsOptions, WebSocketPeer};

const PROTOCOL: &str = "demo-chat";
const PAGE: &str = include_str!("chat.html");
/// Time a connection has to send its request (HTTP or WebSocket) and finish the
/// handshake; Godot's demo uses 3 s too.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections still sending their request or being answered a page; more are closed at
/// once.
const MAX_PENDING: usize = 64;
/// Connections taken from the listener per frame.
const ACCEPTS_PER_FRAME: usize = 16;
/// The longest request head looked at; a longer one is refused.
const MAX_REQUEST_HEAD: usize = 8192;
/// The most header lines a request may have; more are refused.
const MAX_REQUEST_HEADERS: usize = 64;
/// Time to answer a plain HTTP request and see the browser close; a slower one is dropped.
const PAGE_TIMEOUT: Duration = Duration::from_secs(5);
const USAGE: &str = "usage: chat_server [--port 8000] [--bind 127.0.0.1] [--cert FILE --key FILE]";

struct Options {
    port: u16,
    bind: String,
    cert: Option<String>,
    key: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        port: 8000,
        bind: "127.0.0.1".into(),
        cert: None,
        key: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                options.port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "--bind" => options.bind = value("--bind")?,
            "--cert" => options.cert = Some(value("--cert")?),
            "--key" => options.key = Some(value("--key")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if options.cert.is_some() != options.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    Ok(options)
}

/// A TCP connection whose first bytes decide between the page and the chat. They are only
/// peeked at (non-blocking) until the request head is complete: a WebSocket request must
/// stay in the socket for `accept_stream`, which reads it itself.
struct Pending {
    stream: TcpStream,
    addr: SocketAddr,
    since: Instant,
}

/// A chat member; `id` is given when its handshake completes (as in Godot's demo).
struct Member {
    socket: WebSocketPeer,
    addr: SocketAddr,
    id: Option<i32>,
}

enum Request {
    /// Not all of the head has arrived yet.
    Incomplete,
    WebSocket,
    /// A plain HTTP `GET` of `path`; `head_len` bytes are its head.
    Http {
        path: String,
        head_len: usize,
    },
    Invalid,
}

/// What the first bytes of a connection are: an upgrade to WebSocket, a `GET` for the page,
/// or nothing this server answers.
fn classify(head: &[u8]) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if head.len() < MAX_REQUEST_HEAD => {
            return Request::Incomplete;
        }
        Ok(httparse::Status::Partial) | Err(_) => return Request::Invalid,
    };
    let upgrade = request.headers.iter().any(|header| {
        header.name.eq_ignore_ascii_case("upgrade")
            && String::from_utf8_lossy(header.value)
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
    });
    match (upgrade, request.method, request.path) {
        (true, _, _) => Request::WebSocket,
        (false, Some("GET"), Some(target)) => Request::Http {
            path: target.split('?').next().unwrap_or("/").to_string(),
            head_len,
        },
        _ => Request::Invalid,
    }
}

/// The answer to a plain HTTP request: the chat page at `/` and `/chat.html`, 404 elsewhere.
fn page_response(path: &str) -> Vec<u8> {
    let (status, content_type, body) = match path {
        "/" | "/chat.html" => ("200 OK", "text/html; charset=utf-8", PAGE),
        _ => ("404 Not Found", "text/plain; charset=utf-8", "not found\n"),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A plain HTTP request being answered, advanced once per frame with non-blocking reads and
/// writes, like the chat's own sockets.
struct PageReply {
    stream: TcpStream,
    addr: SocketAddr,
    path: String,
    /// Bytes of the request head still to read: it was only peeked at, and closing a socket
    /// with unread input makes the kernel reset the connection, which can destroy the
    /// response in flight.
    unread: usize,
    response: Vec<u8>,
    written: usize,
    /// The response is out and our side is shut; now the browser closes its side.
    shut: bool,
    /// The browser has closed its side.
    eof: bool,
    deadline: Instant,
}

impl PageReply {
    fn new(stream: TcpStream, addr: SocketAddr, path: String, head_len: usize) -> Self {
        PageReply {
            stream,
            addr,
            response: page_response(&path),
            path,
            unread: head_len,
            written: 0,
            shut: false,
            eof: false,
            deadline: Instant::now() + PAGE_TIMEOUT,
        }
    }

    /// Moves the answer on as far as the socket allows without waiting. `Ok(true)`: done,
    /// drop the connection.
    fn advance(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        // Read what is left of the request, then (once the response is out) whatever comes
        // until the browser closes; a few reads per frame at most.
        for _ in 0..8 {
            if self.eof || (self.unread == 0 && !self.shut) {
                break;
            }
            let want = if self.unread > 0 {
                self.unread.min(scratch.len())
            } else {
                scratch.len()
            };
            match self.stream.read(&mut scratch[..want]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.unread = self.unread.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if self.shut => return Ok(true), // answered; a reset now is harmless
                Err(e) => return Err(e),
            }
        }
        while self.written < self.response.len() {
            match self.stream.write(&self.response[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.response.len() && self.unread == 0 && !self.shut {
            self.stream.shutdown(Shutdown::Write)?;
            self.shut = true;
        }
        if self.shut && self.eof {
            return Ok(true);
        }
        if Instant::now() >= self.deadline {
            return if self.shut {
                Ok(true) // answered; the browser just keeps the connection open
            } else {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not answered within {PAGE_TIMEOUT:?}"),
                ))
            };
        }
        Ok(false)
    }
}

/// An id in 2..2^31-1 no current member has, from the OS-seeded std hasher keys.
fn new_id(members: &[Member]) -> i32 {
    loop {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(members.len() as u64);
        let id = (hasher.finish() & 0x7FFF_FFFF) as i32;
        if id >= 2 && !members.iter().any(|m| m.id == Some(id)) {
            return id;
        }
    }
}

/// Sends `line` as text to every member with an id, except `except`.
fn broadcast(members: &mut [Member], except: Option<i32>, line: &str) {
    for member in members.iter_mut() {
        if member.id.is_some() && member.id != except {
            if let Err(e) = member.socket.send_text(line) {
                eprintln!("Cannot send to {}: {e}", member.id.unwrap_or(0));
            }
        }
    }
}

fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn run(options: Options) -> Result<(), String> {
    let tls = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let read = |p: &str| std::fs::read(p).map_err(|e| format!("cannot read {p}: {e}"));
            Some(TlsOptions::server(&read(cert)?, &read(key)?).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    // The addresses `WebSocketServer::listen_on` takes, `"*"` included (IPv4 and IPv6 on
    // one socket); non-blocking, as the frame loop needs.
    let listener = wspeer::listen_tcp(&options.bind, options.port).map_err(|e| {
        format!(
            "Unable to listen on {} port {}: {e}",
            options.bind, options.port
        )
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!("Listening on {scheme}://{addr}");
    println!("Supported protocols: {PROTOCOL}");
    if tls.is_none() {
        println!("Chat page: http://{addr}/");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    let typed = stdin_lines();

    let mut pending: Vec<Pending> = Vec::new();
    let mut pages: Vec<PageReply> = Vec::new();
    let mut members: Vec<Member> = Vec::new();
    let mut scratch = vec![0u8; MAX_REQUEST_HEAD];
    let mut stopping_since: Option<Instant> = None;
    loop {
        // New connections.
        for _ in 0..ACCEPTS_PER_FRAME {
            match listener.accept() {
                Ok((stream, addr))
                    if pending.len() + pages.len() < MAX_PENDING && stopping_since.is_none() =>
                {
                    let _ = stream.set_nonblocking(true);
                    pending.push(Pending {
                        stream,
                        addr,
                        since: Instant::now(),
                    });
                }
                Ok(_) => {} // dropped: too many requests in flight, or stopping
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    break;
                }
            }
        }

        // Requests: the page or the chat.
        let mut still_pending = Vec::new();
        for request in pending.drain(..) {
            let kind = if tls.is_some() {
                Request::WebSocket // encrypted: nothing to look at, and no page over TLS
            } else {
                match request.stream.peek(&mut scratch) {
                    Ok(0) => Request::Invalid,
                    Ok(n) => classify(&scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Request::Incomplete,
                    Err(_) => Request::Invalid,
                }
            };
            match kind {
                Request::Incomplete if request.since.elapsed() < HANDSHAKE_TIMEOUT => {
                    still_pending.push(request)
                }
                Request::Incomplete | Request::Invalid => {}
                Request::Http { path, head_len } => {
                    pages.push(PageReply::new(request.stream, request.addr, path, head_len));
                }
                Request::WebSocket => {
                    let mut socket = WebSocketPeer::new();
                    socket.set_supported_protocols(&[PROTOCOL]);
                    socket.config_mut().connect_timeout = HANDSHAKE_TIMEOUT;
                    match socket.accept_stream(request.stream, tls.as_ref()) {
                        Ok(()) => members.push(Member {
                            socket,
                            addr: request.addr,
                            id: None,
                        }),
                        Err(e) => eprintln!("Cannot accept {}: {e}", request.addr),
                    }
                }
            }
        }
        pending = still_pending;

        // Pages being served.
        pages.retain_mut(|page| match page.advance(&mut scratch) {
            Ok(done) => !done,
            Err(e) => {
                eprintln!("Cannot serve {} to {}: {e}", page.path, page.addr);
                false
            }
        });

        // The chat.
        let mut index = 0;
        while index < members.len() {
            members[index].socket.poll();
            let state = members[index].socket.get_ready_state();
            if members[index].id.is_none() && state == State::Open {
                let id = new_id(&members);
                members[index].id = Some(id);
                println!(
                    "Remote client connected: {id}. Protocol: {}",
                    members[index].socket.get_selected_protocol()
                );
                let line = format!("[{id}] connected");
                println!("{line}");
                broadcast(&mut members, Some(id), &line);
            }
            let Some(id) = members[index].id else {
                if state == State::Closed {
                    let member = members.remove(index);
                    if let Some(e) = member.socket.get_last_error() {
                        eprintln!("Handshake with {} failed: {e}", member.addr);
                    }
                    continue;
                }
                index += 1;
                continue;
            };
            while let Some(packet) = members[index].socket.recv() {
                let text = String::from_utf8_lossy(packet.data()).into_owned();
                let line = format!("[{id}] Says: {text}");
                println!("{line}");
                broadcast(&mut members, Some(id), &line);
            }
            if state == State::Closed {
                let member = members.remove(index);
                println!(
                    "Remote client disconnected: {id}. Code: {}, Reason: {}",
                    member.socket.get_close_code(),
                    member.socket.get_close_reason()
                );
                let line = format!("[{id}] disconnected");
                println!("{line}");
                broadcast(&mut members, Some(id), &line);
                continue;
            }
            index += 1;
        }

        // The server's own lines.
        while let Ok(text) = typed.try_recv() {
            if !text.is_empty() {
                println!("Sending message: {text}");
                broadcast(&mut members, None, &format!("Server says: {text}"));
            }
        }

        if stop.load(Ordering::SeqCst) && stopping_since.is_none() {
            println!("Stopping: closing {} client(s)", members.len());
            for member in &mut members {
                let _ = member.socket.close(1001, "Server stopping");
            }
            stopping_since = Some(Instant::now());
        }
        if let Some(since) = stopping_since {
            if members.is_empty() || since.elapsed() > Duration::from_secs(6) {
                println!("Stopped");
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
