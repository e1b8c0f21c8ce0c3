//! RESP on a non-blocking stream: commands packed by the `redis` crate, replies parsed by its `Parser`, incrementally and bounded.
//!
//! `redis::Parser` wraps a combine `Decoder` that owns a read buffer and the partial state
//! of the reply being parsed. `Parser::parse_value(reader)` parses what is buffered, and
//! only when that is not a whole reply reads more: a read error comes back as an I/O
//! `RedisError`, and both the buffer and the partial state stay in the decoder (combine
//! reads into spare capacity and only commits what the reader returned). So a
//! `WouldBlock` from a non-blocking socket means "incomplete, call again when readable",
//! and the next call resumes where it stopped. Invalid bytes are a `ErrorKind::Parse`
//! error; the end of the stream (a read of 0) is an I/O `UnexpectedEof`, whether or not
//! part of a reply was buffered. [`ReplyReader`] turns those into [`Reply`] and
//! [`ReplyError`], and bounds the bytes the decoder may buffer for one reply.

use std::io::{self, Read};

use redis::Value;

/// Packs `PUBLISH channel message`.
pub fn publish(channel: &[u8], message: &[u8]) -> Vec<u8> {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .get_packed_command()
}

/// Packs one `SUBSCRIBE` for every channel given (at least one).
pub fn subscribe<'a>(channels: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut cmd = redis::cmd("SUBSCRIBE");
    for channel in channels {
        cmd.arg(channel);
    }
    cmd.get_packed_command()
}

/// Packs `UNSUBSCRIBE channel`.
pub fn unsubscribe(channel: &[u8]) -> Vec<u8> {
    redis::cmd("UNSUBSCRIBE").arg(channel).get_packed_command()
}

/// What one [`ReplyReader::read`] found.
#[derive(Debug)]
pub enum Reply {
    /// A whole reply.
    Value(Value),
    /// Everything the stream had is buffered and is not a whole reply yet: wait for the
    /// next readable event.
    WouldBlock,
}

/// Why a connection's replies cannot be read any further.
#[derive(Debug)]
pub enum ReplyError {
    /// Redis closed the connection.
    Closed,
    /// The bytes are not RESP.
    Invalid(String),
    /// One reply needs more than the reader's bound.
    TooLarge {
        /// The bound, in bytes.
        max: usize,
    },
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Closed => write!(f, "Redis closed the connection"),
            ReplyError::Invalid(e) => write!(f, "Redis sent bytes that are not RESP: {e}"),
            ReplyError::TooLarge { max } => {
                write!(f, "a Redis reply longer than the {max} bytes allowed")
            }
            ReplyError::Io(e) => write!(f, "reading from Redis: {e}"),
        }
    }
}

/// Reads replies from one connection (a new reader for every connection: the decoder
/// remembers the end of its stream).
pub struct ReplyReader {
    parser: redis::Parser,
    max_reply: usize,
    /// Bytes handed to the decoder since the last whole reply.
    taken: usize,
}

/// What a [`Bounded`] reader saw go wrong, kept aside: `RedisError` does not give the
/// reader's `io::Error` back.
enum Observed {
    Io(io::Error),
    OverBound,
}

/// A reader that hands the decoder at most `max - taken` more bytes, and keeps the
/// errors it returns in `observed`.
struct Bounded<'a, R> {
    inner: &'a mut R,
    taken: &'a mut usize,
    max: usize,
    observed: &'a mut Option<Observed>,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.max.saturating_sub(*self.taken);
        if room == 0 {
            *self.observed = Some(Observed::OverBound);
            return Err(io::Error::other("reply over its bound"));
        }
        let len = buf.len().min(room);
        match self.inner.read(&mut buf[..len]) {
            Ok(n) => {
                *self.taken += n;
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                *self.observed = Some(Observed::Io(e));
                Err(kind.into())
            }
        }
    }
}

impl ReplyReader {
    /// A reader for a new connection whose replies are at most `max_reply` bytes. The
    /// decoder reads ahead by at most 8 KiB, so it buffers at most `max_reply + 8 KiB`.
    pub fn new(max_reply: usize) -> Self {
        ReplyReader {
            parser: redis::Parser::new(),
            max_reply,
            taken: 0,
        }
    }

