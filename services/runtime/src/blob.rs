//! Blob storage behind `object_store`: a local directory in embedded mode, any
//! S3-compatible bucket in distributed mode.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use crate::config::Config;

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store misconfigured: {0}")]
    Config(String),
    #[error("blob not found")]
    NotFound,
    #[error("blob store failed: {0}")]
    Store(#[from] object_store::Error),
}

impl Blobs {
    pub fn from_config(config: &Config) -> Result<Self, BlobError> {
        match config.storage.backend.as_str() {
            "local" => {
                let dir = if config.storage.local_path.is_empty() {
                    config.data_dir.join("blobs")
                } else {
                    config.storage.local_path.clone().into()
                };
                std::fs::create_dir_all(&dir).map_err(|e| {
                    BlobError::Config(format!("cannot create {}: {e}", dir.display()))
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| BlobError::Config(e.to_string()))?;
                Ok(Blobs {
                    store: Arc::new(store),
                })
            }
            "s3" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&config.storage.s3_bucket)
                    .with_region(&config.storage.s3_region);
                if !config.storage.s3_endpoint.is_empty() {
                    b = b
                        .with_endpoint(&config.storage.s3_endpoint)
                        .with_allow_http(true);
                }
                let store = b.build().map_err(|e| BlobError::Config(e.to_string()))?;
                Ok(Blobs {
                    store: Arc::new(store),
                })
            }
            other => Err(BlobError::Config(format!(
                "unknown storage backend `{other}`; use `local` or `s3`"
            ))),
        }
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), BlobError> {
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(data))
            .await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob; deleting one that is not there is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
