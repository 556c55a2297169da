//! The services' events into response-cache evictions. The gateway listens to the bus
//! itself (every replica receives every event): `<thing>Id` in a payload evicts the
//! answers about that entity (`workflowId` → `Workflow`), and a change of who may see what
//! (member, user and workspace events) evicts every private answer. While the listener is
//! not bound (the broker is away), the gateway serves nothing from its cache.

use std::sync::Arc;
use std::time::Duration;

use flowfleet_gateway::Gateway;
use flowfleet_runtime::amqp::AmqpClient;
use flowfleet_runtime::events::amqp::AmqpBus;
use flowfleet_runtime::events::{Event, EventBus};
use tokio_util::sync::CancellationToken;

/// The events that can make a cached answer stale.
pub const BINDINGS: [&str; 5] = [
    "workflow.#",
    "execution.#",
    "member.#",
    "user.#",
    "workspace.#",
];

/// What one event evicts: entities (type, id), and whether every private answer.
pub fn evictions(event: &Event) -> (Vec<(String, String)>, bool) {
    let mut entities = Vec::new();
    if let Some(payload) = event.payload.as_object() {
        for (key, value) in payload {
            let (Some(thing), Some(id)) = (key.strip_suffix("Id"), value.as_str()) else {
                continue;
            };
            let mut typename = thing.to_string();
            if let Some(first) = typename.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            entities.push((typename, id.to_string()));
        }
    }
    let private = ["member.", "user.", "workspace."]
        .iter()
        .any(|prefix| event.kind.starts_with(prefix));
    (entities, private)
}

/// Listens to `bus` until `shutdown`, evicting what each event makes stale; binds again
/// after the bus fails.
pub fn spawn(gateway: Gateway, bus: Arc<dyn EventBus>, shutdown: CancellationToken) {
    gateway.set_cache_fed(false);
    tokio::spawn(feed(gateway, bus, shutdown));
}

/// [`spawn`] for a gateway process of its own: connects to RabbitMQ at `url` first
/// (retrying), the cache bypassed meanwhile.
pub fn spawn_amqp(gateway: Gateway, url: String, exchange: String, shutdown: CancellationToken) {
    gateway.set_cache_fed(false);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        let bus = loop {
            let connected = async {
                let client = AmqpClient::connect(&url).await?;
                AmqpBus::new(client, &exchange, 16)
                    .await
                    .map_err(anyhow::Error::from)
            };
            match connected.await {
                Ok(bus) => break bus,
                Err(error) => {
                    tracing::warn!(%error, "response cache: RabbitMQ unreachable; bypassing the cache meanwhile");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        };
        feed(gateway, Arc::new(bus), shutdown).await;
    });
}

async fn feed(gateway: Gateway, bus: Arc<dyn EventBus>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match bus.listen(&BINDINGS).await {
            Ok(mut events) => {
                gateway.set_cache_fed(true);
                backoff = Duration::from_millis(200);
                loop {
                    let delivery = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        delivery = events.next() => delivery,
                    };
                    let Some(delivery) = delivery else { break };
                    let (entities, private) = evictions(&delivery.event);
                    for (typename, id) in &entities {
                        gateway.invalidate(typename, id).await;
                    }
                    if private {
                        gateway.invalidate_private().await;
                    }
                    let _ = delivery.ack().await;
                }
                gateway.set_cache_fed(false);
                tracing::warn!("response cache: the event listener stopped; bypassing the cache until it is back");
            }
            Err(error) => {
                tracing::warn!(%error, "response cache: cannot listen to events; bypassing the cache meanwhile");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_the_payload_name_the_entities_and_membership_evicts_private_answers() {
        let event = Event::new(
            "workflow.published",
            0,
            serde_json::json!({"workflowId": "w1", "workspaceId": "s1", "version": 2}),
        );
        let (mut entities, private) = evictions(&event);
        entities.sort();
        assert_eq!(
            entities,
            [
                ("Workflow".to_string(), "w1".to_string()),
                ("Workspace".to_string(), "s1".to_string())
            ]
        );
        assert!(!private);
        let removed = Event::new("member.removed", 0, serde_json::json!({"userId": "u1"}));
        assert_eq!(
            evictions(&removed),
            (vec![("User".into(), "u1".into())], true)
        );
    }
}
