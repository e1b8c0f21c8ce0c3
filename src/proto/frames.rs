//! Frames on the wire: parsed in place from the input, payloads unmasked while they are
//! copied into the message being assembled, and formatted (masked, for clients) into the
//! outbox.

use std::hash::BuildHasher;
use std::io::Cursor;
use std::sync::Arc;

use bytes::BytesMut;
use tungstenite::Bytes;
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::outbox::Outbox;

/// The largest header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// The largest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// A message starts in a block of at least this many bytes, so small messages that arrive
/// together share one allocation, and the next message reuses the block once the
/// application has dropped the previous ones.
const BLOCK: usize = 4 * 1024;

/// Messages that arrive in one input share a block of at most this many bytes (one
/// kept message keeps the block alive, so it stays small).
const MAX_SHARED_BLOCK: usize = 64 * 1024;

/// After a message larger than this is handed out, its buffer is not kept for the next
/// one: a connection that once received a large message does not hold it for its life.
const RETAINED_CAPACITY: usize = 64 * 1024 + 16;

/// A single-frame message with at least this much payload is received into a buffer of
/// its own, which the transport can read into directly ([`FrameReader::direct_space`]):
/// no copy between the socket and the packet.
pub(crate) const DIRECT_MIN: usize = 64 * 1024;

/// Payloads are unmasked in pieces this large right after being copied, while the piece
/// is still in the first-level cache.
const UNMASK_PIECE: usize = 16 * 1024;

/// A control frame's payload, copied out of the input.
#[derive(Clone, Copy)]
pub(crate) struct ControlPayload {
    bytes: [u8; MAX_CONTROL],
    len: u8,
}

impl ControlPayload {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// What a complete frame (or the last fragment of a message) brought.
pub(crate) enum Incoming {
    /// A whole data message.
    Message { data: Bytes, is_text: bool },
    /// A ping, with the payload the pong must echo.
    Ping(ControlPayload),
    /// A pong, with its payload (our ping's, if it answers one).
    Pong(ControlPayload),
    /// A close frame: its code and reason, or `None` when it had no payload.
    Close(Option<(u16, String)>),
}

/// The frame whose payload is being received.
struct FrameInProgress {
    opcode: OpCode,
    is_final: bool,
    /// A large single-frame message, received into `FrameReader::large`.
    direct: bool,
    /// The masking key, all zero for unmasked frames.
    mask: [u8; 4],
    len: usize,
    received: usize,
}

/// Reads frames from the bytes given to it, one message or control frame at a time, and
/// assembles fragmented messages. Everything it is given is taken: a header cut in two is
/// kept (at most 14 bytes), a payload cut in two continues in the message buffer.
pub(crate) struct FrameReader {
    /// Server side: frames must be masked; client side: they must not be.
    expect_masked: bool,
    /// The largest message (and so frame) accepted, in payload bytes.
    limit: usize,
    head: [u8; MAX_HEADER],
    head_len: usize,
    frame: Option<FrameInProgress>,
    /// A data message is being assembled: whether it is text.
    message_is_text: Option<bool>,
    /// The payload of the message being assembled.
    data: BytesMut,
    /// Bytes at the start of `data` known to be valid UTF-8 (text messages).
    utf8_checked: usize,
    control: ControlPayload,
    /// The buffer of the last large message: shared with its packet, and reused for the
    /// next large message once the application has dropped that packet (its bytes are
    /// then already initialised, so it is read into directly, with no zero-filling).
    large: Option<Arc<Vec<u8>>>,
}

/// A large message's bytes, owned by its packet together with the reader.
struct LargeMessage {
    buffer: Arc<Vec<u8>>,
    len: usize,
}

impl AsRef<[u8]> for LargeMessage {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl FrameReader {
    /// A reader for one side: a server reads masked frames, a client unmasked ones.
    /// `limit` bounds a whole message (the configured `inbound_buffer_size`).
    pub(crate) fn new(is_server: bool, limit: usize) -> Self {
        FrameReader {
            expect_masked: is_server,
            limit,
            head: [0; MAX_HEADER],
            head_len: 0,
            frame: None,
            message_is_text: None,
            data: BytesMut::new(),
            utf8_checked: 0,
            control: ControlPayload {
                bytes: [0; MAX_CONTROL],
                len: 0,
            },
            large: None,
        }
    }

