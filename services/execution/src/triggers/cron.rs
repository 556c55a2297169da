//! The cron scheduler. Every replica of the execution service runs one, but only
//! the holder of the `cron` lease fires: it renews the lease on every tick, and
//! another replica takes over once it lapses (`triggers.cron_lease_ms`). A fire
//! is also an idempotent start (key `cron:<schedule>:<time>`), so even two
//! schedulers overlapping while a lease changes hands start one execution per
//! scheduled time.
//!
//! Each replica counts the times it fires in `flowfleet_cron_fires_total{replica}`.
//!
//! Schedules are evaluated in their trigger's time zone, so `0 9 * * 1-5` in
//! `Europe/Paris` fires at 09:00 Paris time across daylight-saving changes.
//!
//! Missed runs (no scheduler was running at the scheduled time: every replica
//! was down, or the database was unreachable): when the scheduler next runs, a
//! schedule that missed one or more times fires **once**, for the latest missed
//! time (its input's `scheduledAt` says which); older missed times are skipped,
//! and times more than a day old are never caught up. A schedule seen for the
//! first time (a new publish) fires from its next time on.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use flowfleet_runtime::config::TriggersConfig;
use flowfleet_runtime::proto::workflow::v1::Trigger;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Live;
use crate::domain::{Start, TriggerKind};
use crate::launch::Launcher;

/// The lease's name.
const LEASE: &str = "cron";
/// Missed times older than this are not caught up.
const CATCH_UP_MS: i64 = 24 * 3600 * 1000;

/// The time a schedule fires for at `now`, when it last fired for `last`: the
/// latest occurrence after `last` and not after `now` (the missed-run policy
/// above), or `None` when nothing is due.
pub fn due(cron: &croner::Cron, tz: Tz, last: i64, now: i64) -> Option<i64> {
    // From a whole second: the search keeps any fraction of its start.
    let from = last.max(now - CATCH_UP_MS).div_euclid(1000) * 1000;
    let mut at = tz.from_utc_datetime(&DateTime::<Utc>::from_timestamp_millis(from)?.naive_utc());
    let mut latest = None;
    // Bounded: a schedule firing every second has 86 400 times in a day.
    for _ in 0..100_000 {
        let next = cron.find_next_occurrence(&at, false).ok()?;
        if next.timestamp_millis() > now {
            break;
        }
        latest = Some(next.timestamp_millis());
        at = next;
    }
    latest
}

/// A schedule's identity: a changed expression or zone is a new schedule.
pub fn schedule_key(index: usize, t: &Trigger) -> String {
    format!("{index}|{}|{}", t.cron_expression, t.timezone)
}

pub struct Scheduler {
    pub launcher: Launcher,
    pub live: Live,
    /// This replica's name in the lease.
    pub holder: String,
    pub settings: TriggersConfig,
}

