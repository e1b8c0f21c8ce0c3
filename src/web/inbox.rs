//! What the browser's `WebSocket` callbacks report, queued until `poll()`, with the inbound
//! limits applied as messages arrive. Plain Rust (no web-sys), so it is tested on the host.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::Error;
use crate::proto::Packet;

/// The close code we record when a message exceeds `inbound_buffer_size`, as a native peer
/// does (RFC 6455: message too big).
pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;

/// The close code we record when packets wait unread beyond the limits (RFC 6455: policy
/// violation, the generic code when no other fits).
pub(crate) const QUEUE_FULL: u16 = 1008;

/// The code a page may send for `code`: browsers only let a page close with 1000 or
/// 3000–4999, so 1008 and 1009 go on the wire as 4008 and 4009 (the private range).
pub(crate) fn code_a_page_may_send(code: u16) -> u16 {
    match code {
        1000 | 3000..=4999 => code,
        other => 4000 + other % 1000,
    }
}

/// What a callback queued: a message, or a report for `poll()`.
#[derive(Debug)]
enum Incoming {
    Message(Packet),
    Report(Report),
}

/// What the browser reported besides messages, in order, as `poll()` sees it.
#[derive(Debug)]
pub(crate) enum Report {
    /// `onopen`, with the sub-protocol the server selected (`""`: none).
    Open { protocol: String },
    /// A limit was exceeded: the socket is being closed with `code`, and `error` says why.
    Failed {
        code: u16,
        reason: String,
        error: Error,
    },
    /// `onerror`: the browser gives no detail.
    Error,
    /// `onclose`.
    Closed {
        code: u16,
        reason: String,
        clean: bool,
    },
}

/// What the driver must do after a message was offered.
#[derive(Debug, PartialEq)]
pub(crate) enum Admission {
    /// Queued; nothing to do.
    Queued,
    /// Close the socket now with this code and reason (already a code a page may send):
    /// a limit was exceeded. Reported once; later messages are dropped while it closes.
    Close { wire_code: u16, reason: String },
    /// Dropped: the connection is already closing because of an earlier failure.
    Dropped,
}

/// The queue between the callbacks and the peer. Packets become readable only when
/// [`drain`](Self::drain) (called by `poll()`) reaches them; the limits count every packet
/// not yet read, readable or not, because the browser cannot be asked to stop reading.
#[derive(Debug)]
pub(crate) struct Inbox {
    inbound_buffer_size: usize,
    max_queued_packets: usize,
    /// Reported by callbacks, not yet seen by `poll()`.
    pending: VecDeque<Incoming>,
    /// Seen by `poll()`: what `get_packet` returns.
    readable: VecDeque<Packet>,
    /// Packets and payload bytes in `pending` and `readable` together.
    unread_packets: usize,
    unread_bytes: usize,
    /// A limit was exceeded: later messages are dropped.
    failed: bool,
    /// Messages dropped after the failure (counted, for the log).
    dropped: u64,
}

impl Inbox {
    /// An empty queue with a connection's limits (`inbound_buffer_size` bounds one message
    /// and the unread bytes; `max_queued_packets` the unread packets).
    pub(crate) fn new(inbound_buffer_size: usize, max_queued_packets: usize) -> Self {
        Inbox {
            inbound_buffer_size,
            max_queued_packets,
            pending: VecDeque::new(),
            readable: VecDeque::new(),
            unread_packets: 0,
            unread_bytes: 0,
            failed: false,
            dropped: 0,
        }
    }

    /// `onopen`.
    pub(crate) fn opened(&mut self, protocol: String) {
        self.pending
            .push_back(Incoming::Report(Report::Open { protocol }));
    }

    /// `onerror`.
    pub(crate) fn errored(&mut self) {
        self.pending.push_back(Incoming::Report(Report::Error));
    }

