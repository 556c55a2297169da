//! Verifying API keys in every service: the auth service answers who a key acts for over
//! gRPC, and the answer is cached for a few seconds (in Redis when configured, shared by
//! replicas) so a busy integration does not cost a round trip per request. Revoking a key
//! deletes its cached answer, so revocation takes effect at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::{
    api_key_hash, invalid_api_key as invalid, ApiKeyScope, ApiKeySource, Identity, Role,
    API_KEY_PREFIX,
};
use flowfleet_runtime::cache::Cache;
use flowfleet_runtime::error::{ApiError, ErrorCode};
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::auth::v1::{
    auth_service_client::AuthServiceClient, VerifyApiKeyRequest,
};

const TTL: Duration = Duration::from_secs(5);

/// Where a key's verification is cached, by the key's hash (never the key itself).
pub fn api_key_cache_key(key_hash: &str) -> String {
    format!("apikey:{key_hash}")
}

#[derive(Serialize, Deserialize)]
struct Cached {
    key_id: Uuid,
    workspace: Uuid,
    role: Role,
    user: Uuid,
    email: String,
}

/// Asks the auth service, with a short shared cache.
pub struct GrpcApiKeys {
    client: AuthServiceClient<GrpcChannel>,
    cache: Arc<dyn Cache>,
}

impl GrpcApiKeys {
    pub fn new(auth: GrpcChannel, cache: Arc<dyn Cache>) -> Self {
        GrpcApiKeys {
            client: AuthServiceClient::new(auth),
            cache,
        }
    }
}

fn identity(c: Cached) -> Identity {
    Identity {
        user_id: c.user,
        email: c.email,
        api_key: Some(ApiKeyScope {
            key_id: c.key_id,
            workspace: c.workspace,
            role: c.role,
        }),
    }
}

#[async_trait]
impl ApiKeySource for GrpcApiKeys {
    async fn verify(&self, key: &str) -> Result<Identity, ApiError> {
        if !key.starts_with(API_KEY_PREFIX) || key.len() > 200 {
            return Err(invalid());
        }
        let cache_key = api_key_cache_key(&api_key_hash(key));
        if let Ok(Some(v)) = self.cache.get(&cache_key).await {
            return match serde_json::from_slice::<Cached>(&v) {
                Ok(c) => Ok(identity(c)),
                Err(_) => Err(invalid()),
            };
        }
        let reply = self
            .client
            .clone()
            .verify_api_key(VerifyApiKeyRequest {
                key: key.to_string(),
            })
            .await;
        let cached = match reply {
            Ok(r) => {
                let r = r.into_inner();
                let parsed = (|| {
                    Some(Cached {
                        key_id: r.key_id.parse().ok()?,
                        workspace: r.workspace_id.parse().ok()?,
                        role: Role::parse(&r.role)?,
                        user: r.user_id.parse().ok()?,
                        email: r.email,
                    })
                })();
                parsed.ok_or_else(|| {
                    ApiError::internal("the auth service sent a bad API key identity")
                })?
            }
            Err(status) => {
                let error = ApiError::from(status);
                if error.code == ErrorCode::Unauthenticated {
                    // Cached too, so garbage keys cannot hammer the auth service.
                    let _ = self.cache.set(&cache_key, b"-", TTL).await;
                    return Err(invalid());
                }
                return Err(error);
            }
        };
        if let Ok(bytes) = serde_json::to_vec(&cached) {
            let _ = self.cache.set(&cache_key, &bytes, TTL).await;
        }
        Ok(identity(cached))
    }
}
