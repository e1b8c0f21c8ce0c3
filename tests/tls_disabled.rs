//! A build without TLS (`--no-default-features`): `wss://` and every `TlsOptions`
//! constructor fail at once with an error that names the Cargo feature to enable, while
//! `ws://` code (which names `TlsOptions` only as `None`) compiles and connects as usual.
//! Run by tests/run.sh as `cargo test --no-default-features --test tls_disabled`; with
//! default features this file is empty.
#![cfg(not(feature = "tls"))]

use std::time::{Duration, Instant};

use wspeer::*;

fn names_the_feature(e: &Error) {
    assert!(matches!(e, Error::TlsDisabled(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("`tls-ring`"), "{text}");
}

#[test]
fn wss_fails_with_an_error_that_names_the_feature() {
    let mut client = WebSocketPeer::new();
    let e = client
        .connect_to_url("wss://127.0.0.1:9/", None)
        .unwrap_err();
    names_the_feature(&e);
    // Nothing started: the peer can still connect somewhere else.
    assert_eq!(client.get_ready_state(), State::Closed);

    let mut mp = WebSocketMultiplayerPeer::new();
    names_the_feature(&mp.create_client("wss://127.0.0.1:9/", None).unwrap_err());
}

#[test]
fn tls_options_constructors_name_the_feature() {
    names_the_feature(&TlsOptions::client().unwrap_err());
    names_the_feature(&TlsOptions::client_unsafe().unwrap_err());
    names_the_feature(&TlsOptions::client_with_ca(b"").unwrap_err());
    names_the_feature(&TlsOptions::server(b"", b"").unwrap_err());
}

#[test]
fn plain_ws_still_works() {
    let mut server = WebSocketServer::new();
    server.set_tls_options(None).unwrap();
    server.listen_on("127.0.0.1", 0).unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let mut client = WebSocketPeer::new();
    client.connect_to_url(&url, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get_ready_state() != State::Open {
        assert!(Instant::now() < deadline, "no connection");
        server.poll();
        while server.pop_event().is_some() {}
        client.poll();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!client.is_tls_session_resumed());
}
