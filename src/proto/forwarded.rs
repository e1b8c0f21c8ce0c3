//! Who the client is behind proxies: trusted networks, the `X-Forwarded-For` and
//! `Forwarded` (RFC 7239) headers, and the walk from the right past trusted hops.

use core::fmt;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;

use super::HandshakeRequest;

/// An IP network (an address and a prefix length, IPv4 or IPv6), for
/// [`ServerConfig::trusted_proxies`](crate::ServerConfig::trusted_proxies). Parsed from
/// `"10.0.0.0/8"`, `"2001:db8::/32"`, or a single address (`"192.0.2.7"`, `"::1"`). An
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack listener sees of an IPv4
/// client) is matched as the IPv4 address it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    /// The network's address with the host bits cleared.
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNetwork {
    /// The network of `addr` with `prefix_len` leading bits (at most 32 for IPv4, 128 for
    /// IPv6; host bits are cleared). `None` for a longer prefix.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        let addr = addr.to_canonical();
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > bits {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(prefix_len)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(prefix_len)).into()),
        };
        Some(IpNetwork { addr, prefix_len })
    }

    /// Whether `addr` is in this network (IPv4-mapped IPv6 addresses as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask128(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP address or network (\"10.0.0.0/8\", \"::1\")");
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let canonical = addr.to_canonical();
        let prefix_len = match prefix {
            None => match canonical {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
            // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
            Some(p) => {
                let p: u8 = p.parse().map_err(|_| bad())?;
                if canonical != addr {
                    p.checked_sub(96).ok_or_else(bad)?
                } else {
                    p
                }
            }
        };
        IpNetwork::new(canonical, prefix_len).ok_or_else(bad)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Which header names the client when trusted proxies forward a connection
/// ([`ServerConfig::forwarded_header`](crate::ServerConfig::forwarded_header)). Choose the
/// one your proxy writes: the other reaches the server as the client sent it, forged or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's
    /// `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`).
    XForwardedFor,
    /// `Forwarded: for=client, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
}

