//! One replica of a subgraph: its URL, its requests in flight, and what passive outlier
//! detection and active health checks think of it.
//!
//! A replica is *available* when its health checks pass (or none run) and it is not
//! ejected. Times are milliseconds since the replica was created, kept in atomics so a
//! request reads them without a lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use super::config::{OutlierConfig, ReplicaConfig};

/// A subgraph URL, parsed once (a request only clones it).
#[derive(Debug, Clone)]
pub(crate) struct SubgraphUrl {
    pub text: String,
    /// `None` when the URL does not parse: each request then fails with the reason.
    pub parsed: Option<reqwest::Url>,
}

impl SubgraphUrl {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            parsed: reqwest::Url::parse(text).ok(),
        }
    }
}

pub(crate) struct Replica {
    pub url: SubgraphUrl,
    pub weight: u32,
    outstanding: AtomicUsize,
    /// Failed requests in a row (passive).
    failures: AtomicU32,
    /// Ejected until this time; 0 when never ejected.
    ejected_until: AtomicU64,
    /// Ejections without a success in between (each doubles the next one).
    ejections: AtomicU32,
    /// Failing its active health checks.
    down: AtomicBool,
    /// Active checks in a row with the same verdict, towards a change of `down`.
    streak: AtomicU32,
    created: Instant,
}

/// A request in flight to a replica; counted while it lives.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Replica {
    pub fn new(config: &ReplicaConfig) -> Self {
        Self {
            url: SubgraphUrl::new(&config.url),
            weight: config.weight,
            outstanding: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            down: AtomicBool::new(false),
            streak: AtomicU32::new(0),
            created: Instant::now(),
        }
    }

    pub fn start(&self) -> InFlight<'_> {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.outstanding)
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        self.created.elapsed().as_millis() as u64
    }

    pub fn available(&self) -> bool {
        !self.down.load(Ordering::Relaxed) && !self.ejected()
    }

    fn ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.now() < until
    }

    pub fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 && !self.ejected() {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failed request; returns whether this replica should now be ejected
    /// (the caller decides, knowing whether another replica is available).
    pub fn failed(&self, outliers: &OutlierConfig) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        outliers.consecutive_failures > 0
            && failures >= outliers.consecutive_failures
            && !self.ejected()
    }

    /// Leaves this replica out for its next ejection time; returns that time.
    pub fn eject(&self, outliers: &OutlierConfig) -> std::time::Duration {
        let times = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let length = outliers
            .base_ejection
            .saturating_mul(1 << times)
            .min(outliers.max_ejection);
        self.failures.store(0, Ordering::Relaxed);
        self.ejected_until
            .store(self.now() + length.as_millis() as u64, Ordering::Relaxed);
        length
    }

    /// Takes in one active health check; returns the new `down` when it changed.
    pub fn checked(&self, healthy: bool, unhealthy_after: u32, healthy_after: u32) -> Option<bool> {
        if healthy {
            // Passing a check ends an ejection: the replica answers.
            self.ejected_until.store(0, Ordering::Relaxed);
        }
        let down = self.down.load(Ordering::Relaxed);
        if healthy != down {
            // The verdict agrees with the state: nothing builds up.
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if down { healthy_after } else { unhealthy_after };
        if streak < needed.max(1) {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.down.store(!down, Ordering::Relaxed);
        if healthy {
            self.failures.store(0, Ordering::Relaxed);
        }
        Some(!down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn replica() -> Replica {
        Replica::new(&ReplicaConfig::new("http://a/graphql"))
    }

    #[test]
    fn ejections_double_until_a_success() {
        let outliers = OutlierConfig {
            consecutive_failures: 2,
            base_ejection: Duration::from_millis(40),
            max_ejection: Duration::from_millis(100),
        };
        let r = replica();
        assert!(!r.failed(&outliers));
        assert!(r.failed(&outliers));
        assert_eq!(r.eject(&outliers), Duration::from_millis(40));
        assert!(!r.available());
        assert_eq!(r.eject(&outliers), Duration::from_millis(80));
        assert_eq!(r.eject(&outliers), Duration::from_millis(100), "capped");
        std::thread::sleep(Duration::from_millis(110));
        assert!(r.available(), "back when the ejection ends");
        r.succeeded();
        assert!(r.failed(&outliers) || r.failed(&outliers));
        assert_eq!(
            r.eject(&outliers),
            Duration::from_millis(40),
            "reset by a success"
        );
    }

    #[test]
    fn health_checks_need_their_streak_and_a_pass_ends_an_ejection() {
        let r = replica();
        assert_eq!(r.checked(false, 2, 1), None);
        assert_eq!(
            r.checked(false, 2, 1),
            Some(true),
            "down after two failures"
        );
        assert!(!r.available());
        assert_eq!(r.checked(true, 2, 1), Some(false), "up after one pass");
        r.eject(&OutlierConfig::default());
        assert!(!r.available());
        assert_eq!(r.checked(true, 2, 1), None);
        assert!(r.available(), "a passed check lifts the ejection");
    }
}
