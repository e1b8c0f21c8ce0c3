//! One node of a chat cluster: rooms shared with every other node over Redis (wspeer-bus).
//!
//! ```text
//! cargo run --example cluster_node -- --port P --node NAME --redis redis://HOST:PORT
//!     [--proxy-protocol] [--trust-proxy ADDR]... [--health-path /healthz]
//! ```
//! - A client connects to `ws://HOST:P/?room=ROOM&name=USER`; every text it sends reaches
//!   every member of ROOM, on this node and on every other node of the same Redis, as
//!   `USER: text` (the sender included). A request without a room and a name is closed
//!   with 1008.
//! - Prints `Node NAME listening on ws://ADDR` when ready and
//!   `Client <id> joined room <ROOM> from <ip>:<port>` on each join.
//! - The node joins a room's Redis channel with its first local member and leaves it with
//!   the last. Messages cross the bus at most once: a gap (Redis restarted, a slow node
//!   dropped) is printed, not repaired.
//! - Behind a load balancer: `--trust-proxy ADDR` (an IP address or a CIDR network,
//!   repeatable) names the proxies whose word on the client's address counts: their
//!   `X-Forwarded-For` header is walked from the right past trusted hops. With
//!   `--proxy-protocol` every connection must start with a PROXY protocol header (v1 or
//!   v2, e.g. HAProxy's `send-proxy-v2`), and only from a trusted proxy: others are
//!   refused. The join line names the client so found, not the proxy.
//! - `--health-path PATH`: a plain `GET PATH` on the same port answers `200 ok` while the
//!   node serves and `503 draining` while it drains (for a load balancer's health check).
//! - SIGTERM or Ctrl-C: the node drains (`WebSocketServer::drain`: the health check and
//!   new upgrades get 503 with `Retry-After`), its members keep chatting for
//!   `DRAIN_GRACE`, then get close 1001; the process prints `Node NAME stopped` and exits 0.
//!
//! The WebSocket server, the two Redis connections and the signal all wake one
//! `poll_with_timeout`: the bus's sockets are registered with the server's poller
//! (`register_source`), the signal handler only sets a flag and wakes the server's waker.

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wspeer::{
    ForwardedHeader, IpNetwork, ProxyProtocol, ServerConfig, ServerEvent, SourceToken,
    WebSocketServer,
};
use wspeer_bus::{BusConfig, BusEvent, RoomBus};

const USAGE: &str = "usage: cluster_node --port P --node NAME --redis redis://HOST:PORT \
                     [--proxy-protocol] [--trust-proxy ADDR]... [--health-path /healthz]";
/// How long members keep chatting after SIGTERM before they are closed with 1001: long
/// enough for a load balancer's health check to see the node go.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the close handshakes may take after that.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The longest sleep in the OS: the loop also checks the bus's timers this often.
const MAX_WAIT: Duration = Duration::from_millis(250);

struct Options {
    port: u16,
    node: String,
    redis: String,
    health_path: Option<String>,
    proxy_protocol: bool,
    trusted_proxies: Vec<IpNetwork>,
}

