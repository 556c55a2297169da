//! The notification service's table (its own schema) and its outbox.
//!
//! Every inbox query is scoped by `recipient_id` in SQL, so a notification can
//! only ever be read or changed by the user it was sent to.

// What the service holds about a user, for export and erasure (see
// `flowfleet_host::privacy`).
mod privacy;

mod config;
mod deliveries;

pub use deliveries::DeliveryPage;

use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::db::Db;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{Channel, Notification, Status};

#[derive(Clone)]
pub struct Store {
    db: Db,
}

const COLUMNS: &str =
    "id, workspace_id, recipient_id, channel, subject, body, status, attempts, created_at, read_at";

fn notification_from(row: &AnyRow) -> Result<Notification, ApiError> {
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    Ok(Notification {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        recipient_id: uuid_column(row, "recipient_id")?,
        channel: Channel::parse(&channel)
            .ok_or_else(|| ApiError::internal(format!("stored channel `{channel}`")))?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        status: Status::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("stored status `{status}`")))?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        read_at: row.try_get("read_at")?,
    })
}

/// One page of an inbox, newest first.
pub struct Page {
    pub nodes: Vec<Notification>,
    pub has_next_page: bool,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Stores `n` and records `notification.created`, in one transaction.
    /// With a `source` key, a second notification for the same source is not
    /// stored: returns whether `n` was new.
    pub async fn insert(&self, n: &Notification, source: Option<&str>) -> Result<bool, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO notifications (id, workspace_id, recipient_id, channel, subject, body, status, attempts, created_at, read_at, source_event_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (source_event_id) DO NOTHING",
        )
        .bind(n.id.to_string())
        .bind(n.workspace_id.to_string())
        .bind(n.recipient_id.to_string())
        .bind(n.channel.as_str())
        .bind(&n.subject)
        .bind(&n.body)
        .bind(n.status.as_str())
        .bind(n.attempts)
        .bind(n.created_at)
        .bind(n.read_at)
        .bind(source)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            return Ok(false);
        }
        outbox::record(
            &mut tx,
            &Event::new(
                "notification.created",
                n.created_at,
                serde_json::json!({
                    "notificationId": n.id,
                    "workspaceId": n.workspace_id,
                    "recipientId": n.recipient_id,
                    "channel": n.channel.as_str(),
                    "status": n.status.as_str(),
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores `n` under `key` unless a notification with that key exists; either way
    /// returns the id of the one stored.
    pub async fn insert_keyed(&self, n: &Notification, key: &str) -> Result<Uuid, ApiError> {
        if self.insert(n, Some(key)).await? {
            return Ok(n.id);
        }
        let row = sqlx::query("SELECT id FROM notifications WHERE source_event_id = $1")
            .bind(key)
            .fetch_one(self.db.pool())
            .await?;
        uuid_column(&row, "id")
    }

    /// One notification of `recipient`.
    pub async fn notification(
        &self,
        id: Uuid,
        recipient: Uuid,
    ) -> Result<Option<Notification>, ApiError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = $1 AND recipient_id = $2"
        ))
        .bind(id.to_string())
        .bind(recipient.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(notification_from).transpose()
    }

    /// Up to `first` of the recipient's notifications older than `after`
    /// (an id), newest first.
    pub async fn page(
        &self,
        recipient: Uuid,
        unread_only: bool,
        after: Option<Uuid>,
        first: i64,
    ) -> Result<Page, ApiError> {
        let unread = if unread_only {
            " AND read_at IS NULL"
        } else {
            ""
        };
        // Without a cursor the page starts at the newest. (No sentinel value:
        // PostgreSQL collations need not order punctuation after hex digits.)
        let before = if after.is_some() { " AND id < $3" } else { "" };
        let query = format!(
            "SELECT {COLUMNS} FROM notifications WHERE recipient_id = $1{before}{unread} \
             ORDER BY id DESC LIMIT $2"
        );
        let mut query = sqlx::query(&query)
            .bind(recipient.to_string())
            .bind(first + 1);
        if let Some(after) = after {
            query = query.bind(after.to_string());
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        let has_next_page = rows.len() as i64 > first;
        let nodes = rows
            .iter()
            .take(first as usize)
            .map(notification_from)
            .collect::<Result<_, _>>()?;
        Ok(Page {
            nodes,
            has_next_page,
        })
    }

    pub async fn count(&self, recipient: Uuid, unread_only: bool) -> Result<i64, ApiError> {
        let unread = if unread_only {
            " AND read_at IS NULL"
        } else {
            ""
        };
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM notifications WHERE recipient_id = $1{unread}"
        ))
        .bind(recipient.to_string())
        .fetch_one(self.db.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Marks the recipient's notification read (keeping the first read time if
    /// it was read before). `None` when no such notification is theirs.
    pub async fn mark_read(
        &self,
        id: Uuid,
        recipient: Uuid,
        now: i64,
    ) -> Result<Option<Notification>, ApiError> {
        sqlx::query(
            "UPDATE notifications SET status = 'READ', read_at = COALESCE(read_at, $1) \
             WHERE id = $2 AND recipient_id = $3",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(recipient.to_string())
        .execute(self.db.pool())
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = $1 AND recipient_id = $2"
        ))
        .bind(id.to_string())
        .bind(recipient.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(notification_from).transpose()
    }
}
