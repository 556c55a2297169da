//! The dashboards' use cases: authorize the caller (VIEWER or above in the workspace;
//! API keys within their workspace), read the rollups that cover the asked range, and
//! assemble them into the time zone's buckets. One function per question a dashboard
//! asks; the GraphQL and gRPC adapters only parse and map.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use chrono_tz::Tz;
use flowfleet_runtime::error::ApiError;
use flowfleet_security::access::{Access, Principal, Target};
use flowfleet_security::identity::Role;
use uuid::Uuid;

use crate::domain::buckets::{self, cover, BucketSize, Grain, Piece, DAY_MS, QUARTER_MS};
use crate::domain::rollup::{Attempts, Pool, Runs, RANKED_QUANTILE};
use crate::domain::NO_WORKFLOW;
use crate::store::queries::{Sketches, StepLevel, StepSubject};
use crate::store::Store;

/// How far back minute buckets can be asked for (`analytics.minute_rollup_days`).
#[derive(Clone)]
pub struct Dashboards {
    pub store: Store,
    pub access: Access,
    pub minute_days: i64,
}

/// A dashboard's time range, bucket size and time zone.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: i64,
    pub to: i64,
    pub size: BucketSize,
    pub tz: Tz,
}

/// A value over one bucket `[start, end)`.
#[derive(Debug, Clone)]
pub struct Bucketed<T> {
    pub start: i64,
    pub end: i64,
    pub value: T,
}

/// Aggregates that add up.
pub trait Merge: Default + Clone {
    fn merge_from(&mut self, other: &Self);
}

impl Merge for Runs {
    fn merge_from(&mut self, other: &Self) {
        self.merge(other)
    }
}

impl Merge for Attempts {
    fn merge_from(&mut self, other: &Self) {
        self.merge(other)
    }
}

impl Merge for Pool {
    fn merge_from(&mut self, other: &Self) {
        self.merge(other)
    }
}

impl Dashboards {
    /// Parses a window: `time_zone` (an IANA name) or else the workspace's own;
    /// quarter-hour rounding unless minute buckets were asked for, which are kept for
    /// `minute_days` only.
    pub fn window(
        &self,
        from: i64,
        to: i64,
        size: BucketSize,
        time_zone: &str,
        now: i64,
    ) -> Result<Window, ApiError> {
        let tz = buckets::parse_zone(time_zone).ok_or_else(|| {
            ApiError::bad_input(format!(
                "`{time_zone}` is not an IANA time zone (such as `Europe/Berlin` or `UTC`)"
            ))
        })?;
        let (from, to) = if size == BucketSize::Minute {
            let oldest = now - self.minute_days * DAY_MS;
            if from < oldest {
                return Err(ApiError::bad_input(format!(
                    "minute buckets are kept for {} days: start the range after {} or choose \
                     QUARTER_HOUR or larger buckets",
                    self.minute_days,
                    flowfleet_runtime::clock::to_datetime(oldest).to_rfc3339()
                )));
            }
            (Grain::Minute.start(from), Grain::Minute.start(to))
        } else {
            (
                Grain::Quarter.start(from),
                Grain::Quarter.start(to + QUARTER_MS - 1),
            )
        };
        // Validates the number of buckets now, so every query of the window can rely on it.
        buckets::buckets(from, to, size, tz).map_err(|e| ApiError::bad_input(e.to_string()))?;
        Ok(Window { from, to, size, tz })
    }

