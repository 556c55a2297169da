//! PostgreSQL keeps executions in monthly partitions (`executions_YYYY_MM`, by
//! `created_at` in epoch milliseconds). The migration created the month it ran
//! in and the next two; the service creates the months ahead from then on, at
//! start-up and daily, so rows land in their month's partition rather than the
//! default one. (Old months can then be detached or dropped whole.)

use chrono::{Datelike, TimeZone, Utc};
use flowfleet_runtime::db::Backend;
use flowfleet_runtime::error::ApiError;

use super::Store;

/// Months kept ready ahead of the current one.
const MONTHS_AHEAD: u32 = 2;

/// The first instant (ms) of the month `offset` months after the one holding `now`.
fn month_start(now: i64, offset: u32) -> Option<(i64, String)> {
    let t = Utc.timestamp_millis_opt(now).single()?;
    let months = t.year() * 12 + t.month0() as i32 + offset as i32;
    let (year, month0) = (months.div_euclid(12), months.rem_euclid(12) as u32);
    let start = Utc
        .with_ymd_and_hms(year, month0 + 1, 1, 0, 0, 0)
        .single()?;
    Some((
        start.timestamp_millis(),
        format!("executions_{year:04}_{:02}", month0 + 1),
    ))
}

impl Store {
    /// Creates the partitions of this month and the next ones that are missing
    /// (PostgreSQL only; SQLite does not partition).
    pub async fn ensure_partitions(&self, now: i64) -> Result<(), ApiError> {
        if self.db().backend() != Backend::Postgres {
            return Ok(());
        }
        for offset in 0..=MONTHS_AHEAD {
            let (Some((from, name)), Some((to, _))) =
                (month_start(now, offset), month_start(now, offset + 1))
            else {
                continue;
            };
            // Names and bounds are computed here, never input.
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF executions FOR VALUES FROM ({from}) TO ({to})"
            ))
            .execute(self.db().pool())
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_over_the_year() {
        let nov = Utc
            .with_ymd_and_hms(2026, 11, 22, 15, 0, 0)
            .unwrap()
            .timestamp_millis();
        let (start, name) = month_start(nov, 2).unwrap();
        assert_eq!(name, "executions_2027_01");
        assert_eq!(
            start,
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(month_start(nov, 0).unwrap().1, "executions_2026_11");
    }
}