    /// The next reply, reading from `stream` only when the buffered bytes do not hold one.
    pub fn read<R: Read>(&mut self, stream: &mut R) -> Result<Reply, ReplyError> {
        loop {
            let mut observed = None;
            let mut bounded = Bounded {
                inner: stream,
                taken: &mut self.taken,
                max: self.max_reply,
                observed: &mut observed,
            };
            let err = match self.parser.parse_value(&mut bounded) {
                Ok(value) => {
                    self.taken = 0;
                    return Ok(Reply::Value(value));
                }
                Err(err) => err,
            };
            // A read error stops the decoder at once, so an error the reader saw is the
            // error returned. Without one, an I/O error is the decoder's own "the stream
            // ended" (partial reply or not).
            return match observed {
                Some(Observed::Io(e)) => match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(Reply::WouldBlock),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(ReplyError::Io(e)),
                },
                Some(Observed::OverBound) => Err(ReplyError::TooLarge {
                    max: self.max_reply,
                }),
                None if err.is_io_error() => Err(ReplyError::Closed),
                None => Err(ReplyError::Invalid(err.to_string())),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes `step` at a time, with a `WouldBlock` between every two reads,
    /// then `WouldBlock` forever, or the end of the stream once `eof` is set.
    struct Trickle {
        bytes: Vec<u8>,
        pos: usize,
        step: usize,
        blocked: bool,
        eof: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.bytes.len() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            self.blocked = !self.blocked;
            if self.blocked {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.step.min(buf.len()).min(self.bytes.len() - self.pos);
            buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn trickle(bytes: &[u8], step: usize) -> Trickle {
        Trickle {
            bytes: bytes.to_vec(),
            pos: 0,
            step,
            blocked: false,
            eof: false,
        }
    }

    fn read_all(reader: &mut ReplyReader, stream: &mut Trickle) -> Vec<Value> {
        let mut values = Vec::new();
        for _ in 0..10_000 {
            match reader.read(stream).unwrap() {
                Reply::Value(v) => values.push(v),
                Reply::WouldBlock if stream.pos == stream.bytes.len() => break,
                Reply::WouldBlock => {}
            }
        }
        values
    }

    const MESSAGES: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nr1\r\n:1\r\n\
        *3\r\n$7\r\nmessage\r\n$2\r\nr1\r\n$5\r\nhello\r\n:7\r\n+OK\r\n";

    #[test]
    fn replies_cut_anywhere_resume_after_would_block() {
        for step in [1, 2, 3, 7, 64] {
            let mut reader = ReplyReader::new(1024);
            let values = read_all(&mut reader, &mut trickle(MESSAGES, step));
            assert_eq!(values.len(), 4, "step {step}");
            let msg = redis::Msg::from_owned_value(values[1].clone()).unwrap();
            assert_eq!(msg.get_channel_name(), "r1");
            assert_eq!(msg.get_payload_bytes(), b"hello");
            assert_eq!(values[2], Value::Int(7));
            assert_eq!(values[3], Value::Okay);
        }
    }

    #[test]
    fn packed_commands_are_resp() {
        let mut reader = ReplyReader::new(1024);
        let packed = publish(b"room", b"a\r\nb");
        let values = read_all(&mut reader, &mut trickle(&packed, 5));
        let Value::Array(parts) = &values[0] else {
            panic!("{values:?}")
        };
        assert_eq!(parts[2], Value::BulkString(b"a\r\nb".to_vec()));
        let packed = subscribe([&b"x"[..], &b"y"[..]]);
        assert_eq!(packed, b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\nx\r\n$1\r\ny\r\n");
        assert_eq!(
            unsubscribe(b"x"),
            b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\nx\r\n"
        );
    }

    #[test]
    fn invalid_bytes_are_an_error() {
        let mut reader = ReplyReader::new(1024);
        match reader.read(&mut trickle(b"?what\r\n", 3)) {
            Ok(Reply::WouldBlock) => {}
            other => panic!("{other:?}"),
        }
        let mut stream = trickle(b"?what\r\n", 64);
        let mut reader = ReplyReader::new(1024);
        let err = loop {
            match reader.read(&mut stream) {
                Ok(Reply::WouldBlock) => continue,
                Ok(Reply::Value(v)) => panic!("{v:?}"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ReplyError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn a_reply_over_the_bound_is_refused() {
        // A bulk string announcing a megabyte: the decoder is cut off at the bound instead
        // of buffering it.
        let mut head = b"$1000000\r\n".to_vec();
        head.extend(std::iter::repeat_n(b'x', 5000));
        let mut stream = trickle(&head, 4096);
        let mut reader = ReplyReader::new(2048);
        let err = loop {
            match reader.read(&mut stream) {
                Ok(Reply::WouldBlock) => continue,
                Ok(Reply::Value(v)) => panic!("{v:?}"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ReplyError::TooLarge { max: 2048 }), "{err:?}");
        // Replies just under the bound, one after the other, pass.
        let mut many = Vec::new();
        for _ in 0..10 {
            many.extend_from_slice(b"$2000\r\n");
            many.extend(std::iter::repeat_n(b'y', 2000));
            many.extend_from_slice(b"\r\n");
        }
        let mut reader = ReplyReader::new(2048);
        assert_eq!(read_all(&mut reader, &mut trickle(&many, 3000)).len(), 10);
    }

    #[test]
    fn end_of_stream_is_closed() {
        for bytes in [&b""[..], b"*2\r\n$1\r\na"] {
            let mut stream = trickle(bytes, 64);
            stream.eof = true;
            let mut reader = ReplyReader::new(1024);
            let err = loop {
                match reader.read(&mut stream) {
                    Ok(Reply::WouldBlock) => continue,
                    Ok(Reply::Value(v)) => panic!("{v:?}"),
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, ReplyError::Closed), "{err:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..2000 {
            let len = round % 97;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Mostly RESP's own punctuation and digits, so the parser goes deep.
                    let alphabet = b"*$:+-\r\n0123456789%~>_,#!=(abc";
                    alphabet[(state as usize + i) % alphabet.len()]
                })
                .collect();
            let mut stream = trickle(&bytes, 1 + round % 5);
            stream.eof = true;
            let mut reader = ReplyReader::new(512);
            for _ in 0..1000 {
                match reader.read(&mut stream) {
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn hostile_lengths_wait_for_bytes_instead_of_allocating() {
        // Aggregates and strings announcing 2^31 elements or 2^63 bytes: the parser takes
        // them element by element (nothing reserved up front), so the stream's end, or the
        // bound, stops them.
        for head in [
            &b"*2147483647\r\n:1\r\n:2\r\n"[..],
            b"%2147483647\r\n:1\r\n:2\r\n",
            b"~2147483647\r\n:1\r\n",
            b">2147483647\r\n:1\r\n",
            b"$9223372036854775807\r\nabc",
        ] {
            let mut stream = trickle(head, 64);
            stream.eof = true;
            let mut reader = ReplyReader::new(1 << 16);
            let err = loop {
                match reader.read(&mut stream) {
                    Ok(Reply::WouldBlock) => continue,
                    Ok(Reply::Value(v)) => panic!("{v:?}"),
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, ReplyError::Closed), "{err:?}");
        }
    }
}
