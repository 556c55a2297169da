//! Deliveries, their attempts, and digests. The claim (`claim_attempt`) is what makes a
//! task delivered twice send once: it moves `attempts` from `n - 1` to `n` only once.

use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::error::ApiError;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use crate::domain::delivery::{Attempt, Delivery, DeliveryStatus};
use crate::domain::Channel;

const COLUMNS: &str = "id, workspace_id, notification_id, channel, channel_id, recipient_id, destination, event_kind, subject, body, html, data, status, attempts, last_error, delivery_key, created_at, finished_at";

fn optional_uuid(row: &AnyRow, column: &str) -> Result<Option<Uuid>, ApiError> {
    let v: Option<String> = row.try_get(column)?;
    v.map(|s| s.parse().map_err(ApiError::internal)).transpose()
}

fn delivery_from(row: &AnyRow) -> Result<Delivery, ApiError> {
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    let data: String = row.try_get("data")?;
    Ok(Delivery {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        notification_id: optional_uuid(row, "notification_id")?,
        channel: Channel::parse(&channel)
            .ok_or_else(|| ApiError::internal(format!("stored channel `{channel}`")))?,
        channel_id: uuid_column(row, "channel_id")?,
        recipient_id: optional_uuid(row, "recipient_id")?,
        destination: row.try_get("destination")?,
        event_kind: row.try_get("event_kind")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        html: row.try_get("html")?,
        data: serde_json::from_str(&data).map_err(ApiError::internal)?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("stored status `{status}`")))?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        key: row.try_get("delivery_key")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// A page of a workspace's delivery log, newest first.
pub struct DeliveryPage {
    pub nodes: Vec<Delivery>,
    pub has_next_page: bool,
}

impl Store {
    /// Stores `d` unless a delivery with its key exists. Returns the stored delivery
    /// (the existing one on a repeat) and whether it is new.
    pub async fn insert_delivery(
        &self,
        d: &Delivery,
        digest: Option<Uuid>,
    ) -> Result<(Delivery, bool), ApiError> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO deliveries ({COLUMNS}, digest_id) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
             ON CONFLICT (delivery_key) DO NOTHING"
        ))
        .bind(d.id.to_string())
        .bind(d.workspace_id.to_string())
        .bind(d.notification_id.map(|n| n.to_string()))
        .bind(d.channel.as_str())
        .bind(d.channel_id.to_string())
        .bind(d.recipient_id.map(|n| n.to_string()))
        .bind(&d.destination)
        .bind(&d.event_kind)
        .bind(&d.subject)
        .bind(&d.body)
        .bind(&d.html)
        .bind(d.data.to_string())
        .bind(d.status.as_str())
        .bind(d.attempts)
        .bind(&d.last_error)
        .bind(&d.key)
        .bind(d.created_at)
        .bind(d.finished_at)
        .bind(digest.map(|d| d.to_string()))
        .execute(self.db.pool())
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return Ok((d.clone(), true));
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deliveries WHERE delivery_key = $1"
        ))
        .bind(&d.key)
        .fetch_one(self.db.pool())
        .await?;
        Ok((delivery_from(&row)?, false))
    }

    pub async fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, ApiError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(delivery_from).transpose()
    }

    /// Takes attempt `attempt` of a pending delivery: `true` for the one caller that
    /// moved `attempts` from `attempt - 1`, `false` for anyone after (a duplicate task).
    pub async fn claim_attempt(&self, id: Uuid, attempt: i64) -> Result<bool, ApiError> {
        let done = sqlx::query(
            "UPDATE deliveries SET attempts = $1 WHERE id = $2 AND attempts = $3 AND status = 'PENDING'",
        )
        .bind(attempt)
        .bind(id.to_string())
        .bind(attempt - 1)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Logs an attempt and moves the delivery to `status` (which stays `PENDING` while
    /// attempts remain), in one transaction.
    pub async fn record_attempt(
        &self,
        id: Uuid,
        attempt: &Attempt,
        status: DeliveryStatus,
        last_error: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, at, ok, detail) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (delivery_id, attempt) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(attempt.attempt)
        .bind(attempt.at)
        .bind(i64::from(attempt.ok))
        .bind(&attempt.detail)
        .execute(&mut *tx)
        .await?;
        let finished = (status != DeliveryStatus::Pending).then_some(attempt.at);
        sqlx::query(
            "UPDATE deliveries SET status = $1, last_error = COALESCE($2, last_error), finished_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(last_error)
        .bind(finished)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn attempts(&self, delivery: Uuid) -> Result<Vec<Attempt>, ApiError> {
        let rows = sqlx::query(
            "SELECT attempt, at, ok, detail FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(delivery.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    attempt: r.try_get("attempt")?,
                    at: r.try_get("at")?,
                    ok: r.try_get::<i64, _>("ok")? != 0,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// The deliveries of one inbox notification.
    pub async fn deliveries_of(&self, notification: Uuid) -> Result<Vec<Delivery>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deliveries WHERE notification_id = $1 ORDER BY id"
        ))
        .bind(notification.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(delivery_from).collect()
    }

    /// A workspace's delivery log, newest first, optionally of one status.
    pub async fn workspace_deliveries(
        &self,
        workspace: Uuid,
        status: Option<DeliveryStatus>,
        after: Option<Uuid>,
        first: i64,
    ) -> Result<DeliveryPage, ApiError> {
        let mut sql = format!("SELECT {COLUMNS} FROM deliveries WHERE workspace_id = $1");
        let mut n = 2;
        if status.is_some() {
            sql.push_str(&format!(" AND status = ${n}"));
            n += 1;
        }
        if after.is_some() {
            sql.push_str(&format!(" AND id < ${n}"));
            n += 1;
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${n}"));
        let mut q = sqlx::query(&sql).bind(workspace.to_string());
        if let Some(s) = status {
            q = q.bind(s.as_str());
        }
        if let Some(a) = after {
            q = q.bind(a.to_string());
        }
        let rows = q.bind(first + 1).fetch_all(self.db.pool()).await?;
        let has_next_page = rows.len() as i64 > first;
        Ok(DeliveryPage {
            nodes: rows
                .iter()
                .take(first as usize)
                .map(delivery_from)
                .collect::<Result<_, _>>()?,
            has_next_page,
        })
    }

    /// Every pending delivery's id and attempts so far (to re-enqueue after a restart
    /// of a process whose queue was in memory).
    pub async fn pending_deliveries(&self) -> Result<Vec<(Uuid, i64)>, ApiError> {
        let rows =
            sqlx::query("SELECT id, attempts FROM deliveries WHERE status = 'PENDING' ORDER BY id")
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|r| Ok((uuid_column(r, "id")?, r.try_get("attempts")?)))
            .collect()
    }

    /// The open digest of `rule` for `destination`, opening one closing at `closes_at`
    /// if there is none. Returns its id, when it closes, and whether it was opened now.
    pub async fn open_digest(
        &self,
        workspace: Uuid,
        rule: Uuid,
        destination: &str,
        closes_at: i64,
    ) -> Result<(Uuid, i64, bool), ApiError> {
        let id = Uuid::now_v7();
        let opened = sqlx::query(
            "INSERT INTO digests (id, workspace_id, rule_id, destination_key, closes_at, delivery_id) \
             VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (rule_id, destination_key) WHERE delivery_id IS NULL DO NOTHING",
        )
        .bind(id.to_string())
        .bind(workspace.to_string())
        .bind(rule.to_string())
        .bind(destination)
        .bind(closes_at)
        .execute(self.db.pool())
        .await?
        .rows_affected()
            == 1;
        if opened {
            return Ok((id, closes_at, true));
        }
        let row = sqlx::query(
            "SELECT id, closes_at FROM digests WHERE rule_id = $1 AND destination_key = $2 AND delivery_id IS NULL",
        )
        .bind(rule.to_string())
        .bind(destination)
        .fetch_one(self.db.pool())
        .await?;
        Ok((uuid_column(&row, "id")?, row.try_get("closes_at")?, false))
    }

    /// The deliveries a digest holds, oldest first.
    pub async fn digest_items(&self, digest: Uuid) -> Result<Vec<Delivery>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deliveries WHERE digest_id = $1 AND status = 'BATCHED' ORDER BY id"
        ))
        .bind(digest.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(delivery_from).collect()
    }

    /// Closes a digest with the delivery that sends it; `false` if it was closed already.
    pub async fn close_digest(&self, digest: Uuid, delivery: Uuid) -> Result<bool, ApiError> {
        let done = sqlx::query(
            "UPDATE digests SET delivery_id = $1 WHERE id = $2 AND delivery_id IS NULL",
        )
        .bind(delivery.to_string())
        .bind(digest.to_string())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Digests still open, with when they close (to re-arm them after a restart).
    pub async fn open_digests(&self) -> Result<Vec<(Uuid, i64)>, ApiError> {
        let rows = sqlx::query("SELECT id, closes_at FROM digests WHERE delivery_id IS NULL")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((uuid_column(r, "id")?, r.try_get("closes_at")?)))
            .collect()
    }
}
