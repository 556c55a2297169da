//! Time: the grains rollups are stored at, and the buckets a dashboard asks for.
//!
//! Rollups are stored per UTC minute, quarter-hour and day. Every time zone's offset is
//! a whole number of quarter-hours, so a bucket in any zone (a local hour, day or week,
//! DST changes included) is an exact union of stored buckets: [`cover`] splits a range
//! into whole UTC days in the middle and quarter-hours (or minutes) at its edges, the
//! fewest rows that add up to it.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

pub const MINUTE_MS: i64 = 60_000;
pub const QUARTER_MS: i64 = 15 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// The most buckets one series may have.
pub const MAX_BUCKETS: usize = 2_000;

/// A stored rollup's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    Minute,
    Quarter,
    Day,
}

impl Grain {
    pub const ALL: [Grain; 3] = [Grain::Minute, Grain::Quarter, Grain::Day];

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Minute => "MINUTE",
            Grain::Quarter => "QUARTER",
            Grain::Day => "DAY",
        }
    }

    pub fn len_ms(self) -> i64 {
        match self {
            Grain::Minute => MINUTE_MS,
            Grain::Quarter => QUARTER_MS,
            Grain::Day => DAY_MS,
        }
    }

    /// The start of the bucket of this grain containing `at` (also before 1970).
    pub fn start(self, at: i64) -> i64 {
        at - at.rem_euclid(self.len_ms())
    }
}

/// Stored buckets of one grain whose starts lie in `[from, to)`; together the pieces of
/// a [`cover`] add up to its range exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub grain: Grain,
    pub from: i64,
    pub to: i64,
}

/// The fewest stored buckets adding up to `[from, to)` (minute-aligned ends): minutes
/// up to the first quarter, quarters up to the first UTC midnight, whole days, then
/// quarters and minutes again.
pub fn cover(from: i64, to: i64) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut push = |grain, a: i64, b: i64| {
        if a < b {
            pieces.push(Piece {
                grain,
                from: a,
                to: b,
            });
        }
    };
    let up = |grain: Grain, at: i64| -> i64 {
        let start = grain.start(at);
        if start == at {
            at
        } else {
            start + grain.len_ms()
        }
    };
    let q_from = up(Grain::Quarter, from).min(to);
    let q_to = Grain::Quarter.start(to).max(q_from);
    let d_from = up(Grain::Day, q_from).min(q_to);
    let d_to = Grain::Day.start(q_to).max(d_from);
    push(Grain::Minute, from, q_from);
    push(Grain::Quarter, q_from, d_from);
    push(Grain::Day, d_from, d_to);
    push(Grain::Quarter, d_to, q_to);
    push(Grain::Minute, q_to, to);
    pieces
}

/// The length of a dashboard's buckets, in the workspace's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "AnalyticsBucket")]
pub enum BucketSize {
    Minute,
    QuarterHour,
    Hour,
    Day,
    Week,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RangeError {
    #[error("the range is empty: `to` must be after `from`")]
    Empty,
    #[error("the range has {0} buckets; at most {MAX_BUCKETS} fit in one answer: choose a larger bucket or a shorter range")]
    TooManyBuckets(usize),
}

/// The buckets `[start, end)` of `size` in `tz` that meet `[from, to)`, the first and
/// last cut to the range. Times are rounded down to the minute.
pub fn buckets(
    from: i64,
    to: i64,
    size: BucketSize,
    tz: Tz,
) -> Result<Vec<(i64, i64)>, RangeError> {
    let (from, to) = (Grain::Minute.start(from), Grain::Minute.start(to));
    if to <= from {
        return Err(RangeError::Empty);
    }
    let mut out = Vec::new();
    let mut start = from;
    while start < to {
        let end = next_boundary(start, size, tz).min(to);
        out.push((start, end));
        if out.len() > MAX_BUCKETS {
            // Counting the rest would take as long as making them.
            let per = (end - start).max(MINUTE_MS);
            return Err(RangeError::TooManyBuckets(
                out.len() + ((to - end) / per) as usize,
            ));
        }
        start = end;
    }
    Ok(out)
}

/// The first bucket boundary of `size` in `tz` after `at`.
fn next_boundary(at: i64, size: BucketSize, tz: Tz) -> i64 {
    let local = tz.timestamp_millis_opt(at).unwrap().naive_local();
    let minutes = i64::from(local.hour() * 60 + local.minute());
    match size {
        BucketSize::Minute => at + MINUTE_MS,
        BucketSize::QuarterHour | BucketSize::Hour => {
            let step = if size == BucketSize::Hour { 60 } else { 15 };
            // Local boundaries are whole UTC quarters in every zone; a DST jump moves
            // the next one, which the re-alignment from the local clock absorbs.
            let next = at + (step - minutes.rem_euclid(step)) * MINUTE_MS;
            next - (local.second() as i64) * 1000
        }
        BucketSize::Day => local_midnight(local.date() + Duration::days(1), tz),
        BucketSize::Week => {
            let monday =
                local.date() - Duration::days(local.weekday().num_days_from_monday() as i64);
            local_midnight(monday + Duration::days(7), tz)
        }
    }
}

/// The instant a local day starts (its first existing minute, where DST skips midnight).
pub fn local_midnight(day: NaiveDate, tz: Tz) -> i64 {
    let mut time = day.and_time(NaiveTime::MIN);
    for _ in 0..(4 * 24) {
        if let Some(at) = tz.from_local_datetime(&time).earliest() {
            return at.timestamp_millis();
        }
        time += Duration::minutes(15);
    }
    Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN))
        .timestamp_millis()
}