fn parse_args() -> Result<Options, String> {
    let (mut port, mut node, mut redis, mut health_path) = (None, None, None, None);
    let (mut proxy_protocol, mut trusted_proxies) = (false, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                port = Some(v.parse().map_err(|_| format!("bad port {v:?}"))?);
            }
            "--node" => node = Some(value("--node")?),
            "--redis" => redis = Some(value("--redis")?),
            "--health-path" => health_path = Some(value("--health-path")?),
            "--proxy-protocol" => proxy_protocol = true,
            "--trust-proxy" => {
                let v = value("--trust-proxy")?;
                let network = v.parse().map_err(|_| {
                    format!("bad --trust-proxy {v:?}: an IP address or a CIDR network")
                })?;
                trusted_proxies.push(network);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    match (port, node, redis) {
        (Some(port), Some(node), Some(redis)) => Ok(Options {
            port,
            node,
            redis,
            health_path,
            proxy_protocol,
            trusted_proxies,
        }),
        _ => Err(format!("--port, --node and --redis are required\n{USAGE}")),
    }
}

/// `%XX` escapes and `+` decoded (a query string's form encoding); `None` if an escape is
/// broken or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `room` and `name` parameters of a query string, both non-empty.
fn room_and_name(query: Option<&str>) -> Option<(String, String)> {
    let (mut room, mut name) = (None, None);
    for pair in query?.split('&') {
        let (key, value) = pair.split_once('=')?;
        match key {
            "room" => room = Some(percent_decode(value)?),
            "name" => name = Some(percent_decode(value)?),
            _ => {}
        }
    }
    Some((
        room.filter(|r| !r.is_empty())?,
        name.filter(|n| !n.is_empty())?,
    ))
}

/// A local member: its room and name.
struct Member {
    room: String,
    name: String,
}

/// The local members and rooms.
#[derive(Default)]
struct Rooms {
    members: HashMap<i32, Member>,
    rooms: HashMap<String, BTreeSet<i32>>,
}

impl Rooms {
    /// Sends `line` to every local member of `room`.
    fn deliver(&self, server: &mut WebSocketServer, room: &str, line: &str) {
        for &id in self.rooms.get(room).into_iter().flatten() {
            if let Some(peer) = server.get_peer(id) {
                if let Err(e) = peer.send_text(line) {
                    eprintln!("Cannot send to client {id}: {e}");
                }
            }
        }
    }
}

fn run(options: Options) -> Result<(), String> {
    if options.proxy_protocol && options.trusted_proxies.is_empty() {
        return Err(
            "--proxy-protocol needs --trust-proxy: only trusted proxies may send it".into(),
        );
    }
    let config = ServerConfig {
        health_path: options.health_path.clone(),
        proxy_protocol: options.proxy_protocol.then_some(ProxyProtocol::V1OrV2),
        forwarded_header: (!options.trusted_proxies.is_empty())
            .then_some(ForwardedHeader::XForwardedFor),
        trusted_proxies: options.trusted_proxies.clone(),
        ..ServerConfig::default()
    };
    let mut server = WebSocketServer::with_config(config);
    server
        .listen(options.port)
        .map_err(|e| format!("Unable to listen on port {}: {e}", options.port))?;
    let mut bus: RoomBus<SourceToken> =
        RoomBus::new(&options.redis, BusConfig::new(options.node.clone()))
            .map_err(|e| e.to_string())?;

    let stop = Arc::new(AtomicBool::new(false));
    let waker = server.waker().map_err(|e| e.to_string())?;
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        flag.store(true, Ordering::SeqCst);
        let _ = waker.wake();
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;

    let addr = server.local_addr().ok_or("not listening")?;
    println!("Node {} listening on ws://{addr}", options.node);

    let mut local = Rooms::default();
    let mut draining_since: Option<Instant> = None;
    let mut stopping_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wait = bus.next_deadline().map_or(MAX_WAIT, |at| {
            at.saturating_duration_since(now).min(MAX_WAIT)
        });
        server.poll_with_timeout(wait);

        while let Some(event) = server.pop_event() {
            if bus.handle_server_event(&event) {
                continue;
            }
            match event {
                ServerEvent::ClientConnected { id, .. } => {
                    let query = server
                        .get_peer(id)
                        .and_then(|peer| peer.get_handshake_request())
                        .and_then(|request| request.query.clone());
                    let Some((room, name)) = room_and_name(query.as_deref()) else {
                        let _ = server.disconnect_peer(id, 1008, "?room=ROOM&name=USER needed");
                        continue;
                    };
                    if let Err(e) = bus.join(&room) {
                        eprintln!("Client {id}: cannot join room {room:?}: {e}");
                        let _ = server.disconnect_peer(id, 1008, "room refused");
                        continue;
                    }
                    let ip = server.get_peer_address(id).map(|ip| ip.to_string());
                    let port = server.get_peer_port(id).unwrap_or(0);
                    println!(
                        "Client {id} joined room {room} from {}:{port}",
                        ip.unwrap_or_default()
                    );
                    local.rooms.entry(room.clone()).or_default().insert(id);
                    local.members.insert(id, Member { room, name });
                }
                ServerEvent::DataReceived { id } => {
                    let Some(member) = local.members.get(&id) else {
                        continue;
                    };
                    let mut lines = Vec::new();
                    if let Some(peer) = server.get_peer(id) {
                        while let Some(packet) = peer.recv() {
                            if let Some(text) = packet.as_text() {
                                lines.push(format!("{}: {text}", member.name));
                            }
                        }
                    }
                    let room = member.room.clone();
                    for line in lines {
                        local.deliver(&mut server, &room, &line);
                        if let Err(e) = bus.publish(&room, line.as_bytes()) {
                            eprintln!("Not sent to the other nodes: {e}");
                        }
                    }
                }
                ServerEvent::ClientDisconnected { id, .. } => {
                    if let Some(member) = local.members.remove(&id) {
                        let members = local.rooms.get_mut(&member.room);
                        if members.is_some_and(|m| {
                            m.remove(&id);
                            m.is_empty()
                        }) {
                            local.rooms.remove(&member.room);
                            bus.leave(&member.room);
                        }
                    }
                }
                _ => {}
            }
        }

        bus.poll(&mut server, Instant::now());
        while let Some(event) = bus.next_event() {
            match event {
                BusEvent::Message { room, payload, .. } => match String::from_utf8(payload) {
                    Ok(line) => local.deliver(&mut server, &room, &line),
                    Err(_) => eprintln!("A message for room {room} that is not text: dropped"),
                },
                BusEvent::Gap { room, from, missed } => {
                    eprintln!("Lost {missed} message(s) of node {from} in room {room}")
                }
                BusEvent::Disconnected {
                    link,
                    reason,
                    retry_in,
                } => {
                    eprintln!("Redis {link:?} link lost ({reason}); retrying in {retry_in:?}")
                }
                BusEvent::Unconfirmed { count } => {
                    eprintln!("{count} message(s) may not have reached Redis")
                }
                BusEvent::PublishFailed { error } => eprintln!("Redis refused a message: {error}"),
                BusEvent::Malformed { room, error } => {
                    eprintln!("Not a message on room {room}'s channel: {error}")
                }
                BusEvent::Connected { .. } | BusEvent::Subscribed { .. } => {}
            }
        }

        if stop.load(Ordering::SeqCst) && draining_since.is_none() {
            server.drain();
            draining_since = Some(Instant::now());
        }
        if draining_since.is_some_and(|since| since.elapsed() >= DRAIN_GRACE)
            && stopping_since.is_none()
        {
            server.stop();
            stopping_since = Some(Instant::now());
        }
        if let Some(since) = stopping_since {
            if server.peer_count() == 0 || since.elapsed() >= CLOSE_GRACE {
                println!("Node {} stopped", options.node);
                return Ok(());
            }
        }
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
