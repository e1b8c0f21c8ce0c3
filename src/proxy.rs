//! A client's HTTP proxy tunnel: `CONNECT host:port`, written and answered without
//! blocking, between the TCP connect to the proxy and TLS / the WebSocket upgrade.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::config::{ProxyEndpoint, host_port};
use crate::error::Error;

/// A TCP connection to the proxy, asking it for a tunnel.
pub(crate) struct Tunnel {
    tcp: TcpStream,
    /// The `CONNECT` request, and how much of it the socket took.
    request: Vec<u8>,
    written: usize,
    /// The proxy's answer so far (its head, and whatever followed it in the same reads).
    response: Vec<u8>,
    /// `host:port` of the proxy and of the target, for messages.
    proxy: String,
    target: String,
}

/// What one step of the tunnel came to.
pub(crate) enum TunnelStep {
    /// Still writing the request or waiting for the answer.
    Pending(Tunnel),
    /// The proxy answered `2xx`: the socket is now a pipe to the target. `leftover` is what
    /// the proxy sent after its answer's head (normally nothing): the target's first bytes.
    Open {
        tcp: TcpStream,
        leftover: Vec<u8>,
    },
    Failed(Error),
}

impl Tunnel {
    /// Starts the tunnel on a connected socket to `proxy`, towards `host`:`port`.
    pub(crate) fn new(tcp: TcpStream, proxy: &ProxyEndpoint, host: &str, port: u16) -> Self {
        let target = host_port(host, port);
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(authorization) = &proxy.authorization {
            request.push_str("Proxy-Authorization: ");
            request.push_str(authorization);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        Tunnel {
            tcp,
            request: request.into_bytes(),
            written: 0,
            response: Vec::new(),
            proxy: proxy.display(),
            target,
        }
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Writes what is left of the request and reads the answer, until the socket would
    /// block or the answer's head is complete. The head may be at most `max_bytes` long
    /// with at most `max_headers` header lines.
    pub(crate) fn step(mut self, max_bytes: usize, max_headers: usize) -> TunnelStep {
        while self.written < self.request.len() {
            match self.tcp.write(&self.request[self.written..]) {
                Ok(0) => return self.fail(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return TunnelStep::Pending(self);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e),
            }
        }
        let mut buf = [0u8; 2048];
        loop {
            let room = max_bytes.saturating_sub(self.response.len());
            if room == 0 {
                return failed(
                    &self.proxy,
                    format!(
                        "its answer to CONNECT {} has a head over max_handshake_bytes ({max_bytes})",
                        self.target
                    ),
                );
            }
            let want = room.min(buf.len());
            match self.tcp.read(&mut buf[..want]) {
                Ok(0) => {
                    return failed(
                        &self.proxy,
                        format!(
                            "it closed the connection before answering CONNECT {}",
                            self.target
                        ),
                    );
                }
                Ok(n) => self.response.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return TunnelStep::Pending(self);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(e),
            }
            let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
            let mut head = httparse::Response::new(&mut headers);
            let (len, status, reason) = match head.parse(&self.response) {
                Ok(httparse::Status::Partial) => continue,
                Ok(httparse::Status::Complete(len)) => (
                    len,
                    head.code.unwrap_or(0),
                    head.reason.unwrap_or("").to_string(),
                ),
                Err(httparse::Error::TooManyHeaders) => {
                    return failed(
                        &self.proxy,
                        format!(
                            "its answer to CONNECT {} has over max_handshake_headers \
                         ({max_headers}) header lines",
                            self.target
                        ),
                    );
                }
                Err(e) => {
                    return failed(
                        &self.proxy,
                        format!("its answer to CONNECT {} is not HTTP ({e})", self.target),
                    );
                }
            };
            if !(200..300).contains(&status) {
                return TunnelStep::Failed(Error::ProxyRefused {
                    proxy: self.proxy,
                    target: self.target,
                    status,
                    reason,
                });
            }
            log::debug!(
                "proxy {} opened a tunnel to {}: {status} {reason}",
                self.proxy,
                self.target
            );
            let leftover = self.response.split_off(len);
            return TunnelStep::Open {
                tcp: self.tcp,
                leftover,
            };
        }
    }

    fn fail(self, e: io::Error) -> TunnelStep {
        failed(&self.proxy, e.to_string())
    }
}

fn failed(proxy: &str, why: String) -> TunnelStep {
    TunnelStep::Failed(Error::Connect(format!("proxy {proxy}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tunnel on a loopback connection; the other end is returned to play the proxy.
    fn pair(authorization: Option<&str>) -> (Tunnel, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std_tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (proxy_side, _) = listener.accept().unwrap();
        std_tcp.set_nonblocking(true).unwrap();
        let endpoint = ProxyEndpoint {
            host: "127.0.0.1".into(),
            port: 3128,
            authorization: authorization.map(str::to_string),
        };
        let tunnel = Tunnel::new(TcpStream::from_std(std_tcp), &endpoint, "::1", 443);
        (tunnel, proxy_side)
    }

    /// Steps until the tunnel is no longer pending (the bytes are on loopback already).
    fn settle(mut tunnel: Tunnel, max_bytes: usize) -> TunnelStep {
        for _ in 0..1000 {
            match tunnel.step(max_bytes, 8) {
                TunnelStep::Pending(t) => tunnel = t,
                done => return done,
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("still pending");
    }

    #[test]
    fn bytes_after_the_answer_are_kept() {
        let (tunnel, mut proxy) = pair(Some("Basic YTpi"));
        proxy
            .write_all(b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\nfirst bytes")
            .unwrap();
        match settle(tunnel, 1024) {
            TunnelStep::Open { leftover, .. } => assert_eq!(leftover, b"first bytes"),
            _ => panic!("not open"),
        }
        let mut request = [0u8; 256];
        let n = std::io::Read::read(&mut proxy, &mut request).unwrap();
        assert_eq!(
            &request[..n],
            b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\
              Proxy-Authorization: Basic YTpi\r\n\r\n"
        );
    }

    #[test]
    fn refusals_and_bad_answers_are_named() {
        let (tunnel, mut proxy) = pair(None);
        proxy
            .write_all(b"HTTP/1.0 502 Bad Gateway\r\n\r\n")
            .unwrap();
        match settle(tunnel, 1024) {
            TunnelStep::Failed(e) => assert_eq!(
                e.to_string(),
                "proxy 127.0.0.1:3128 refused CONNECT [::1]:443: 502 Bad Gateway"
            ),
            _ => panic!("not failed"),
        }
        let (tunnel, mut proxy) = pair(None);
        proxy.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap();
        let TunnelStep::Failed(Error::Connect(why)) = settle(tunnel, 1024) else {
            panic!("not failed");
        };
        assert!(why.contains("not HTTP"), "{why}");
        let (tunnel, mut proxy) = pair(None);
        proxy.write_all(b"HTTP/1.1 200 OK\r\nX: ").unwrap();
        proxy.write_all(&[b'y'; 300]).unwrap();
        let TunnelStep::Failed(Error::Connect(why)) = settle(tunnel, 256) else {
            panic!("not failed");
        };
        assert!(why.contains("max_handshake_bytes (256)"), "{why}");
        let (tunnel, proxy) = pair(None);
        drop(proxy);
        let TunnelStep::Failed(Error::Connect(why)) = settle(tunnel, 256) else {
            panic!("not failed");
        };
        assert!(why.starts_with("proxy 127.0.0.1:3128: "), "{why}");
    }
}
