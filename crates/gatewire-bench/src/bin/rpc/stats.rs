//! Percentiles, medians and rounding.

use std::time::Duration;

/// What one timed run of one contender produced.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// The run's figure: p50 in µs (latency cases), calls/s (throughput) or
    /// ms per round trip (bulk).
    pub(crate) value: f64,
    /// p99 in µs, for the latency cases.
    pub(crate) p99: Option<f64>,
    /// Bulk transfers per second completed alongside (ping_during_bulk).
    pub(crate) bulk_per_s: Option<f64>,
    /// How many calls the percentiles were taken over.
    pub(crate) count: usize,
    /// gatewire only: frames per transport write on the client side.
    pub(crate) frames_per_write: Option<f64>,
}

impl Sample {
    /// p50 and p99 of round-trip times, in µs.
    pub(crate) fn latencies(times: &mut [Duration]) -> Self {
        times.sort_unstable();
        Self {
            value: micros(percentile(times, 0.50)),
            p99: Some(micros(percentile(times, 0.99))),
            bulk_per_s: None,
            count: times.len(),
            frames_per_write: None,
        }
    }

    /// A rate (calls per second).
    pub(crate) fn rate(calls: u64, elapsed: Duration) -> Self {
        Self {
            value: calls as f64 / elapsed.as_secs_f64().max(1e-9),
            p99: None,
            bulk_per_s: None,
            count: calls as usize,
            frames_per_write: None,
        }
    }

    /// The mean of `times`, in ms.
    pub(crate) fn mean_ms(times: &[Duration]) -> Self {
        let total: Duration = times.iter().sum();
        Self {
            value: total.as_secs_f64() * 1e3 / times.len().max(1) as f64,
            p99: None,
            bulk_per_s: None,
            count: times.len(),
            frames_per_write: None,
        }
    }
}

/// The `q` quantile of sorted `times` (nearest rank).
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (sorted[mid - 1] + sorted[mid]) / 2.0,
        _ => sorted[mid],
    }
}

/// Rounds to `digits` significant digits, so the JSON stays readable.
pub(crate) fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut t: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = Sample::latencies(&mut t);
        assert_eq!((s.value, s.p99), (50.0, Some(99.0)));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(round_sig(123_456.0, 3), 123_000.0);
    }
}
