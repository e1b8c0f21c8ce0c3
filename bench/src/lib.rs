//! Shared helpers of the benchmark binaries: flag parsing, `/proc` readings, WebSocket
//! frames for the load generator (with echo verification), statistics, the verdict rule
//! of the targets ([`judge`]), raw records ([`record`]), the heartbeat's cost against an
//! echo ([`cost`]) and test certificates.

pub mod cost;
pub mod judge;
pub mod record;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// `--name value` flags (and bare `--switch`es), in the style of wspeer's examples.
pub struct Flags {
    values: HashMap<String, String>,
    switches: Vec<String>,
}

impl Flags {
    /// Parses the process arguments. `switches` names the flags that take no value.
    pub fn parse(switches: &[&str]) -> Result<Flags, String> {
        Self::parse_from(std::env::args().skip(1), switches)
    }

    /// Parses `args` (without the program name).
    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        switches: &[&str],
    ) -> Result<Flags, String> {
        let mut flags = Flags {
            values: HashMap::new(),
            switches: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with("--") {
                return Err(format!("unexpected argument {arg:?}"));
            }
            if switches.contains(&arg.as_str()) {
                flags.switches.push(arg);
            } else {
                let value = args.next().ok_or(format!("{arg} needs a value"))?;
                flags.values.insert(arg, value);
            }
        }
        Ok(flags)
    }

    /// Whether a switch was given.
    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// The raw value of a flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A parsed value, or `default` when the flag is absent.
    pub fn value<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("bad value for {name}: {v:?}")),
        }
    }

    /// A comma-separated list of numbers (`--sizes 32,1024`), or `default` parsed the same
    /// way when the flag is absent.
    pub fn numbers(&self, name: &str, default: &str) -> Result<Vec<usize>, String> {
        self.get(name)
            .unwrap_or(default)
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|_| format!("bad {name} entry {s:?}"))
            })
            .collect()
    }

    /// Fails on any flag not in `known` (values or switches).
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for name in self.values.keys().chain(self.switches.iter()) {
            if !known.contains(&name.as_str()) {
                return Err(format!("unknown flag {name}"));
            }
        }
        Ok(())
    }
}

// ----- /proc -----

/// Clock ticks per second of `/proc/<pid>/stat` times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User + system CPU seconds used so far by every thread of `pid` (`/proc/<pid>/stat`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the full line, utime 14, stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// CPU seconds used by this process so far (getrusage, microsecond resolution).
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: plain data in and out of get/setrlimit.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
        lim.rlim_cur as u64
    }
}

/// Raises the soft open-file limit to at least `want` where the process may (a privileged
/// process may raise the hard limit too, up to the kernel's `nr_open`), else as far as the
/// hard limit goes; returns the new soft limit.
pub fn raise_nofile_limit_to(want: u64) -> u64 {
    let have = raise_nofile_limit();
    if have >= want {
        return have;
    }
    // SAFETY: plain data in and out of setrlimit; a refusal leaves the limit as it was.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: want as libc::rlim_t,
            rlim_max: want as libc::rlim_t,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    raise_nofile_limit()
}

// ----- WebSocket frames (client side) -----

/// The message limit the runner gives every server for messages above 64 KiB
/// (`examples/echo_server --max-message`), and that `alloc_count` uses for them.
pub const BIG_MAX_MESSAGE: usize = 2 * 1024 * 1024;

