//! The protocol layer does no I/O: nothing in `src/proto/` names sockets, TLS, threads or
//! the clock (issue 9's rule, checked on every test run rather than by a reviewer's grep).

use std::fs;
use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "mio",
    "std::net",
    "rustls",
    "thread",
    "Instant::now",
    "SystemTime::now",
];

#[test]
fn proto_names_no_socket_tls_thread_or_clock() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("src/proto exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            for name in FORBIDDEN {
                assert!(
                    !line.contains(name),
                    "{}:{}: `{name}` in the protocol layer: {line}",
                    path.display(),
                    number + 1
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} files found in {}",
        dir.display()
    );
}
