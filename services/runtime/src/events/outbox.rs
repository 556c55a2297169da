//! The transactional outbox.
//!
//! Each service's migrations create an `outbox` table (same shape on both
//! backends). [`record`] inserts an event inside the caller's transaction; the
//! [`Relay`] publishes committed rows in order, up to 100 at a time with their
//! publisher confirms awaited together, then deletes them. A crash between publish
//! and delete republishes the batch: consumers are idempotent. (Earlier versions
//! marked rows `published_at` instead of deleting them; those rows are skipped.)

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Event, EventBus};
use crate::db::{Backend, Db};

/// Records `event` in the outbox, as part of the caller's transaction.
pub async fn record(conn: &mut AnyConnection, event: &Event) -> Result<(), sqlx::Error> {
    let trace = serde_json::to_string(&event.trace).unwrap_or_else(|_| "{}".into());
    sqlx::query(
        "INSERT INTO outbox (id, kind, payload, trace, occurred_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.id.to_string())
    .bind(&event.kind)
    .bind(event.payload.to_string())
    .bind(trace)
    .bind(event.occurred_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Publishes committed outbox rows to the bus.
#[derive(Clone)]
pub struct Relay {
    db: Db,
    bus: Arc<dyn EventBus>,
    wake: Arc<Notify>,
}

impl Relay {
    pub fn new(db: Db, bus: Arc<dyn EventBus>) -> Self {
        crate::series::register_outbox(db.schema());
        Relay {
            db,
            bus,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Call after committing a transaction that recorded events, so they go out
    /// now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `shutdown`, polling at least every 500 ms (other replicas and
    /// processes write outbox rows too).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut sampled: Option<tokio::time::Instant> = None;
        loop {
            if sampled.is_none_or(|at| at.elapsed() >= crate::series::SAMPLE_EVERY) {
                sampled = Some(tokio::time::Instant::now());
                if let Err(e) = self.sample().await {
                    tracing::debug!(schema = %self.db.schema(), error = %e, "could not sample the outbox");
                }
            }
            match self.publish_batch().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(schema = %self.db.schema(), error = %e, "outbox relay failed; will retry");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(backoff.max(Duration::from_millis(500)).min(Duration::from_secs(5))) => {}
            }
        }
    }

    /// Sets `flowfleet_outbox_pending_events` and `flowfleet_outbox_lag_seconds`: what
    /// waits, and for how long the oldest has (the outbox holds only what waits).
    async fn sample(&self) -> Result<(), sqlx::Error> {
        let row = sqlx::query("SELECT COUNT(*) AS pending, MIN(occurred_at) AS oldest FROM outbox")
            .fetch_one(self.db.pool())
            .await?;
        let pending: i64 = row.try_get("pending")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        let lag_ms = oldest.map_or(0, |t| (crate::queue::now_ms() - t).max(0));
        let schema = self.db.schema().to_string();
        metrics::gauge!("flowfleet_outbox_pending_events", "schema" => schema.clone())
            .set(pending as f64);
        metrics::gauge!("flowfleet_outbox_lag_seconds", "schema" => schema)
            .set(lag_ms as f64 / 1000.0);
        Ok(())
    }

    /// Publishes up to 100 pending events; returns how many went out.
    ///
    /// On PostgreSQL the rows are read `FOR UPDATE SKIP LOCKED` and deleted in one
    /// transaction, so replicas relaying the same outbox never send a row twice at once.
    /// On SQLite (one process owns the file) the read, the publish and the delete are
    /// separate statements: a transaction held across them would keep a read snapshot
    /// open while waiting to upgrade to the write lock, which is what the engine's own
    /// writes wait behind (and while a snapshot is open, SQLite cannot restart its
    /// write-ahead log). Two relays of the process on one file (the execution service's and the
    /// worker pool's) may both send a row before either deletes it, as they could with
    /// the transaction (a deferred SQLite transaction locks nothing when it reads):
    /// consumers are idempotent. A crash between publish and delete republishes, as on
    /// PostgreSQL.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let published = match self.db.backend() {
            Backend::Postgres => {
                let mut tx = self.db.pool().begin().await?;
                let published = self.relay(&mut tx, " FOR UPDATE SKIP LOCKED").await?;
                tx.commit().await?;
                published
            }
            Backend::Sqlite => {
                let mut conn = self.db.pool().acquire().await?;
                self.relay(&mut conn, "").await?
            }
        };
        if published > 0 {
            metrics::counter!("flowfleet_outbox_published_total", "schema" => self.db.schema().to_string())
                .increment(published as u64);
        }
        Ok(published)
    }

    /// Reads the pending rows on `conn` (`lock` appended to the query), publishes them and
    /// deletes them; returns how many.
    async fn relay(&self, conn: &mut AnyConnection, lock: &str) -> anyhow::Result<usize> {
        let events = pending(conn, lock).await?;
        if !events.is_empty() {
            self.publish(&events).await?;
            delete(conn, &events).await?;
        }
        Ok(events.len())
    }

    /// Publishes `events` as one batch, each in a span that is a child of the trace that
    /// recorded it (the batch's confirms are awaited together).
    async fn publish(&self, events: &[Event]) -> Result<(), super::BusError> {
        let spans: Vec<tracing::Span> = events
            .iter()
            .map(|event| {
                let span =
                    tracing::info_span!("outbox.publish", kind = %event.kind, event_id = %event.id);
                crate::telemetry::set_parent_from_map(&span, &event.trace);
                span
            })
            .collect();
        let publishing = tracing::info_span!("outbox.publish_batch", events = events.len());
        for span in &spans {
            publishing.follows_from(span.id());
        }
        self.bus.publish_all(events).instrument(publishing).await
    }
}

/// Up to 100 events waiting, oldest first (`lock` is appended to the query).
async fn pending(conn: &mut AnyConnection, lock: &str) -> anyhow::Result<Vec<Event>> {
    let rows = sqlx::query(&format!(
        "SELECT id, kind, payload, trace, occurred_at FROM outbox \
         WHERE published_at IS NULL ORDER BY occurred_at, id LIMIT 100{lock}"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        events.push(Event {
            id: id.parse()?,
            kind: row.try_get("kind")?,
            occurred_at_ms: row.try_get("occurred_at")?,
            payload: serde_json::from_str(&row.try_get::<String, _>("payload")?)?,
            trace: serde_json::from_str(&row.try_get::<String, _>("trace")?).unwrap_or_default(),
        });
    }
    Ok(events)
}

/// Deletes published rows: the outbox holds what is still to send, not a history.
async fn delete(conn: &mut AnyConnection, events: &[Event]) -> Result<(), sqlx::Error> {
    let sql = format!(
        "DELETE FROM outbox WHERE id IN ({})",
        (1..=events.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut delete = sqlx::query(&sql);
    for event in events {
        delete = delete.bind(event.id.to_string());
    }
    delete.execute(&mut *conn).await?;
    Ok(())
}
