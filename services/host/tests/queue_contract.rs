//! The task queue contract, run against the in-process queue and against RabbitMQ:
//! whatever the engine relies on holds for both. The broker restart is in
//! `queue_restart.rs` (it needs a broker of its own).

use std::time::Duration;

use flowfleet_host::testing::Backend;
use flowfleet_runtime::queue::{dead_letter_queue, now_ms, Task, TaskConsumer, TaskDelivery};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(10);

async fn next(consumer: &mut Box<dyn TaskConsumer>, name: &str) -> TaskDelivery {
    tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .unwrap_or_else(|_| panic!("{name}: no task within {PATIENCE:?}"))
        .unwrap_or_else(|| panic!("{name}: the consumer closed"))
}

/// Nothing is delivered within `quiet` (a check that something does not happen).
async fn nothing(consumer: &mut Box<dyn TaskConsumer>, quiet: Duration, name: &str) {
    if let Ok(Some(d)) = tokio::time::timeout(quiet, consumer.next()).await {
        panic!("{name}: unexpected delivery {:?}", d.task);
    }
}

fn task(n: u64, priority: u8) -> Task {
    Task::new("test.task", json!({ "n": n }), priority)
}

#[tokio::test]
async fn a_task_round_trips_whole_and_is_gone_once_acknowledged() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let queue = env.infra.queue.clone();
        let mut sent = task(1, 4);
        sent.trace.insert(
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        queue.enqueue("round", &sent).await.unwrap();
        let mut consumer = queue.consume("round", 4).await.unwrap();
        let got = next(&mut consumer, name).await;
        assert_eq!(got.task, sent, "{name}");
        assert!(!got.redelivered, "{name}");
        assert_eq!(got.queue(), "round", "{name}");
        got.ack().await.unwrap();
        nothing(&mut consumer, Duration::from_millis(500), name).await;
        assert_eq!(queue.depth("round").await.unwrap(), 0, "{name}");
    }
}

#[tokio::test]
async fn higher_priorities_are_served_first_and_fifo_within_one() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let queue = env.infra.queue.clone();
        // A backlog built before anyone consumes: 30 tasks over priorities 0, 5 and 9.
        let mut sent = Vec::new();
        for n in 0..30u64 {
            let t = task(n, [0, 5, 9][(n % 3) as usize]);
            queue.enqueue("prio", &t).await.unwrap();
            sent.push(t);
        }
        assert_eq!(queue.depth("prio").await.unwrap(), 30, "{name}");
        let mut consumer = queue.consume("prio", 1).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..30 {
            let d = next(&mut consumer, name).await;
            got.push(d.task.clone());
            d.ack().await.unwrap();
        }
        let mut expected = sent.clone();
        // Stable: equal priorities keep their order.
        expected.sort_by_key(|t| std::cmp::Reverse(t.priority));
        let ids = |v: &[Task]| v.iter().map(|t| t.payload["n"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&expected), "{name}");
    }
}

#[tokio::test]
async fn a_delayed_task_is_delivered_when_due_and_not_before() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let queue = env.infra.queue.clone();
        let now = now_ms();
        let later = task(2, 0).not_before(now + 1_500);
        let sooner = task(1, 0).not_before(now + 700);
        queue.enqueue("delayed", &later).await.unwrap();
        queue.enqueue("delayed", &sooner).await.unwrap();
        let mut consumer = queue.consume("delayed", 4).await.unwrap();
        for expected in [&sooner, &later] {
            let d = next(&mut consumer, name).await;
            let arrived = now_ms();
            assert_eq!(d.task.payload, expected.payload, "{name}: due order");
            let due = expected.not_before_ms.unwrap();
            assert!(
                arrived >= due,
                "{name}: delivered {}ms early",
                due - arrived
            );
            d.ack().await.unwrap();
        }
        // Longer than one rung of RabbitMQ's delay ladder covers exactly (4 s is not a
        // rung): it must still arrive, not early.
        let odd = task(3, 0).not_before(now_ms() + 2_345);
        queue.enqueue("delayed", &odd).await.unwrap();
        let d = next(&mut consumer, name).await;
        assert!(now_ms() >= odd.not_before_ms.unwrap(), "{name}: early");
        assert_eq!(d.task.payload, odd.payload, "{name}");
        d.ack().await.unwrap();
    }
}