/// Parses an IANA time zone name.
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn grains_start_on_their_boundaries() {
        assert_eq!(
            Grain::Quarter.start(at("2026-03-01T10:14:59Z")),
            at("2026-03-01T10:00:00Z")
        );
        assert_eq!(
            Grain::Day.start(at("2026-03-01T23:59:00Z")),
            at("2026-03-01T00:00:00Z")
        );
        assert_eq!(Grain::Minute.start(-1), -MINUTE_MS);
    }

    #[test]
    fn a_cover_adds_up_to_its_range_with_days_inside() {
        let (from, to) = (at("2026-03-01T18:37:00Z"), at("2026-03-04T05:03:00Z"));
        let pieces = cover(from, to);
        assert_eq!(
            pieces,
            vec![
                Piece {
                    grain: Grain::Minute,
                    from,
                    to: at("2026-03-01T18:45:00Z")
                },
                Piece {
                    grain: Grain::Quarter,
                    from: at("2026-03-01T18:45:00Z"),
                    to: at("2026-03-02T00:00:00Z")
                },
                Piece {
                    grain: Grain::Day,
                    from: at("2026-03-02T00:00:00Z"),
                    to: at("2026-03-04T00:00:00Z")
                },
                Piece {
                    grain: Grain::Quarter,
                    from: at("2026-03-04T00:00:00Z"),
                    to: at("2026-03-04T05:00:00Z")
                },
                Piece {
                    grain: Grain::Minute,
                    from: at("2026-03-04T05:00:00Z"),
                    to
                },
            ]
        );
        // Within one quarter: minutes only.
        let short = cover(at("2026-03-01T10:01:00Z"), at("2026-03-01T10:07:00Z"));
        assert_eq!(
            short,
            vec![Piece {
                grain: Grain::Minute,
                from: at("2026-03-01T10:01:00Z"),
                to: at("2026-03-01T10:07:00Z")
            }]
        );
        assert!(cover(5 * MINUTE_MS, 5 * MINUTE_MS).is_empty());
    }

    #[test]
    fn local_days_follow_daylight_saving() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // Clocks went forward on 2026-03-29: that local day has 23 hours.
        let days = buckets(
            at("2026-03-28T00:00:00+01:00"),
            at("2026-03-31T00:00:00+02:00"),
            BucketSize::Day,
            tz,
        )
        .unwrap();
        let lengths: Vec<i64> = days.iter().map(|(a, b)| (b - a) / 3_600_000).collect();
        assert_eq!(lengths, vec![24, 23, 24]);
        assert_eq!(days[1].0, at("2026-03-29T00:00:00+01:00"));
        assert_eq!(days[2].0, at("2026-03-30T00:00:00+02:00"));
    }

    #[test]
    fn half_hour_zones_get_their_own_hours_and_weeks_start_on_monday() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let hours = buckets(
            at("2026-03-02T10:10:00+05:30"),
            at("2026-03-02T12:00:00+05:30"),
            BucketSize::Hour,
            tz,
        )
        .unwrap();
        assert_eq!(
            hours,
            vec![
                (
                    at("2026-03-02T10:10:00+05:30"),
                    at("2026-03-02T11:00:00+05:30")
                ),
                (
                    at("2026-03-02T11:00:00+05:30"),
                    at("2026-03-02T12:00:00+05:30")
                ),
            ]
        );
        let weeks = buckets(
            at("2026-03-04T00:00:00+05:30"),
            at("2026-03-17T00:00:00+05:30"),
            BucketSize::Week,
            tz,
        )
        .unwrap();
        assert_eq!(
            weeks[1].0,
            at("2026-03-09T00:00:00+05:30"),
            "2026-03-09 is a Monday"
        );
        assert_eq!(weeks.len(), 3);
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert_eq!(
            buckets(10 * MINUTE_MS, 10 * MINUTE_MS, BucketSize::Minute, Tz::UTC),
            Err(RangeError::Empty)
        );
        assert!(matches!(
            buckets(0, 30 * DAY_MS, BucketSize::Minute, Tz::UTC),
            Err(RangeError::TooManyBuckets(n)) if n == 30 * 24 * 60
        ));
    }
}