    /// VIEWER or above in `workspace` (the request names it: outsiders get `FORBIDDEN`).
    pub async fn authorize<'a>(
        &self,
        who: impl Into<Principal<'a>>,
        workspace: Uuid,
    ) -> Result<(), ApiError> {
        self.access
            .authorize(who, workspace, Role::Viewer, Target::Workspace)
            .await?;
        Ok(())
    }

    /// VIEWER or above in the workflow's workspace. A workflow without facts has no
    /// workspace here: its statistics are zeros, which reveal nothing.
    pub async fn authorize_workflow<'a>(
        &self,
        who: impl Into<Principal<'a>>,
        workflow: Uuid,
    ) -> Result<Option<Uuid>, ApiError> {
        let who = who.into();
        let workspaces = self.store.workspaces_of(workflow).await?;
        for workspace in &workspaces {
            self.access
                .authorize(who, *workspace, Role::Viewer, Target::Resource(NO_WORKFLOW))
                .await?;
        }
        Ok(workspaces.first().copied())
    }

    /// Executions per bucket, of the workspace or of one workflow.
    pub async fn executions(
        &self,
        workspace: Uuid,
        workflow: Option<Uuid>,
        w: &Window,
    ) -> Result<Vec<Bucketed<Runs>>, ApiError> {
        series(w, |piece| self.store.runs_in(workspace, workflow, piece)).await
    }

    /// All executions in `[from, to)`, of the workspace or of one workflow.
    pub async fn runs_total(
        &self,
        workspace: Uuid,
        workflow: Option<Uuid>,
        from: i64,
        to: i64,
    ) -> Result<Runs, ApiError> {
        let mut total = Runs::default();
        for piece in cover(from, to) {
            for (_, runs) in self.store.runs_in(workspace, workflow, piece).await? {
                total.merge(&runs);
            }
        }
        Ok(total)
    }

    /// Every workflow's run counts over `[from, to)` (no sketches).
    pub async fn workflows(
        &self,
        workspace: Uuid,
        from: i64,
        to: i64,
    ) -> Result<HashMap<Uuid, Runs>, ApiError> {
        let mut out: HashMap<Uuid, Runs> = HashMap::new();
        for piece in cover(from, to) {
            for (workflow, runs) in self.store.runs_by_workflow(workspace, piece).await? {
                out.entry(workflow).or_default().merge(&runs);
            }
        }
        Ok(out)
    }

    /// The latest error (and its time) of each of `workflows`.
    pub async fn last_errors(
        &self,
        workflows: &[Uuid],
    ) -> Result<HashMap<Uuid, (Option<String>, i64)>, ApiError> {
        self.store.last_errors(workflows).await
    }

    /// Step attempts over `[from, to)` per subject of `level`. Nodes and node types are
    /// kept per quarter-hour: their range is widened to whole quarter-hours.
    pub async fn steps(
        &self,
        workspace: Uuid,
        level: StepLevel,
        from: i64,
        to: i64,
    ) -> Result<HashMap<StepSubject, Attempts>, ApiError> {
        self.steps_with(workspace, level, from, to, Sketches::All)
            .await
    }

    /// [`Dashboards::steps`], decoding only the sketches asked for.
    pub async fn steps_with(
        &self,
        workspace: Uuid,
        level: StepLevel,
        from: i64,
        to: i64,
        sketches: Sketches,
    ) -> Result<HashMap<StepSubject, Attempts>, ApiError> {
        let (from, to) = match level {
            StepLevel::Workspace => (from, to),
            _ => (
                Grain::Quarter.start(from),
                Grain::Quarter.start(to + QUARTER_MS - 1),
            ),
        };
        let mut out: HashMap<StepSubject, Attempts> = HashMap::new();
        for piece in cover(from, to) {
            let rows = self
                .store
                .attempts_in(workspace, level, piece, sketches)
                .await?;
            for (subject, _, attempts) in rows {
                out.entry(subject).or_default().merge(&attempts);
            }
        }
        Ok(out)
    }

    /// The `limit` subjects of `level` (nodes or node types) with the highest p95
    /// duration over `[from, to)` (widened as [`ranking_span`] says), slowest first, ties
    /// by workflow, node and type.
    ///
    /// Exact without reading every subject's sketches: the database finds each subject's
    /// largest p95 ceiling over the range's rollups, and no p95 over the range is above
    /// it. Sketches are read in order of ceiling, some subjects at a time, until every
    /// subject left has a ceiling below the slowest of the current top. When ceilings
    /// leave most of the level in contention (subjects alike), the whole level is read at
    /// once instead.
    pub async fn slowest(
        &self,
        workspace: Uuid,
        level: StepLevel,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<(StepSubject, Attempts)>, ApiError> {
        let (from, to) = ranking_span(from, to);
        let pieces = cover(from, to);
        let ranked = self
            .rank(workspace, level, from, to, &pieces, limit)
            .await?;
        // The ranking read durations only; the winners are read again whole.
        let winners: Vec<StepSubject> = ranked.iter().map(|(s, _)| s.clone()).collect();
        let mut whole: HashMap<StepSubject, Attempts> = HashMap::new();
        for piece in &pieces {
            for (subject, a) in self
                .store
                .attempts_of(workspace, *piece, &winners, Sketches::All)
                .await?
            {
                whole.entry(subject).or_default().merge(&a);
            }
        }
        Ok(ranked
            .into_iter()
            .map(|(subject, _)| {
                let attempts = whole.remove(&subject).unwrap_or_default();
                (subject, attempts)
            })
            .collect())
    }

    /// [`Dashboards::slowest`]'s ranking, on durations alone.
    async fn rank(
        &self,
        workspace: Uuid,
        level: StepLevel,
        from: i64,
        to: i64,
        pieces: &[Piece],
        limit: usize,
    ) -> Result<Vec<(StepSubject, Attempts)>, ApiError> {
        let whole_level = || self.steps_with(workspace, level, from, to, Sketches::DurationsOnly);
        let mut ceilings: HashMap<StepSubject, i64> = HashMap::new();
        for piece in pieces {
            for (subject, ceiling) in self.store.p95_ceilings(workspace, level, *piece).await? {
                let highest = ceilings.entry(subject).or_insert(ceiling);
                *highest = (*highest).max(ceiling);
            }
        }
        if limit == 0 || ceilings.len() <= SCAN_ALL_BELOW.max(limit * 4) {
            // Few subjects (node types, a small workspace): one read of them all is
            // cheaper than reading them in rounds.
            return Ok(rank_by_p95(whole_level().await?, limit));
        }
        let total = ceilings.len();
        let mut queue: Vec<(StepSubject, i64)> = ceilings.into_iter().collect();
        queue.sort_by_key(|(_, ceiling)| std::cmp::Reverse(*ceiling));
        let mut queue = queue.into_iter();
        let mut read: HashMap<StepSubject, Attempts> = HashMap::new();
        loop {
            let take = match bar(&read, limit) {
                None => limit - read.len(),
                Some(bar) => {
                    let contenders = queue.clone().take_while(|(_, c)| *c as f64 >= bar);
                    match contenders.count() {
                        0 => break,
                        // Most of the level is left in contention: one read of it all
                        // beats reading most of it in rounds.
                        n if n * 2 > total => return Ok(rank_by_p95(whole_level().await?, limit)),
                        n => n.min(ROUND.max(limit)),
                    }
                }
            };
            let batch: Vec<StepSubject> = queue.by_ref().take(take).map(|(s, _)| s).collect();
            if batch.is_empty() {
                break;
            }
            for piece in pieces {
                for (subject, a) in self
                    .store
                    .attempts_of(workspace, *piece, &batch, Sketches::DurationsOnly)
                    .await?
                {
                    read.entry(subject).or_default().merge(&a);
                }
            }
        }
        Ok(rank_by_p95(read, limit))
    }

    /// Every step of the workspace per bucket (queue waits, throughput).
    pub async fn steps_over_time(
        &self,
        workspace: Uuid,
        w: &Window,
    ) -> Result<Vec<Bucketed<Attempts>>, ApiError> {
        series(w, |piece| async move {
            let rows = self
                .store
                .attempts_in(workspace, StepLevel::Workspace, piece, Sketches::All)
                .await?;
            Ok(rows.into_iter().map(|(_, start, a)| (start, a)).collect())
        })
        .await
    }

    /// The fleet's worker pools per bucket: capacity, busy time, finished steps and the
    /// step queue's backlog, as the pools reported them.
    pub async fn workers_over_time(&self, w: &Window) -> Result<Vec<Bucketed<Pool>>, ApiError> {
        series(w, |piece| self.store.pool_in(piece)).await
    }

    /// People who started a run, edited or published a workflow in `[from, to)`.
    pub async fn active_users(&self, workspace: Uuid, from: i64, to: i64) -> Result<i64, ApiError> {
        self.store.active_users(workspace, from, to).await
    }

    /// The mean time from a workflow's first failure to its next success, over the
    /// recoveries that ended in `[from, to)`, and how many there were.
    pub async fn mean_time_to_recovery(
        &self,
        workspace: Uuid,
        from: i64,
        to: i64,
    ) -> Result<(Option<f64>, i64), ApiError> {
        self.store.mean_time_to_recovery(workspace, from, to).await
    }

    /// The workflow's runs over all time, and when the last one finished.
    pub async fn workflow_all_time(
        &self,
        workspace: Uuid,
        workflow: Uuid,
    ) -> Result<(Runs, Option<i64>), ApiError> {
        let Some((first, last)) = self.store.run_span(workflow).await? else {
            return Ok((Runs::default(), None));
        };
        let from = Grain::Day.start(first);
        let to = Grain::Day.start(last) + DAY_MS;
        Ok((
            self.runs_total(workspace, Some(workflow), from, to).await?,
            Some(last),
        ))
    }
}

