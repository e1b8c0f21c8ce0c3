//! The PROXY protocol header (HAProxy's v1 text and v2 binary forms) at the start of a
//! connection: which versions a listener expects, and reading one from the first bytes.

use core::net::SocketAddr;

use ppp::{v1, v2};

/// Which PROXY protocol header a listener expects at the start of every connection
/// ([`ServerConfig::proxy_protocol`](crate::ServerConfig::proxy_protocol)). The
/// specification forbids guessing whether a header comes at all: with this set, a
/// connection without one is refused. Between the two versions the first byte decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyProtocol {
    /// The text header (`PROXY TCP4 ...\r\n`): HAProxy's `send-proxy`, nginx's
    /// `proxy_protocol on`.
    V1,
    /// The binary header: HAProxy's `send-proxy-v2`, AWS NLB, most cloud balancers.
    V2,
    /// Either one.
    V1OrV2,
}

/// What the first bytes of a connection amount to, from [`read_proxy_header`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// Not a whole header yet, and nothing wrong so far: wait for more bytes.
    Incomplete,
    /// A whole header: it is the first `len` bytes, and the connection's own data (TLS or
    /// HTTP) starts after it.
    Complete {
        /// The header's length in bytes.
        len: usize,
        /// The client's address and port as the proxy saw them. `None` for a v2 `LOCAL`
        /// header (the balancer's own health check), a v1 `UNKNOWN` one, or an address
        /// family that is not IP: the connection's own address stands.
        source: Option<SocketAddr>,
    },
    /// Not a header this listener accepts; the connection must be closed. Says why.
    Invalid(String),
}

/// The longest v1 header (the specification's 107 bytes, CRLF included).
const V1_MAX: usize = 107;
/// The v2 signature and the fixed part before the addresses.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;
/// The smallest `max_bytes` [`read_proxy_header`] takes: the largest header without v2
/// TLVs (16 fixed bytes and two 108-byte Unix socket paths).
pub const MIN_PROXY_HEADER_BYTES: usize = V2_FIXED + 216;

/// Reads the PROXY header `expected` at the start of `input` (the connection's first
/// bytes, as many as have arrived), refusing one longer than `max_bytes` (at least
/// [`MIN_PROXY_HEADER_BYTES`]) as soon as that is known. The same input always gives the
/// same answer, and a longer input never turns `Invalid` back into `Incomplete`: call it
/// again with more bytes while it says `Incomplete`.
pub fn read_proxy_header(input: &[u8], expected: ProxyProtocol, max_bytes: usize) -> ProxyHeader {
    let Some(&first) = input.first() else {
        return ProxyHeader::Incomplete;
    };
    let (v1_allowed, v2_allowed) = match expected {
        ProxyProtocol::V1 => (true, false),
        ProxyProtocol::V2 => (false, true),
        ProxyProtocol::V1OrV2 => (true, true),
    };
    match first {
        b'P' if v1_allowed => read_v1(input, max_bytes),
        b'\r' if v2_allowed => read_v2(input, max_bytes),
        b'P' if input.starts_with(b"PROXY ") || b"PROXY ".starts_with(input) => {
            invalid("a PROXY v1 header, but this listener expects v2")
        }
        b'\r' if is_prefix(input, V2_SIGNATURE) => {
            invalid("a PROXY v2 header, but this listener expects v1")
        }
        _ => invalid(format!(
            "no PROXY header: the connection starts with {:?} (the listener expects one \
             before anything else)",
            String::from_utf8_lossy(&input[..input.len().min(16)])
        )),
    }
}

fn invalid(why: impl Into<String>) -> ProxyHeader {
    ProxyHeader::Invalid(why.into())
}

/// Whether `input` and `signature` agree on their common length.
fn is_prefix(input: &[u8], signature: &[u8]) -> bool {
    let n = input.len().min(signature.len());
    input[..n] == signature[..n]
}

/// A v1 header is one line: it is whole once its CRLF is there, and only then parsed
/// (ppp's own guesses about partial lines take a line cut after a space for a bad one).
fn read_v1(input: &[u8], max_bytes: usize) -> ProxyHeader {
    let limit = V1_MAX.min(max_bytes);
    if !is_prefix(input, b"PROXY ") {
        return invalid("malformed PROXY v1 header: it must start with \"PROXY \"");
    }
    let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
        if input.len() >= limit {
            return invalid(format!("PROXY v1 header longer than {limit} bytes"));
        }
        return ProxyHeader::Incomplete;
    };
    let len = end + 2;
    if len > limit {
        return invalid(format!("PROXY v1 header longer than {limit} bytes"));
    }
    match v1::Header::try_from(&input[..len]) {
        Ok(header) => {
            let source = match header.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            ProxyHeader::Complete { len, source }
        }
        Err(e) => invalid(format!("malformed PROXY v1 header: {e}")),
    }
}