/// The mask key of every frame the load generator sends (RFC 6455 only asks clients to
/// mask; a fixed key costs the server exactly as much as a random one).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One complete masked client frame (FIN set) carrying `payload`.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut frame = Vec::with_capacity(len + 14);
    frame.push(0x80 | opcode);
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len <= 0xffff {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// The opening handshake request of the load generator.
pub fn handshake_request(host: &str) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// What [`FrameParser::feed`] found.
#[derive(Default, Debug)]
pub struct Parsed {
    /// Complete data messages (frames with FIN set, continuation frames included).
    pub messages: usize,
    /// Complete data messages that differed from the expected echo (type, length or bytes);
    /// each is also counted in `messages`.
    pub mismatches: usize,
    /// What was wrong with the first mismatching message.
    pub first_mismatch: Option<String>,
    /// A close frame arrived, with its code (1005 when it had none).
    pub close: Option<u16>,
    /// Payloads of the ping frames seen, to be answered with pongs.
    pub pings: Vec<Vec<u8>>,
}

/// The echo every data message should be: its opcode (1 text, 2 binary) and its payload.
#[derive(Clone, Debug)]
pub struct Expected {
    /// 1 (text) or 2 (binary).
    pub opcode: u8,
    /// The payload sent, which must come back unchanged.
    pub payload: std::sync::Arc<[u8]>,
}

/// A streaming parser of server frames (unmasked). With an [`Expected`] message it checks
/// every data message against it (type, length and bytes, compared in place as they
/// arrive, fragmented or not); without one it only counts messages.
#[derive(Default)]
pub struct FrameParser {
    header: [u8; 14],
    have: usize,
    in_payload: bool,
    remaining: u64,
    opcode: u8,
    fin: bool,
    /// Payload of the current control frame (at most 125 bytes by RFC 6455).
    control: Vec<u8>,
    expect: Option<Expected>,
    /// A data message has started and its final frame has not arrived.
    in_message: bool,
    msg_opcode: u8,
    msg_len: u64,
    msg_error: Option<String>,
}

impl FrameParser {
    /// A parser that checks every data message against `expect`.
    pub fn expecting(expect: Expected) -> FrameParser {
        FrameParser {
            expect: Some(expect),
            ..FrameParser::default()
        }
    }

    /// Consumes `data`, adding what completed to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Parsed) {
        while !data.is_empty() {
            if self.in_payload {
                let take = (self.remaining as usize).min(data.len());
                let chunk = &data[..take];
                if self.opcode >= 8 {
                    let room = 125usize.saturating_sub(self.control.len());
                    self.control.extend_from_slice(&chunk[..take.min(room)]);
                } else {
                    self.check_chunk(chunk);
                }
                self.remaining -= take as u64;
                data = &data[take..];
                if self.remaining == 0 {
                    self.finish(out);
                }
                continue;
            }
            let need = self.header_len();
            let take = (need - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            // The length byte may have just arrived and lengthened the header.
            if self.have == self.header_len() && self.have >= 2 {
                let b0 = self.header[0];
                let b1 = self.header[1];
                self.fin = b0 & 0x80 != 0;
                self.opcode = b0 & 0x0f;
                self.remaining = match b1 & 0x7f {
                    126 => u16::from_be_bytes([self.header[2], self.header[3]]) as u64,
                    127 => u64::from_be_bytes(self.header[2..10].try_into().unwrap()),
                    n => n as u64,
                };
                self.have = 0;
                self.in_payload = true;
                self.control.clear();
                self.start_frame();
                if self.remaining == 0 {
                    self.finish(out);
                }
            }
        }
    }

    /// Book-keeping of a data frame's header: a new message or a continuation.
    fn start_frame(&mut self) {
        match self.opcode {
            1 | 2 => {
                if self.in_message {
                    self.msg_error = Some("a new message inside a fragmented one".into());
                } else {
                    self.msg_error = None;
                }
                self.in_message = true;
                self.msg_opcode = self.opcode;
                self.msg_len = 0;
            }
            0 if !self.in_message => {
                self.in_message = true;
                self.msg_opcode = 0;
                self.msg_len = 0;
                self.msg_error = Some("a continuation frame outside a message".into());
            }
            _ => {}
        }
    }

    /// Compares payload bytes of a data message with the expected ones, in place.
    fn check_chunk(&mut self, chunk: &[u8]) {
        let offset = self.msg_len;
        self.msg_len += chunk.len() as u64;
        let Some(expect) = &self.expect else {
            return;
        };
        if self.msg_error.is_some() {
            return;
        }
        let want = &expect.payload;
        let end = offset as usize + chunk.len();
        if end > want.len() {
            self.msg_error = Some(format!("longer than the {} bytes sent", want.len()));
        } else if chunk != &want[offset as usize..end] {
            // memcmp first (the common, equal case); the position only on a mismatch.
            let i = chunk
                .iter()
                .zip(&want[offset as usize..end])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            self.msg_error = Some(format!("byte {} differs", offset as usize + i));
        }
    }

    fn header_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let b1 = self.header[1];
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    fn finish(&mut self, out: &mut Parsed) {
        self.in_payload = false;
        match self.opcode {
            0..=2 if self.fin => {
                out.messages += 1;
                self.in_message = false;
                let mut error = self.msg_error.take();
                if let (None, Some(expect)) = (&error, &self.expect) {
                    if self.msg_opcode != expect.opcode {
                        error = Some(format!(
                            "{} instead of {}",
                            opcode_name(self.msg_opcode),
                            opcode_name(expect.opcode)
                        ));
                    } else if self.msg_len != expect.payload.len() as u64 {
                        error = Some(format!(
                            "{} bytes instead of {}",
                            self.msg_len,
                            expect.payload.len()
                        ));
                    }
                }
                if let Some(error) = error {
                    out.mismatches += 1;
                    if out.first_mismatch.is_none() {
                        out.first_mismatch = Some(error);
                    }
                }
            }
            8 => {
                let code = if self.control.len() >= 2 {
                    u16::from_be_bytes([self.control[0], self.control[1]])
                } else {
                    1005
                };
                out.close = Some(code);
            }
            9 => out.pings.push(self.control.clone()),
            _ => {}
        }
    }
}

fn opcode_name(opcode: u8) -> &'static str {
    match opcode {
        1 => "text",
        2 => "binary",
        _ => "no type",
    }
}

