//! The analytics subgraph: `Workspace.analytics` (contributed to the auth service's
//! entity, with the workspace's time zone `@requires`d from it) and `Workflow.stats`
//! (contributed to the workflow service's entity). Resolvers parse, call a use case of
//! [`crate::dashboards`] and map its answer.

mod types;
mod workflow;
mod workspace;

use async_graphql::{Context, Object, ID};
use std::sync::Arc;

use flowfleet_runtime::clock::Clock;

use crate::dashboards::Dashboards;
pub use types::*;
pub use workflow::WorkflowRef;
pub use workspace::WorkspaceRef;

pub type AnalyticsSchema =
    async_graphql::Schema<Query, async_graphql::EmptyMutation, async_graphql::EmptySubscription>;

/// What resolvers need, placed in the schema's data.
pub struct Ctx {
    pub dashboards: Dashboards,
    pub clock: Arc<dyn Clock>,
}

pub fn schema(ctx: Ctx) -> AnalyticsSchema {
    async_graphql::Schema::build(
        Query,
        async_graphql::EmptyMutation,
        async_graphql::EmptySubscription,
    )
    .enable_federation()
    .data(ctx)
    .finish()
}

pub struct Query;

#[Object]
impl Query {
    /// Resolves a `Workflow` reference without I/O: statistics are computed
    /// (and authorised) when `stats` is selected.
    #[graphql(entity)]
    async fn find_workflow_by_id(&self, id: ID) -> WorkflowRef {
        WorkflowRef { id }
    }

    /// Resolves a `Workspace` reference without I/O; `analytics` checks the caller.
    #[graphql(entity)]
    async fn find_workspace_by_id(
        &self,
        #[graphql(key)] id: ID,
        time_zone: Option<String>,
    ) -> WorkspaceRef {
        WorkspaceRef {
            id,
            time_zone: time_zone.unwrap_or_default(),
        }
    }
}

/// The clock of the schema's context.
pub(crate) fn now(ctx: &Context<'_>) -> async_graphql::Result<i64> {
    Ok(ctx.data::<Ctx>()?.clock.now_ms())
}