impl Scheduler {
    /// Ticks until `shutdown`, firing what is due while this replica holds the
    /// lease; gives the lease up on the way out.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.settings.cron_tick_ms.max(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = self.launcher.clock.now_ms();
            let lease = self.settings.cron_lease_ms as i64;
            match self
                .launcher
                .store
                .lease(LEASE, &self.holder, now, now + lease)
                .await
            {
                Ok(true) => {
                    metrics::gauge!("flowfleet_cron_leader").set(1.0);
                    if !leading {
                        tracing::info!(holder = %self.holder, "this replica runs the cron scheduler");
                    }
                    leading = true;
                    self.fire_due(now).await;
                }
                Ok(false) => {
                    metrics::gauge!("flowfleet_cron_leader").set(0.0);
                    leading = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "could not renew the cron lease");
                    metrics::gauge!("flowfleet_cron_leader").set(0.0);
                    leading = false;
                }
            }
        }
        if leading {
            let _ = self.launcher.store.release_lease(LEASE, &self.holder).await;
        }
        metrics::gauge!("flowfleet_cron_leader").set(0.0);
    }

    #[tracing::instrument(name = "cron tick", skip(self))]
    async fn fire_due(&self, now: i64) {
        for w in self.live.all() {
            let Ok(workflow) = w.workflow_id.parse::<Uuid>() else {
                continue;
            };
            for (index, t) in w.triggers.iter().enumerate() {
                if t.kind != TriggerKind::Cron.as_str() {
                    continue;
                }
                if let Err(e) = self
                    .fire_one(workflow, w.version as i64, index, t, now)
                    .await
                {
                    tracing::warn!(%workflow, error = %e, "a cron schedule did not fire; it is tried again next tick");
                }
            }
        }
    }

    async fn fire_one(
        &self,
        workflow: Uuid,
        version: i64,
        index: usize,
        t: &Trigger,
        now: i64,
    ) -> Result<(), String> {
        let store = &self.launcher.store;
        let key = schedule_key(index, t);
        let cron = flowfleet_definitions::validation::parse_cron(&t.cron_expression)?;
        let tz = Tz::from_str(&t.timezone).map_err(|e| e.to_string())?;
        let Some(last) = store
            .last_fire(workflow, &key)
            .await
            .map_err(|e| e.message)?
        else {
            // First seen: fires from its next time on.
            return store
                .set_last_fire(workflow, &key, now)
                .await
                .map_err(|e| e.message);
        };
        let Some(at) = due(&cron, tz, last, now) else {
            return Ok(());
        };
        // Counted by replica before the start, which is idempotent: were two schedulers
        // ever to fire one time, both would count, and the counts show it.
        metrics::counter!("flowfleet_cron_fires_total", "replica" => self.holder.clone())
            .increment(1);
        let published = self
            .launcher
            .version(workflow, version)
            .await
            .map_err(|e| e.message)?;
        let scheduled = DateTime::<Utc>::from_timestamp_millis(at)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let e = self
            .launcher
            .launch(
                &published,
                Start {
                    input: json!({
                        "scheduledAt": scheduled,
                        "expression": t.cron_expression,
                        "timezone": t.timezone,
                    }),
                    priority: None,
                    idempotency_key: Some(format!("cron:{key}:{at}")),
                    trigger: TriggerKind::Cron,
                    triggered_by: Uuid::nil(),
                    parent: None,
                    depth: 0,
                    retry_of: None,
                },
            )
            .await
            .map_err(|e| e.message)?;
        tracing::info!(%workflow, execution = %e.id, %scheduled, "cron schedule fired");
        store
            .set_last_fire(workflow, &key, at)
            .await
            .map_err(|e| e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn cron(e: &str) -> croner::Cron {
        flowfleet_definitions::validation::parse_cron(e).unwrap()
    }

    #[test]
    fn nothing_is_due_before_the_next_time() {
        let c = cron("0 9 * * *");
        assert_eq!(
            due(
                &c,
                Tz::UTC,
                ms("2026-03-02T09:00:00Z"),
                ms("2026-03-02T12:00:00Z")
            ),
            None
        );
        assert_eq!(
            due(
                &c,
                Tz::UTC,
                ms("2026-03-02T09:00:00Z"),
                ms("2026-03-03T09:00:00Z")
            ),
            Some(ms("2026-03-03T09:00:00Z"))
        );
    }

    #[test]
    fn schedules_follow_their_time_zone_across_daylight_saving() {
        let c = cron("0 9 * * *");
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // Winter: 09:00 in Paris is 08:00 UTC.
        assert_eq!(
            due(
                &c,
                paris,
                ms("2026-03-01T12:00:00Z"),
                ms("2026-03-02T10:00:00Z")
            ),
            Some(ms("2026-03-02T08:00:00Z"))
        );
        // Summer (after 29 March 2026): 07:00 UTC.
        assert_eq!(
            due(
                &c,
                paris,
                ms("2026-04-01T12:00:00Z"),
                ms("2026-04-02T10:00:00Z")
            ),
            Some(ms("2026-04-02T07:00:00Z"))
        );
    }

    #[test]
    fn times_fall_on_whole_seconds() {
        let c = cron("* * * * * *");
        assert_eq!(
            due(
                &c,
                Tz::UTC,
                ms("2026-05-01T10:00:00.250Z"),
                ms("2026-05-01T10:00:01.100Z")
            ),
            Some(ms("2026-05-01T10:00:01Z"))
        );
    }

    #[test]
    fn missed_times_fire_once_for_the_latest() {
        let c = cron("*/10 * * * *");
        // Down from 10:05 to 10:47: 10:10, 10:20, 10:30 and 10:40 were missed.
        assert_eq!(
            due(
                &c,
                Tz::UTC,
                ms("2026-05-01T10:00:00Z"),
                ms("2026-05-01T10:47:00Z")
            ),
            Some(ms("2026-05-01T10:40:00Z"))
        );
        // Nothing older than a day is caught up.
        let daily = cron("0 0 1 1 *");
        assert_eq!(
            due(
                &daily,
                Tz::UTC,
                ms("2020-01-01T00:00:00Z"),
                ms("2026-05-01T00:00:00Z")
            ),
            None
        );
    }
}
