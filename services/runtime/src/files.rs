//! Files over the storage service's gRPC streams, for its clients (workers storing
//! outputs and artifacts): content goes and comes in [`CHUNK_BYTES`] messages, so a
//! file is never one message, whatever its size.

use bytes::Bytes;
use futures::StreamExt;
use tonic::Status;

use crate::grpc::GrpcChannel;
use crate::proto::storage::v1::file_chunk::Part as GotPart;
use crate::proto::storage::v1::put_file_chunk::Part as PutPart;
use crate::proto::storage::v1::storage_service_client::StorageServiceClient;
use crate::proto::storage::v1::{File, GetFileRequest, NewFile, PutFileChunk};

/// The largest content chunk a message carries.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Stores `content` as the file `metadata` describes (its `size` is filled in).
pub async fn put(
    client: &mut StorageServiceClient<GrpcChannel>,
    mut metadata: NewFile,
    content: Bytes,
) -> Result<File, Status> {
    metadata.size = content.len() as i64;
    let chunks: Vec<Bytes> = (0..content.len())
        .step_by(CHUNK_BYTES)
        .map(|start| content.slice(start..(start + CHUNK_BYTES).min(content.len())))
        .collect();
    let messages = std::iter::once(PutPart::Metadata(metadata))
        .chain(chunks.into_iter().map(|c| PutPart::Content(c.to_vec())))
        .map(|part| PutFileChunk { part: Some(part) });
    Ok(client
        .put_file(futures::stream::iter(messages))
        .await?
        .into_inner())
}

/// Reads a whole file of `workspace`, refusing one larger than `max_bytes` before
/// reading its content.
pub async fn get(
    client: &mut StorageServiceClient<GrpcChannel>,
    workspace: &str,
    file_id: &str,
    max_bytes: u64,
) -> Result<(File, Vec<u8>), Status> {
    let mut stream = client
        .get_file(GetFileRequest {
            file_id: file_id.to_string(),
            workspace_id: workspace.to_string(),
        })
        .await?
        .into_inner();
    let file = match stream.next().await.transpose()?.and_then(|c| c.part) {
        Some(GotPart::File(file)) => file,
        _ => {
            return Err(Status::internal(
                "the storage service sent content before the file",
            ))
        }
    };
    if file.size as u64 > max_bytes {
        return Err(Status::resource_exhausted(format!(
            "the file has {} bytes, more than the {max_bytes} that can be read here",
            file.size
        )));
    }
    let mut content = Vec::with_capacity(file.size.max(0) as usize);
    while let Some(chunk) = stream.next().await.transpose()? {
        if let Some(GotPart::Content(bytes)) = chunk.part {
            content.extend_from_slice(&bytes);
        }
    }
    if content.len() as i64 != file.size {
        return Err(Status::data_loss(format!(
            "the file has {} bytes but {} arrived",
            file.size,
            content.len()
        )));
    }
    Ok((file, content))
}
