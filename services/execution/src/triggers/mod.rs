//! Triggers that start executions without a user at the keyboard: cron
//! schedules ([`cron`]), webhooks ([`webhook`]) and events ([`events`]). All follow
//! the workflow service's feed of live triggers ([`Live`]): the list, then every
//! change as it commits, so publishing, archiving or deleting a workflow starts or
//! stops its triggers within moments, in every replica.

pub mod cron;
pub mod events;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use flowfleet_runtime::proto::workflow::v1::{
    ListActiveTriggersRequest, WatchTriggersRequest, WorkflowTriggers,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The live triggers of every workflow, kept current from the feed.
#[derive(Clone)]
pub struct Live {
    workflows: Arc<RwLock<HashMap<Uuid, WorkflowTriggers>>>,
    /// Whether the list was loaded once (until then, an empty map says nothing).
    loaded: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            workflows: Default::default(),
            loaded: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl Live {
    /// Waits at most `wait` for the list to be loaded once; whether it is. An event
    /// handled before would find no workflow to start, and be lost.
    pub async fn loaded(&self, wait: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        tokio::time::timeout(wait, loaded.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The live triggers of one workflow, if any.
    pub fn of(&self, workflow: Uuid) -> Option<WorkflowTriggers> {
        self.workflows
            .read()
            .expect("never poisoned: no panics while held")
            .get(&workflow)
            .cloned()
    }

    /// Every workflow with live triggers.
    pub fn all(&self) -> Vec<WorkflowTriggers> {
        self.workflows
            .read()
            .expect("never poisoned: no panics while held")
            .values()
            .cloned()
            .collect()
    }

    fn apply(&self, w: WorkflowTriggers) {
        let Ok(id) = w.workflow_id.parse::<Uuid>() else {
            return;
        };
        let mut all = self
            .workflows
            .write()
            .expect("never poisoned: no panics while held");
        if w.triggers.is_empty() {
            all.remove(&id);
        } else {
            all.insert(id, w);
        }
    }

    fn replace(&self, list: Vec<WorkflowTriggers>) {
        let mut all = self
            .workflows
            .write()
            .expect("never poisoned: no panics while held");
        all.clear();
        for w in list {
            if let Ok(id) = w.workflow_id.parse::<Uuid>() {
                all.insert(id, w);
            }
        }
        self.loaded.send_replace(true);
    }

    /// Follows the feed until `shutdown`: lists, then watches from the list's
    /// cursor; when the stream breaks, lists again after a pause (which also
    /// catches up on anything missed meanwhile).
    #[tracing::instrument(name = "follow triggers", skip_all)]
    pub async fn follow(
        self,
        workflows: WorkflowServiceClient<GrpcChannel>,
        shutdown: CancellationToken,
    ) {
        let mut pause = Duration::from_millis(200);
        loop {
            let began = std::time::Instant::now();
            let followed = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.follow_once(workflows.clone()) => r,
            };
            if began.elapsed() > Duration::from_secs(30) {
                pause = Duration::from_millis(200); // it worked for a while
            }
            if let Err(status) = followed {
                tracing::warn!(error = %status.message(), "the trigger feed broke; listing again");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    async fn follow_once(
        &self,
        mut workflows: WorkflowServiceClient<GrpcChannel>,
    ) -> Result<(), tonic::Status> {
        let list = workflows
            .list_active_triggers(ListActiveTriggersRequest {})
            .await?
            .into_inner();
        self.replace(list.workflows);
        let mut stream = workflows
            .watch_triggers(WatchTriggersRequest {
                cursor: list.cursor,
            })
            .await?
            .into_inner();
        while let Some(change) = stream.message().await? {
            self.apply(change);
        }
        Ok(())
    }
}