    /// `onclose`.
    pub(crate) fn closed(&mut self, code: u16, reason: String, clean: bool) {
        if self.dropped > 0 {
            log::warn!(
                "{} messages dropped while the connection closed for exceeding a limit",
                self.dropped
            );
        }
        self.pending.push_back(Incoming::Report(Report::Closed {
            code,
            reason,
            clean,
        }));
    }

    /// Whether a message of `size` bytes may be taken: checked before copying it out of
    /// the browser, so an oversized one is never copied.
    pub(crate) fn admit(&mut self, size: usize) -> Admission {
        if self.failed {
            self.dropped += 1;
            return Admission::Dropped;
        }
        if size > self.inbound_buffer_size {
            let limit = self.inbound_buffer_size;
            return self.fail(
                MESSAGE_TOO_BIG,
                "Message too big",
                Error::Protocol {
                    code: MESSAGE_TOO_BIG,
                    detail: format!("message of {size} bytes exceeds inbound_buffer_size {limit}"),
                },
            );
        }
        // A native peer stops reading at these marks (a message in flight may overshoot the
        // bytes by one message); a browser cannot stop, so here the connection ends.
        if self.unread_packets >= self.max_queued_packets
            || self.unread_bytes >= self.inbound_buffer_size
        {
            let error = Error::InboundQueueFull {
                packets: self.unread_packets,
                bytes: self.unread_bytes,
            };
            return self.fail(QUEUE_FULL, "Receive queue full", error);
        }
        Admission::Queued
    }

    fn fail(&mut self, code: u16, reason: &str, error: Error) -> Admission {
        self.failed = true;
        self.pending.push_back(Incoming::Report(Report::Failed {
            code,
            reason: reason.to_string(),
            error,
        }));
        Admission::Close {
            wire_code: code_a_page_may_send(code),
            reason: reason.to_string(),
        }
    }

    /// Queues a message that [`admit`](Self::admit) accepted.
    pub(crate) fn push(&mut self, data: impl Into<Bytes>, is_text: bool) {
        let packet = Packet::new(data, is_text);
        self.unread_packets += 1;
        self.unread_bytes += packet.data().len();
        self.pending.push_back(Incoming::Message(packet));
    }

    /// `poll()`: makes the queued messages readable and returns the other reports, in
    /// order.
    pub(crate) fn drain(&mut self) -> Vec<Report> {
        let mut reports = Vec::new();
        while let Some(incoming) = self.pending.pop_front() {
            match incoming {
                Incoming::Message(packet) => self.readable.push_back(packet),
                Incoming::Report(report) => reports.push(report),
            }
        }
        reports
    }

    /// The next readable packet.
    pub(crate) fn pop(&mut self) -> Option<Packet> {
        let packet = self.readable.pop_front()?;
        self.unread_packets -= 1;
        self.unread_bytes -= packet.data().len();
        Some(packet)
    }

