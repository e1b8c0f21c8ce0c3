//! The bytes a connection wants sent, in order: small frames copied into one reusable
//! buffer, large unmasked payloads shared without a copy, handed out as slices for one
//! vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use tungstenite::Bytes;

/// Payloads at least this large are queued by reference (a `Bytes` clone) instead of being
/// copied: below it, one more slice in the vectored write costs more than the copy.
const SHARE_AT: usize = 2 * 1024;

/// After a burst has gone out, a copy buffer keeps at most this much capacity: enough for
/// a 64 KiB message and its header, so sending such messages one after another allocates
/// nothing, yet one huge burst does not stay allocated.
const RETAINED_CAPACITY: usize = 64 * 1024 + 16;

enum Chunk {
    Copied(Vec<u8>),
    Shared(Bytes),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Copied(v) => v,
            Chunk::Shared(b) => b,
        }
    }
}

/// The send queue of one connection.
#[derive(Default)]
pub(crate) struct Outbox {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already sent.
    front_sent: usize,
    /// Bytes queued and not yet sent.
    buffered: usize,
    /// Bytes ever handed out as sent.
    sent_total: u64,
    /// A drained copy buffer kept for the next frame, so the steady state allocates nothing.
    spare: Option<Vec<u8>>,
}

impl Outbox {
    /// Bytes queued and not yet sent.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Bytes sent since the connection started.
    pub(crate) fn sent_total(&self) -> u64 {
        self.sent_total
    }

    /// The stream position at which everything queued so far is sent.
    pub(crate) fn end_position(&self) -> u64 {
        self.sent_total + self.buffered as u64
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// Appends bytes by copying them.
    pub(crate) fn push_copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.copy_buffer().extend_from_slice(bytes);
        self.buffered += bytes.len();
    }

    /// Appends a frame header and its unmasked payload, both copied.
    pub(crate) fn push_frame(&mut self, header: &[u8], payload: &[u8]) {
        let buffer = self.copy_buffer();
        buffer.extend_from_slice(header);
        buffer.extend_from_slice(payload);
        self.buffered += header.len() + payload.len();
    }

    /// Appends a frame header and its payload masked with `mask` as it is copied (a
    /// client's frame).
    pub(crate) fn push_frame_masked(&mut self, header: &[u8], payload: &[u8], mask: [u8; 4]) {
        let buffer = self.copy_buffer();
        buffer.extend_from_slice(header);
        let start = buffer.len();
        buffer.extend_from_slice(payload);
        super::frames::unmask(&mut buffer[start..], mask, 0);
        self.buffered += header.len() + payload.len();
    }

    /// Appends a frame header and its unmasked shared payload: a large payload is queued by
    /// reference, a small one copied next to its header.
    pub(crate) fn push_frame_shared(&mut self, header: &[u8], payload: &Bytes) {
        if payload.len() < SHARE_AT {
            return self.push_frame(header, payload);
        }
        self.push_copy(header);
        self.buffered += payload.len();
        self.chunks.push_back(Chunk::Shared(payload.clone()));
    }

