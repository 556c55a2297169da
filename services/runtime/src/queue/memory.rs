//! The in-process task queue for embedded mode: priority order (FIFO within a
//! priority), delays, bounded prefetch, and redelivery of whatever a dropped consumer
//! held, all in memory.
//!
//! Nothing here survives a restart, and nothing needs to: the execution engine's
//! database is the record of which steps are due, and the engine re-enqueues them
//! when it starts (see the execution service's sweeper).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::{QueueError, Settle, Task, TaskConsumer, TaskDelivery, TaskQueue};

struct Entry {
    task: Task,
    redelivered: bool,
    seq: u64,
}

impl Entry {
    fn key(&self) -> (u8, Reverse<u64>) {
        (self.task.priority, Reverse(self.seq))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

#[derive(Default)]
struct Queue {
    ready: Mutex<(BinaryHeap<Entry>, u64)>,
    notify: Notify,
}

impl Queue {
    fn push(&self, task: Task, redelivered: bool) {
        let mut guard = self.ready.lock().expect("queue lock poisoned");
        let (heap, seq) = &mut *guard;
        *seq += 1;
        heap.push(Entry {
            task,
            redelivered,
            seq: *seq,
        });
        drop(guard);
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Entry> {
        self.ready.lock().expect("queue lock poisoned").0.pop()
    }

    fn len(&self) -> usize {
        self.ready.lock().expect("queue lock poisoned").0.len()
    }
}

/// Named priority queues in memory.
#[derive(Clone, Default)]
pub struct MemoryQueue {
    queues: Arc<Mutex<HashMap<String, Arc<Queue>>>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        self.queues
            .lock()
            .expect("queue map lock poisoned")
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    async fn enqueue(&self, queue: &str, task: &Task) -> Result<(), QueueError> {
        let q = self.queue(queue);
        let wait = task.wait();
        let task = task.clone();
        if wait.is_zero() {
            q.push(task, false);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                q.push(task, false);
            });
        }
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn TaskConsumer>, QueueError> {
        crate::series::register_queue(queue);
        Ok(Box::new(MemoryConsumer {
            name: queue.to_string(),
            queue: self.queue(queue),
            window: Arc::new(Semaphore::new(prefetch.max(1) as usize)),
            producer: Arc::new(self.clone()),
        }))
    }

    fn durable(&self) -> bool {
        false
    }

    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        Ok(self.queue(queue).len() as u64)
    }
}

struct MemoryConsumer {
    name: String,
    queue: Arc<Queue>,
    /// One permit per unsettled delivery: the prefetch bound.
    window: Arc<Semaphore>,
    producer: Arc<MemoryQueue>,
}

#[async_trait]
impl TaskConsumer for MemoryConsumer {
    async fn next(&mut self) -> Option<TaskDelivery> {
        let permit = self.window.clone().acquire_owned().await.ok()?;
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(entry) = self.queue.pop() {
                let settle = MemorySettle {
                    queue: self.queue.clone(),
                    task: entry.task.clone(),
                    settled: AtomicBool::new(false),
                    _permit: permit,
                };
                return Some(TaskDelivery::new(
                    entry.task,
                    entry.redelivered,
                    self.name.clone(),
                    self.producer.clone(),
                    Box::new(settle),
                ));
            }
            notified.await;
        }
    }
}

/// Holds a prefetch permit until settled; dropped unsettled, it puts the task back.
struct MemorySettle {
    queue: Arc<Queue>,
    task: Task,
    settled: AtomicBool,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(&self) -> Result<(), QueueError> {
        self.settled.store(true, AtomicOrdering::SeqCst);
        Ok(())
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        if !self.settled.swap(true, AtomicOrdering::SeqCst) {
            self.queue.push(self.task.clone(), true);
        }
        Ok(())
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        if !self.settled.load(AtomicOrdering::SeqCst) {
            self.queue.push(self.task.clone(), true);
        }
    }
}
