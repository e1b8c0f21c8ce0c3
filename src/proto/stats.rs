//! Per-connection statistics: traffic counters and the round-trip time measured by
//! ping/pong, in the form a game shows in its network overlay.

use std::time::{Duration, Instant};

/// What one connection has sent and received, and how long its pings take to come back:
/// the numbers of a game's network overlay. A snapshot, from
/// [`Connection::stats`](super::Connection::stats) or
/// [`WebSocketPeer::get_stats`](crate::WebSocketPeer::get_stats) (on a server, through
/// [`WebSocketServer::get_peer`](crate::WebSocketServer::get_peer)).
///
/// Counters start at zero with each connection and stop at its close; they stay readable
/// after it, like the packets received before it.
///
/// **Round-trip time** comes from ping/pong: each ping we send (the heartbeat's, see
/// `heartbeat_interval`, or one asked for with
/// [`WebSocketPeer::send_ping`](crate::WebSocketPeer::send_ping)) carries an 8-byte
/// sequence number, and the pong that echoes the latest one gives a sample: the time from
/// queueing the ping to reading its pong. Pongs that answer nothing, or an older ping, give
/// none. Both ends are seen at `poll()` (there is no I/O in between), so a sample includes
/// the time the pong waited for our `poll()` and the ping waited for the remote's: at
/// 60 frames a second, up to about 16 ms each. That is the latency the game itself sees.
/// With the heartbeat off and no `send_ping`, the round-trip fields stay `None`.
///
/// **Bytes** are counted two ways: `bytes_*` are the WebSocket stream as the transport
/// carries it (the HTTP upgrade, frame headers, masks, pings, pongs and close frames
/// included; TLS records add their own overhead on top, not counted), `payload_bytes_*`
/// only the messages' contents. **Messages** are whole data messages (a fragmented one
/// counts once); control frames are not messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// The last round-trip sample, `None` until the first pong answered our ping.
    pub rtt: Option<Duration>,
    /// The smoothed round-trip time (RFC 6298's SRTT: the first sample, then
    /// `7/8 × SRTT + 1/8 × sample`), `None` until the first sample.
    pub smoothed_rtt: Option<Duration>,
    /// How much the samples vary (RFC 6298's RTTVAR: half the first sample, then
    /// `3/4 × RTTVAR + 1/4 × |SRTT − sample|`), `None` until the first sample. A jitter
    /// figure: `smoothed_rtt + 4 × rtt_variation` is TCP's retransmission timeout.
    pub rtt_variation: Option<Duration>,
    /// How many round-trip samples were taken (pongs matched to our latest ping).
    pub rtt_samples: u64,
    /// Data messages the application queued to send (counted when `send` accepts them;
    /// [`get_current_outbound_buffered_amount`](super::Connection::get_current_outbound_buffered_amount)
    /// tells what is still waiting for the transport).
    pub messages_sent: u64,
    /// Data messages received whole (counted as they enter the receive queue).
    pub messages_received: u64,
    /// The payload bytes of `messages_sent`.
    pub payload_bytes_sent: u64,
    /// The payload bytes of `messages_received`.
    pub payload_bytes_received: u64,
    /// Bytes handed to the transport: everything in `payload_bytes_sent` plus frame
    /// headers, masking keys, control frames and the HTTP upgrade.
    pub bytes_sent: u64,
    /// Bytes read from the transport, counted the same way as `bytes_sent`.
    pub bytes_received: u64,
}

/// The round-trip estimator (RFC 6298 §2, with its alpha 1/8 and beta 1/4) and the ping it
/// is waiting for.
#[derive(Default)]
pub(crate) struct RoundTrip {
    /// The sequence number of the latest ping we queued (its payload, big-endian).
    seq: u64,
    /// When that ping was queued; `None` once answered (or before the first ping).
    sent_at: Option<Instant>,
    last: Option<Duration>,
    smoothed: Option<Duration>,
    variation: Duration,
    samples: u64,
}

impl RoundTrip {
    /// A new ping's payload, queued at `now`; an answer to any earlier ping no longer
    /// counts.
    pub(crate) fn ping(&mut self, now: Instant) -> [u8; 8] {
        self.seq = self.seq.wrapping_add(1);
        self.sent_at = Some(now);
        self.seq.to_be_bytes()
    }

    /// A pong with `payload` arrived at `now`: a sample if it answers the latest ping.
    pub(crate) fn pong(&mut self, payload: &[u8], now: Instant) {
        let Some(sent_at) = self.sent_at else {
            return;
        };
        if payload != self.seq.to_be_bytes() {
            return;
        }
        self.sent_at = None;
        self.sample(now.saturating_duration_since(sent_at));
    }

