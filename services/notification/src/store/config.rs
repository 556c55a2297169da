//! What a workspace configures (channels, rules, template overrides) and what a person
//! prefers. Every statement is scoped by the workspace (or the user) it was asked for, so
//! one workspace's id never reaches another's rows.

use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::error::ApiError;
use flowfleet_security::identity::Role;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use crate::domain::channels::{ChannelConfig, Settings};
use crate::domain::rules::{Preferences, Rule};
use crate::domain::templates::Template;
use crate::domain::Channel;

fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, ApiError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("stored {column}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

const SECRET_NAMES: [&str; 4] = ["password", "signingSecret", "routingKey", "authToken"];

fn channel_from(row: &AnyRow) -> Result<ChannelConfig, ApiError> {
    let set: Vec<String> = json_column(row, "secrets_set")?;
    Ok(ChannelConfig {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        name: row.try_get("name")?,
        settings: json_column(row, "settings")?,
        secrets_set: SECRET_NAMES
            .into_iter()
            .filter(|n| set.iter().any(|s| s == n))
            .collect(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn rule_from(row: &AnyRow) -> Result<Rule, ApiError> {
    let roles: Vec<String> = json_column(row, "roles")?;
    Ok(Rule {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        name: row.try_get("name")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        events: json_column(row, "events")?,
        workflow_ids: json_column(row, "workflow_ids")?,
        member_ids: json_column(row, "member_ids")?,
        roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
        channel_ids: json_column(row, "channel_ids")?,
        in_app: row.try_get::<i64, _>("in_app")? != 0,
        digest_window_secs: row.try_get("digest_window_secs")?,
        created_at: row.try_get("created_at")?,
    })
}

const CHANNEL_COLUMNS: &str =
    "id, workspace_id, name, kind, settings, secrets_set, created_at, updated_at";
const RULE_COLUMNS: &str = "id, workspace_id, name, enabled, events, workflow_ids, member_ids, roles, channel_ids, in_app, digest_window_secs, created_at";

/// A name already taken in the workspace.
fn taken(e: sqlx::Error) -> ApiError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ApiError::conflict("this workspace already has a channel of that name")
        }
        _ => e.into(),
    }
}

impl Store {
    pub async fn insert_channel(&self, c: &ChannelConfig, sealed: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO channels (id, workspace_id, name, kind, settings, secrets, secrets_set, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.id.to_string())
        .bind(c.workspace_id.to_string())
        .bind(&c.name)
        .bind(c.settings.channel().as_str())
        .bind(to_json(&c.settings))
        .bind(sealed)
        .bind(to_json(&c.secrets_set))
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(self.db.pool())
        .await
        .map_err(taken)?;
        Ok(())
    }

    /// Replaces a channel's name, settings and sealed secrets; `false` when there is no
    /// such channel in the workspace.
    pub async fn update_channel(&self, c: &ChannelConfig, sealed: &str) -> Result<bool, ApiError> {
        let done = sqlx::query(
            "UPDATE channels SET name = $1, kind = $2, settings = $3, secrets = $4, secrets_set = $5, updated_at = $6 \
             WHERE id = $7 AND workspace_id = $8",
        )
        .bind(&c.name)
        .bind(c.settings.channel().as_str())
        .bind(to_json(&c.settings))
        .bind(sealed)
        .bind(to_json(&c.secrets_set))
        .bind(c.updated_at)
        .bind(c.id.to_string())
        .bind(c.workspace_id.to_string())
        .execute(self.db.pool())
        .await
        .map_err(taken)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_channel(&self, workspace: Uuid, id: Uuid) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM channels WHERE id = $1 AND workspace_id = $2")
            .bind(id.to_string())
            .bind(workspace.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn channels(&self, workspace: Uuid) -> Result<Vec<ChannelConfig>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE workspace_id = $1 ORDER BY name"
        ))
        .bind(workspace.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(channel_from).collect()
    }

    /// A channel by id, wherever it is (the caller then checks the workspace).
    pub async fn channel(&self, id: Uuid) -> Result<Option<ChannelConfig>, ApiError> {
        let row = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(channel_from).transpose()
    }

    /// A channel's sealed secrets, for its sender.
    pub async fn channel_secrets(
        &self,
        workspace: Uuid,
        id: Uuid,
    ) -> Result<Option<(ChannelConfig, String)>, ApiError> {
        let row = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS}, secrets FROM channels WHERE id = $1 AND workspace_id = $2"
        ))
        .bind(id.to_string())
        .bind(workspace.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        match row {
            Some(row) => Ok(Some((channel_from(&row)?, row.try_get("secrets")?))),
            None => Ok(None),
        }
    }

    /// Whether the workspace has an e-mail channel (the first one, by name).
    pub async fn first_email_channel(
        &self,
        workspace: Uuid,
    ) -> Result<Option<ChannelConfig>, ApiError> {
        Ok(self
            .channels(workspace)
            .await?
            .into_iter()
            .find(|c| matches!(c.settings, Settings::Email(_))))
    }

    pub async fn upsert_rule(&self, r: &Rule) -> Result<(), ApiError> {
        let roles: Vec<&str> = r.roles.iter().map(|r| r.as_str()).collect();
        sqlx::query(&format!(
            "INSERT INTO rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled, \
             events = excluded.events, workflow_ids = excluded.workflow_ids, member_ids = excluded.member_ids, \
             roles = excluded.roles, channel_ids = excluded.channel_ids, in_app = excluded.in_app, \
             digest_window_secs = excluded.digest_window_secs"
        ))
        .bind(r.id.to_string())
        .bind(r.workspace_id.to_string())
        .bind(&r.name)
        .bind(i64::from(r.enabled))
        .bind(to_json(&r.events))
        .bind(to_json(&r.workflow_ids))
        .bind(to_json(&r.member_ids))
        .bind(to_json(&roles))
        .bind(to_json(&r.channel_ids))
        .bind(i64::from(r.in_app))
        .bind(r.digest_window_secs)
        .bind(r.created_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn rules(&self, workspace: Uuid) -> Result<Vec<Rule>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM rules WHERE workspace_id = $1 ORDER BY id"
        ))
        .bind(workspace.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(rule_from).collect()
    }

    pub async fn rule(&self, id: Uuid) -> Result<Option<Rule>, ApiError> {
        let row = sqlx::query(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(rule_from).transpose()
    }

    pub async fn delete_rule(&self, workspace: Uuid, id: Uuid) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM rules WHERE id = $1 AND workspace_id = $2")
            .bind(id.to_string())
            .bind(workspace.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The workspace's override of a template, if it has one.
    pub async fn template(
        &self,
        workspace: Uuid,
        kind: &str,
        channel: Channel,
    ) -> Result<Option<(Template, i64)>, ApiError> {
        let row = sqlx::query(
            "SELECT subject, body, html, updated_at FROM templates \
             WHERE workspace_id = $1 AND event_kind = $2 AND channel = $3",
        )
        .bind(workspace.to_string())
        .bind(kind)
        .bind(channel.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| {
            Ok((
                Template {
                    subject: r.try_get("subject")?,
                    body: r.try_get("body")?,
                    html: r.try_get("html")?,
                },
                r.try_get("updated_at")?,
            ))
        })
        .transpose()
    }

    pub async fn set_template(
        &self,
        workspace: Uuid,
        kind: &str,
        channel: Channel,
        t: &Template,
        now: i64,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO templates (workspace_id, event_kind, channel, subject, body, html, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace_id, event_kind, channel) \
             DO UPDATE SET subject = excluded.subject, body = excluded.body, html = excluded.html, \
             updated_at = excluded.updated_at",
        )
        .bind(workspace.to_string())
        .bind(kind)
        .bind(channel.as_str())
        .bind(&t.subject)
        .bind(&t.body)
        .bind(&t.html)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn reset_template(
        &self,
        workspace: Uuid,
        kind: &str,
        channel: Channel,
    ) -> Result<bool, ApiError> {
        let done = sqlx::query(
            "DELETE FROM templates WHERE workspace_id = $1 AND event_kind = $2 AND channel = $3",
        )
        .bind(workspace.to_string())
        .bind(kind)
        .bind(channel.as_str())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn preferences(&self, user: Uuid) -> Result<Preferences, ApiError> {
        let row = sqlx::query("SELECT preferences FROM preferences WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        match row {
            Some(row) => json_column(&row, "preferences"),
            None => Ok(Preferences::default()),
        }
    }

    pub async fn set_preferences(
        &self,
        user: Uuid,
        p: &Preferences,
        now: i64,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO preferences (user_id, preferences, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET preferences = excluded.preferences, updated_at = excluded.updated_at",
        )
        .bind(user.to_string())
        .bind(to_json(p))
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}
