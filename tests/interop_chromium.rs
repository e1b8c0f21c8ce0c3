//! Interop with headless Chromium (Debian `chromium`; installed by
//! `tests/interop/setup.sh`): a page using the browser's own `WebSocket` against a wspeer
//! server, over ws:// and over wss:// with a test certificate (the browser runs with
//! `--ignore-certificate-errors`: the test CA is not in its trust store). The script both
//! sides run is described in `tests/interop/harness.rs`; the page is
//! `tests/interop/chromium/peer.html`, opened as a file:// URL, and it reports its verdict
//! by connecting back to the wspeer server (`/report`). Browsers are clients only.
//! Run alone: `cargo test --test interop_chromium`.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use std::process::Command;

use harness::*;
use wspeer::TlsOptions;

const INSTALL: &str = "apt-get install -y chromium";

fn chromium_cell(tls: bool) {
    let dir = TempDir::new("chromium");
    let pki = pki_files(&dir);
    let server_tls = tls.then(|| {
        TlsOptions::server(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).expect("server TLS")
    });
    let mut server = cell_server(server_tls);
    let base = base_url(&server, tls);
    let page = interop_dir().join("chromium/peer.html");
    let url = format!(
        "file://{}?base={base}&sizes={}",
        page.display(),
        sizes_arg(SIZES)
    );
    let profile = dir.path().join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .env("HOME", dir.path());
    if tls {
        command.arg("--ignore-certificate-errors");
    }
    command.arg(&url);
    let mut peer = PeerProcess::spawn("chromium", command, INSTALL);
    let logs = drive_server(&mut server, &mut peer, SIZES, true, PEER_CLOSE.1);
    let cell = format!(
        "chromium page -> wspeer server ({})",
        if tls { "wss" } else { "ws" }
    );
    print_logs(&cell, &logs, &peer);
}

#[test]
fn wspeer_server_chromium_page_ws() {
    chromium_cell(false);
}

#[test]
fn wspeer_server_chromium_page_wss() {
    chromium_cell(true);
}