// ----- statistics -----

/// The `q`-quantile (0..=1) of sorted values (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median, minimum and maximum of `values` (NaN-free).
pub fn summary(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

/// Parses a `RESULT key=value ...` line.
pub fn parse_result_line(line: &str) -> Option<HashMap<String, String>> {
    parse_tagged_line(line, "RESULT")
}

/// Parses a `TAG key=value ...` line (`RESULT`, the load generator's `STATS`, ...): the
/// `key=value` pairs after `tag`, or `None` when the line does not start with `tag` and a
/// space (or is `tag` alone).
pub fn parse_tagged_line(line: &str, tag: &str) -> Option<HashMap<String, String>> {
    let rest = line.strip_prefix(tag)?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

// ----- certificates -----

/// A CA and a leaf certificate for `localhost` / `127.0.0.1`, written as PEM files
/// `ca.pem`, `cert.pem`, `key.pem` into `dir`.
pub fn write_test_pki(dir: &Path) -> Result<(), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wspeer bench CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(err)?
        .signed_by(&leaf_key, &issuer)
        .map_err(err)?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("cert.pem", leaf.pem()),
        ("key.pem", leaf_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Formats a duration as fractional seconds, for `RESULT` lines.
pub fn secs(d: Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

/// The tokio runtime a baseline server asks for with `--runtime multi|current`
/// (`default` when absent) and `--workers N` (multi-thread only; 0 = one per core).
pub fn tokio_runtime(flags: &Flags, default: &str) -> Result<tokio::runtime::Runtime, String> {
    let workers: usize = flags.value("--workers", 0)?;
    let runtime = match flags.get("--runtime").unwrap_or(default) {
        "multi" => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if workers > 0 {
                builder.worker_threads(workers);
            }
            builder.enable_all().build()
        }
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        other => return Err(format!("--runtime multi|current, not {other:?}")),
    }
    .map_err(|e| e.to_string())?;
    eprintln!("tokio workers: {}", runtime.metrics().num_workers());
    Ok(runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_lists_parse_and_name_the_bad_entry() {
        let args = ["--sizes", "32, 1024"].map(String::from);
        let flags = Flags::parse_from(args, &[]).unwrap();
        assert_eq!(flags.numbers("--sizes", "1").unwrap(), [32, 1024]);
        assert_eq!(flags.numbers("--conns", "1,100").unwrap(), [1, 100]);
        let bad = Flags::parse_from(["--k", "1,x"].map(String::from), &[]).unwrap();
        assert_eq!(bad.numbers("--k", "0").unwrap_err(), "bad --k entry \"x\"");
    }

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = masked_frame(opcode, payload);
        // Unmask: drop the mask bit and key, restore the payload.
        let hdr = match payload.len() {
            n if n < 126 => 2,
            n if n <= 0xffff => 4,
            _ => 10,
        };
        f[1] &= 0x7f;
        f.drain(hdr..hdr + 4);
        f[hdr..].copy_from_slice(payload);
        f
    }

    #[test]
    fn parser_counts_messages_across_any_split() {
        let mut stream = Vec::new();
        for size in [0usize, 5, 125, 126, 1000, 70_000] {
            stream.extend(server_frame(2, &vec![7u8; size]));
        }
        stream.extend(server_frame(8, &1000u16.to_be_bytes()));
        for chunk in [1usize, 3, 7, 100, 65536, stream.len()] {
            let mut p = FrameParser::default();
            let mut out = Parsed::default();
            for piece in stream.chunks(chunk) {
                p.feed(piece, &mut out);
            }
            assert_eq!(out.messages, 6, "chunk {chunk}");
            assert_eq!(out.close, Some(1000), "chunk {chunk}");
        }
    }

    fn expecting(opcode: u8, payload: &[u8]) -> FrameParser {
        FrameParser::expecting(Expected {
            opcode,
            payload: payload.into(),
        })
    }

    fn parse_all(p: &mut FrameParser, stream: &[u8], chunk: usize) -> Parsed {
        let mut out = Parsed::default();
        for piece in stream.chunks(chunk) {
            p.feed(piece, &mut out);
        }
        out
    }

    #[test]
    fn verification_accepts_exact_echoes_in_any_split_and_fragmentation() {
        let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + 7) as u8).collect();
        let mut stream = server_frame(2, &payload);
        // The same message fragmented: binary without FIN, a ping between, continuations.
        let mut first = server_frame(2, &payload[..1000]);
        first[0] &= 0x7f;
        stream.extend(first);
        stream.extend(server_frame(9, b"hb"));
        let mut middle = server_frame(0, &payload[1000..50_000]);
        middle[0] &= 0x7f;
        stream.extend(middle);
        stream.extend(server_frame(0, &payload[50_000..]));
        for chunk in [1usize, 5, 4096, stream.len()] {
            let out = parse_all(&mut expecting(2, &payload), &stream, chunk);
            assert_eq!(
                (out.messages, out.mismatches),
                (2, 0),
                "chunk {chunk}: {:?}",
                out.first_mismatch
            );
            assert_eq!(out.pings, vec![b"hb".to_vec()]);
        }
    }

    #[test]
    fn verification_counts_each_kind_of_mismatch() {
        let payload = b"hello, echo".to_vec();
        let mut flipped = payload.clone();
        flipped[4] ^= 1;
        let cases: [(Vec<u8>, &str); 4] = [
            (server_frame(1, &payload), "text instead of binary"),
            (server_frame(2, &payload[..5]), "5 bytes instead of 11"),
            (
                server_frame(2, b"hello, echo!"),
                "longer than the 11 bytes sent",
            ),
            (server_frame(2, &flipped), "byte 4 differs"),
        ];
        for (frame, why) in cases {
            let mut stream = server_frame(2, &payload);
            stream.extend(frame);
            stream.extend(server_frame(2, &payload));
            for chunk in [1usize, 3, stream.len()] {
                let out = parse_all(&mut expecting(2, &payload), &stream, chunk);
                assert_eq!(
                    (out.messages, out.mismatches),
                    (3, 1),
                    "{why}, chunk {chunk}"
                );
                assert_eq!(out.first_mismatch.as_deref(), Some(why));
            }
        }
        // Text expected, binary echoed.
        let out = parse_all(&mut expecting(1, b"abc"), &server_frame(2, b"abc"), 2);
        assert_eq!(
            out.first_mismatch.as_deref(),
            Some("binary instead of text")
        );
        // Without an expectation: counted, never judged.
        let out = parse_all(&mut FrameParser::default(), &server_frame(1, b"x"), 1);
        assert_eq!((out.messages, out.mismatches), (1, 0));
    }

    #[test]
    fn quantiles_and_summary() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(summary(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(summary(&[4.0, 1.0]), Some((2.5, 1.0, 4.0)));
    }

    #[test]
    fn result_lines_and_flags() {
        let r = parse_result_line("RESULT msgs=10 secs=2.0").unwrap();
        assert_eq!(r["msgs"], "10");
        let s = parse_tagged_line("STATS pongs=3 msgs=7", "STATS").unwrap();
        assert_eq!((s["pongs"].as_str(), s["msgs"].as_str()), ("3", "7"));
        assert!(parse_tagged_line("STATSX pongs=3", "STATS").is_none());
        assert!(parse_tagged_line("SENT 4", "STATS").is_none());
        assert!(parse_tagged_line("RESULT", "RESULT").unwrap().is_empty());
        let f =
            Flags::parse_from(["--port", "0", "--quick"].map(String::from), &["--quick"]).unwrap();
        assert!(f.has("--quick"));
        assert_eq!(f.value("--port", 9u16).unwrap(), 0);
        assert!(f.check_known(&["--port"]).is_err());
    }
}
