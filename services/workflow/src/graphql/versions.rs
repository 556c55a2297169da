//! Publishing a draft as an immutable version, and rolling back by
//! re-publishing an older one. Both validate first: any ERROR problem refuses
//! with `BAD_USER_INPUT` and every problem in `extensions.problems`.

use async_graphql::{Context, Object, Result, ID};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::error::ApiError;
use flowfleet_security::identity::Role;

use super::{Ctx, WorkflowVersion};
use crate::domain::{self, Change};

#[derive(Default)]
pub struct VersionMutation;

#[Object]
impl VersionMutation {
    /// Validates the draft and freezes it as the next version (EDITOR or
    /// above); the workflow becomes ACTIVE with that version's triggers live.
    /// Emits `workflow.published`.
    #[tracing::instrument(skip_all)]
    async fn publish_workflow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_revision: Option<i64>,
    ) -> Result<WorkflowVersion> {
        let c = ctx.data::<Ctx>()?;
        let me = caller(ctx).require()?.clone();
        let w = c.authorized(ctx, &id, Role::Editor).await?;
        Ctx::check_revision(&w, expected_revision)?;
        w.allows(Change::Publish)?;
        domain::check_publishable(&c.store.validate(w.workspace_id, &w.definition).await?)?;
        let (published, v) = c
            .store
            .publish(&w, &w.definition, None, me.user_id, c.clock.now_ms())
            .await?;
        c.relay.wake();
        Ok(WorkflowVersion::new(published, v))
    }

    /// Re-publishes version `version` as the next version (EDITOR or above),
    /// so executions run it again. The draft is left as it is. The old
    /// definition is validated again: a credential deleted since refuses it.
    #[tracing::instrument(skip_all)]
    async fn rollback_workflow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        version: i64,
        expected_revision: Option<i64>,
    ) -> Result<WorkflowVersion> {
        let c = ctx.data::<Ctx>()?;
        let me = caller(ctx).require()?.clone();
        let w = c.authorized(ctx, &id, Role::Editor).await?;
        Ctx::check_revision(&w, expected_revision)?;
        w.allows(Change::RollBack)?;
        let old =
            c.store.version_of(w.id, version).await?.ok_or_else(|| {
                ApiError::not_found(format!("the workflow has no version {version}"))
            })?;
        domain::check_publishable(&c.store.validate(w.workspace_id, &old.definition).await?)?;
        let (published, v) = c
            .store
            .publish(
                &w,
                &old.definition,
                Some(version),
                me.user_id,
                c.clock.now_ms(),
            )
            .await?;
        c.relay.wake();
        Ok(WorkflowVersion::new(published, v))
    }
}
