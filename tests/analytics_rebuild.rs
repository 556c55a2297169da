//! `flowfleet analytics rebuild --from`, as the command runs it, on an embedded data
//! directory: rollups spoiled by hand since a day are recomputed from the facts.

use flowfleet_analytics::domain::facts_of;
use flowfleet_analytics::store::Store;
use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::config::Config;
use flowfleet_runtime::db::Db;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn the_rebuild_command_recomputes_rollups_from_the_facts() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let db = Db::sqlite(dir.path(), "analytics").await.unwrap();
    db.migrate(&flowfleet_analytics::MIGRATIONS).await.unwrap();
    let store = Store::new(db.clone());
    let now = flowfleet_runtime::clock::SystemClock.now_ms();
    let (workflow, workspace) = (Uuid::now_v7(), Uuid::now_v7());
    for hours_ago in 0..48_i64 {
        let at = now - hours_ago * 3_600_000;
        let payload = json!({
            "executionId": Uuid::now_v7(), "workflowId": workflow, "workspaceId": workspace,
            "status": "SUCCEEDED", "triggeredBy": Uuid::nil(), "finishedAtMs": at,
            "durationMs": hours_ago,
        });
        store
            .record(&facts_of("execution.succeeded", at, &payload).unwrap())
            .await
            .unwrap();
    }
    while store.roll(1000, now - 3 * 86_400_000).await.unwrap() > 0 {}
    let rows = || async {
        sqlx::query_as::<_, (String, String, i64, i64, String)>(
            "SELECT grain, workflow_id, bucket_start, runs, durations FROM execution_rollups \
             ORDER BY grain, workflow_id, bucket_start",
        )
        .fetch_all(db.pool())
        .await
        .unwrap()
    };
    let before = rows().await;
    sqlx::query("UPDATE execution_rollups SET runs = 0")
        .execute(db.pool())
        .await
        .unwrap();
    let yesterday = now - 86_400_000;
    let from = chrono::DateTime::from_timestamp_millis(yesterday)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let rebuilt = flowfleet::processes::analytics_rebuild(
        config,
        flowfleet::processes::parse_day(&from).unwrap(),
    )
    .await
    .unwrap();
    assert!(rebuilt >= 24, "{rebuilt}");
    let after = rows().await;
    let day_start = (yesterday / 86_400_000) * 86_400_000;
    for (b, a) in before.iter().zip(&after) {
        if b.2 >= day_start {
            assert_eq!(b, a, "rebuilt");
        } else {
            assert_eq!(a.3, 0, "older rollups are left as they were");
        }
    }
}
