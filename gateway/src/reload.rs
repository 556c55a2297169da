//! Supergraph hot reload: watch where the supergraph comes from and swap it in when it
//! changes, without dropping in-flight requests (see [`Gateway::reload`]).
//!
//! Why polling: it works the same for a file (including files replaced by a Kubernetes
//! ConfigMap update, which swaps a symlink and is missed by some inotify setups) and for
//! subgraphs, whose SDL can only be asked for. A check is one file read or one `_service`
//! query per subgraph; at the default interval that costs nothing measurable.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::compose::{compose, SubgraphSource};
use crate::gateway::Gateway;

/// Where the supergraph comes from.
#[derive(Debug, Clone)]
pub enum SupergraphSource {
    /// A supergraph SDL file.
    File(PathBuf),
    /// Subgraphs to ask for their SDL (`{ _service { sdl } }`) and compose.
    Subgraphs(Vec<SubgraphEndpoint>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphEndpoint {
    pub name: String,
    pub url: String,
}

/// Why the supergraph could not be obtained; for operators (logs and start-up errors).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read the supergraph file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot get the SDL of subgraph `{name}` from {url}: {reason}")]
    Sdl {
        name: String,
        url: String,
        reason: String,
    },
    #[error(transparent)]
    Compose(#[from] crate::compose::ComposeError),
}

impl SupergraphSource {
    /// Reads the file, or fetches every subgraph's SDL and composes them.
    pub async fn load(&self, client: &reqwest::Client) -> Result<String, SourceError> {
        match self {
            SupergraphSource::File(path) => {
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| SourceError::File {
                        path: path.clone(),
                        source,
                    })
            }
            SupergraphSource::Subgraphs(endpoints) => {
                let mut sources = Vec::with_capacity(endpoints.len());
                for endpoint in endpoints {
                    sources.push(SubgraphSource {
                        name: endpoint.name.clone(),
                        url: endpoint.url.clone(),
                        sdl: fetch_sdl(client, endpoint).await?,
                    });
                }
                Ok(compose(&sources)?)
            }
        }
    }
}

async fn fetch_sdl(
    client: &reqwest::Client,
    endpoint: &SubgraphEndpoint,
) -> Result<String, SourceError> {
    let failed = |reason: String| SourceError::Sdl {
        name: endpoint.name.clone(),
        url: endpoint.url.clone(),
        reason,
    };
    let response: Value = client
        .post(&endpoint.url)
        .json(&json!({"query": "{ _service { sdl } }"}))
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?
        .json()
        .await
        .map_err(|e| failed(e.to_string()))?;
    response["data"]["_service"]["sdl"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| failed(format!("no SDL in the response: {response}")))
}

/// Checks `source` every `every` and reloads `gateway` when the supergraph changed, until
/// `shutdown` resolves. A source that fails or a supergraph that does not load is logged and
/// the gateway keeps serving the last good one.
pub async fn watch(
    gateway: Gateway,
    source: SupergraphSource,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let client = reqwest::Client::builder()
        .timeout(every.max(Duration::from_secs(5)))
        .build()
        .unwrap_or_default();
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate; the gateway was just loaded.
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let supergraph = match source.load(&client).await {
            Ok(supergraph) => supergraph,
            Err(error) => {
                tracing::warn!(%error, "supergraph source unavailable; keeping the current supergraph");
                continue;
            }
        };
        if let Err(error) = gateway.reload(&supergraph) {
            tracing::error!(%error, "new supergraph rejected; keeping the current one");
        }
    }
}
