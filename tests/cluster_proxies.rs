//! examples/cluster/haproxy.cfg and nginx.conf in front of three cluster_node processes, with real haproxy, nginx and redis-server on loopback.
//!
//! Clients connect from 127.0.0.2 and the proxies from 127.0.0.1 (the only trusted
//! proxy), so the address a node reports tells the client from the proxy.

mod common;
mod rawws;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{ClusterNode, Redis, free_loopback_port};
use common::{KillOnDrop, TIMEOUT, TempDir};
use rawws::{OP_TEXT, RawConn};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The ports the committed configurations name.
const CONFIG_NODE_PORTS: [u16; 3] = [9001, 9002, 9003];

/// Three nodes behind a proxy's configuration, on free ports.
struct Nodes {
    nodes: Vec<ClusterNode>,
}

impl Nodes {
    /// Nodes `PREFIX1` to `PREFIX3`: node ids are unique in a cluster (a node drops
    /// envelopes carrying its own id as its own messages).
    fn start(redis: &Redis, prefix: &str, extra: &[&str]) -> Nodes {
        let nodes = (1..=3)
            .map(|i| {
                let port = free_loopback_port().to_string();
                let mut args = vec!["--port", port.as_str(), "--trust-proxy", "127.0.0.1"];
                args.extend_from_slice(&["--health-path", "/healthz"]);
                args.extend_from_slice(extra);
                ClusterNode::start(&format!("{prefix}{i}"), redis, &args)
            })
            .collect();
        Nodes { nodes }
    }

    /// A committed configuration with the nodes' and the front's real ports.
    fn configure(&self, template: &str, config_front: u16, front: u16) -> String {
        let mut text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(template),
        )
        .expect("read the configuration");
        for (config_port, node) in CONFIG_NODE_PORTS.iter().zip(&self.nodes) {
            let from = format!("127.0.0.1:{config_port}");
            assert!(text.contains(&from), "{template} names {from}");
            text = text.replace(&from, &format!("127.0.0.1:{}", node.port));
        }
        let from = format!("127.0.0.1:{config_front}");
        assert!(text.contains(&from), "{template} listens on {from}");
        text.replace(&from, &format!("127.0.0.1:{front}"))
    }

    /// Waits until some node prints a line containing `needle`; returns that node's index.
    fn joined(&mut self, needle: &str) -> (usize, String) {
        let start = Instant::now();
        loop {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                let before = node.drain();
                if let Some(line) = node.seen[before..].iter().find(|l| l.contains(needle)) {
                    return (i, line.clone());
                }
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "no node printed {needle:?}: {:#?}",
                self.nodes.iter().map(|n| &n.seen).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A proxy process with its configuration file.
struct Proxy {
    _child: KillOnDrop,
    _dir: TempDir,
    port: u16,
}

fn haproxy(nodes: &Nodes) -> Proxy {
    let port = free_loopback_port();
    let dir = TempDir::new("haproxy");
    let config = dir.write(
        "haproxy.cfg",
        &nodes.configure("examples/cluster/haproxy.cfg", 8080, port),
    );
    let child = Command::new("haproxy")
        .args(["-db", "-f", &config])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start haproxy ({e}): apt-get install haproxy (bash tests/setup-system.sh does)"));
    wait_listening(port);
    Proxy {
        _child: KillOnDrop(child),
        _dir: dir,
        port,
    }
}

fn nginx(nodes: &Nodes) -> Proxy {
    let port = free_loopback_port();
    let dir = TempDir::new("nginx");
    std::fs::create_dir_all(dir.0.join("tmp")).unwrap();
    let config = dir.write(
        "nginx.conf",
        &nodes.configure("examples/cluster/nginx.conf", 8081, port),
    );
    let child = Command::new("nginx")
        // One process, so that killing it leaves no worker behind.
        .args([
            "-p",
            dir.0.to_str().unwrap(),
            "-c",
            &config,
            "-g",
            "master_process off;",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start nginx ({e}): apt-get install nginx (bash tests/setup-system.sh does)"
            )
        });
    wait_listening(port);
    Proxy {
        _child: KillOnDrop(child),
        _dir: dir,
        port,
    }
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < TIMEOUT, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP connection from `CLIENT_IP` to `127.0.0.1:port`.
fn connect_from_client_ip(port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(CLIENT_IP), 0).into())
        .unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    socket.into()
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// Sends `prefix` then an upgrade request for `path` (with `extra` header lines) from a
/// fresh connection of `CLIENT_IP`; returns the connection, its local port and the
/// response's status line.
fn upgrade(port: u16, prefix: &[u8], path: &str, extra: &str) -> (RawConn, u16, String) {
    let stream = connect_from_client_ip(port);
    let local = stream.local_addr().unwrap().port();
    let mut conn = RawConn::new(stream);
    let mut request = prefix.to_vec();
    request.extend_from_slice(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{UPGRADE}{extra}\r\n").as_bytes(),
    );
    let head = conn.request(&request);
    let status = head.lines().next().unwrap_or_default().to_owned();
    (conn, local, status)
}

/// A member joined through a proxy: its connection and the node it landed on.
struct Joined {
    conn: RawConn,
    node: usize,
}

/// How a proxy tells the nodes who the client is.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// PROXY protocol v2: the client's address and port.
    ProxyV2,
    /// X-Forwarded-For: the client's address, no port (reported as 0).
    ForwardedFor,
}