    /// The rest of a large message's payload, for the transport to read into directly;
    /// report what it read with [`filled`](Self::filled). `None` when no large message is
    /// being received.
    pub(crate) fn direct_space(&mut self) -> Option<&mut [u8]> {
        let frame = self.frame.as_ref().filter(|f| f.direct)?;
        let (from, to) = (frame.received, frame.len);
        let buffer = Arc::make_mut(self.large.as_mut()?);
        buffer.get_mut(from..to)
    }

    /// `count` bytes were read into [`direct_space`](Self::direct_space): returns the
    /// message once it is complete.
    pub(crate) fn filled(&mut self, count: usize) -> Result<Option<Incoming>, tungstenite::Error> {
        let Some(frame) = self.frame.as_mut().filter(|f| f.direct) else {
            return Ok(None);
        };
        frame.received += count.min(frame.len - frame.received);
        if frame.received < frame.len {
            return Ok(None);
        }
        match self.frame.take() {
            Some(frame) => self.finish_frame(&frame),
            None => Ok(None),
        }
    }

    /// Whether a frame or a fragmented message was started and not finished.
    #[cfg(test)]
    pub(crate) fn is_mid_message(&self) -> bool {
        self.head_len > 0 || self.frame.is_some() || self.message_is_text.is_some()
    }

    /// Consumes bytes from the front of `input` until one message or control frame is
    /// complete (returned) or `input` is used up (`None`). An error means the connection
    /// must fail; the reader must not be used after it.
    pub(crate) fn next(
        &mut self,
        input: &mut &[u8],
    ) -> Result<Option<Incoming>, tungstenite::Error> {
        loop {
            if self.frame.is_none() {
                let Some((header, len)) = self.parse_header(input)? else {
                    return Ok(None);
                };
                self.start_frame(header, len)?;
            }
            let Some(frame) = self.frame.as_mut() else {
                return Ok(None);
            };
            let arrived = input.len();
            let take = (frame.len - frame.received).min(arrived);
            let (piece, rest) = input.split_at(take);
            *input = rest;
            if matches!(frame.opcode, OpCode::Control(_)) {
                let start = frame.received;
                let target = &mut self.control.bytes[start..start + take];
                target.copy_from_slice(piece);
                unmask(target, frame.mask, start);
            } else if frame.direct {
                // Unmasked in one pass once complete (`finish_frame`).
                if let Some(buffer) = self.large.as_mut() {
                    let start = frame.received;
                    Arc::make_mut(buffer)[start..start + take].copy_from_slice(piece);
                }
            } else {
                let rest_of_frame = frame.len - frame.received;
                if self.data.capacity() - self.data.len() < rest_of_frame {
                    // Room for the rest of the frame at once (the limit was checked on the
                    // header, so this is at most `inbound_buffer_size`), and for what
                    // arrived with it: messages that arrive together share one block.
                    let arrived = arrived.min(MAX_SHARED_BLOCK);
                    self.data.reserve(rest_of_frame.max(arrived).max(BLOCK));
                }
                let mut offset = frame.received;
                for chunk in piece.chunks(UNMASK_PIECE) {
                    let start = self.data.len();
                    self.data.extend_from_slice(chunk);
                    unmask(&mut self.data[start..], frame.mask, offset);
                    offset += chunk.len();
                }
            }
            frame.received += take;
            if frame.received < frame.len {
                return Ok(None);
            }
            if let Some(frame) = self.frame.take() {
                if let Some(incoming) = self.finish_frame(&frame)? {
                    return Ok(Some(incoming));
                }
            }
        }
    }

    /// Parses a header from the kept bytes and the front of `input`; keeps an incomplete
    /// one (then `input` is used up).
    fn parse_header(
        &mut self,
        input: &mut &[u8],
    ) -> Result<Option<(FrameHeader, u64)>, tungstenite::Error> {
        if self.head_len == 0 {
            let mut cursor = Cursor::new(*input);
            if let Some(parsed) = FrameHeader::parse(&mut cursor)? {
                *input = &input[cursor.position() as usize..];
                return Ok(Some(parsed));
            }
            // Incomplete, so shorter than the longest header.
            self.head[..input.len()].copy_from_slice(input);
            self.head_len = input.len();
            *input = &[];
            return Ok(None);
        }
        let kept = self.head_len;
        let added = (MAX_HEADER - kept).min(input.len());
        self.head[kept..kept + added].copy_from_slice(&input[..added]);
        let mut cursor = Cursor::new(&self.head[..kept + added]);
        match FrameHeader::parse(&mut cursor)? {
            Some(parsed) => {
                let used = cursor.position() as usize - kept;
                *input = &input[used..];
                self.head_len = 0;
                Ok(Some(parsed))
            }
            None => {
                self.head_len = kept + added;
                *input = &input[added..];
                Ok(None)
            }
        }
    }

