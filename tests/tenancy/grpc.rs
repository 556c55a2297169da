//! The rows for every gRPC method of the fleet, called with each caller's own credential
//! (as a service does while serving that caller's request).

use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::proto::analytics::v1::{
    analytics_service_client::AnalyticsServiceClient, GetWorkflowStatsRequest,
};
use flowfleet_runtime::proto::auth::v1::{
    auth_service_client::AuthServiceClient, CheckMembershipRequest, GetUserRequest,
    ListMembersRequest, VerifyApiKeyRequest,
};
use flowfleet_runtime::proto::execution::v1::{
    execution_service_client::ExecutionServiceClient, GetExecutionRequest,
};
use flowfleet_runtime::proto::notification::v1::{
    notification_service_client::NotificationServiceClient, NotifyRequest, SendInvitationRequest,
    SendNotificationRequest,
};
use flowfleet_runtime::proto::privacy::v1::{
    user_data_client::UserDataClient, ExportUserDataRequest,
};
use flowfleet_runtime::proto::storage::v1::{
    put_file_chunk, storage_service_client::StorageServiceClient, GetFileRequest, NewFile,
    PutFileChunk,
};
use flowfleet_runtime::proto::workflow::v1::{
    workflow_service_client::WorkflowServiceClient, GetCredentialValueRequest,
    GetPublishedVersionRequest, ListActiveTriggersRequest, ValidateDefinitionRequest,
    WatchTriggersRequest,
};
use serde_json::json;

use crate::support::in_process::Fleet;
use crate::world::{Caller, Outcome, Who, World};

fn grpc_request<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn grpc_outcome<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    match result {
        Ok(r) => Ok(json!(format!("{:?}", r.into_inner()))),
        Err(status) => Err(format!("{:?}", status.code())),
    }
}

const DENIED: &str = "PermissionDenied";
const NOT_FOUND: &str = "NotFound";

/// gRPC's code for a GraphQL one.
fn grpc_code(code: Option<String>) -> Option<String> {
    code.map(|code| match code.as_str() {
        "FORBIDDEN" => DENIED.to_string(),
        _ => code,
    })
}

/// A method on the workspace that needs `min`.
fn needs(min: Who, caller: Caller, outsider: &str) -> Option<String> {
    grpc_code(crate::world::needs(min, caller, outsider))
}

/// One gRPC row: the call made with `caller`'s own credential, and the expected error.
pub async fn row(
    method: &str,
    fleet: &Fleet,
    w: &World,
    caller: Caller,
) -> (Outcome, Option<String>) {
    let expected = match method {
        // By id: another workspace's workflow, execution or statistics are
        // indistinguishable from missing ones.
        "GetPublishedVersion" | "GetExecution" | "GetWorkflowStats" => {
            needs(Who::Viewer, caller, NOT_FOUND)
        }
        // They name the workspace.
        "GetFile" | "ValidateDefinition" => needs(Who::Viewer, caller, DENIED),
        "SendNotification" | "Notify" | "PutFile" => needs(Who::Editor, caller, DENIED),
        // The engine's view of every workspace, credential values, members' addresses and
        // invitation tokens: services only.
        "ListActiveTriggers" | "WatchTriggers" | "GetCredentialValue" | "ListMembers"
        | "SendInvitation" => Some(DENIED.to_string()),
        // About a person: only that person (or a service) may ask, in a session: an API
        // key reaches one workspace, not its creator's account. Every service answers for
        // its part of a user's data on the same terms.
        "GetUser" | "CheckMembership" | "ExportUserData" => {
            grpc_code(crate::world::self_only(caller, DENIED))
        }
        // The key is the credential: an access token is not a key, and a key verifies
        // as itself.
        "VerifyApiKey" => (!caller.is_key()).then(|| "Unauthenticated".to_string()),
        other => panic!("no matrix row for the gRPC method `{other}`: add one"),
    };
    let credential = w.credential_of(caller);
    (call(method, fleet, w, Some(&credential)).await, expected)
}

/// Every `rpc` of every service in `proto/`.
pub fn methods() -> std::collections::BTreeSet<String> {
    let mut methods = std::collections::BTreeSet::new();
    let services = ServiceName::ALL.iter().map(|s| s.as_str());
    for s in services.chain(["privacy"]) {
        let path = format!(
            "{}/proto/flowfleet/{s}/v1/{s}.proto",
            env!("CARGO_MANIFEST_DIR")
        );
        for line in std::fs::read_to_string(path).unwrap().lines() {
            if let Some(rest) = line.trim().strip_prefix("rpc ") {
                methods.insert(rest.split('(').next().unwrap().trim().to_string());
            }
        }
    }
    methods
}

