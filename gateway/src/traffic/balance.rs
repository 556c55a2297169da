//! Picking one replica of a subgraph for a request.
//!
//! The caller passes the candidates (replicas that are available and not yet tried by this
//! fetch, in replica order); every strategy picks among them, so health and ejection apply
//! to all strategies alike.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::Rng as _;

use super::config::Balance;
use super::replica::Replica;

/// Virtual nodes per unit of weight on the consistent-hash ring: enough for an even
/// spread over a handful of replicas, few enough to build the ring in microseconds.
const POINTS_PER_WEIGHT: u32 = 64;

pub(crate) struct Balancer {
    strategy: Balance,
    next: AtomicUsize,
    /// Smooth weighted round robin's running weights, per replica.
    current: Mutex<Vec<i64>>,
    /// Consistent hashing: (point, replica) sorted by point.
    ring: Vec<(u64, usize)>,
}

impl Balancer {
    pub fn new(strategy: Balance, replicas: &[Replica]) -> Self {
        let ring = match strategy {
            Balance::ConsistentHash { .. } => {
                let mut ring: Vec<(u64, usize)> = replicas
                    .iter()
                    .enumerate()
                    .flat_map(|(index, replica)| {
                        (0..replica.weight.max(1) * POINTS_PER_WEIGHT)
                            .map(move |point| (hash(&(replica.url.text.as_str(), point)), index))
                    })
                    .collect();
                ring.sort_unstable();
                ring
            }
            _ => Vec::new(),
        };
        Self {
            strategy,
            next: AtomicUsize::new(0),
            current: Mutex::new(vec![0; replicas.len()]),
            ring,
        }
    }

    /// One of `candidates` (indexes into `replicas`, never empty).
    pub fn pick(
        &self,
        replicas: &[Replica],
        candidates: &[usize],
        headers: &http::HeaderMap,
    ) -> usize {
        if candidates.len() == 1 {
            return candidates[0];
        }
        match &self.strategy {
            Balance::RoundRobin => self.round_robin(candidates),
            Balance::LeastOutstanding => {
                // Ties go round robin, so idle replicas share the work.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..candidates.len())
                    .map(|i| candidates[(start + i) % candidates.len()])
                    .min_by_key(|&r| replicas[r].outstanding())
                    .unwrap_or(candidates[0])
            }
            Balance::PowerOfTwoChoices => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..candidates.len());
                let b = (a + rng.gen_range(1..candidates.len())) % candidates.len();
                let (a, b) = (candidates[a], candidates[b]);
                if replicas[b].outstanding() < replicas[a].outstanding() {
                    b
                } else {
                    a
                }
            }
            Balance::Weighted => {
                // Smooth weighted round robin: every candidate gains its weight, the
                // richest is picked and pays the total. Weights 3:1 give A A B A, not
                // A A A B.
                let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
                let total: i64 = candidates
                    .iter()
                    .map(|&r| i64::from(replicas[r].weight))
                    .sum();
                let mut best = candidates[0];
                for &r in candidates {
                    current[r] += i64::from(replicas[r].weight);
                    if current[r] > current[best] {
                        best = r;
                    }
                }
                current[best] -= total;
                best
            }
            Balance::ConsistentHash { header } => {
                let Some(value) = headers.get(header) else {
                    return self.round_robin(candidates);
                };
                let point = hash(&value.as_bytes());
                let start = self.ring.partition_point(|(p, _)| *p < point);
                // The first point clockwise whose replica is a candidate: when a replica
                // goes away only its keys move.
                (0..self.ring.len())
                    .map(|i| self.ring[(start + i) % self.ring.len()].1)
                    .find(|r| candidates.contains(r))
                    .unwrap_or(candidates[0])
            }
        }
    }

    fn round_robin(&self, candidates: &[usize]) -> usize {
        candidates[self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()]
    }
}

/// A hash that is the same in every gateway process of one build (SipHash with fixed
/// keys), so replicas of the gateway send a key to the same subgraph replica.
fn hash(value: &impl Hash) -> u64 {
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::config::ReplicaConfig;

    fn replicas(weights: &[u32]) -> Vec<Replica> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Replica::new(&ReplicaConfig {
                    url: format!("http://replica-{i}/graphql"),
                    weight: *w,
                })
            })
            .collect()
    }

    fn picks(balancer: &Balancer, replicas: &[Replica], n: usize) -> Vec<usize> {
        let all: Vec<usize> = (0..replicas.len()).collect();
        (0..n)
            .map(|_| balancer.pick(replicas, &all, &http::HeaderMap::new()))
            .collect()
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        let replicas = replicas(&[1, 1, 1]);
        let balancer = Balancer::new(Balance::RoundRobin, &replicas);
        assert_eq!(picks(&balancer, &replicas, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_interleaves_in_proportion() {
        let replicas = replicas(&[3, 1]);
        let balancer = Balancer::new(Balance::Weighted, &replicas);
        assert_eq!(picks(&balancer, &replicas, 8), [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn least_outstanding_and_two_choices_avoid_the_busy_replica() {
        let replicas = replicas(&[1, 1]);
        let _busy: Vec<_> = (0..3).map(|_| replicas[0].start()).collect();
        for strategy in [Balance::LeastOutstanding, Balance::PowerOfTwoChoices] {
            let balancer = Balancer::new(strategy.clone(), &replicas);
            assert_eq!(picks(&balancer, &replicas, 5), [1; 5], "{strategy:?}");
        }
    }

    #[test]
    fn consistent_hash_keeps_a_key_on_its_replica_and_moves_only_a_lost_replicas_keys() {
        let replicas = replicas(&[1, 1, 1]);
        let header = http::HeaderName::from_static("x-tenant");
        let balancer = Balancer::new(
            Balance::ConsistentHash {
                header: header.clone(),
            },
            &replicas,
        );
        let pick = |key: &str, candidates: &[usize]| {
            let mut headers = http::HeaderMap::new();
            headers.insert(&header, key.parse().unwrap());
            balancer.pick(&replicas, candidates, &headers)
        };
        let keys: Vec<String> = (0..300).map(|i| format!("tenant-{i}")).collect();
        let placed: Vec<usize> = keys.iter().map(|k| pick(k, &[0, 1, 2])).collect();
        for (key, replica) in keys.iter().zip(&placed) {
            assert_eq!(pick(key, &[0, 1, 2]), *replica, "stable for {key}");
        }
        for replica in 0..3 {
            let share = placed.iter().filter(|r| **r == replica).count();
            assert!(
                (50..=150).contains(&share),
                "replica {replica} got {share} of 300"
            );
        }
        // Replica 2 goes away: only its keys move.
        for (key, replica) in keys.iter().zip(&placed) {
            let now = pick(key, &[0, 1]);
            if *replica != 2 {
                assert_eq!(now, *replica, "{key} stayed");
            }
        }
    }
}
