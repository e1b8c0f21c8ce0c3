//! A server behind a load balancer, in process: arbitrary bytes as the first bytes of a
//! connection into `proto::read_proxy_header` (the reading path of
//! `ServerConfig::proxy_protocol`, ppp underneath), cut at the points a slow sender would
//! cut them, and as the values of `X-Forwarded-For` and `Forwarded` into
//! `proto::client_address`.
//!
//! The first byte is the plan: the expected versions (bits 0-1), the header limit (bits
//! 2-4: from `MIN_PROXY_HEADER_BYTES` up) and the step between cuts (bits 5-7). It stays
//! in the input, so a seed can be a real header behind one plan byte.
//!
//! Invariants (a failure panics): no panic; a whole header is never longer than the
//! input or the limit, and is found at every longer cut with the same length and source;
//! `Invalid` at one cut stays `Invalid` at every longer cut; an input that is still
//! `Incomplete` was `Incomplete` at every shorter cut; the same input gives the same answer.
//! For the forwarding headers: a socket peer that is not trusted is the client whatever the
//! headers say; with every address trusted the client is the socket, or an address found in
//! the header.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use wspeer::proto::{
    ForwardedHeader, HandshakeRequest, IpNetwork, MIN_PROXY_HEADER_BYTES, ProxyHeader,
    ProxyProtocol, client_address, read_proxy_header,
};

fuzz_target!(|data: &[u8]| {
    let Some(&plan) = data.first() else {
        return;
    };
    let expected = match plan & 0b11 {
        0 => ProxyProtocol::V1,
        1 => ProxyProtocol::V2,
        _ => ProxyProtocol::V1OrV2,
    };
    let max_bytes = MIN_PROXY_HEADER_BYTES + usize::from((plan >> 2) & 0b111) * 97;
    let step = 1 + usize::from(plan >> 5) * 5;
    let input = &data[1..];
    proxy_header(input, expected, max_bytes, step);
    forwarding(input);
});

fn proxy_header(input: &[u8], expected: ProxyProtocol, max_bytes: usize, step: usize) {
    let whole = read_proxy_header(input, expected, max_bytes);
    assert_eq!(whole, read_proxy_header(input, expected, max_bytes), "deterministic");
    if let ProxyHeader::Complete { len, .. } = &whole {
        assert!(*len > 0 && *len <= input.len() && *len <= max_bytes, "{whole:?}");
    }
    let mut earlier: Option<ProxyHeader> = None;
    let mut cut = 0;
    while cut <= input.len() {
        let now = read_proxy_header(&input[..cut], expected, max_bytes);
        match (&earlier, &now) {
            (Some(ProxyHeader::Invalid(_)), ProxyHeader::Invalid(_)) => {}
            (Some(ProxyHeader::Invalid(why)), other) => {
                panic!("Invalid ({why}) at a shorter cut, {other:?} at {cut}")
            }
            (Some(done @ ProxyHeader::Complete { .. }), other) => {
                assert_eq!(done, other, "a whole header changed with more bytes at {cut}")
            }
            _ => {}
        }
        if whole == ProxyHeader::Incomplete {
            assert_eq!(now, ProxyHeader::Incomplete, "cut {cut} of an incomplete input");
        }
        earlier = Some(now);
        cut += step;
    }
}

fn forwarding(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let socket: SocketAddr = "10.0.0.5:40000".parse().unwrap();
    let everything: Vec<IpNetwork> = ["0.0.0.0/0", "::/0"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let elsewhere: Vec<IpNetwork> = vec!["192.0.2.0/24".parse().unwrap()];
    for (header, name) in [
        (ForwardedHeader::XForwardedFor, "x-forwarded-for"),
        (ForwardedHeader::Forwarded, "forwarded"),
    ] {
        let request = HandshakeRequest {
            path: "/".into(),
            query: None,
            headers: text
                .split('\n')
                .map(|line| (name.to_string(), line.to_string()))
                .collect(),
        };
        let untrusted = client_address(socket, None, Some(&request), Some(header), &elsewhere);
        assert_eq!(untrusted, socket, "an untrusted socket peer is the client");
        let client = client_address(socket, None, Some(&request), Some(header), &everything);
        let found = client == socket || addresses_in(&text).contains(&client.ip());
        assert!(found, "{client} is neither the socket nor in {text:?}");
    }
}

/// Every IP address written in `text` (an address, or an IPv4 address and port), IPv4-mapped
/// ones as IPv4.
fn addresses_in(text: &str) -> Vec<IpAddr> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
        .filter_map(|token| {
            let ip = token.parse::<IpAddr>().ok().or_else(|| {
                token
                    .parse::<std::net::SocketAddrV4>()
                    .ok()
                    .map(|a| IpAddr::V4(*a.ip()))
            })?;
            Some(ip.to_canonical())
        })
        .collect()
}