fn join(
    nodes: &mut Nodes,
    proxy_port: u16,
    via: Via,
    room: &str,
    name: &str,
    extra: &str,
) -> Joined {
    let (conn, local, status) = upgrade(
        proxy_port,
        b"",
        &format!("/?room={room}&name={name}"),
        extra,
    );
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    // The join line names the client (127.0.0.2), never the proxy (127.0.0.1).
    let (node, line) = nodes.joined(&format!("joined room {room} from {CLIENT_IP}:"));
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
    let expected = if via == Via::ProxyV2 { local } else { 0 };
    assert_eq!(port, expected, "{line}: the client's port is {local}");
    Joined { conn, node }
}

/// The PROXY protocol v2 header of a TCP/IPv4 connection from `src` to `dst`.
fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&src.ip().octets());
    header.extend_from_slice(&dst.ip().octets());
    header.extend_from_slice(&src.port().to_be_bytes());
    header.extend_from_slice(&dst.port().to_be_bytes());
    header
}

/// Sends a text from `from` until `to` receives `expected` (the receiving node subscribes
/// to the room asynchronously), then reads off the repeated copies.
fn chat(from: &mut RawConn, to: &mut RawConn, text: &str, expected: &str) {
    let start = Instant::now();
    to.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    'outer: loop {
        from.send(&rawws::client(OP_TEXT, text.as_bytes()));
        while let Ok(frame) = to.read_frame() {
            if frame.payload == expected.as_bytes() {
                break 'outer;
            }
        }
        assert!(start.elapsed() < TIMEOUT, "{expected:?} never arrived");
    }
    while to.read_frame().is_ok() {}
    to.stream
        .set_read_timeout(Some(rawws::READ_TIMEOUT))
        .unwrap();
    from.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while from.read_frame().is_ok() {}
    from.stream
        .set_read_timeout(Some(rawws::READ_TIMEOUT))
        .unwrap();
}

