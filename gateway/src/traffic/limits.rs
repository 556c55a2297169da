//! A subgraph's bulkhead (how many fetches at once, how many waiting) and its retry budget
//! (how many retries its traffic can afford).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::{BulkheadConfig, RetryPolicy};

pub(crate) struct Bulkhead {
    /// `None`: no bound.
    permits: Option<Arc<Semaphore>>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
}

/// Room in the bulkhead while it lives.
pub(crate) struct Seat {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Bulkhead {
    pub fn new(config: BulkheadConfig) -> Self {
        Self {
            permits: (config.max_concurrent > 0)
                .then(|| Arc::new(Semaphore::new(config.max_concurrent))),
            queued: Arc::default(),
            max_queued: config.max_queued,
        }
    }

    /// A seat now, a seat after waiting in the queue, or `None` when the queue is full.
    pub async fn enter(&self) -> Option<Seat> {
        let Some(permits) = &self.permits else {
            return Some(Seat { _permit: None });
        };
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Some(Seat {
                _permit: Some(permit),
            });
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // Leaves the queue however the wait ends (a cancelled fetch included).
        struct Queued(Arc<AtomicUsize>);
        impl Drop for Queued {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _queued = Queued(self.queued.clone());
        let permit = permits.clone().acquire_owned().await.ok()?;
        Some(Seat {
            _permit: Some(permit),
        })
    }
}

/// Retries may add `ratio` of the requests plus `min_per_second`: each fetch deposits
/// `ratio` of a token, time adds `min_per_second` tokens per second, a retry takes a whole
/// token. The balance is capped at ten seconds' worth of the minimum (at least ten), so a
/// long quiet spell does not save up a retry storm.
pub(crate) struct RetryBudget {
    ratio: f64,
    min_per_second: f64,
    cap: f64,
    tokens: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    pub fn new(policy: RetryPolicy) -> Self {
        let min_per_second = f64::from(policy.budget_min_per_second);
        let cap = (min_per_second * 10.0).max(10.0);
        Self {
            ratio: policy.budget_ratio.max(0.0),
            min_per_second,
            cap,
            tokens: Mutex::new((cap, Instant::now())),
        }
    }

    pub fn deposit(&self) {
        if self.ratio == 0.0 {
            return;
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.0 = (tokens.0 + self.ratio).min(self.cap);
    }

    /// Takes a token for one retry, if there is one.
    pub fn withdraw(&self) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(tokens.1).as_secs_f64() * self.min_per_second;
        *tokens = ((tokens.0 + earned).min(self.cap), now);
        if tokens.0 >= 1.0 {
            tokens.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_bulkhead_queues_then_refuses() {
        let bulkhead = Bulkhead::new(BulkheadConfig {
            max_concurrent: 1,
            max_queued: 1,
        });
        let first = bulkhead.enter().await.expect("a seat");
        let mut waiting = Box::pin(bulkhead.enter());
        assert!(
            futures::poll!(waiting.as_mut()).is_pending(),
            "the second waits in the queue"
        );
        assert!(bulkhead.enter().await.is_none(), "the third is refused");
        drop(first);
        assert!(waiting.await.is_some(), "the queued one gets the seat");
    }

    #[test]
    fn the_budget_allows_the_ratio_of_requests_beyond_its_reserve() {
        let budget = RetryBudget::new(RetryPolicy {
            attempts: 3,
            budget_ratio: 0.5,
            budget_min_per_second: 0,
        });
        // The reserve: ten tokens.
        let reserve = std::iter::from_fn(|| budget.withdraw().then_some(())).count();
        assert_eq!(reserve, 10);
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(budget.withdraw() && budget.withdraw());
        assert!(
            !budget.withdraw(),
            "four requests at 0.5 pay for two retries"
        );
    }
}
