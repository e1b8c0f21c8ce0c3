//! The cost of one heartbeat ping/pong round against the cost of one echo, from the frame
//! times `poll_cost --mode heartbeat` measures (issue #11): each cost is the extra time of
//! a frame over an idle frame with the heartbeat off, divided by the rounds (pings answered,
//! or messages echoed) that the frames completed.

/// Mean frame times of one block (µs) and the rounds counted in it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameCosts {
    /// Mean frame with the heartbeat off and nothing ready.
    pub idle_us: f64,
    /// Mean frame with the heartbeat on and nothing else to do.
    pub heartbeat_us: f64,
    /// Mean frame with the heartbeat off and messages to echo.
    pub echo_frame_us: f64,
    /// Ping/pong rounds completed per heartbeat frame.
    pub pings: f64,
    /// Messages echoed per echo frame.
    pub echoes: f64,
}

impl FrameCosts {
    /// Microseconds per ping/pong round: the heartbeat frame's time over the idle frame's,
    /// per round (NaN without a round).
    pub fn ping_round_us(&self) -> f64 {
        per(self.heartbeat_us - self.idle_us, self.pings)
    }

    /// Microseconds per echo: the echo frame's time over the idle frame's, per echoed
    /// message (NaN without one).
    pub fn echo_us(&self) -> f64 {
        per(self.echo_frame_us - self.idle_us, self.echoes)
    }

    /// One ping/pong round divided by one echo: at most 1 when a round costs no more than
    /// an echo. NaN when the echoes cost nothing measurable (no ratio to take).
    pub fn ratio(&self) -> f64 {
        let echo = self.echo_us();
        if echo > 0.0 {
            self.ping_round_us() / echo
        } else {
            f64::NAN
        }
    }
}

fn per(extra: f64, count: f64) -> f64 {
    if count > 0.0 { extra / count } else { f64::NAN }
}

/// The mean of `values` (NaN when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Ping/pong rounds due per frame: `peers` pinging once every `interval_secs`, polled
/// `fps` times a second (their timers spread evenly).
pub fn pings_per_frame(peers: usize, interval_secs: f64, fps: f64) -> f64 {
    if interval_secs > 0.0 && fps > 0.0 {
        peers as f64 / interval_secs / fps
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_extra_frame_time_per_round() {
        let c = FrameCosts {
            idle_us: 10.0,
            heartbeat_us: 70.0,
            echo_frame_us: 40.0,
            pings: 6.0,
            echoes: 6.0,
        };
        assert_eq!(c.ping_round_us(), 10.0);
        assert_eq!(c.echo_us(), 5.0);
        assert_eq!(c.ratio(), 2.0);
        // A heartbeat cheaper than an echo.
        let cheap = FrameCosts {
            heartbeat_us: 16.0,
            ..c
        };
        assert_eq!(cheap.ping_round_us(), 1.0);
        assert_eq!(cheap.ratio(), 0.2);
    }

    #[test]
    fn no_rounds_or_free_echoes_give_no_ratio() {
        let c = FrameCosts {
            idle_us: 10.0,
            heartbeat_us: 20.0,
            echo_frame_us: 10.0,
            pings: 0.0,
            echoes: 4.0,
        };
        assert!(c.ping_round_us().is_nan());
        assert_eq!(c.echo_us(), 0.0);
        assert!(c.ratio().is_nan());
    }

    #[test]
    fn means_and_pings_due_per_frame() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert!(mean(&[]).is_nan());
        // The setting: 10 000 peers, a 30 s heartbeat, 60 frames a second.
        let p = pings_per_frame(10_000, 30.0, 60.0);
        assert!((p - 5.555).abs() < 0.01, "{p}");
        assert_eq!(pings_per_frame(10, 0.0, 60.0), 0.0);
    }
}