    /// Checks a header against RFC 6455 and the limit before any of its payload is taken.
    fn start_frame(&mut self, header: FrameHeader, len: u64) -> Result<(), tungstenite::Error> {
        use tungstenite::Error::{Capacity, Protocol};
        if header.rsv1 || header.rsv2 || header.rsv3 {
            // No extension was negotiated.
            return Err(Protocol(ProtocolError::NonZeroReservedBits));
        }
        match (self.expect_masked, header.mask.is_some()) {
            (true, false) => return Err(Protocol(ProtocolError::UnmaskedFrameFromClient)),
            (false, true) => return Err(Protocol(ProtocolError::MaskedFrameFromServer)),
            _ => {}
        }
        match header.opcode {
            OpCode::Control(_) => {
                if !header.is_final {
                    return Err(Protocol(ProtocolError::FragmentedControlFrame));
                }
                if len > MAX_CONTROL as u64 {
                    return Err(Protocol(ProtocolError::ControlFrameTooBig));
                }
            }
            OpCode::Data(kind) => {
                match (kind, self.message_is_text) {
                    (Data::Continue, None) => {
                        return Err(Protocol(ProtocolError::UnexpectedContinueFrame));
                    }
                    (Data::Text | Data::Binary, Some(_)) => {
                        return Err(Protocol(ProtocolError::ExpectedFragment(kind)));
                    }
                    (Data::Text, None) => self.start_message(true),
                    (Data::Binary, None) => self.start_message(false),
                    _ => {}
                }
                let size = (self.data.len() as u64).saturating_add(len);
                if size > self.limit as u64 {
                    return Err(Capacity(CapacityError::MessageTooLong {
                        size: usize::try_from(size).unwrap_or(usize::MAX),
                        max_size: self.limit,
                    }));
                }
            }
        }
        // At most `limit` (data) or 125 (control), both checked above.
        let len = len as usize;
        let direct = header.is_final
            && len >= DIRECT_MIN
            && matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
        if direct {
            self.prepare_large(len);
        }
        self.frame = Some(FrameInProgress {
            opcode: header.opcode,
            is_final: header.is_final,
            direct,
            mask: header.mask.unwrap_or([0; 4]),
            len,
            received: 0,
        });
        Ok(())
    }

    /// Makes the large-message buffer ours alone and at least `len` bytes long: the last
    /// one again if its packet is gone, else a new one.
    fn prepare_large(&mut self, len: usize) {
        let buffer = self.large.get_or_insert_with(Arc::default);
        if Arc::get_mut(buffer).is_none() {
            // The application still holds the last large packet.
            *buffer = Arc::default();
        }
        let bytes = Arc::make_mut(buffer);
        if bytes.len() < len {
            bytes.resize(len, 0);
        }
    }

    fn start_message(&mut self, is_text: bool) {
        self.message_is_text = Some(is_text);
        self.utf8_checked = 0;
    }

