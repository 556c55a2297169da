//! A counter subgraph (not part of the benchmark): exercises mutations and their ordering.

use async_graphql::{Context, EmptySubscription, Object, Schema};

pub use flowfleet_bench::subgraphs::*;

// ---------- counter (not part of the benchmark; exercises mutations) ----------

pub struct CounterQuery;

#[Object(name = "Query")]
impl CounterQuery {
    async fn value(&self, ctx: &Context<'_>) -> i32 {
        ctx.data_unchecked::<std::sync::Arc<std::sync::atomic::AtomicI32>>()
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub struct CounterMutation;

#[Object(name = "Mutation")]
impl CounterMutation {
    async fn increment(&self, ctx: &Context<'_>, by: i32) -> i32 {
        ctx.data_unchecked::<std::sync::Arc<std::sync::atomic::AtomicI32>>()
            .fetch_add(by, std::sync::atomic::Ordering::SeqCst)
            + by
    }
}

pub type CounterSchema = Schema<CounterQuery, CounterMutation, EmptySubscription>;

pub fn counter() -> CounterSchema {
    Schema::build(CounterQuery, CounterMutation, EmptySubscription)
        .data(std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0)))
        .enable_federation()
        .finish()
}