/// The span a ranking by p95 reads for `[from, to)`: widened to whole UTC days when it
/// spans a week or more, to whole quarter-hours otherwise.
///
/// Why: a node's rollups over a month are 30 days plus up to 190 quarter-hours at the
/// edges, so the edges would be most of what a ranking reads; and a quarter-hour holds
/// too few attempts of one node for its p95 ceiling to rule anything out (the ceiling of
/// a handful of values is their maximum). A day more or less at the ends of a week or
/// a month moves no node far in a ranking.
pub fn ranking_span(from: i64, to: i64) -> (i64, i64) {
    let grain = if to - from >= 7 * DAY_MS {
        Grain::Day
    } else {
        Grain::Quarter
    };
    (grain.start(from), grain.start(to + grain.len_ms() - 1))
}

/// Below this many subjects, a ranking reads a whole level at once.
const SCAN_ALL_BELOW: usize = 100;

/// The most subjects a ranking reads in one round once it has a last place to beat.
const ROUND: usize = 50;

/// The `limit`-th highest p95 among `read`: what a subject must reach to enter the top;
/// `None` while fewer than `limit` are read.
fn bar(read: &HashMap<StepSubject, Attempts>, limit: usize) -> Option<f64> {
    if read.len() < limit {
        return None;
    }
    let mut p95s: Vec<f64> = read
        .values()
        .map(|a| a.durations.quantile(RANKED_QUANTILE).unwrap_or(0.0))
        .collect();
    p95s.sort_by(|a, b| b.total_cmp(a));
    Some(p95s[limit - 1])
}