    /// A frame's payload is complete: returns what it finished, if anything.
    fn finish_frame(
        &mut self,
        frame: &FrameInProgress,
    ) -> Result<Option<Incoming>, tungstenite::Error> {
        let payload = &self.control.bytes[..frame.len.min(MAX_CONTROL)];
        match frame.opcode {
            OpCode::Control(Control::Ping) => {
                self.control.len = frame.len as u8;
                Ok(Some(Incoming::Ping(self.control)))
            }
            OpCode::Control(Control::Pong) => {
                self.control.len = frame.len as u8;
                Ok(Some(Incoming::Pong(self.control)))
            }
            OpCode::Control(Control::Close) => match payload.len() {
                0 => Ok(Some(Incoming::Close(None))),
                1 => Err(tungstenite::Error::Protocol(
                    ProtocolError::InvalidCloseSequence,
                )),
                _ => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let reason = std::str::from_utf8(&payload[2..])?;
                    Ok(Some(Incoming::Close(Some((code, reason.to_string())))))
                }
            },
            // Reserved control opcodes are refused by the header parser.
            OpCode::Control(_) => Ok(None),
            OpCode::Data(_) if frame.direct => {
                let is_text = self.message_is_text.take().unwrap_or(false);
                let Some(buffer) = self.large.as_mut() else {
                    return Ok(None);
                };
                // One pass over the whole payload right before it is handed out: an echo
                // or a relay then writes it while it is still in the cache.
                unmask(&mut Arc::make_mut(buffer)[..frame.len], frame.mask, 0);
                if is_text {
                    std::str::from_utf8(&buffer[..frame.len])?;
                }
                let data = Bytes::from_owner(LargeMessage {
                    buffer: Arc::clone(buffer),
                    len: frame.len,
                });
                Ok(Some(Incoming::Message { data, is_text }))
            }
            OpCode::Data(_) => {
                let is_text = self.message_is_text.unwrap_or(false);
                if is_text {
                    self.check_utf8(frame.is_final)?;
                }
                if !frame.is_final {
                    return Ok(None);
                }
                self.message_is_text = None;
                // A run of large messages is over: do not keep a large buffer for later.
                self.large = None;
                let size = self.data.len();
                let data = self.data.split().freeze();
                if size > RETAINED_CAPACITY || self.data.capacity() > RETAINED_CAPACITY {
                    self.data = BytesMut::new();
                }
                Ok(Some(Incoming::Message { data, is_text }))
            }
        }
    }