fn read_v2(input: &[u8], max_bytes: usize) -> ProxyHeader {
    if !is_prefix(input, V2_SIGNATURE) {
        return invalid("malformed PROXY v2 header: wrong signature");
    }
    if input.len() >= V2_FIXED {
        let total = V2_FIXED + usize::from(u16::from_be_bytes([input[14], input[15]]));
        if total > max_bytes {
            return invalid(format!(
                "PROXY v2 header of {total} bytes, more than max_proxy_header_bytes \
                 ({max_bytes})"
            ));
        }
    }
    match v2::Header::try_from(input) {
        Ok(header) => {
            // The TLVs are skipped, but must fill the header exactly.
            if let Some(Err(e)) = header.tlvs().find(Result::is_err) {
                return invalid(format!("malformed PROXY v2 header: {e}"));
            }
            let source = match (header.command, header.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, _) => None,
            };
            ProxyHeader::Complete {
                len: header.len(),
                source,
            }
        }
        Err(e) if ppp::PartialResult::is_incomplete(&e) => ProxyHeader::Incomplete,
        Err(e) => invalid(format!("malformed PROXY v2 header: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const MAX: usize = 4096;

    /// A v2 header built by hand from the specification (section 2.2): signature,
    /// version 2 and `command`, family and protocol byte, length, addresses, `tlvs`.
    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out.extend_from_slice(tlvs);
        out
    }

    fn v2_ipv4(src: [u8; 4], src_port: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut addresses = src.to_vec();
        addresses.extend_from_slice(&[10, 0, 0, 1]);
        addresses.extend_from_slice(&src_port.to_be_bytes());
        addresses.extend_from_slice(&443u16.to_be_bytes());
        // PROXY, AF_INET + STREAM.
        v2(0x1, 0x11, &addresses, tlvs)
    }

    fn complete(len: usize, source: Option<SocketAddr>) -> ProxyHeader {
        ProxyHeader::Complete { len, source }
    }

    fn assert_invalid(input: &[u8], expected: ProxyProtocol, max: usize, why: &str) {
        match read_proxy_header(input, expected, max) {
            ProxyHeader::Invalid(message) => {
                assert!(message.contains(why), "{message:?} lacks {why:?}")
            }
            other => panic!("{other:?} for {input:?}"),
        }
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            read_proxy_header(line, ProxyProtocol::V1, MAX),
            complete(41, Some("192.0.2.7:51234".parse().unwrap()))
        );
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n\x16\x03\x01";
        assert_eq!(
            read_proxy_header(line, ProxyProtocol::V1OrV2, MAX),
            complete(
                46,
                Some(SocketAddr::from((
                    "2001:db8::7".parse::<Ipv6Addr>().unwrap(),
                    51234
                )))
            )
        );
        let line = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            read_proxy_header(line, ProxyProtocol::V1, MAX),
            complete(15, None)
        );
    }

    #[test]
    fn v2_proxy_ipv4_ipv6_local_and_tlvs() {
        let mut input = v2_ipv4([192, 0, 2, 7], 51234, &[]);
        let len = input.len();
        assert_eq!(len, 28);
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            read_proxy_header(&input, ProxyProtocol::V2, MAX),
            complete(
                len,
                Some(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 7), 51234)))
            )
        );
        let source: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mut addresses = source.octets().to_vec();
        addresses.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        addresses.extend_from_slice(&[0xC8, 0x22, 0x01, 0xBB]);
        let input = v2(0x1, 0x21, &addresses, &[]);
        assert_eq!(
            read_proxy_header(&input, ProxyProtocol::V1OrV2, MAX),
            complete(52, Some(SocketAddr::from((source, 0xC822))))
        );
        // LOCAL (a health check of the balancer's own), with and without addresses.
        let input = v2(0x0, 0x00, &[], &[]);
        assert_eq!(
            read_proxy_header(&input, ProxyProtocol::V2, MAX),
            complete(16, None)
        );
        let mut input = v2_ipv4([192, 0, 2, 7], 1, &[]);
        input[12] = 0x20;
        assert_eq!(
            read_proxy_header(&input, ProxyProtocol::V2, MAX),
            complete(28, None)
        );
        // A TLV (PP2_TYPE_AUTHORITY, 0x02) is skipped with the header.
        let tlv = [0x02, 0x00, 0x04, b'g', b'a', b'm', b'e'];
        let input = v2_ipv4([192, 0, 2, 7], 80, &tlv);
        assert_eq!(
            read_proxy_header(&input, ProxyProtocol::V2, MAX),
            complete(35, Some("192.0.2.7:80".parse().unwrap()))
        );
    }

    #[test]
    fn every_cut_of_a_header_is_incomplete_until_the_last_byte() {
        let headers = [
            (
                b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n".to_vec(),
                ProxyProtocol::V1,
            ),
            (v2_ipv4([192, 0, 2, 7], 51234, &[]), ProxyProtocol::V2),
        ];
        for (header, expected) in headers {
            for cut in 0..header.len() {
                assert_eq!(
                    read_proxy_header(&header[..cut], expected, MAX),
                    ProxyHeader::Incomplete,
                    "{cut} bytes of {header:?}"
                );
                assert_eq!(
                    read_proxy_header(&header[..cut], ProxyProtocol::V1OrV2, MAX),
                    ProxyHeader::Incomplete,
                    "{cut} bytes of {header:?}, either version"
                );
            }
            assert!(matches!(
                read_proxy_header(&header, expected, MAX),
                ProxyHeader::Complete { len, .. } if len == header.len()
            ));
        }
    }

    #[test]
    fn no_header_garbage_and_the_wrong_version_are_refused() {
        let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_invalid(http, ProxyProtocol::V1OrV2, MAX, "no PROXY header");
        assert_invalid(
            b"\x16\x03\x01\x02\x00",
            ProxyProtocol::V2,
            MAX,
            "no PROXY header",
        );
        assert_invalid(
            b"PROXY TCP4 1.2.3.4\r\n",
            ProxyProtocol::V1,
            MAX,
            "malformed",
        );
        assert_invalid(
            b"PROXY TCP4 300.0.0.1 10.0.0.1 1 2\r\n",
            ProxyProtocol::V1,
            MAX,
            "malformed PROXY v1",
        );
        assert_invalid(b"PROXY TCP5 x\r\n", ProxyProtocol::V1, MAX, "malformed");
        assert_invalid(b"PRAXY", ProxyProtocol::V1, MAX, "malformed");
        assert_invalid(b"PROXY TCP4", ProxyProtocol::V2, MAX, "expects v2");
        let header = v2_ipv4([192, 0, 2, 7], 1, &[]);
        assert_invalid(&header, ProxyProtocol::V1, MAX, "expects v1");
        // Version 1 in the binary header, an unknown command, family, wrong signature.
        for (at, byte) in [(12, 0x11), (12, 0x22), (13, 0x41), (3, b'X')] {
            let mut bad = header.clone();
            bad[at] = byte;
            assert_invalid(&bad, ProxyProtocol::V2, MAX, "malformed PROXY v2");
        }
        // A length too short for the IPv4 addresses, and a TLV running past the end.
        let mut short = header.clone();
        short[15] = 4;
        assert_invalid(&short[..20], ProxyProtocol::V2, MAX, "malformed PROXY v2");
        let bad_tlv = v2_ipv4([192, 0, 2, 7], 1, &[0x02, 0x00, 0x09, b'x']);
        assert_invalid(&bad_tlv, ProxyProtocol::V2, MAX, "malformed PROXY v2");
    }

    #[test]
    fn oversized_headers_are_refused_as_soon_as_known() {
        // v2: the length field alone says so, before the rest arrives.
        let tlvs = vec![0u8; 600];
        let big = v2_ipv4([192, 0, 2, 7], 1, &tlvs);
        assert_invalid(
            &big[..16],
            ProxyProtocol::V2,
            512,
            "PROXY v2 header of 628 bytes, more than max_proxy_header_bytes (512)",
        );
        // At the limit it is fine (the TLV is a well-formed NOOP, type 0x04).
        let mut noop = vec![0x04, 0x02, 0x55];
        noop.extend(std::iter::repeat_n(0, 0x255));
        let at_limit = v2_ipv4([192, 0, 2, 7], 1, &noop);
        assert!(matches!(
            read_proxy_header(&at_limit, ProxyProtocol::V2, at_limit.len()),
            ProxyHeader::Complete { .. }
        ));
        assert_invalid(
            &at_limit,
            ProxyProtocol::V2,
            at_limit.len() - 1,
            "more than max_proxy_header_bytes",
        );
        // v1: 107 bytes without its end are too many.
        let mut long = b"PROXY TCP6 ".to_vec();
        long.resize(107, b'1');
        assert_invalid(&long, ProxyProtocol::V1, MAX, "longer than 107 bytes");
        assert_eq!(
            read_proxy_header(&long[..106], ProxyProtocol::V1, MAX),
            ProxyHeader::Incomplete
        );
    }
}
