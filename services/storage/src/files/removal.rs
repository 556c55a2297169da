//! Deleting files: one at a user's request, a workspace's when it is erased, and
//! artifacts past their workspace's retention policy by the cleanup job.
//!
//! The cleanup job runs on every replica, but each period (`storage.cleanup_interval_secs`)
//! is claimed by one: the replica whose insert of the period's row wins runs it. A
//! replica that dies mid-run leaves that period's work to the next, which finds the same
//! files past their policy. The job also sweeps staging blobs older than a day (uploads
//! whose process died before finishing).

use std::time::Duration;

use flowfleet_runtime::error::ApiError;
use flowfleet_security::access::{Principal, Target};
use flowfleet_security::identity::Role;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Files, MISSING};
use crate::domain::{StoredFile, STAGING_PREFIX};

/// Staging blobs older than this belong to uploads that will never finish.
const STAGING_MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// Files deleted per policy and run, so that one run stays short.
const BATCH: i64 = 1000;

/// What one run of the cleanup job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupReport {
    /// Whether this replica ran the period (another may have claimed it).
    pub ran: bool,
    pub deleted_files: u64,
    pub swept_staging: u64,
}

impl Files {
    /// Deletes a file (EDITOR or above). Its blob goes too when no other file shares it.
    pub async fn delete(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        id: Uuid,
    ) -> Result<StoredFile, ApiError> {
        self.access
            .authorize(who, workspace, Role::Editor, Target::Resource(MISSING))
            .await?;
        self.remove(workspace, id, "deleted")
            .await?
            .ok_or_else(|| ApiError::not_found(MISSING))
    }

    /// Removes the file and, if it was the blob's last file, the blob, in one
    /// transaction (see [`crate::store::changes`]).
    pub(crate) async fn remove(
        &self,
        workspace: Uuid,
        id: Uuid,
        reason: &str,
    ) -> Result<Option<StoredFile>, ApiError> {
        let mut change = self.store.begin().await?;
        let Some(file) = change
            .remove_file(workspace, id, reason, self.now_ms())
            .await?
        else {
            return Ok(None);
        };
        if change.release_blob(&file.blob_key).await? {
            self.blobs
                .delete(&file.blob_key)
                .await
                .map_err(ApiError::internal)?;
        }
        change.commit().await?;
        self.relay.wake();
        Ok(Some(file))
    }

    /// Deletes every file of the workspace (account erasure).
    pub(crate) async fn erase_workspace_files(&self, workspace: Uuid) -> Result<(), ApiError> {
        for id in self.store.workspace_file_ids(workspace).await? {
            self.remove(workspace, id, "workspace erased").await?;
        }
        Ok(())
    }

    /// Runs the cleanup for the current period if no replica has yet.
    #[tracing::instrument(skip_all)]
    pub async fn cleanup(&self) -> Result<CleanupReport, ApiError> {
        let now = self.now_ms();
        let period = now.div_euclid(self.config.cleanup_interval_ms.max(1));
        if !self
            .store
            .claim_cleanup(period, &self.config.replica, now)
            .await?
        {
            return Ok(CleanupReport::default());
        }
        let mut report = CleanupReport {
            ran: true,
            ..CleanupReport::default()
        };
        for (workspace, policy) in self.store.retention_policies().await? {
            let mut doomed = Vec::new();
            if let Some(cutoff) = policy.cutoff_ms(now) {
                doomed.extend(
                    self.store
                        .artifacts_before(workspace, cutoff, BATCH)
                        .await?,
                );
            }
            if let Some(keep) = policy.keep_last {
                doomed.extend(self.store.artifacts_beyond(workspace, keep, BATCH).await?);
            }
            doomed.sort();
            doomed.dedup();
            for id in doomed {
                if self.remove(workspace, id, "retention").await?.is_some() {
                    report.deleted_files += 1;
                }
            }
        }
        let stale = self
            .blobs
            .older_than(STAGING_PREFIX, now - STAGING_MAX_AGE_MS)
            .await
            .map_err(ApiError::internal)?;
        for key in stale {
            self.blobs.delete(&key).await.map_err(ApiError::internal)?;
            report.swept_staging += 1;
        }
        self.store
            .finish_cleanup(period, report.deleted_files, self.now_ms())
            .await?;
        tracing::info!(
            deleted = report.deleted_files,
            swept = report.swept_staging,
            "storage cleanup ran"
        );
        Ok(report)
    }

    /// Runs [`cleanup`](Self::cleanup) every tenth of the period until `shutdown`
    /// (a period is claimed once, so checking often only shortens the wait after a
    /// replica that held it died).
    pub async fn run_cleanup(self, shutdown: CancellationToken) {
        let tick = Duration::from_millis((self.config.cleanup_interval_ms / 10).max(100) as u64);
        loop {
            if let Err(e) = self.cleanup().await {
                tracing::warn!(error = %e.message, "storage cleanup failed; retrying next tick");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}