#[test]
fn members_on_different_nodes_chat_through_haproxy_and_nginx_with_their_real_addresses() {
    let redis = Redis::start();
    // Two sets of three nodes on one Redis: haproxy's require a PROXY header on every
    // connection (--proxy-protocol), nginx's read X-Forwarded-For. So alice (through
    // haproxy) and bob (through nginx) are members of the same room on two processes.
    let mut nodes = Nodes::start(&redis, "x", &[]);
    let nginx = nginx(&nodes);
    let mut haproxy_nodes = Nodes::start(&redis, "h", &["--proxy-protocol"]);
    let haproxy = haproxy(&haproxy_nodes);

    let mut alice = join(
        &mut haproxy_nodes,
        haproxy.port,
        Via::ProxyV2,
        "lobby",
        "alice",
        "",
    )
    .conn;
    let mut bob = join(
        &mut nodes,
        nginx.port,
        Via::ForwardedFor,
        "lobby",
        "bob",
        "",
    )
    .conn;
    chat(&mut alice, &mut bob, "hi bob", "alice: hi bob");
    chat(&mut bob, &mut alice, "hi alice", "bob: hi alice");

    // A forged leftmost X-Forwarded-For entry is ignored: nginx appends 127.0.0.2, the
    // node walks from the right, and 127.0.0.2 is the first untrusted hop.
    let forged = join(
        &mut nodes,
        nginx.port,
        Via::ForwardedFor,
        "forged",
        "mallory",
        "X-Forwarded-For: 203.0.113.66\r\n",
    );
    drop(forged);
    assert!(
        !nodes
            .nodes
            .iter()
            .any(|n| n.seen.iter().any(|l| l.contains("203.0.113.66"))),
        "the forged address was believed"
    );
}

#[test]
fn a_proxy_header_is_taken_from_a_trusted_proxy_only() {
    let redis = Redis::start();
    let mut nodes = Nodes::start(&redis, "n", &["--proxy-protocol"]);
    let port = nodes.nodes[0].port;
    let claimed: SocketAddr = "203.0.113.7:4242".parse().unwrap();
    let header = proxy_v2(claimed, SocketAddr::from(([127, 0, 0, 1], port)));

    // From 127.0.0.2, not a trusted proxy: refused, nothing answered, nobody joins.
    let mut stream = connect_from_client_ip(port);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut request = header.clone();
    request.extend_from_slice(
        format!("GET /?room=r&name=eve HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n").as_bytes(),
    );
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    // The same bytes from 127.0.0.1, a trusted proxy: the client is who the header says.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(&request).unwrap();
    let mut conn = RawConn::new(stream);
    let head = conn.request(b"");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (node, _) = nodes.joined("joined room r from 203.0.113.7:4242");
    assert_eq!(node, 0);
    assert!(
        !nodes.nodes[0]
            .seen
            .iter()
            .any(|l| l.contains("from 127.0.0.2"))
    );
}

#[test]
fn a_draining_node_fails_haproxys_health_check_and_gets_no_new_clients() {
    let redis = Redis::start();
    let mut nodes = Nodes::start(&redis, "n", &["--proxy-protocol"]);
    let haproxy = haproxy(&nodes);
    let first = join(&mut nodes, haproxy.port, Via::ProxyV2, "match", "p1", "");
    let draining = first.node;

    nodes.nodes[draining].terminate();
    let signalled = Instant::now();
    // Its health check says 503 (asked as haproxy asks: PROXY v2 LOCAL, then GET).
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    loop {
        let mut stream = TcpStream::connect(("127.0.0.1", nodes.nodes[draining].port)).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.write_all(&local).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        if answer.starts_with(b"HTTP/1.1 503") {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // haproxy takes it out: a new member of the same room lands on another node, well
    // within the drain's grace period.
    let second = loop {
        let (conn, _, status) = upgrade(haproxy.port, b"", "/?room=match&name=p2", "");
        if status.starts_with("HTTP/1.1 101") {
            break conn;
        }
        assert!(status.starts_with("HTTP/1.1 503"), "{status}");
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "still routed to the draining node"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (node, _) = nodes.joined("joined room match from 127.0.0.2:");
    assert_ne!(node, draining, "the new member landed on the draining node");
    drop(second);
    // The first member is closed with 1001 when the grace period ends.
    let mut first = first.conn;
    let frame = first.expect_frame("the close frame");
    assert_eq!(frame.close_code().map(|c| c.0), Some(1001));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert_eq!(nodes.nodes[draining].wait_exit(|| {}), Some(0));
}