/// The `limit` subjects with the highest p95 duration, slowest first.
fn rank_by_p95(all: HashMap<StepSubject, Attempts>, limit: usize) -> Vec<(StepSubject, Attempts)> {
    let mut ranked: Vec<(StepSubject, Attempts, f64)> = all
        .into_iter()
        .map(|(s, a)| {
            let p95 = a.durations.quantile(RANKED_QUANTILE).unwrap_or(0.0);
            (s, a, p95)
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| a.0.workflow.cmp(&b.0.workflow))
            .then_with(|| a.0.node.cmp(&b.0.node))
            .then_with(|| a.0.node_type.cmp(&b.0.node_type))
    });
    ranked.truncate(limit);
    ranked.into_iter().map(|(s, a, _)| (s, a)).collect()
}

/// Assembles a window's buckets from the stored rollups `fetch` reads: each bucket is
/// the sum of the pieces that [`cover`] it, and each grain is read once, over the span
/// its pieces need.
async fn series<'a, T, F, Fut>(w: &Window, fetch: F) -> Result<Vec<Bucketed<T>>, ApiError>
where
    T: Merge,
    F: Fn(Piece) -> Fut,
    Fut: Future<Output = Result<Vec<(i64, T)>, ApiError>> + 'a,
{
    let buckets = buckets::buckets(w.from, w.to, w.size, w.tz)
        .map_err(|e| ApiError::bad_input(e.to_string()))?;
    let covers: Vec<Vec<Piece>> = buckets.iter().map(|(a, b)| cover(*a, *b)).collect();
    let mut spans: BTreeMap<Grain, (i64, i64)> = BTreeMap::new();
    for piece in covers.iter().flatten() {
        let span = spans.entry(piece.grain).or_insert((piece.from, piece.to));
        span.0 = span.0.min(piece.from);
        span.1 = span.1.max(piece.to);
    }
    let mut rows: HashMap<Grain, BTreeMap<i64, T>> = HashMap::new();
    for (grain, (from, to)) in spans {
        let fetched = fetch(Piece { grain, from, to }).await?;
        rows.insert(grain, fetched.into_iter().collect());
    }
    Ok(buckets
        .into_iter()
        .zip(covers)
        .map(|((start, end), pieces)| {
            let mut value = T::default();
            for piece in pieces {
                if let Some(stored) = rows.get(&piece.grain) {
                    for (_, v) in stored.range(piece.from..piece.to) {
                        value.merge_from(v);
                    }
                }
            }
            Bucketed { start, end, value }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rankings_read_whole_days_over_a_week_or_more_and_quarters_otherwise() {
        let day = 20_000 * DAY_MS;
        let (from, to) = (
            day + 3 * 3_600_000 + 60_000,
            day + 7 * DAY_MS + 4 * 3_600_000,
        );
        assert_eq!(ranking_span(from, to), (day, day + 8 * DAY_MS));
        let short = (from, day + 6 * DAY_MS + 1);
        assert_eq!(
            ranking_span(short.0, short.1),
            (day + 3 * 3_600_000, day + 6 * DAY_MS + QUARTER_MS)
        );
        // Aligned ends stay where they are.
        assert_eq!(
            ranking_span(day, day + 30 * DAY_MS),
            (day, day + 30 * DAY_MS)
        );
    }
}
