//! The envelope around every payload on the bus: format version, sending node, sequence number.
//!
//! One Redis message is one envelope, binary and compact:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version, [`VERSION`] |
//! | 1 | length `n` of the node id, 1 to 255 |
//! | `n` | node id, UTF-8 |
//! | 8 | sequence number, big-endian `u64`, per (node, room), the first message is 1 |
//! | rest | payload, at most the receiver's `max_payload` |
//!
//! The room is not repeated inside: it is the Redis channel the envelope travels on.
//! Decoding checks every field and never panics, whatever the bytes.

use std::fmt;

/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;

/// The longest node id the format carries (its length is one byte).
pub const MAX_NODE_ID_LEN: usize = 255;

/// Bytes an envelope adds around its payload for a node id of `node_id_len` bytes.
pub fn overhead(node_id_len: usize) -> usize {
    1 + 1 + node_id_len + 8
}

/// A decoded envelope, borrowing from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that published it.
    pub node: &'a str,
    /// Its sequence number in the (node, room) stream.
    pub seq: u64,
    /// The application's bytes.
    pub payload: &'a [u8],
}

/// Why bytes received on a room's channel are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Fewer bytes than the fields announce.
    Truncated,
    /// A format version this crate does not know.
    UnknownVersion(u8),
    /// A node id of length 0 or not UTF-8.
    BadNodeId,
    /// A payload longer than this node's `max_payload`.
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The limit (`BusConfig::max_payload`).
        max: usize,
    },
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Truncated => write!(f, "envelope truncated"),
            EnvelopeError::UnknownVersion(v) => {
                write!(f, "envelope format version {v}, this node reads {VERSION}")
            }
            EnvelopeError::BadNodeId => write!(f, "envelope node id empty or not UTF-8"),
            EnvelopeError::PayloadTooLarge { len, max } => write!(
                f,
                "envelope payload of {len} bytes, over this node's max_payload of {max}"
            ),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// Writes the envelope of `payload` into a new buffer. The caller has checked that `node`
/// is 1 to [`MAX_NODE_ID_LEN`] bytes long.
pub fn encode(node: &str, seq: u64, payload: &[u8]) -> Vec<u8> {
    debug_assert!(!node.is_empty() && node.len() <= MAX_NODE_ID_LEN);
    let mut out = Vec::with_capacity(overhead(node.len()) + payload.len());
    out.push(VERSION);
    out.push(node.len() as u8);
    out.extend_from_slice(node.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads an envelope, refusing payloads longer than `max_payload`.
pub fn decode(bytes: &[u8], max_payload: usize) -> Result<Envelope<'_>, EnvelopeError> {
    let (&version, rest) = bytes.split_first().ok_or(EnvelopeError::Truncated)?;
    if version != VERSION {
        return Err(EnvelopeError::UnknownVersion(version));
    }
    let (&node_len, rest) = rest.split_first().ok_or(EnvelopeError::Truncated)?;
    let node_len = usize::from(node_len);
    if node_len == 0 {
        return Err(EnvelopeError::BadNodeId);
    }
    if rest.len() < node_len + 8 {
        return Err(EnvelopeError::Truncated);
    }
    let (node, rest) = rest.split_at(node_len);
    let node = std::str::from_utf8(node).map_err(|_| EnvelopeError::BadNodeId)?;
    let (seq, payload) = rest.split_at(8);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(seq);
    if payload.len() > max_payload {
        return Err(EnvelopeError::PayloadTooLarge {
            len: payload.len(),
            max: max_payload,
        });
    }
    Ok(Envelope {
        node,
        seq: u64::from_be_bytes(seq_bytes),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode("node-a", 42, b"hello");
        assert_eq!(bytes.len(), overhead(6) + 5);
        let env = decode(&bytes, 5).unwrap();
        assert_eq!(env.node, "node-a");
        assert_eq!(env.seq, 42);
        assert_eq!(env.payload, b"hello");
        let longest = "n".repeat(MAX_NODE_ID_LEN);
        assert_eq!(decode(&encode(&longest, 1, b""), 0).unwrap().node, longest);
    }

    #[test]
    fn every_field_checked() {
        let good = encode("a", 1, b"xy");
        assert_eq!(decode(&[], 10), Err(EnvelopeError::Truncated));
        assert_eq!(decode(&[2], 10), Err(EnvelopeError::UnknownVersion(2)));
        assert_eq!(decode(&[1], 10), Err(EnvelopeError::Truncated));
        assert_eq!(decode(&[1, 0, 0], 10), Err(EnvelopeError::BadNodeId));
        assert_eq!(
            decode(&good[..good.len() - 3], 10),
            Err(EnvelopeError::Truncated)
        );
        let mut bad_utf8 = good.clone();
        bad_utf8[2] = 0xff;
        assert_eq!(decode(&bad_utf8, 10), Err(EnvelopeError::BadNodeId));
        assert_eq!(
            decode(&good, 1),
            Err(EnvelopeError::PayloadTooLarge { len: 2, max: 1 })
        );
        // A node id length pointing past the end.
        assert_eq!(decode(&[1, 200, b'a'], 10), Err(EnvelopeError::Truncated));
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed xorshift sequence: reproducible hostile inputs of every length up to 300,
        // plus every prefix of a valid envelope with each byte flipped.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for len in 0..300 {
            for _ in 0..50 {
                let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if len > 0 && next() % 2 == 0 {
                    bytes[0] = VERSION;
                }
                if let Ok(env) = decode(&bytes, 64) {
                    assert!(env.payload.len() <= 64);
                    assert!(!env.node.is_empty());
                    accepted += 1;
                }
            }
        }
        let good = encode("node", 7, b"payload");
        for cut in 0..=good.len() {
            for i in 0..cut {
                let mut bytes = good[..cut].to_vec();
                bytes[i] ^= 0x80;
                let _ = decode(&bytes, 64);
            }
        }
        // Random bytes with the right version byte and a short node id do decode sometimes:
        // the loop above did exercise the success path too.
        assert!(accepted > 0);
    }
}
