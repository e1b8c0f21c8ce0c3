//! Baseline: tokio-tungstenite's own `echo-server` example (accept, split, forward text and
//! binary messages back), on a multi-thread or a current-thread tokio runtime.
//!
//! ```text
//! tt_echo [--port 9080] [--bind 127.0.0.1] [--runtime multi|current] [--workers N]
//! ```
//! The multi-thread runtime has one worker per CPU the process may run on (tokio's default,
//! which follows the affinity mask set by `taskset`) unless `--workers` says otherwise.
//! TCP_NODELAY is set on every connection, as wspeer does by default.

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};
use wspeer_bench::Flags;

async fn accept_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws_stream) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws_stream.split();
    // We should not forward messages other than text or binary.
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

fn main() -> Result<(), String> {
    let flags = Flags::parse(&[])?;
    flags.check_known(&["--port", "--bind", "--runtime", "--workers"])?;
    let port: u16 = flags.value("--port", 9080)?;
    let bind = flags.get("--bind").unwrap_or("127.0.0.1").to_string();
    let runtime = wspeer_bench::tokio_runtime(&flags, "multi")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind((bind.as_str(), port))
            .await
            .map_err(|e| format!("Unable to start server: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("Listening on ws://{addr}");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(accept_connection(stream));
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}
