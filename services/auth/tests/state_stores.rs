//! The sessions and counters auth keeps, checked on each backend the configuration can
//! choose: in process (embedded) and in Redis (distributed, when `scripts/test` started
//! it). Each test runs the same body on every backend of [`Backend::all`].

use std::time::Duration;

use flowfleet_host::testing::Backend;

#[tokio::test]
async fn sessions_rotate_once_detect_reuse_and_end() {
    use flowfleet_auth::sessions::Rotation;
    const TTL: Duration = Duration::from_secs(60);
    for backend in Backend::all() {
        let infra = backend.start().await;
        let sessions = flowfleet_auth::sessions::for_infra(&infra.infra);
        let name = backend.name();
        let rotated = |family: &str| Rotation::Rotated {
            user: "u1".into(),
            family: family.into(),
        };

        sessions.start("u1", "f1", "t1", TTL).await.unwrap();
        sessions.start("u1", "f2", "x1", TTL).await.unwrap();
        sessions.start("u2", "g1", "y1", TTL).await.unwrap();
        assert_eq!(
            sessions.family_of("t1").await.unwrap(),
            Some(("u1".into(), "f1".into())),
            "{name}"
        );
        assert_eq!(
            sessions.rotate("t1", "t2", TTL).await.unwrap(),
            rotated("f1"),
            "{name}"
        );
        assert_eq!(
            sessions.rotate("t2", "t3", TTL).await.unwrap(),
            rotated("f1"),
            "{name}"
        );
        assert_eq!(
            sessions.rotate("nope", "t9", TTL).await.unwrap(),
            Rotation::Unknown,
            "{name}"
        );
        // An earlier token comes back: the whole family ends, current token included.
        assert_eq!(
            sessions.rotate("t1", "t4", TTL).await.unwrap(),
            Rotation::Reused {
                user: "u1".into(),
                family: "f1".into()
            },
            "{name}"
        );
        assert_eq!(
            sessions.rotate("t3", "t5", TTL).await.unwrap(),
            Rotation::Unknown,
            "{name}"
        );
        assert_eq!(sessions.family_of("t3").await.unwrap(), None, "{name}");
        // The user's other sign-in is untouched.
        assert_eq!(
            sessions.rotate("x1", "x2", TTL).await.unwrap(),
            rotated("f2"),
            "{name}"
        );

        // Concurrent rotations of one token: exactly one wins, the other is reuse.
        sessions.start("u1", "f3", "r1", TTL).await.unwrap();
        let (a, b) = tokio::join!(
            sessions.rotate("r1", "ra", TTL),
            sessions.rotate("r1", "rb", TTL)
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert!(
            matches!(
                outcomes,
                [Rotation::Reused { .. }, Rotation::Rotated { .. }]
            ),
            "{name}: {outcomes:?}"
        );

        // Ending all but one: f2 stays, f3 (already ended by reuse) is not counted again.
        sessions.start("u1", "f4", "s1", TTL).await.unwrap();
        assert_eq!(
            sessions.end_all("u1", Some("f2")).await.unwrap(),
            1,
            "{name}"
        );
        assert_eq!(sessions.family_of("s1").await.unwrap(), None, "{name}");
        assert!(sessions.family_of("x2").await.unwrap().is_some(), "{name}");
        assert!(sessions.family_of("y1").await.unwrap().is_some(), "{name}");
        sessions.end("f2").await.unwrap();
        assert_eq!(sessions.family_of("x2").await.unwrap(), None, "{name}");

        // Expiry.
        sessions
            .start("u3", "h1", "z1", Duration::from_millis(200))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            sessions.rotate("z1", "z2", TTL).await.unwrap(),
            Rotation::Unknown,
            "{name}"
        );
    }
}

#[tokio::test]
async fn counters_count_within_a_window_then_start_again() {
    for backend in Backend::all() {
        let infra = backend.start().await;
        let counters = flowfleet_auth::counters::for_infra(&infra.infra);
        let name = backend.name();
        let window = Duration::from_millis(400);
        assert_eq!(counters.peek("a").await.unwrap(), None, "{name}");
        for expected in 1..=3 {
            let count = counters.hit("a", window).await.unwrap();
            assert_eq!(count.hits, expected, "{name}");
            assert!(count.resets_in <= window, "{name}");
        }
        assert_eq!(counters.hit("b", window).await.unwrap().hits, 1, "{name}");
        assert_eq!(
            counters.peek("a").await.unwrap().map(|c| c.hits),
            Some(3),
            "{name}"
        );
        counters.reset("b").await.unwrap();
        assert_eq!(counters.peek("b").await.unwrap(), None, "{name}");
        // The window closes; counting starts again.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(counters.peek("a").await.unwrap(), None, "{name}");
        assert_eq!(counters.hit("a", window).await.unwrap().hits, 1, "{name}");
    }
}
