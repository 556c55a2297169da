//! The infrastructure contracts every service relies on, checked on each backend the
//! configuration can choose: SQLite + in-process bus + in-memory cache (embedded), and
//! PostgreSQL + RabbitMQ + Redis (distributed, when `scripts/test` started them).
//! Each test runs the same body on every backend of [`Backend::all`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flowfleet_host::testing::{Backend, TestInfra};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::{is_unique_violation, Db, Migrations};
use flowfleet_runtime::events::consumer::{Consumer, EventHandler};
use flowfleet_runtime::events::outbox::{self, Relay};
use flowfleet_runtime::events::{Delivery, Event, Subscription};
use serde_json::json;
use tokio_util::sync::CancellationToken;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations");
static MIGRATIONS: Migrations = Migrations::portable(&MIGRATOR);

async fn next(sub: &mut Box<dyn Subscription>, backend: &Backend) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap_or_else(|_| panic!("{}: no delivery within 10 s", backend.name()))
        .expect("the subscription is open")
}

async fn nothing_more(sub: &mut Box<dyn Subscription>, backend: &Backend) {
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        panic!("{}: unexpected delivery {:?}", backend.name(), d.event.kind);
    }
}

async fn migrated(infra: &TestInfra, service: ServiceName) -> Db {
    infra.db(service, &MIGRATIONS).await
}

#[tokio::test]
async fn cache_stores_expires_and_deletes() {
    for backend in Backend::all() {
        let infra = backend.start().await;
        let cache = &infra.infra.cache;
        let name = backend.name();
        assert_eq!(cache.get("k").await.unwrap(), None, "{name}");
        cache
            .set("k", b"value", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            cache.get("k").await.unwrap().as_deref(),
            Some(&b"value"[..]),
            "{name}"
        );
        cache.delete("k").await.unwrap();
        assert_eq!(cache.get("k").await.unwrap(), None, "{name}");

        cache
            .set("short", b"v", Duration::from_millis(200))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            cache.get("short").await.unwrap(),
            None,
            "{name}: expired entry"
        );
    }
}

#[tokio::test]
async fn bus_routes_by_pattern_requeues_on_nack_and_keeps_trace_context() {
    for backend in Backend::all() {
        let infra = backend.start().await;
        let bus = &infra.infra.bus;
        let mut all = bus.subscribe("all", &["order.*"]).await.unwrap();
        let mut shipped = bus.subscribe("shipped", &["order.shipped"]).await.unwrap();

        let mut placed = Event::new("order.placed", 1, json!({"n": 1}));
        placed.trace = HashMap::from([(
            "traceparent".to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
        )]);
        bus.publish(&placed).await.unwrap();
        bus.publish(&Event::new("order.shipped", 2, json!({"n": 2})))
            .await
            .unwrap();
        bus.publish(&Event::new("invoice.sent", 3, json!({})))
            .await
            .unwrap();

        let first = next(&mut all, &backend).await;
        assert_eq!(first.event.kind, "order.placed", "{}", backend.name());
        assert_eq!(first.event.payload, json!({"n": 1}));
        assert_eq!(first.event.trace, placed.trace, "{}", backend.name());
        assert!(!first.redelivered);
        // Not settled: back to the queue, delivered again and marked so.
        first.nack(true).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let d = next(&mut all, &backend).await;
            seen.push((d.event.kind.clone(), d.redelivered));
            d.ack().await.unwrap();
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                ("order.placed".to_string(), true),
                ("order.shipped".to_string(), false)
            ],
            "{}",
            backend.name()
        );
        nothing_more(&mut all, &backend).await;

        let d = next(&mut shipped, &backend).await;
        assert_eq!(d.event.kind, "order.shipped", "{}", backend.name());
        d.ack().await.unwrap();
        nothing_more(&mut shipped, &backend).await;
    }
}

#[tokio::test]
async fn outbox_relays_committed_events_only_and_once() {
    for backend in Backend::all() {
        let infra = backend.start().await;
        let db = migrated(&infra, ServiceName::Analytics).await;
        let bus = infra.infra.bus.clone();
        let mut sub = bus.subscribe("notes", &["note.*"]).await.unwrap();

        // A change and its event, committed together.
        let kept = Event::new("note.added", 10, json!({"id": "a"}));
        let mut tx = db.pool().begin().await.unwrap();
        sqlx::query("INSERT INTO notes (id, body) VALUES ($1, $2)")
            .bind("a")
            .bind("kept")
            .execute(&mut *tx)
            .await
            .unwrap();
        outbox::record(&mut tx, &kept).await.unwrap();
        tx.commit().await.unwrap();
        // A change rolled back takes its event with it.
        let mut tx = db.pool().begin().await.unwrap();
        outbox::record(&mut tx, &Event::new("note.added", 11, json!({"id": "b"})))
            .await
            .unwrap();
        tx.rollback().await.unwrap();

        let relay = Relay::new(db.clone(), bus.clone());
        assert_eq!(
            relay.publish_batch().await.unwrap(),
            1,
            "{}",
            backend.name()
        );
        assert_eq!(relay.publish_batch().await.unwrap(), 0, "published once");
        let d = next(&mut sub, &backend).await;
        assert_eq!(d.event.id, kept.id, "{}", backend.name());
        assert_eq!(d.event.payload, json!({"id": "a"}));
        d.ack().await.unwrap();
        nothing_more(&mut sub, &backend).await;
    }
}

