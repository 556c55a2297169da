//! Listing executions: a workflow's or a workspace's, newest first, narrowed by
//! status, trigger, workflow and creation time, paged by id (UUIDv7, so id order
//! is creation order) with the total that matches the filter.

use flowfleet_runtime::db::Page;
use flowfleet_runtime::error::ApiError;
use sqlx::Row;
use uuid::Uuid;

use super::{execution_from, Store, COLUMNS};
use crate::domain::{Execution, Status, TriggerKind};

/// Whose executions.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Workflow(Uuid),
    Workspace(Uuid),
}

/// What to keep; every set field must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Any of these statuses (all when empty).
    pub statuses: Vec<Status>,
    /// MANUAL, CRON, WEBHOOK, EVENT, SUB_WORKFLOW or RETRY.
    pub trigger: Option<TriggerKind>,
    /// Within a workspace: one workflow's.
    pub workflow: Option<Uuid>,
    /// Created at or after (ms).
    pub created_from: Option<i64>,
    /// Created before (ms).
    pub created_before: Option<i64>,
}

/// A bound value of the built query (sqlx's Any takes text and integers).
enum Arg {
    Text(String),
    Int(i64),
}

impl Filter {
    /// The WHERE clause (without the cursor) and its arguments, from `$1`.
    fn clause(&self, scope: Scope) -> (String, Vec<Arg>) {
        let mut conditions = Vec::new();
        let mut args = Vec::new();
        let bind = |condition: &str, arg: Arg, args: &mut Vec<Arg>| {
            args.push(arg);
            condition.replace('?', &format!("${}", args.len()))
        };
        conditions.push(match scope {
            Scope::Workflow(w) => bind("workflow_id = ?", Arg::Text(w.to_string()), &mut args),
            Scope::Workspace(w) => bind("workspace_id = ?", Arg::Text(w.to_string()), &mut args),
        });
        if !self.statuses.is_empty() {
            let placeholders: Vec<String> = self
                .statuses
                .iter()
                .map(|s| bind("?", Arg::Text(s.as_str().into()), &mut args))
                .collect();
            conditions.push(format!("status IN ({})", placeholders.join(", ")));
        }
        if let Some(t) = &self.trigger {
            conditions.push(bind(
                "trigger_kind = ?",
                Arg::Text(t.as_str().to_string()),
                &mut args,
            ));
        }
        if let Some(w) = self.workflow {
            conditions.push(bind("workflow_id = ?", Arg::Text(w.to_string()), &mut args));
        }
        if let Some(t) = self.created_from {
            conditions.push(bind("created_at >= ?", Arg::Int(t), &mut args));
        }
        if let Some(t) = self.created_before {
            conditions.push(bind("created_at < ?", Arg::Int(t), &mut args));
        }
        (conditions.join(" AND "), args)
    }
}

fn bound<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

impl Store {
    /// Up to `first` executions matching `filter` in `scope`, newest first,
    /// after the execution `after`.
    pub async fn list(
        &self,
        scope: Scope,
        filter: &Filter,
        first: i64,
        after: Option<Uuid>,
    ) -> Result<Page<Execution>, ApiError> {
        let (clause, args) = filter.clause(scope);
        let n = args.len();
        let page_sql = format!(
            "SELECT {COLUMNS} FROM executions WHERE {clause} AND (${} = '' OR id < ${}) \
             ORDER BY id DESC LIMIT ${}",
            n + 1,
            n + 1,
            n + 2
        );
        let rows = bound(sqlx::query(&page_sql), &args)
            // No cursor: the empty string disables the condition.
            .bind(after.map(|a| a.to_string()).unwrap_or_default())
            .bind(first + 1)
            .fetch_all(self.db().pool())
            .await?;
        let count_sql = format!("SELECT COUNT(*) AS n FROM executions WHERE {clause}");
        let total: i64 = bound(sqlx::query(&count_sql), &args)
            .fetch_one(self.db().pool())
            .await?
            .try_get("n")?;
        let items = rows
            .iter()
            .map(execution_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::cut(items, first, total))
    }
}
