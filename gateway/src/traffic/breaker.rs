//! A subgraph's circuit breaker: closed, open, half-open.
//!
//! Invariants: while closed, a fetch costs one atomic load to admit and at most one atomic
//! write to settle (the lock is taken only on a transition); while open, every fetch is
//! refused until `open_for` has passed; half-open admits at most `probes` fetches, and the
//! breaker closes only when that many succeeded. A failure counted here is a fetch that
//! failed the client (after its retries), not one failed attempt.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::BreakerConfig;

const CLOSED: u8 = 0;
const HALF_OPEN: u8 = 1;
const OPEN: u8 = 2;

pub(crate) struct Breaker {
    config: BreakerConfig,
    subgraph: String,
    state: AtomicU8,
    /// Failures in a row while closed.
    failures: AtomicU32,
    transitions: Mutex<Transitions>,
}

struct Transitions {
    opened_at: Instant,
    probes_admitted: u32,
    probes_succeeded: u32,
}

/// Whether an admitted fetch is one of the half-open breaker's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    probe: bool,
}

impl Breaker {
    pub fn new(subgraph: &str, config: BreakerConfig) -> Self {
        let breaker = Self {
            config,
            subgraph: subgraph.to_string(),
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            transitions: Mutex::new(Transitions {
                opened_at: Instant::now(),
                probes_admitted: 0,
                probes_succeeded: 0,
            }),
        };
        breaker.report(CLOSED);
        breaker
    }

    /// Lets a fetch through, or says how long until the breaker lets fetches through.
    pub fn admit(&self) -> Result<Ticket, Duration> {
        if self.config.failures == 0 || self.state.load(Ordering::Acquire) == CLOSED {
            return Ok(Ticket { probe: false });
        }
        let mut t = self.lock();
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(Ticket { probe: false }),
            OPEN => {
                let open = t.opened_at.elapsed();
                if open < self.config.open_for {
                    return Err(self.config.open_for - open);
                }
                t.probes_admitted = 1;
                t.probes_succeeded = 0;
                self.set(HALF_OPEN);
                tracing::info!(subgraph = %self.subgraph, "circuit half-open: probing the subgraph");
                Ok(Ticket { probe: true })
            }
            _ if t.probes_admitted < self.config.probes => {
                t.probes_admitted += 1;
                Ok(Ticket { probe: true })
            }
            // Every probe is out; the next fetches wait for their verdict.
            _ => Err(Duration::from_secs(1)),
        }
    }

    pub fn succeeded(&self, ticket: Ticket) {
        if !ticket.probe {
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let mut t = self.lock();
        if self.state.load(Ordering::Acquire) != HALF_OPEN {
            return;
        }
        t.probes_succeeded += 1;
        if t.probes_succeeded >= self.config.probes {
            self.failures.store(0, Ordering::Relaxed);
            self.set(CLOSED);
            tracing::info!(subgraph = %self.subgraph, "circuit closed: the subgraph answers again");
        }
    }

    /// Hands back a ticket whose fetch was never sent (a probe slot opens again).
    pub fn release(&self, ticket: Ticket) {
        if !ticket.probe {
            return;
        }
        let mut t = self.lock();
        if self.state.load(Ordering::Acquire) == HALF_OPEN {
            t.probes_admitted = t.probes_admitted.saturating_sub(1);
        }
    }

    pub fn failed(&self, ticket: Ticket) {
        if self.config.failures == 0 {
            return;
        }
        if !ticket.probe {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures < self.config.failures || self.state.load(Ordering::Acquire) != CLOSED {
                return;
            }
        }
        let mut t = self.lock();
        let state = self.state.load(Ordering::Acquire);
        // A late failure admitted while closed does not reopen a half-open breaker: only
        // its probes decide.
        if state == OPEN || (state == HALF_OPEN && !ticket.probe) {
            return;
        }
        t.opened_at = Instant::now();
        self.set(OPEN);
        tracing::warn!(
            subgraph = %self.subgraph,
            open_for = ?self.config.open_for,
            "circuit open: the subgraph's fetches fail at once until it is probed again"
        );
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.report(state);
    }

    fn report(&self, state: u8) {
        metrics::gauge!("flowfleet_gateway_subgraph_breaker_state", "subgraph" => self.subgraph.clone())
            .set(f64::from(state));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Transitions> {
        self.transitions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Breaker {
        Breaker::new(
            "test",
            BreakerConfig {
                failures: 5,
                open_for,
                probes: 3,
            },
        )
    }

    #[test]
    fn five_failures_in_a_row_open_it_and_a_success_between_resets_the_count() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..4 {
            b.failed(b.admit().unwrap());
        }
        b.succeeded(b.admit().unwrap());
        for _ in 0..4 {
            b.failed(b.admit().unwrap());
        }
        assert!(b.admit().is_ok(), "four failures in a row leave it closed");
        b.failed(b.admit().unwrap());
        let wait = b.admit().unwrap_err();
        assert!(wait > Duration::from_secs(59), "{wait:?}");
    }

    #[test]
    fn after_open_for_three_probes_close_it_and_one_failed_probe_reopens_it() {
        let b = breaker(Duration::from_millis(20));
        for _ in 0..5 {
            b.failed(b.admit().unwrap());
        }
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(30));
        let probes: Vec<Ticket> = (0..3).map(|_| b.admit().unwrap()).collect();
        assert!(probes.iter().all(|t| t.probe));
        assert!(b.admit().is_err(), "a fourth fetch waits for the probes");
        b.succeeded(probes[0]);
        b.failed(probes[1]);
        assert!(b.admit().is_err(), "a failed probe opens it again");

        std::thread::sleep(Duration::from_millis(30));
        let probes: Vec<Ticket> = (0..3).map(|_| b.admit().unwrap()).collect();
        for probe in probes {
            b.succeeded(probe);
        }
        assert_eq!(b.admit(), Ok(Ticket { probe: false }), "closed again");
    }
}