/// The relay sends a backlog in batches whose confirms it awaits together: every event
/// arrives once, in the order recorded, and the outbox is left empty.
#[tokio::test]
async fn outbox_relays_a_backlog_in_order_and_keeps_nothing_it_sent() {
    for backend in Backend::all() {
        let infra = backend.start().await;
        let db = migrated(&infra, ServiceName::Analytics).await;
        let bus = infra.infra.bus.clone();
        let mut sub = bus.subscribe("backlog", &["note.*"]).await.unwrap();
        let mut tx = db.pool().begin().await.unwrap();
        for n in 0..250 {
            outbox::record(&mut tx, &Event::new("note.added", n, json!({"n": n})))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();

        let relay = Relay::new(db.clone(), bus.clone());
        // Bounded: a relay that kept what it sent would publish the same rows forever.
        let mut batches = Vec::new();
        for _ in 0..6 {
            let n = relay.publish_batch().await.unwrap();
            batches.push(n);
            if n == 0 {
                break;
            }
        }
        assert_eq!(batches, [100, 100, 50, 0], "{}", backend.name());
        let mut order = Vec::new();
        for _ in 0..250 {
            let d = next(&mut sub, &backend).await;
            order.push(d.event.payload["n"].as_i64().unwrap());
            d.ack().await.unwrap();
        }
        assert_eq!(order, (0..250).collect::<Vec<i64>>(), "{}", backend.name());
        nothing_more(&mut sub, &backend).await;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(left, 0, "{}", backend.name());
    }
}

/// Records what it is given; fails any batch, and any event alone, whose payload says
/// `poison`.
struct Picky {
    handled: std::sync::Mutex<Vec<i64>>,
    largest_batch: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl EventHandler for Picky {
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        anyhow::ensure!(event.payload["poison"] != true, "poisoned");
        self.handled
            .lock()
            .unwrap()
            .push(event.payload["n"].as_i64().unwrap());
        Ok(())
    }

    fn batch_size(&self) -> usize {
        10
    }

    async fn handle_all(&self, events: &[Event]) -> anyhow::Result<()> {
        self.largest_batch
            .fetch_max(events.len(), std::sync::atomic::Ordering::Relaxed);
        anyhow::ensure!(
            events.iter().all(|e| e.payload["poison"] != true),
            "a poisoned batch"
        );
        for event in events {
            self.handle(event).await?;
        }
        Ok(())
    }
}

/// A backlog reaches a batching handler in batches; a batch that fails is handled one
/// event at a time, so the one bad event holds back nothing else.
#[tokio::test]
async fn a_consumer_takes_a_backlog_in_batches_and_isolates_a_bad_event() {
    for backend in Backend::all() {
        let infra = backend.start().await;
        let bus = infra.infra.bus.clone();
        let consumer = Consumer::bind(&bus, "picky", &["item.*"]).await.unwrap();
        for n in 0..40 {
            let payload = json!({"n": n, "poison": n == 5});
            bus.publish(&Event::new("item.made", n, payload))
                .await
                .unwrap();
        }
        let picky = Arc::new(Picky {
            handled: Default::default(),
            largest_batch: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(consumer.run(picky.clone(), shutdown.clone()));
        let good: Vec<i64> = (0..40).filter(|n| *n != 5).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut seen = picky.handled.lock().unwrap().clone();
            seen.sort();
            seen.dedup();
            if seen == good {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: handled only {seen:?}",
                backend.name()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let largest = picky
            .largest_batch
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (2..=10).contains(&largest),
            "{}: largest batch {largest}",
            backend.name()
        );
        shutdown.cancel();
        running.await.unwrap();
    }
}

#[tokio::test]
async fn each_service_sees_only_its_own_tables() {
    for backend in Backend::all() {
        let infra = backend.start().await;
        let analytics = migrated(&infra, ServiceName::Analytics).await;
        let storage = migrated(&infra, ServiceName::Storage).await;
        sqlx::query("INSERT INTO notes (id, body) VALUES ($1, $2)")
            .bind("x")
            .bind("analytics' row")
            .execute(analytics.pool())
            .await
            .unwrap();
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM notes")
            .fetch_one(storage.pool())
            .await
            .unwrap();
        assert_eq!(count, 0, "{}: storage saw analytics' row", backend.name());

        // The same key twice is a unique violation on every backend.
        let again = sqlx::query("INSERT INTO notes (id, body) VALUES ($1, $2)")
            .bind("x")
            .bind("again")
            .execute(analytics.pool())
            .await
            .unwrap_err();
        assert!(is_unique_violation(&again), "{}: {again}", backend.name());
    }
}

#[tokio::test]
async fn infra_start_says_which_server_it_cannot_reach() {
    let mut config = flowfleet_runtime::config::Config::default();
    config.mode = flowfleet_runtime::config::Mode::Distributed;
    // Nothing listens on port 1.
    config.amqp.url = "amqp://flowfleet:flowfleet@127.0.0.1:1/%2f".into();
    let error = flowfleet_host::Infra::start(
        Arc::new(config),
        Arc::new(flowfleet_security::identity::DeferredJwks::default()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .err()
    .expect("starting without a broker must fail");
    assert!(
        format!("{error:#}").starts_with("connecting to RabbitMQ (amqp.url)"),
        "{error:#}"
    );
}