    /// How many packets `poll()` made readable and are still unread.
    pub(crate) fn readable(&self) -> usize {
        self.readable.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(inbox: &mut Inbox, data: &[u8]) -> Admission {
        let admission = inbox.admit(data.len());
        if admission == Admission::Queued {
            inbox.push(data.to_vec(), false);
        }
        admission
    }

    #[test]
    fn packets_become_readable_only_in_poll_in_order() {
        let mut inbox = Inbox::new(100, 10);
        inbox.opened("chat".into());
        assert_eq!(offer(&mut inbox, b"one"), Admission::Queued);
        inbox.push("two", true);
        inbox.closed(1000, "bye".into(), true);
        assert_eq!(inbox.readable(), 0, "nothing readable before poll");
        assert_eq!(inbox.pop(), None);
        let reports = inbox.drain();
        assert!(
            matches!(
                &reports[..],
                [
                    Report::Open { protocol },
                    Report::Closed { code: 1000, reason, clean: true }
                ] if protocol == "chat" && reason == "bye"
            ),
            "{reports:?}"
        );
        assert_eq!(inbox.readable(), 2);
        assert_eq!(inbox.pop(), Some(Packet::new(&b"one"[..], false)));
        assert_eq!(inbox.pop(), Some(Packet::new("two", true)));
        assert_eq!(inbox.pop(), None);
        assert_eq!((inbox.unread_packets, inbox.unread_bytes), (0, 0));
    }

    #[test]
    fn a_message_over_inbound_buffer_size_closes_with_1009_and_is_not_queued() {
        let mut inbox = Inbox::new(10, 10);
        assert_eq!(offer(&mut inbox, &[0; 10]), Admission::Queued);
        assert_eq!(
            offer(&mut inbox, &[0; 11]),
            Admission::Close {
                wire_code: 4009,
                reason: "Message too big".into()
            }
        );
        // The connection is closing: what still arrives is dropped, not queued.
        assert_eq!(offer(&mut inbox, b"x"), Admission::Dropped);
        let reports = inbox.drain();
        assert!(
            matches!(
                &reports[..],
                [Report::Failed { code: 1009, error: Error::Protocol { code: 1009, detail }, .. }]
                    if detail == "message of 11 bytes exceeds inbound_buffer_size 10"
            ),
            "{reports:?}"
        );
        assert_eq!(
            inbox.readable(),
            1,
            "the message before the failure stays readable"
        );
    }

    #[test]
    fn unread_packets_beyond_max_queued_packets_close_with_1008() {
        let mut inbox = Inbox::new(1000, 3);
        for _ in 0..3 {
            assert_eq!(offer(&mut inbox, b"ab"), Admission::Queued);
        }
        assert_eq!(
            offer(&mut inbox, b"ab"),
            Admission::Close {
                wire_code: 4008,
                reason: "Receive queue full".into()
            }
        );
        let reports = inbox.drain();
        assert!(
            matches!(
                &reports[..],
                [Report::Failed {
                    code: 1008,
                    error: Error::InboundQueueFull {
                        packets: 3,
                        bytes: 6
                    },
                    ..
                }]
            ),
            "{reports:?}"
        );
        assert_eq!(inbox.readable(), 3);
    }

    #[test]
    fn readable_but_unread_packets_count_against_the_limits() {
        let mut inbox = Inbox::new(1000, 2);
        offer(&mut inbox, b"a");
        offer(&mut inbox, b"b");
        inbox.drain();
        // Readable since the last poll, never read: the queue is still full.
        assert!(matches!(offer(&mut inbox, b"c"), Admission::Close { .. }));
        // Reading makes room; a new connection's queue starts empty.
        let mut inbox = Inbox::new(1000, 2);
        offer(&mut inbox, b"a");
        offer(&mut inbox, b"b");
        inbox.drain();
        inbox.pop();
        assert_eq!(offer(&mut inbox, b"c"), Admission::Queued);
    }

    #[test]
    fn unread_bytes_at_inbound_buffer_size_close_with_1008() {
        let mut inbox = Inbox::new(10, 100);
        assert_eq!(offer(&mut inbox, &[0; 6]), Admission::Queued);
        // Below the mark when it arrives: taken, overshooting by at most one message, as
        // a native peer reads at most one message past the mark.
        assert_eq!(offer(&mut inbox, &[0; 6]), Admission::Queued);
        assert_eq!(
            offer(&mut inbox, b"x"),
            Admission::Close {
                wire_code: 4008,
                reason: "Receive queue full".into()
            }
        );
    }

    #[test]
    fn codes_a_page_may_send() {
        assert_eq!(code_a_page_may_send(1000), 1000);
        assert_eq!(code_a_page_may_send(3000), 3000);
        assert_eq!(code_a_page_may_send(4999), 4999);
        assert_eq!(code_a_page_may_send(1008), 4008);
        assert_eq!(code_a_page_may_send(1009), 4009);
    }
}
