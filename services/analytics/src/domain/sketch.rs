//! Mergeable quantile sketches of durations.
//!
//! Rollups keep a [DDSketch](https://arxiv.org/abs/1908.10693) of their durations
//! rather than the durations: merging two sketches gives exactly the sketch of the union
//! (bin counts add), so a percentile over any range is read by merging the range's
//! buckets, never from raw facts. The guarantee is on the value: the estimate of the
//! quantile `q` is within [`RELATIVE_ERROR`] (1%) of the duration at rank
//! `⌊q·(n−1)⌋` of the `n` sorted durations. DDSketch over a t-digest because its
//! merges are exact and its error bound does not depend on the distribution; over an
//! HDR histogram because its store only spans the bins between the smallest and largest
//! value seen, which keeps a sketch of a quiet 15 minutes a few dozen bytes.
//!
//! Stored as base64 text of a postcard encoding (portable between SQLite and
//! PostgreSQL columns).

use base64::Engine;
use sketches_ddsketch::{Config, DDSketch};

/// The bound on an estimated quantile's relative error.
pub const RELATIVE_ERROR: f64 = 0.01;

/// The most bins a sketch keeps: with a 1% error, 2 048 bins span durations from
/// 1 ms to beyond a year before the lowest bins collapse.
const MAX_BINS: u32 = 2048;

/// Durations below 1 ms (the unit) count as zero.
const SMALLEST: f64 = 1.0;

#[derive(Clone)]
pub struct Sketch(DDSketch);

#[derive(Debug, thiserror::Error)]
#[error("a stored duration sketch is unreadable: {0}")]
pub struct SketchError(String);

impl Default for Sketch {
    fn default() -> Self {
        Sketch(DDSketch::new(Config::new(
            RELATIVE_ERROR,
            MAX_BINS,
            SMALLEST,
        )))
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sketch")
            .field("count", &self.0.count())
            .finish_non_exhaustive()
    }
}

impl Sketch {
    /// Adds a duration in milliseconds (negative ones count as zero).
    pub fn add(&mut self, ms: i64) {
        self.0.add(ms.max(0) as f64);
    }

    /// Adds every value of `other` (both have the same configuration by construction).
    pub fn merge(&mut self, other: &Sketch) {
        // Sketches are only ever made by `default()` and `decode()`, which checks the
        // configuration, so they always merge.
        let _ = self.0.merge(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.count() as u64
    }

    /// The estimated `q`-quantile (0 ≤ q ≤ 1) in milliseconds, rounded; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.0
            .quantile(q.clamp(0.0, 1.0))
            .ok()
            .flatten()
            .map(f64::round)
    }

    pub fn encode(&self) -> String {
        let bytes = postcard::to_allocvec(&self.0).unwrap_or_default();
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Sketch, SketchError> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text)
            .map_err(|e| SketchError(e.to_string()))?;
        let sketch: DDSketch =
            postcard::from_bytes(&bytes).map_err(|e| SketchError(e.to_string()))?;
        let mut checked = Sketch::default();
        checked
            .0
            .merge(&sketch)
            .map_err(|e| SketchError(e.to_string()))?;
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact value the estimate of `q` approximates.
    fn exact(sorted: &[i64], q: f64) -> f64 {
        sorted[(q * (sorted.len() as f64 - 1.0)) as usize] as f64
    }

    #[test]
    fn quantiles_are_within_the_relative_error() {
        let mut values: Vec<i64> = (0..5000_i64).map(|i| (i * 7919) % 100_000 + 1).collect();
        let mut sketch = Sketch::default();
        for v in &values {
            sketch.add(*v);
        }
        values.sort();
        for q in [0.5, 0.95, 0.99] {
            let (estimate, exact) = (sketch.quantile(q).unwrap(), exact(&values, q));
            assert!(
                (estimate - exact).abs() <= exact * RELATIVE_ERROR + 0.5,
                "q={q}: {estimate} vs {exact}"
            );
        }
    }

    #[test]
    fn merging_equals_sketching_the_union_and_survives_encoding() {
        let (mut a, mut b, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
        for v in 0..300_i64 {
            let ms = v * v % 9973;
            if v % 3 == 0 {
                a.add(ms)
            } else {
                b.add(ms)
            }
            all.add(ms);
        }
        let mut merged = Sketch::decode(&a.encode()).unwrap();
        merged.merge(&Sketch::decode(&b.encode()).unwrap());
        assert_eq!(merged.count(), 300);
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(merged.quantile(q), all.quantile(q), "q={q}");
        }
        assert!(Sketch::decode("not a sketch").is_err());
        assert_eq!(Sketch::default().quantile(0.5), None);
    }
}
