//! Baseline: fastwebsockets' own `echo_server` example (hyper upgrade, `FragmentCollector`,
//! `unconstrained` task), on a current-thread or a multi-thread tokio runtime.
//!
//! ```text
//! fws_echo [--port 9080] [--bind 127.0.0.1] [--runtime current|multi] [--workers N]
//! ```
//! TCP_NODELAY is set on every connection, as wspeer does by default.

use fastwebsockets::{OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use wspeer_bench::Flags;

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fastwebsockets::FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => {
                ws.write_frame(frame).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

fn main() -> Result<(), String> {
    let flags = Flags::parse(&[])?;
    flags.check_known(&["--port", "--bind", "--runtime", "--workers"])?;
    let port: u16 = flags.value("--port", 9080)?;
    let bind = flags.get("--bind").unwrap_or("127.0.0.1").to_string();
    let runtime = wspeer_bench::tokio_runtime(&flags, "current")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind((bind.as_str(), port))
            .await
            .map_err(|e| format!("Unable to start server: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("Listening on ws://{addr}");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn_fut = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades();
                let _ = conn_fut.await;
            });
        }
    })
}