/// A gRPC method called with `credential` (or none), on the world's resources.
pub async fn call(method: &str, fleet: &Fleet, w: &World, credential: Option<&str>) -> Outcome {
    let ws = w.workspace.clone();
    match method {
        "GetPublishedVersion" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .get_published_version(grpc_request(
                    GetPublishedVersionRequest {
                        workflow_id: w.workflow.clone(),
                        version: 0,
                    },
                    credential,
                ))
                .await,
        ),
        "ValidateDefinition" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .validate_definition(grpc_request(
                    ValidateDefinitionRequest {
                        workspace_id: ws,
                        definition_json: r#"{"nodes": [{"id": "a", "type": "passthrough"}]}"#
                            .into(),
                    },
                    credential,
                ))
                .await,
        ),
        "ListActiveTriggers" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .list_active_triggers(grpc_request(ListActiveTriggersRequest {}, credential))
                .await,
        ),
        "WatchTriggers" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .watch_triggers(grpc_request(WatchTriggersRequest { cursor: 0 }, credential))
                .await
                .map(|r| r.map(|_| "a stream")),
        ),
        "GetCredentialValue" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .get_credential_value(grpc_request(
                    GetCredentialValueRequest {
                        credential_id: w.credential.clone(),
                        workspace_id: ws,
                    },
                    credential,
                ))
                .await,
        ),
        "GetExecution" => grpc_outcome(
            ExecutionServiceClient::new(fleet.channel(ServiceName::Execution))
                .get_execution(grpc_request(
                    GetExecutionRequest {
                        execution_id: w.execution.clone(),
                    },
                    credential,
                ))
                .await,
        ),
        "GetWorkflowStats" => grpc_outcome(
            AnalyticsServiceClient::new(fleet.channel(ServiceName::Analytics))
                .get_workflow_stats(grpc_request(
                    GetWorkflowStatsRequest {
                        workflow_id: w.workflow.clone(),
                        ..Default::default()
                    },
                    credential,
                ))
                .await,
        ),
        "SendNotification" => grpc_outcome(
            NotificationServiceClient::new(fleet.channel(ServiceName::Notification))
                .send_notification(grpc_request(
                    SendNotificationRequest {
                        workspace_id: ws,
                        recipient_id: w.people[&Who::Viewer].id.clone(),
                        channel: "IN_APP".into(),
                        subject: "s".into(),
                        body: "b".into(),
                    },
                    credential,
                ))
                .await,
        ),
        "Notify" => grpc_outcome(
            NotificationServiceClient::new(fleet.channel(ServiceName::Notification))
                .notify(grpc_request(
                    NotifyRequest {
                        workspace_id: ws,
                        source: format!("tenancy:{}", uuid::Uuid::now_v7()),
                        member_ids: vec![w.people[&Who::Viewer].id.clone()],
                        subject: "s".into(),
                        in_app: true,
                        ..NotifyRequest::default()
                    },
                    credential,
                ))
                .await,
        ),
        "SendInvitation" => grpc_outcome(
            NotificationServiceClient::new(fleet.channel(ServiceName::Notification))
                .send_invitation(grpc_request(
                    SendInvitationRequest {
                        workspace_id: ws,
                        email: "invitee@example.com".into(),
                        token: "inv_x".into(),
                        invitation_id: uuid::Uuid::now_v7().to_string(),
                        ..SendInvitationRequest::default()
                    },
                    credential,
                ))
                .await,
        ),
        "ListMembers" => grpc_outcome(
            AuthServiceClient::new(fleet.channel(ServiceName::Auth))
                .list_members(grpc_request(
                    ListMembersRequest { workspace_id: ws },
                    credential,
                ))
                .await,
        ),
        "PutFile" => grpc_outcome(
            StorageServiceClient::new(fleet.channel(ServiceName::Storage))
                .put_file(grpc_request(
                    futures::stream::iter([
                        PutFileChunk {
                            part: Some(put_file_chunk::Part::Metadata(NewFile {
                                workspace_id: ws,
                                owner_id: w.people[&Who::Owner].id.clone(),
                                name: "a.txt".into(),
                                content_type: "text/plain".into(),
                                size: 1,
                                ..NewFile::default()
                            })),
                        },
                        PutFileChunk {
                            part: Some(put_file_chunk::Part::Content(b"x".to_vec())),
                        },
                    ]),
                    credential,
                ))
                .await,
        ),
        "GetFile" => grpc_outcome(
            StorageServiceClient::new(fleet.channel(ServiceName::Storage))
                .get_file(grpc_request(
                    GetFileRequest {
                        file_id: w.file.clone(),
                        workspace_id: ws,
                    },
                    credential,
                ))
                .await,
        ),
        "GetUser" => grpc_outcome(
            AuthServiceClient::new(fleet.channel(ServiceName::Auth))
                .get_user(grpc_request(
                    GetUserRequest {
                        user_id: w.people[&Who::Owner].id.clone(),
                    },
                    credential,
                ))
                .await,
        ),
        "CheckMembership" => grpc_outcome(
            AuthServiceClient::new(fleet.channel(ServiceName::Auth))
                .check_membership(grpc_request(
                    CheckMembershipRequest {
                        user_id: w.people[&Who::Owner].id.clone(),
                        workspace_id: ws,
                    },
                    credential,
                ))
                .await,
        ),
        // Every service's part: the first refusal, if any.
        "ExportUserData" => {
            for service in ServiceName::ALL {
                let answer = grpc_outcome(
                    UserDataClient::new(fleet.channel(service))
                        .export_user_data(grpc_request(
                            ExportUserDataRequest {
                                user_id: w.people[&Who::Owner].id.clone(),
                            },
                            credential,
                        ))
                        .await,
                );
                answer?;
            }
            Ok(json!("every service"))
        }
        "VerifyApiKey" => grpc_outcome(
            AuthServiceClient::new(fleet.channel(ServiceName::Auth))
                .verify_api_key(grpc_request(
                    VerifyApiKeyRequest {
                        key: credential.unwrap_or_default().to_string(),
                    },
                    credential,
                ))
                .await,
        ),

        other => panic!("no anonymous row for the gRPC method `{other}`: add one"),
    }
}