    /// Validates the text received since the last check; a code point cut at the end of
    /// a fragment waits for the next one, so invalid text fails at the fragment that
    /// brings it.
    fn check_utf8(&mut self, is_final: bool) -> Result<(), tungstenite::Error> {
        match std::str::from_utf8(&self.data[self.utf8_checked..]) {
            Ok(_) => {
                self.utf8_checked = self.data.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !is_final => {
                self.utf8_checked += e.valid_up_to();
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// XORs `bytes` with the masking key, `offset` being the position of `bytes[0]` in the
/// payload; eight bytes at a time.
pub(crate) fn unmask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    if mask == [0; 4] {
        return;
    }
    let key: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = bytes.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut value = [0u8; 8];
        value.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(value) ^ word).to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// Formats frames into the outbox: unmasked for a server, masked with a fresh key for a
/// client.
pub(crate) struct FrameWriter {
    masks: Option<MaskKeys>,
}

/// Masking keys for a client's frames (RFC 6455 §5.3: unpredictable to whoever sees the
/// traffic). Each key is a keyed hash of a counter; the hash key comes from std's
/// `RandomState`, seeded from the operating system's random source, so the keys cannot be
/// told from the frames already sent.
struct MaskKeys {
    hasher: std::collections::hash_map::RandomState,
    counter: u64,
}

impl MaskKeys {
    fn next(&mut self) -> [u8; 4] {
        self.counter += 1;
        (self.hasher.hash_one(self.counter) as u32).to_ne_bytes()
    }
}

/// A payload to send: borrowed bytes are copied once, shared ones may be sent as they are.
pub(crate) enum Payload<'a> {
    Borrowed(&'a [u8]),
    Shared(&'a Bytes),
}

impl Payload<'_> {
    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Borrowed(data) => data,
            Payload::Shared(data) => data,
        }
    }
}

impl FrameWriter {
    /// A writer for one side.
    pub(crate) fn new(is_client: bool) -> Self {
        FrameWriter {
            masks: is_client.then(|| MaskKeys {
                hasher: std::collections::hash_map::RandomState::new(),
                counter: 0,
            }),
        }
    }

    /// Queues one complete frame.
    pub(crate) fn write(&mut self, outbox: &mut Outbox, opcode: OpCode, payload: Payload<'_>) {
        let mask = self.masks.as_mut().map(MaskKeys::next);
        let header = FrameHeader {
            opcode,
            mask,
            ..FrameHeader::default()
        };
        let len = payload.len() as u64;
        let mut head = [0u8; MAX_HEADER];
        let head_len = header.len(len);
        let mut cursor = &mut head[..];
        if header.format(len, &mut cursor).is_err() {
            unreachable!("a frame header always fits in 14 bytes");
        }
        let head = &head[..head_len];
        match (mask, payload) {
            (Some(mask), payload) => outbox.push_frame_masked(head, payload.bytes(), mask),
            (None, Payload::Borrowed(data)) => outbox.push_frame(head, data),
            (None, Payload::Shared(data)) => outbox.push_frame_shared(head, data),
        }
    }

    /// Queues a control frame.
    pub(crate) fn control(&mut self, outbox: &mut Outbox, control: Control, payload: &[u8]) {
        self.write(outbox, OpCode::Control(control), Payload::Borrowed(payload));
    }

    /// Queues a close frame with `code` and `reason` (`None`: an empty close).
    pub(crate) fn close(&mut self, outbox: &mut Outbox, close: Option<(u16, &str)>) {
        let mut payload = [0u8; MAX_CONTROL];
        let len = match close {
            None => 0,
            Some((code, reason)) => {
                // Reasons are checked (≤ 123 bytes) before they get here; cut, never panic.
                let reason = &reason.as_bytes()[..reason.len().min(MAX_CONTROL - 2)];
                payload[..2].copy_from_slice(&code.to_be_bytes());
                payload[2..2 + reason.len()].copy_from_slice(reason);
                2 + reason.len()
            }
        };
        self.control(outbox, Control::Close, &payload[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n < 65536 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mut body = payload.to_vec();
        if let Some(key) = mask {
            out.extend_from_slice(&key);
            for (i, b) in body.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        out.extend_from_slice(&body);
        out
    }

    const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    fn messages(reader: &mut FrameReader, mut input: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        while let Some(incoming) = reader.next(&mut input).expect("valid frames") {
            if let Incoming::Message { data, is_text } = incoming {
                out.push((data.to_vec(), is_text));
            }
        }
        assert!(input.is_empty());
        out
    }

    #[test]
    fn unmask_matches_the_byte_at_a_time_definition_at_every_offset() {
        let key = [1, 2, 3, 250];
        for len in [0, 1, 7, 8, 9, 31, 100] {
            for offset in 0..8 {
                let original: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let mut fast = original.clone();
                unmask(&mut fast, key, offset);
                let slow: Vec<u8> = original
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(offset + i) % 4])
                    .collect();
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn every_split_of_the_input_gives_the_same_messages() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let mut wire = frame(true, 2, KEY, &payload);
        wire.extend(frame(false, 1, KEY, "κό".as_bytes()));
        wire.extend(frame(true, 9, KEY, b"ping"));
        wire.extend(frame(true, 0, KEY, "σμε".as_bytes()));
        let expected = vec![
            (payload.clone(), false),
            ("κόσμε".as_bytes().to_vec(), true),
        ];
        for cut in 0..wire.len() {
            let mut reader = FrameReader::new(true, 1000);
            let mut got = messages(&mut reader, &wire[..cut]);
            got.extend(messages(&mut reader, &wire[cut..]));
            assert_eq!(got, expected, "cut at {cut}");
            assert!(!reader.is_mid_message());
        }
        let mut reader = FrameReader::new(true, 1000);
        let mut got = Vec::new();
        for byte in &wire {
            got.extend(messages(&mut reader, std::slice::from_ref(byte)));
        }
        assert_eq!(got, expected, "a byte at a time");
    }

    #[test]
    fn messages_arriving_together_share_one_block_that_is_reused() {
        for size in [20, 4096, 10_000] {
            let mut reader = FrameReader::new(true, 1 << 20);
            let mut wire = Vec::new();
            for i in 0..4u8 {
                wire.extend(frame(true, 2, KEY, &vec![i; size]));
            }
            let mut input = &wire[..];
            let mut first = Vec::new();
            while let Some(Incoming::Message { data, .. }) = reader.next(&mut input).unwrap() {
                first.push(data);
            }
            assert_eq!(first.len(), 4);
            let base = first[0].as_ptr() as usize;
            for (i, data) in first.iter().enumerate() {
                assert_eq!(data.as_ptr() as usize, base + size * i, "{size}: one block");
            }
            drop(first);
            let mut input = &wire[..];
            let Some(Incoming::Message { data, .. }) = reader.next(&mut input).unwrap() else {
                panic!("a message");
            };
            let at = data.as_ptr() as usize;
            assert!(
                (base..base + 4 * size.max(BLOCK)).contains(&at),
                "{size}: the block is reused once dropped: {at:#x} outside {base:#x}"
            );
        }
    }

    #[test]
    fn a_large_message_is_not_kept_for_the_life_of_the_connection() {
        let mut reader = FrameReader::new(true, 1 << 20);
        let big = vec![5u8; 200_000];
        let got = messages(&mut reader, &frame(true, 2, KEY, &big));
        assert_eq!(got, vec![(big, false)]);
        drop(got);
        // Had the block been kept, this message would reuse all 200 000 bytes of it.
        messages(&mut reader, &frame(true, 2, KEY, &[1; 20]));
        assert!(
            reader.data.capacity() <= RETAINED_CAPACITY,
            "{} bytes kept",
            reader.data.capacity()
        );
    }

    /// Feeds `wire` the way a driver does: through `next` until a large message offers
    /// its buffer, then straight into that buffer, `chunk` bytes per read.
    fn read_like_a_driver(reader: &mut FrameReader, wire: &[u8], chunk: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            if let Some(space) = reader.direct_space() {
                let n = chunk.min(space.len()).min(rest.len());
                space[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                if let Some(Incoming::Message { data, .. }) = reader.filled(n).unwrap() {
                    out.push(data);
                }
                continue;
            }
            let n = chunk.min(rest.len());
            let mut input = &rest[..n];
            while let Some(incoming) = reader.next(&mut input).unwrap() {
                if let Incoming::Message { data, .. } = incoming {
                    out.push(data);
                }
            }
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn large_messages_are_read_into_their_own_buffer_which_is_reused_once_dropped() {
        let big: Vec<u8> = (0..DIRECT_MIN as u32 + 1000)
            .map(|i| (i % 253) as u8)
            .collect();
        let mut wire = frame(true, 2, KEY, &big);
        wire.extend(frame(true, 2, KEY, &big));
        for chunk in [1, 1000, 60_000, 1 << 20] {
            let mut reader = FrameReader::new(true, 1 << 20);
            let got = read_like_a_driver(&mut reader, &wire, chunk);
            assert_eq!(got.len(), 2, "chunk {chunk}");
            assert!(got.iter().all(|m| m[..] == big[..]), "chunk {chunk}");
            assert_ne!(got[0].as_ptr(), got[1].as_ptr(), "the first was still held");
            let second = got[1].as_ptr();
            drop(got);
            let again = read_like_a_driver(&mut reader, &wire[..wire.len() / 2], chunk);
            assert_eq!(
                again[0].as_ptr(),
                second,
                "chunk {chunk}: reused once dropped"
            );
            // A driver that never reads into the buffer directly gets the same messages.
            let mut plain = FrameReader::new(true, 1 << 20);
            let got = messages(&mut plain, &wire);
            assert!(got.len() == 2 && got.iter().all(|(m, _)| m[..] == big[..]));
            // A small message ends the run: the large buffer is let go.
            read_like_a_driver(&mut reader, &frame(true, 2, KEY, b"small"), chunk);
            assert!(reader.large.is_none());
        }
    }

    #[test]
    fn a_large_text_message_is_checked_for_utf8() {
        let mut text = "é".repeat(DIRECT_MIN).into_bytes();
        let mut reader = FrameReader::new(true, 1 << 20);
        let got = read_like_a_driver(&mut reader, &frame(true, 1, KEY, &text), 5000);
        assert_eq!(got[0].len(), text.len());
        text[DIRECT_MIN + 1] = 0xff;
        let mut reader = FrameReader::new(true, 1 << 20);
        let wire = frame(true, 1, KEY, &text);
        let mut input = &wire[..100];
        assert!(reader.next(&mut input).unwrap().is_none());
        let space = reader.direct_space().expect("a large message");
        space.copy_from_slice(&wire[100..]);
        assert!(reader.filled(wire.len() - 100).is_err(), "invalid UTF-8");
    }

    #[test]
    fn violations_are_refused_on_the_header() {
        let refused = |is_server: bool, wire: Vec<u8>| {
            let mut reader = FrameReader::new(is_server, 100);
            let mut input = &wire[..];
            loop {
                match reader.next(&mut input) {
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    Err(e) => return Some(e.to_string()),
                }
            }
        };
        assert!(
            refused(true, frame(true, 2, None, b"x")).is_some(),
            "unmasked"
        );
        assert!(
            refused(false, frame(true, 2, KEY, b"x")).is_some(),
            "masked"
        );
        assert!(
            refused(true, frame(true, 3, KEY, b"x")).is_some(),
            "opcode 3"
        );
        assert!(
            refused(true, frame(false, 9, KEY, b"")).is_some(),
            "fragmented ping"
        );
        assert!(
            refused(true, frame(true, 9, KEY, &[0; 126])).is_some(),
            "big ping"
        );
        assert!(
            refused(true, frame(true, 0, KEY, b"x")).is_some(),
            "orphan continue"
        );
        let mut two_starts = frame(false, 2, KEY, b"a");
        two_starts.extend(frame(true, 2, KEY, b"b"));
        assert!(
            refused(true, two_starts).is_some(),
            "new message mid-message"
        );
        let mut rsv = frame(true, 2, KEY, b"x");
        rsv[0] |= 0x40;
        assert!(refused(true, rsv).is_some(), "rsv1");
        let over = refused(true, frame(true, 2, KEY, &[0; 101])).expect("over the limit");
        assert!(over.contains("101"), "{over}");
        // The limit holds for the message, across fragments, before the payload arrives.
        let mut fragments = frame(false, 2, KEY, &[0; 60]);
        fragments.extend(&frame(true, 0, KEY, &[0; 41])[..8]);
        assert!(
            refused(true, fragments).is_some(),
            "101 bytes in two fragments"
        );
        assert!(
            refused(true, frame(true, 1, KEY, b"\xff")).is_some(),
            "bad UTF-8"
        );
        assert!(
            refused(true, frame(true, 8, KEY, b"\x03")).is_some(),
            "1-byte close"
        );
        let mut cut_code_point = frame(false, 1, KEY, "é".as_bytes().split_at(1).0);
        assert!(refused(true, cut_code_point.clone()).is_none(), "may go on");
        cut_code_point.extend(frame(true, 0, KEY, b""));
        assert!(
            refused(true, cut_code_point).is_some(),
            "ends mid code point"
        );
    }

    #[test]
    fn control_frames_between_fragments() {
        let mut reader = FrameReader::new(false, 100);
        let mut wire = frame(false, 2, None, b"ab");
        wire.extend(frame(true, 9, None, b"hi"));
        wire.extend(frame(true, 8, None, b"\x03\xe8bye"));
        let mut input = &wire[..];
        match reader.next(&mut input).unwrap() {
            Some(Incoming::Ping(payload)) => assert_eq!(payload.as_slice(), b"hi"),
            _ => panic!("a ping"),
        }
        assert!(reader.is_mid_message());
        match reader.next(&mut input).unwrap() {
            Some(Incoming::Close(Some((1000, reason)))) => assert_eq!(reason, "bye"),
            _ => panic!("a close"),
        }
    }

    #[test]
    fn written_frames_read_back_on_the_other_side() {
        let mut outbox = Outbox::default();
        let mut client = FrameWriter::new(true);
        let big = Bytes::from(vec![9u8; 70_000]);
        client.write(
            &mut outbox,
            OpCode::Data(Data::Text),
            Payload::Borrowed(b"hello"),
        );
        client.write(
            &mut outbox,
            OpCode::Data(Data::Binary),
            Payload::Shared(&big),
        );
        client.close(&mut outbox, Some((1000, "done")));
        let mut wire = Vec::new();
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let used = outbox.slices(&mut slices);
        for slice in &slices[..used] {
            wire.extend_from_slice(slice);
        }
        assert_ne!(&wire[6..11], b"hello", "client frames are masked");
        let mut reader = FrameReader::new(true, 100_000);
        let mut input = &wire[..];
        let got = messages(&mut reader, &wire[..0]);
        assert!(got.is_empty());
        match reader.next(&mut input).unwrap() {
            Some(Incoming::Message { data, is_text }) => {
                assert_eq!((&data[..], is_text), (&b"hello"[..], true))
            }
            _ => panic!("text"),
        }
        match reader.next(&mut input).unwrap() {
            Some(Incoming::Message { data, .. }) => assert_eq!(data, big),
            _ => panic!("binary"),
        }
        match reader.next(&mut input).unwrap() {
            Some(Incoming::Close(Some((1000, reason)))) => assert_eq!(reason, "done"),
            _ => panic!("close"),
        }
    }
}