    /// RFC 6298 §2.2 and §2.3: RTTVAR is updated with the old SRTT, then SRTT.
    pub(crate) fn sample(&mut self, rtt: Duration) {
        self.last = Some(rtt);
        self.samples += 1;
        match self.smoothed {
            None => {
                self.smoothed = Some(rtt);
                self.variation = rtt / 2;
            }
            Some(smoothed) => {
                let deviation = smoothed.abs_diff(rtt);
                self.variation = self.variation.saturating_mul(3).saturating_add(deviation) / 4;
                self.smoothed = Some(smoothed.saturating_mul(7).saturating_add(rtt) / 8);
            }
        }
    }

    /// Fills the round-trip fields of `stats`.
    pub(crate) fn fill(&self, stats: &mut PeerStats) {
        stats.rtt = self.last;
        stats.smoothed_rtt = self.smoothed;
        stats.rtt_variation = self.smoothed.map(|_| self.variation);
        stats.rtt_samples = self.samples;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn stats(rt: &RoundTrip) -> PeerStats {
        let mut stats = PeerStats::default();
        rt.fill(&mut stats);
        stats
    }

    #[test]
    fn the_first_sample_sets_srtt_and_half_of_it_as_rttvar() {
        let mut rt = RoundTrip::default();
        assert_eq!(stats(&rt), PeerStats::default());
        rt.sample(ms(100));
        let s = stats(&rt);
        assert_eq!(
            (s.rtt, s.smoothed_rtt, s.rtt_variation, s.rtt_samples),
            (Some(ms(100)), Some(ms(100)), Some(ms(50)), 1)
        );
    }

    #[test]
    fn later_samples_follow_rfc_6298() {
        let mut rt = RoundTrip::default();
        rt.sample(ms(100));
        rt.sample(ms(200));
        // RTTVAR = 3/4 × 50 + 1/4 × |100 − 200| = 62.5; SRTT = 7/8 × 100 + 1/8 × 200 = 112.5.
        let s = stats(&rt);
        assert_eq!(s.rtt, Some(ms(200)));
        assert_eq!(s.rtt_variation, Some(Duration::from_micros(62_500)));
        assert_eq!(s.smoothed_rtt, Some(Duration::from_micros(112_500)));
        rt.sample(ms(40));
        // RTTVAR = 3/4 × 62.5 + 1/4 × 72.5 = 65; SRTT = 7/8 × 112.5 + 1/8 × 40 = 103.4375.
        let s = stats(&rt);
        assert_eq!(s.rtt, Some(ms(40)));
        assert_eq!(s.rtt_variation, Some(ms(65)));
        assert_eq!(s.smoothed_rtt, Some(Duration::from_nanos(103_437_500)));
        assert_eq!(s.rtt_samples, 3);
    }

    #[test]
    fn a_steady_rtt_converges_and_its_variation_decays() {
        let mut rt = RoundTrip::default();
        rt.sample(ms(300));
        for _ in 0..100 {
            rt.sample(ms(20));
        }
        let s = stats(&rt);
        let (srtt, var) = (s.smoothed_rtt.unwrap(), s.rtt_variation.unwrap());
        assert!(srtt.abs_diff(ms(20)) < Duration::from_micros(1), "{srtt:?}");
        assert!(var < Duration::from_micros(1), "{var:?}");
    }

    #[test]
    fn only_the_pong_of_the_latest_ping_is_a_sample() {
        let t0 = crate::test_epoch();
        let mut rt = RoundTrip::default();
        // Nothing was sent: an unsolicited pong, even with a plausible payload.
        rt.pong(&1u64.to_be_bytes(), t0);
        rt.pong(b"", t0);
        assert_eq!(rt.samples, 0);
        let first = rt.ping(t0);
        let second = rt.ping(t0 + ms(10));
        assert_ne!(first, second);
        // The older ping's pong, and pongs that are not ours, are ignored.
        rt.pong(&first, t0 + ms(30));
        rt.pong(b"", t0 + ms(30));
        rt.pong(&[second.as_slice(), b"x"].concat(), t0 + ms(30));
        assert_eq!(rt.samples, 0);
        rt.pong(&second, t0 + ms(35));
        assert_eq!(stats(&rt).rtt, Some(ms(25)));
        // A repeated pong is no second sample.
        rt.pong(&second, t0 + ms(90));
        assert_eq!(stats(&rt).rtt_samples, 1);
    }
}