#[tokio::test]
async fn retries_count_attempts_and_a_dead_letter_keeps_the_reason() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let queue = env.infra.queue.clone();
        let sent = task(7, 3);
        queue.enqueue("flaky", &sent).await.unwrap();
        let mut consumer = queue.consume("flaky", 2).await.unwrap();
        let first = next(&mut consumer, name).await;
        assert_eq!(first.task.attempt, 1, "{name}");
        let retried_at = now_ms();
        first
            .retry(Duration::from_millis(300), "connection refused")
            .await
            .unwrap();
        let second = next(&mut consumer, name).await;
        assert!(now_ms() >= retried_at + 300, "{name}: the retry came early");
        assert_eq!(second.task.attempt, 2, "{name}");
        assert_eq!(second.task.payload, sent.payload, "{name}");
        assert_eq!(second.task.priority, 3, "{name}");
        assert_eq!(
            second.task.last_error.as_deref(),
            Some("connection refused"),
            "{name}"
        );
        second
            .dead_letter("gave up after 2 attempts")
            .await
            .unwrap();
        nothing(&mut consumer, Duration::from_millis(500), name).await;

        let mut dead = queue.consume(&dead_letter_queue("flaky"), 1).await.unwrap();
        let d = next(&mut dead, name).await;
        assert_eq!(d.task.payload, sent.payload, "{name}");
        assert_eq!(d.task.attempt, 2, "{name}");
        assert_eq!(
            d.task.last_error.as_deref(),
            Some("gave up after 2 attempts"),
            "{name}"
        );
        d.ack().await.unwrap();
        assert_eq!(queue.depth("flaky").await.unwrap(), 0, "{name}");
    }
}

#[tokio::test]
async fn what_a_consumer_held_unsettled_or_gave_back_is_redelivered() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let queue = env.infra.queue.clone();
        queue.enqueue("held", &task(1, 0)).await.unwrap();
        queue.enqueue("held", &task(2, 0)).await.unwrap();
        let mut dying = queue.consume("held", 2).await.unwrap();
        let a = next(&mut dying, name).await;
        let b = next(&mut dying, name).await;
        assert!(!a.redelivered && !b.redelivered, "{name}");
        // One given back on purpose; the other still held when its consumer dies.
        a.requeue().await.unwrap();
        let again = next(&mut dying, name).await;
        assert!(again.redelivered, "{name}: a requeued task is marked");
        drop(b);
        drop(again);
        drop(dying);

        let mut survivor = queue.consume("held", 4).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let d = next(&mut survivor, name).await;
            assert!(d.redelivered, "{name}: {:?}", d.task);
            got.push(d.task.payload["n"].as_u64().unwrap());
            d.ack().await.unwrap();
        }
        got.sort();
        assert_eq!(got, vec![1, 2], "{name}");
        nothing(&mut survivor, Duration::from_millis(500), name).await;
    }
}

#[tokio::test]
async fn prefetch_bounds_what_one_consumer_holds_and_depth_counts_the_rest() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let queue = env.infra.queue.clone();
        for n in 0..10 {
            queue.enqueue("window", &task(n, 0)).await.unwrap();
        }
        let mut consumer = queue.consume("window", 3).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(next(&mut consumer, name).await);
        }
        nothing(&mut consumer, Duration::from_millis(500), name).await;
        assert_eq!(queue.depth("window").await.unwrap(), 7, "{name}");
        // A second consumer takes from what is left meanwhile.
        let mut other = queue.consume("window", 1).await.unwrap();
        let o = next(&mut other, name).await;
        o.ack().await.unwrap();
        drop(other);
        held.remove(0).ack().await.unwrap();
        held.push(next(&mut consumer, name).await);
        for d in held {
            d.ack().await.unwrap();
        }
        let mut rest = 0;
        while tokio::time::timeout(Duration::from_millis(500), async {
            let d = consumer.next().await.unwrap();
            d.ack().await.unwrap();
        })
        .await
        .is_ok()
        {
            rest += 1;
        }
        assert_eq!(rest, 5, "{name}: 10 = 3 + 1 + 1 + the rest");
        assert_eq!(queue.depth("window").await.unwrap(), 0, "{name}");
    }
}
