//! Whether a target is met: judged on the whole min–max range of the rounds, never on the
//! median alone.

use std::fmt;

/// The outcome of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every round met the goal.
    Met,
    /// No round met the goal.
    Missed,
    /// Some rounds met it and some did not: the noise is larger than the margin.
    WithinNoise,
    /// No value to judge.
    NotMeasured,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::WithinNoise => "within noise",
            Verdict::NotMeasured => "not measured",
        })
    }
}

/// Judges `values` (one per round) against `goal`: `at_least` for "≥ goal" targets, else
/// "≤ goal". Met only when the minimum (for ≥) or the maximum (for ≤) meets the goal,
/// missed only when the other end misses it too, within noise otherwise. Non-finite values
/// are ignored.
pub fn verdict(values: &[f64], goal: f64, at_least: bool) -> Verdict {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return Verdict::NotMeasured;
    }
    let (worst, best) = if at_least { (lo, hi) } else { (hi, lo) };
    let meets = |v: f64| if at_least { v >= goal } else { v <= goal };
    if meets(worst) {
        Verdict::Met
    } else if !meets(best) {
        Verdict::Missed
    } else {
        Verdict::WithinNoise
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_needs_the_whole_range() {
        assert_eq!(verdict(&[1.6, 1.5, 2.0], 1.5, true), Verdict::Met);
        assert_eq!(verdict(&[1.4, 1.6, 2.0], 1.5, true), Verdict::WithinNoise);
        assert_eq!(verdict(&[1.0, 1.49], 1.5, true), Verdict::Missed);
    }

    #[test]
    fn at_most_needs_the_whole_range() {
        assert_eq!(verdict(&[0.5, 1.0], 1.0, false), Verdict::Met);
        assert_eq!(verdict(&[0.5, 1.1], 1.0, false), Verdict::WithinNoise);
        assert_eq!(verdict(&[1.01, 3.0], 1.0, false), Verdict::Missed);
    }

    #[test]
    fn a_median_that_meets_is_not_enough() {
        // Median 1.6 meets ≥ 1.5, but one round of five did not.
        assert_eq!(
            verdict(&[1.6, 1.7, 1.2, 1.6, 1.8], 1.5, true),
            Verdict::WithinNoise
        );
    }

    #[test]
    fn nothing_to_judge() {
        assert_eq!(verdict(&[], 1.0, true), Verdict::NotMeasured);
        assert_eq!(verdict(&[f64::NAN], 1.0, false), Verdict::NotMeasured);
        assert_eq!(verdict(&[f64::NAN, 2.0], 1.0, true), Verdict::Met);
    }
}