    /// The copy buffer at the back of the queue, starting one when the back is shared.
    fn copy_buffer(&mut self) -> &mut Vec<u8> {
        if !matches!(self.chunks.back(), Some(Chunk::Copied(_))) {
            let buffer = self.spare.take().unwrap_or_default();
            self.chunks.push_back(Chunk::Copied(buffer));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Copied(buffer)) => buffer,
            _ => unreachable!("a copy buffer was just pushed"),
        }
    }

    /// Fills `slices` with the unsent bytes in order; returns how many slices were used.
    pub(crate) fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut used = 0;
        for (index, chunk) in self.chunks.iter().enumerate() {
            if used == slices.len() {
                break;
            }
            let bytes = chunk.bytes();
            let bytes = if index == 0 {
                &bytes[self.front_sent..]
            } else {
                bytes
            };
            if !bytes.is_empty() {
                slices[used] = IoSlice::new(bytes);
                used += 1;
            }
        }
        used
    }

    /// The first unsent bytes as one slice (empty when nothing waits).
    pub(crate) fn front(&self) -> &[u8] {
        self.chunks
            .front()
            .map_or(&[][..], |chunk| &chunk.bytes()[self.front_sent..])
    }

    /// Forgets the first `count` unsent bytes: the transport took them. A count beyond
    /// what is queued (a driver's mistake) is cut to it.
    pub(crate) fn advance(&mut self, mut count: usize) {
        count = count.min(self.buffered);
        self.buffered -= count;
        self.sent_total += count as u64;
        while count > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.front_sent;
            if count < left {
                self.front_sent += count;
                return;
            }
            count -= left;
            self.front_sent = 0;
            if let Some(Chunk::Copied(mut buffer)) = self.chunks.pop_front() {
                buffer.clear();
                if buffer.capacity() > RETAINED_CAPACITY {
                    buffer.shrink_to(RETAINED_CAPACITY);
                }
                self.spare = Some(buffer);
            }
        }
        if self.buffered == 0 && self.chunks.front().is_some_and(|c| c.bytes().is_empty()) {
            self.chunks.clear();
        }
    }

    /// Whether the queue holds any allocation (buffers kept for reuse included).
    #[cfg(test)]
    pub(crate) fn holds_buffers(&self) -> bool {
        self.chunks.capacity() > 0 || self.spare.is_some()
    }

    /// Frees the buffers an empty queue keeps for reuse: for connections that have sent
    /// nothing but their handshake, so an idle connection holds no send buffer.
    pub(crate) fn release_if_empty(&mut self) {
        if self.buffered == 0 {
            self.chunks = VecDeque::new();
            self.front_sent = 0;
            self.spare = None;
        }
    }

    /// Drops everything still queued (the connection is over).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.front_sent = 0;
        self.buffered = 0;
        self.spare = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(outbox: &mut Outbox) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut slices = [IoSlice::new(&[]); 4];
            let used = outbox.slices(&mut slices);
            if used == 0 {
                return out;
            }
            // Take at most 3 bytes at a time to cross chunk boundaries mid-slice.
            let mut taken = 0;
            for slice in &slices[..used] {
                let n = slice.len().min(3 - taken);
                out.extend_from_slice(&slice[..n]);
                taken += n;
                if taken == 3 {
                    break;
                }
            }
            outbox.advance(taken);
        }
    }

    #[test]
    fn order_is_kept_across_copied_and_shared_chunks() {
        let mut outbox = Outbox::default();
        let big = Bytes::from(vec![7u8; SHARE_AT]);
        outbox.push_copy(b"ab");
        outbox.push_frame(b"H1", b"small");
        outbox.push_frame_shared(b"H2", &big);
        outbox.push_copy(b"z");
        assert_eq!(outbox.buffered(), 2 + 7 + 2 + SHARE_AT + 1);
        let end = outbox.end_position();
        let mut expected = b"abH1smallH2".to_vec();
        expected.extend_from_slice(&big);
        expected.push(b'z');
        assert_eq!(drain(&mut outbox), expected);
        assert!(outbox.is_empty());
        assert_eq!(outbox.sent_total(), end);
    }

    #[test]
    fn a_drained_copy_buffer_is_reused() {
        let mut outbox = Outbox::default();
        outbox.push_copy(b"hello");
        outbox.advance(5);
        let before = outbox.spare.as_ref().map(|b| b.as_ptr());
        assert!(before.is_some());
        outbox.push_copy(b"again");
        assert_eq!(outbox.front(), b"again");
        outbox.advance(5);
        assert_eq!(outbox.spare.as_ref().map(|b| b.as_ptr()), before);
    }

    #[test]
    fn large_payloads_are_not_copied() {
        let mut outbox = Outbox::default();
        let big = Bytes::from(vec![1u8; 64 * 1024]);
        outbox.push_frame_shared(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0], &big);
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(outbox.slices(&mut slices), 2);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
    }
}