/// The client's address, walking from the connection's own end towards the client: the
/// socket's peer (`socket`), then the address a PROXY header gave (`proxied`), then the
/// entries of `header` in `request` from right to left. The first hop that is not in
/// `trusted` is the client; the walk never goes past it, so entries to its left (which the
/// client itself may have written) count for nothing. When the socket's peer is not
/// trusted it is the client, whatever the headers say.
///
/// An entry that is not an IP address (malformed, `unknown`, an RFC 7239 obfuscated
/// identifier, a `Forwarded` element without `for=`) ends the walk: the client is then
/// the trusted hop that wrote it. When every hop is trusted, the leftmost one is the
/// client. Entries without a port (all of `X-Forwarded-For`'s usually) give port 0.
/// Several lines of the header count as one list, in order.
pub fn client_address(
    socket: SocketAddr,
    proxied: Option<SocketAddr>,
    request: Option<&HandshakeRequest>,
    header: Option<ForwardedHeader>,
    trusted: &[IpNetwork],
) -> SocketAddr {
    let is_trusted = |addr: SocketAddr| trusted.iter().any(|n| n.contains(addr.ip()));
    let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let mut client = canonical(socket);
    if !is_trusted(client) {
        return client;
    }
    if let Some(proxied) = proxied {
        client = canonical(proxied);
        if !is_trusted(client) {
            return client;
        }
    }
    let (Some(request), Some(header)) = (request, header) else {
        return client;
    };
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let lines: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect();
    let entries = match header {
        ForwardedHeader::XForwardedFor => lines
            .iter()
            .flat_map(|line| line.split(','))
            .map(x_forwarded_for_entry)
            .collect::<Vec<_>>(),
        ForwardedHeader::Forwarded => lines
            .iter()
            .flat_map(|line| split_outside_quotes(line, ','))
            .map(forwarded_element)
            .collect::<Vec<_>>(),
    };
    for entry in entries.into_iter().rev() {
        let Some(hop) = entry else {
            log::debug!("{name}: an entry that is not an address; the client is {client}");
            return client;
        };
        client = canonical(hop);
        if !is_trusted(client) {
            return client;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or (as some proxies write it) an address and a
/// port (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn x_forwarded_for_entry(entry: &str) -> Option<SocketAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(addr);
    }
    // `[2001:db8::1]` without a port.
    let ip = entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V6(ip), 0))
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`).
fn forwarded_element(element: &str) -> Option<SocketAddr> {
    let value = split_outside_quotes(element, ';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim())
    })?;
    let node = unquote(value)?;
    forwarded_node(&node)
}

/// A node: `192.0.2.43`, `192.0.2.43:47011`, `[2001:db8:cafe::17]`,
/// `[2001:db8:cafe::17]:4711`. Obfuscated ports (`_abc`) count as no port.
fn forwarded_node(node: &str) -> Option<SocketAddr> {
    let (host, port) = match node.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (IpAddr::V6(host.parse().ok()?), port)
        }
        None => {
            let (host, port) = match node.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (node, None),
            };
            (IpAddr::V4(host.parse().ok()?), port)
        }
    };
    let port = match port {
        None => 0,
        Some(p) if p.starts_with('_') => 0,
        Some(p) => p.parse().ok()?,
    };
    Some(SocketAddr::new(host, port))
}

/// A token as it is, or a quoted-string without its quotes and escapes; `None` for an
/// unterminated quoted-string.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// Splits at `separator` where it is not inside a quoted-string.
fn split_outside_quotes(s: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNetwork> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn request(name: &str, values: &[&str]) -> HandshakeRequest {
        HandshakeRequest {
            path: "/".into(),
            query: None,
            headers: values
                .iter()
                .map(|v| (name.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The client behind a balancer at 10.0.0.5 (trusted: 10.0.0.0/8) that wrote `values`.
    fn client(header: ForwardedHeader, values: &[&str]) -> SocketAddr {
        let name = match header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        client_address(
            addr("10.0.0.5:40000"),
            None,
            Some(&request(name, values)),
            Some(header),
            &nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]),
        )
    }

    #[test]
    fn networks_parse_match_and_map_ipv4_in_ipv6() {
        let net: IpNetwork = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.200.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one: IpNetwork = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: IpNetwork = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let mapped: IpNetwork = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "10.0.0.0/8".parse().unwrap());
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "::ffff:1.2.3.4/95",
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
    }

    #[test]
    fn x_forwarded_for_walks_from_the_right_past_trusted_hops() {
        use ForwardedHeader::XForwardedFor as Xff;
        assert_eq!(client(Xff, &["203.0.113.9"]), addr("203.0.113.9:0"));
        // A forged leftmost entry is never reached.
        assert_eq!(
            client(Xff, &["6.6.6.6, 203.0.113.9"]),
            addr("203.0.113.9:0")
        );
        // Trusted hops (a second balancer tier) are skipped.
        assert_eq!(
            client(Xff, &["6.6.6.6, 203.0.113.9, 10.9.9.9"]),
            addr("203.0.113.9:0")
        );
        // Several lines are one list.
        assert_eq!(
            client(Xff, &["6.6.6.6", "203.0.113.9,10.1.1.1"]),
            addr("203.0.113.9:0")
        );
        // Ports and IPv6, as some proxies write them.
        assert_eq!(client(Xff, &["203.0.113.9:4711"]), addr("203.0.113.9:4711"));
        assert_eq!(client(Xff, &["2001:db8::9"]), addr("[2001:db8::9]:0"));
        assert_eq!(
            client(Xff, &["[2001:db8::9]:4711"]),
            addr("[2001:db8::9]:4711")
        );
        assert_eq!(client(Xff, &["::ffff:203.0.113.9"]), addr("203.0.113.9:0"));
        // Every hop trusted: the leftmost.
        assert_eq!(client(Xff, &["10.3.3.3, 10.4.4.4"]), addr("10.3.3.3:0"));
        // No header: the balancer itself.
        assert_eq!(client(Xff, &[]), addr("10.0.0.5:40000"));
    }

    #[test]
    fn malformed_entries_end_the_walk_at_the_hop_that_wrote_them() {
        use ForwardedHeader::XForwardedFor as Xff;
        for values in [
            &["203.0.113.9, garbage"][..],
            &["203.0.113.9, unknown"],
            &["203.0.113.9,"],
            &[""],
            &["1.2.3.4.5"],
            &["[2001:db8::1"],
        ] {
            assert_eq!(client(Xff, values), addr("10.0.0.5:40000"), "{values:?}");
        }
        // Past a trusted hop, the last trusted one.
        assert_eq!(
            client(Xff, &["203.0.113.9, junk, 10.7.7.7"]),
            addr("10.7.7.7:0")
        );
    }

    #[test]
    fn forwarded_rfc_7239_nodes() {
        use ForwardedHeader::Forwarded;
        assert_eq!(
            client(Forwarded, &["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            addr("192.0.2.60:0")
        );
        assert_eq!(
            client(Forwarded, &["For=\"[2001:db8:cafe::17]:4711\""]),
            addr("[2001:db8:cafe::17]:4711")
        );
        assert_eq!(
            client(Forwarded, &["for=\"[2001:db8:cafe::17]\""]),
            addr("[2001:db8:cafe::17]:0")
        );
        assert_eq!(
            client(Forwarded, &["for=\"192.0.2.43:47011\""]),
            addr("192.0.2.43:47011")
        );
        // The forged first element is never reached; trusted ones are skipped.
        assert_eq!(
            client(
                Forwarded,
                &["for=6.6.6.6, for=192.0.2.43;proto=https, for=\"[2001:db8:ffff::1]\""]
            ),
            addr("192.0.2.43:0")
        );
        // A comma or semicolon inside quotes does not split; escapes are undone.
        assert_eq!(
            client(Forwarded, &["for=192.0.2.43;ext=\"a,b;c\\\"d\""]),
            addr("192.0.2.43:0")
        );
        // Obfuscated port: no port.
        assert_eq!(
            client(Forwarded, &["for=\"192.0.2.43:_x1\""]),
            addr("192.0.2.43:0")
        );
        // Not an address: the walk ends at the balancer.
        for values in [
            &["for=unknown"][..],
            &["for=_hidden"],
            &["proto=https"],
            &["for=\"[2001:db8::1]"],
            &["for=2001:db8::1"],
            &["for=\"[2001:db8::1]x\""],
            &["for=\"192.0.2.43:99999\""],
        ] {
            assert_eq!(
                client(Forwarded, values),
                addr("10.0.0.5:40000"),
                "{values:?}"
            );
        }
    }

    #[test]
    fn headers_count_only_when_the_socket_peer_is_trusted() {
        let forged = request("x-forwarded-for", &["203.0.113.9"]);
        let trusted = nets(&["10.0.0.0/8"]);
        let xff = Some(ForwardedHeader::XForwardedFor);
        // A client connecting directly cannot claim another address.
        assert_eq!(
            client_address(
                addr("198.51.100.1:5000"),
                None,
                Some(&forged),
                xff,
                &trusted
            ),
            addr("198.51.100.1:5000")
        );
        // The other header than the one configured is ignored.
        let other = request("forwarded", &["for=203.0.113.9"]);
        assert_eq!(
            client_address(addr("10.0.0.5:1"), None, Some(&other), xff, &trusted),
            addr("10.0.0.5:1")
        );
        // Off: only the socket counts.
        assert_eq!(
            client_address(addr("10.0.0.5:1"), None, Some(&forged), None, &trusted),
            addr("10.0.0.5:1")
        );
        // A dual-stack socket's IPv4-mapped peer matches the IPv4 entry, reported as IPv4.
        assert_eq!(
            client_address(
                addr("[::ffff:10.0.0.5]:1"),
                None,
                Some(&forged),
                xff,
                &trusted
            ),
            addr("203.0.113.9:0")
        );
        assert_eq!(
            client_address(addr("[::ffff:198.51.100.1]:7"), None, None, xff, &trusted),
            addr("198.51.100.1:7")
        );
    }

    #[test]
    fn a_proxy_header_is_the_hop_before_the_socket() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff = request("x-forwarded-for", &["6.6.6.6"]);
        // The balancer's PROXY header names the client: the forged header is never read.
        assert_eq!(
            client_address(
                addr("10.0.0.5:1"),
                Some(addr("203.0.113.9:4000")),
                Some(&xff),
                Some(ForwardedHeader::XForwardedFor),
                &trusted
            ),
            addr("203.0.113.9:4000")
        );
        // A PROXY header naming a trusted hop (a CDN in front): the walk goes on.
        assert_eq!(
            client_address(
                addr("10.0.0.5:1"),
                Some(addr("10.8.8.8:4000")),
                Some(&xff),
                Some(ForwardedHeader::XForwardedFor),
                &trusted
            ),
            addr("6.6.6.6:0")
        );
    }
}
