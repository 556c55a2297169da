//! The storage service's gRPC server: workers store step outputs and artifacts
//! here and read them back. Services may store and read any workspace's files; a user
//! whose request a service serves needs EDITOR to store and VIEWER to read. A file is
//! only returned for the workspace it belongs to.

use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::proto::storage::v1::storage_service_server::StorageService;
use flowfleet_runtime::proto::storage::v1::{File, FileContent, GetFileRequest, PutFileRequest};
use tonic::{Request, Response, Status};

use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;
use flowfleet_security::service_auth::GrpcGuard;

use crate::domain::{ContentType, FileName, StoredFile};
use crate::files::{Files, NewFile};

pub struct StorageGrpc {
    pub files: Files,
    pub guard: GrpcGuard,
    pub access: Access,
}

fn to_proto(f: &StoredFile) -> File {
    File {
        id: f.id.to_string(),
        workspace_id: f.workspace_id.to_string(),
        name: f.name.clone(),
        content_type: f.content_type.clone(),
        size: f.size,
        sha256: f.sha256.clone(),
    }
}

#[tonic::async_trait]
impl StorageService for StorageGrpc {
    #[tracing::instrument(skip_all)]
    async fn put_file(&self, request: Request<PutFileRequest>) -> Result<Response<File>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.into_inner();
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        self.access
            .authorize(&caller, workspace, Role::Editor, Target::Workspace)
            .await?;
        self.files
            .check_size(r.content.len() as u64)
            .map_err(|e| Status::invalid_argument(e.message()))?;
        let new = NewFile {
            workspace_id: workspace,
            owner_id: parse_id("owner_id", &r.owner_id)?,
            execution_id: if r.execution_id.is_empty() {
                None
            } else {
                Some(parse_id("execution_id", &r.execution_id)?)
            },
            name: FileName::parse(&r.name)?,
            content_type: ContentType::parse(&r.content_type)?,
        };
        let file = self.files.put(new, r.content.into()).await?;
        Ok(Response::new(to_proto(&file)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_file(
        &self,
        request: Request<GetFileRequest>,
    ) -> Result<Response<FileContent>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.get_ref();
        let id = parse_id("file_id", &r.file_id)?;
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        self.access
            .authorize(&caller, workspace, Role::Viewer, Target::Workspace)
            .await?;
        // Another workspace's file is indistinguishable from a missing one.
        let file = self
            .files
            .file(id)
            .await?
            .filter(|f| f.workspace_id == workspace)
            .ok_or_else(|| ApiError::not_found("no such file in this workspace"))?;
        let content = self.files.content(&file).await?;
        Ok(Response::new(FileContent {
            file: Some(to_proto(&file)),
            content: content.to_vec(),
        }))
    }
}
