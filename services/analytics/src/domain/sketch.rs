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

    /// A ceiling on the estimated `q`-quantile of any merge that contains this sketch:
    /// the estimate for a union of sketches is never above the largest of their
    /// ceilings, so a ranking can skip subjects whose ceiling is below its bar without
    /// reading their sketches. `None` when empty.
    ///
    /// Why it holds: the union's estimate is the bin where its cumulative count first
    /// exceeds rank `⌊q·(n−1)⌋`. The ceiling of each part is its bin at a count of
    /// `⌈q·nᵢ⌉ + 1` (one more than needed, against rounding in the rank's float
    /// arithmetic); at the largest of those bins the union has counted at least `q·n + 1`
    /// values, past the union's rank. When that count is the whole part, its bin is the
    /// part's largest, whose value the maximum bounds within the relative error.
    pub fn quantile_ceiling(&self, q: f64) -> Option<i64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let needed = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64 + 1).min(n);
        if needed == n {
            let max = self.0.max().unwrap_or(0.0).max(0.0);
            return Some((max * (1.0 + 2.0 * RELATIVE_ERROR)).ceil() as i64 + 1);
        }
        // The crate reads rank ⌊q′·(n−1)⌋; half a rank of slack keeps float error out.
        let rank = (needed - 1) as f64;
        let q_prime = (rank + 0.5) / (n - 1) as f64;
        self.quantile(q_prime).map(|v| v as i64)
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

    /// The ranking of slowest nodes skips every subject whose ceiling is below its bar:
    /// wrong if any union of parts estimated a p95 above the largest of their ceilings.
    #[test]
    fn no_union_estimates_a_quantile_above_its_parts_ceilings() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(19);
        let mut tight = 0;
        for case in 0..3_000 {
            let parts: Vec<Sketch> = (0..rng.gen_range(1..12))
                .map(|_| {
                    let mut part = Sketch::default();
                    // Parts of a few values and of a few dozen, zeros, scales far apart,
                    // and tails of about the size of the quantile's complement (where
                    // the union's rank falls between the parts' own).
                    let scale = 10f64.powi(rng.gen_range(0..4));
                    let tail = rng.gen_range(0.0..3.0 * (1.0 - 0.95));
                    for _ in 0..rng.gen_range(1..if case % 2 == 0 { 25 } else { 120 }) {
                        let ms = match rng.gen::<f64>() {
                            r if r < 0.05 => 0.0,
                            r if r < 0.05 + tail => scale * rng.gen_range(50.0..60.0),
                            _ => rng.gen::<f64>() * scale,
                        };
                        part.add(ms as i64);
                    }
                    part
                })
                .collect();
            let mut union = Sketch::default();
            parts.iter().for_each(|p| union.merge(p));
            for q in [0.5, 0.95, 0.99] {
                let ceiling = parts.iter().filter_map(|p| p.quantile_ceiling(q)).max();
                let estimate = union.quantile(q).unwrap() as i64;
                assert!(
                    estimate <= ceiling.unwrap(),
                    "case {case}, q={q}: {estimate} > {ceiling:?}"
                );
                tight += i64::from(estimate == ceiling.unwrap());
            }
        }
        // The ceiling is a useful bound, not just a large number: often reached.
        assert!(tight > 100, "the ceiling was reached only {tight} times");
    }
}
