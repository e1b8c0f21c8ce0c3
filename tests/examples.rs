//! The example programs as ops and other tools run them: flags, printed lines, exit codes.

#![allow(clippy::field_reassign_with_default)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use wspeer::*;

/// A running example with its stdout lines arriving on a channel.
struct Running {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        let mut child = Command::new(example_bin(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start example");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child: KillOnDrop(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`, polling `tick` meanwhile (to drive a client).
    fn expect_line(&mut self, needle: &str, tick: impl FnMut()) -> String {
        expect_line("the example", &self.lines, &mut self.seen, needle, tick)
    }

    fn listening_url(&mut self) -> String {
        let line = self.expect_line("Listening on ", || {});
        line.trim_start_matches("Listening on ").to_string()
    }
}

fn echo_server(args: &[&str]) -> (Running, String) {
    let mut all = vec!["--port", "0"];
    all.extend_from_slice(args);
    let mut server = Running::start("echo_server", &all);
    let url = server.listening_url();
    (server, url)
}

#[test]
fn echo_server_echoes_text_as_text_and_binary_as_binary() {
    let (mut server, url) = echo_server(&["--protocol", "chat", "--protocol", "other"]);
    let mut config = PeerConfig::default();
    config.supported_protocols = vec!["other".into()];
    let mut client = WebSocketPeer::with_config(config);
    client.connect_to_url(&url, None).unwrap();
    let line = server.expect_line("connected with protocol: other", || client.poll());
    let id: i32 = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .expect("numeric id");
    assert!(
        line.starts_with(&format!("Client {id} connected")),
        "{line}"
    );
    run_clients_until(&mut [&mut client], "open", |c| {
        c[0].get_ready_state() == State::Open
    });
    assert_eq!(client.get_selected_protocol(), "other");

    client.send_text("hello").unwrap();
    client.put_packet(&[0, 1, 2, 255]).unwrap();
    server.expect_line(
        &format!("Got data from client {id}: hello ... echoing"),
        || client.poll(),
    );
    run_clients_until(&mut [&mut client], "two echoes", |c| {
        c[0].get_available_packet_count() == 2
    });
    let text = client.recv().unwrap();
    assert_eq!((text.as_text(), text.is_text()), (Some("hello"), true));
    let binary = client.recv().unwrap();
    assert_eq!(
        (binary.data(), binary.is_text()),
        (&[0u8, 1, 2, 255][..], false)
    );

    client.close(4000, "see you").unwrap();
    server.expect_line(
        &format!("Client {id} disconnecting with code: 4000, reason: see you"),
        || client.poll(),
    );
    server.expect_line(&format!("Client {id} disconnected, clean: true"), || {
        client.poll()
    });
}

#[test]
fn echo_server_quiet_prints_no_message_lines() {
    let (mut server, url) = echo_server(&["--quiet"]);
    let mut client = WebSocketPeer::new();
    client.connect_to_url(&url, None).unwrap();
    server.expect_line("connected with protocol: ", || client.poll());
    run_clients_until(&mut [&mut client], "open", |c| {
        c[0].get_ready_state() == State::Open
    });
    for i in 0..50 {
        client.send_text(&format!("message {i}")).unwrap();
    }
    run_clients_until(&mut [&mut client], "echoes", |c| {
        c[0].get_available_packet_count() == 50
    });
    client.close(1000, "").unwrap();
    server.expect_line("disconnected, clean: true", || client.poll());
    assert!(
        !server.seen.iter().any(|l| l.contains("Got data")),
        "{:?}",
        server.seen
    );
}

#[test]
fn ctrl_c_closes_every_client_with_1001_and_exits_cleanly() {
    let (mut server, url) = echo_server(&[]);
    let mut client = WebSocketPeer::new();
    client.connect_to_url(&url, None).unwrap();
    server.expect_line("connected with protocol", || client.poll());
    let pid = server.child.0.id().to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    server.expect_line("disconnected, clean: true", || client.poll());
    run_clients_until(&mut [&mut client], "closed", |c| {
        c[0].get_ready_state() == State::Closed
    });
    assert_eq!(client.get_close_code(), 1001);
    let start = Instant::now();
    let exit = loop {
        if let Some(status) = server.child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "echo_server did not exit after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn echo_server_rejects_bad_flags() {
    let output = Command::new(example_bin("echo_server"))
        .args(["--port", "notaport"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad port"));
    let output = Command::new(example_bin("echo_server"))
        .args(["--cert", "x.pem"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn client_example_prints_the_echo_and_the_close_code() {
    let (_server, url) = echo_server(&[]);
    let output = Command::new(example_bin("client"))
        .arg(&url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Got data from server: Test packet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WebSocket closed with code: 1000. Clean: true"),
        "{stdout}"
    );
}

#[test]
fn client_example_fails_without_a_server() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let output = Command::new(example_bin("client"))
        .arg(format!("ws://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("WebSocket closed with code: -1. Clean: false"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("could not connect"));
}

#[test]
fn echo_server_serves_wss_with_cert_and_key() {
    let pki = pki_for(&["127.0.0.1"]);
    let dir = TempDir::new("echo-wss");
    let cert = dir.write("cert.pem", &pki.cert_pem);
    let key = dir.write("key.pem", &pki.key_pem);
    let (mut server, url) = echo_server(&["--cert", &cert, "--key", &key, "--quiet"]);
    assert!(url.starts_with("wss://"), "{url}");
    let mut client = WebSocketPeer::new();
    client
        .connect_to_url(&url, Some(pki.client_options()))
        .unwrap();
    server.expect_line("connected with protocol", || client.poll());
    run_clients_until(&mut [&mut client], "open", |c| {
        c[0].get_ready_state() == State::Open
    });
    client.send_text("echo me over TLS").unwrap();
    client.put_packet(&[1, 2, 3, 250]).unwrap();
    run_clients_until(&mut [&mut client], "two echoes", |c| {
        c[0].get_available_packet_count() == 2
    });
    assert_eq!(client.recv().unwrap().as_text(), Some("echo me over TLS"));
    let binary = client.recv().unwrap();
    assert_eq!(
        (binary.data(), binary.is_text()),
        (&[1u8, 2, 3, 250][..], false)
    );
    client.close(1000, "bye").unwrap();
    server.expect_line("disconnected, clean: true", || client.poll());

    // The client example over wss, trusting the CA file.
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let output = Command::new(example_bin("client"))
        .args([&url, "--ca", &ca])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Got data from server: Test packet"),
        "{stdout}"
    );
    // Without the CA the certificate is refused, and the error says why.
    let output = Command::new(example_bin("client"))
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown issuer"));
    // --insecure accepts it.
    let output = Command::new(example_bin("client"))
        .args([&url, "--insecure"])
        .output()
        .unwrap();
    assert!(output.status.success());
}

#[test]
fn echo_server_max_message_raises_both_limits() {
    let (mut server, url) = echo_server(&["--quiet", "--max-message", "2000000"]);
    let mut config = PeerConfig::default();
    config.inbound_buffer_size = 2_000_000;
    config.outbound_buffer_size = 2_000_000;
    let mut client = WebSocketPeer::with_config(config);
    client.connect_to_url(&url, None).unwrap();
    server.expect_line("connected with protocol", || client.poll());
    run_clients_until(&mut [&mut client], "open", |c| {
        c[0].get_ready_state() == State::Open
    });
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    client.put_packet(&big).unwrap();
    run_clients_until(&mut [&mut client], "echo", |c| {
        c[0].get_available_packet_count() == 1
    });
    assert_eq!(client.get_packet().unwrap(), big);
    let output = Command::new(example_bin("echo_server"))
        .args(["--max-message", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
