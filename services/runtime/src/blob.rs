//! Blob storage behind `object_store`: a local directory in embedded mode, any
//! S3-compatible bucket in distributed mode.
//!
//! Large content never sits in memory whole: [`BlobWriter`] sends it as a multipart
//! upload in parts ([`PART_BYTES`] on S3, [`LOCAL_PART_BYTES`] on a local disk; at most
//! [`PARTS_IN_FLIGHT`] at a time, so a writer holds a bounded amount whatever the size), and [`Blobs::read`] returns a stream of a
//! blob or of a byte range of it.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, PutPayload, WriteMultipart,
};

/// Size of a multipart upload's parts (S3's minimum for all but the last part).
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Size of the parts written to a local directory, which takes parts of any size: a
/// smaller part keeps less of an upload in memory (`flowfleet dev` holds every service).
pub const LOCAL_PART_BYTES: usize = 512 * 1024;
/// Parts uploaded at once by one writer.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The chunks a local file is read in (`object_store` reads 8 KiB at a time, which
/// caps a download far below what a disk and a socket can do).
const LOCAL_READ_BYTES: usize = 256 * 1024;

/// A blob's content as it is read.
pub type BlobStream = BoxStream<'static, Result<Bytes, BlobError>>;

use crate::config::Config;

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The size of a [`BlobWriter`]'s parts in this store.
    part_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store misconfigured: {0}")]
    Config(String),
    #[error("blob not found")]
    NotFound,
    #[error("reading a blob failed: {0}")]
    Io(String),
    #[error("blob store failed: {0}")]
    Store(#[from] object_store::Error),
}

impl Blobs {
    /// Blobs in `store` (tests wrap a real store, e.g. to slow one operation down).
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Blobs {
            store,
            part_bytes: PART_BYTES,
        }
    }

    /// The store behind (tests wrap it).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

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
                    part_bytes: LOCAL_PART_BYTES,
                })
            }
            "s3" => {
                let s3 = &config.storage;
                if s3.s3_bucket.is_empty() {
                    return Err(BlobError::Config(
                        "storage.s3_bucket is empty; name the bucket to store files in".into(),
                    ));
                }
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.s3_bucket)
                    .with_region(&s3.s3_region);
                if !s3.s3_endpoint.is_empty() {
                    b = b.with_endpoint(&s3.s3_endpoint).with_allow_http(true);
                }
                if !s3.s3_access_key_id.is_empty() {
                    b = b
                        .with_access_key_id(&s3.s3_access_key_id)
                        .with_secret_access_key(&s3.s3_secret_access_key);
                }
                let store = b.build().map_err(|e| BlobError::Config(e.to_string()))?;
                Ok(Blobs {
                    part_bytes: PART_BYTES,
                    store: if s3.s3_prefix.is_empty() {
                        Arc::new(store)
                    } else {
                        Arc::new(object_store::prefix::PrefixStore::new(
                            store,
                            s3.s3_prefix.as_str(),
                        ))
                    },
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

    /// Starts writing the blob `key` in parts; nothing is visible under `key` until
    /// [`BlobWriter::finish`] succeeds.
    pub async fn writer(&self, key: &str) -> Result<BlobWriter, BlobError> {
        let upload = self.store.put_multipart(&ObjectPath::from(key)).await?;
        Ok(BlobWriter {
            inner: WriteMultipart::new_with_chunk_size(upload, self.part_bytes),
            part: BytesMut::new(),
            part_bytes: self.part_bytes,
        })
    }

    /// Streams the blob, or the bytes `range` of it (which the caller has checked
    /// against the blob's size).
    pub async fn read(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, BlobError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self.store.get_opts(&ObjectPath::from(key), options).await {
            Ok(r) => match r.payload {
                GetResultPayload::File(file, _) => {
                    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
                    let (start, len) = (r.range.start, r.range.end - r.range.start);
                    let mut file = tokio::fs::File::from_std(file);
                    file.seek(std::io::SeekFrom::Start(start))
                        .await
                        .map_err(|e| BlobError::Io(format!("{key}: {e}")))?;
                    let reader = file.take(len);
                    Ok(
                        tokio_util::io::ReaderStream::with_capacity(reader, LOCAL_READ_BYTES)
                            .map(|c| c.map_err(|e| BlobError::Io(e.to_string())))
                            .boxed(),
                    )
                }
                GetResultPayload::Stream(stream) => {
                    Ok(stream.map(|c| c.map_err(BlobError::from)).boxed())
                }
            },
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a blob to `to`, replacing what is there (a copy and a delete on S3).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError> {
        self.store
            .rename(&ObjectPath::from(from), &ObjectPath::from(to))
            .await?;
        Ok(())
    }

    /// Keys under `prefix` last modified before `before_ms` (Unix milliseconds).
    pub async fn older_than(&self, prefix: &str, before_ms: i64) -> Result<Vec<String>, BlobError> {
        let mut listing = self.store.list(Some(&ObjectPath::from(prefix)));
        let mut keys = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if meta.last_modified.timestamp_millis() < before_ms {
                keys.push(meta.location.to_string());
            }
        }
        Ok(keys)
    }

    /// Deletes a blob; deleting one that is not there is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A blob being written; dropped without [`finish`](Self::finish), it leaves nothing
/// under its key (call [`abort`](Self::abort) to also free the parts already sent).
///
/// Chunks are copied into one contiguous part buffer rather than handed to
/// `object_store` as they come: a received chunk is usually a slice of a larger network
/// buffer, and keeping hundreds of them alive per part pinned those buffers and left the
/// allocator with scattered, half-used pages (the storage service's memory grew by tens of
/// MiB during a large upload). One buffer of at most a part's size is freed
/// whole once the part is sent.
pub struct BlobWriter {
    inner: WriteMultipart,
    part: BytesMut,
    part_bytes: usize,
}

/// The first capacity of a part buffer: small files stay small, large ones double up
/// to the part size.
const FIRST_PART_CAPACITY: usize = 64 * 1024;

impl BlobWriter {
    /// Adds `chunk`, waiting while [`PARTS_IN_FLIGHT`] parts are being uploaded.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let take = rest.len().min(self.part_bytes - self.part.len());
            let needed = self.part.len() + take;
            if needed > self.part.capacity() {
                let grown = (self.part.capacity() * 2)
                    .max(FIRST_PART_CAPACITY)
                    .max(needed)
                    .min(self.part_bytes);
                self.part.reserve(grown - self.part.len());
            }
            self.part.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.part.len() == self.part_bytes {
                self.inner.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                let full =
                    std::mem::replace(&mut self.part, BytesMut::with_capacity(self.part_bytes));
                self.inner.put(full.freeze());
            }
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), BlobError> {
        if !self.part.is_empty() {
            self.inner.put(std::mem::take(&mut self.part).freeze());
        }
        self.inner.finish().await?;
        Ok(())
    }

    pub async fn abort(self) -> Result<(), BlobError> {
        self.inner.abort().await?;
        Ok(())
    }
}
