//! The threads that compute bcrypt, one per core, off the async runtime.
//!
//! A cost-10 hash costs tens of milliseconds of CPU: on a Tokio worker it would stall every
//! other reconcile there. Jobs wait in one queue; a free thread takes up to
//! [`MAX_LANES`](super::eks::MAX_LANES) jobs of one cost and computes them interleaved
//! (see [`eks`](super::eks)), so a burst of new accounts is hashed at several times the rate
//! of one hash after another, while a lone job (a password rotation) is taken at once, alone.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::eks::{self, Digest, Lane, MAX_LANES};

/// One password to hash with a given salt and cost.
struct Job {
    password: Zeroizing<Vec<u8>>,
    salt: [u8; 16],
    cost: u32,
    done: oneshot::Sender<Digest>,
}

#[derive(Default)]
struct Queue {
    jobs: Mutex<Pending>,
    arrived: Condvar,
}

#[derive(Default)]
struct Pending {
    jobs: VecDeque<Job>,
    /// No handle is left: the threads finish what is queued and end.
    closed: bool,
}

/// The pool's handle; the threads end when the last clone of it is dropped.
pub struct HashPool {
    queue: Arc<Queue>,
}

/// Why a digest was not computed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("bcrypt cost {0} is outside 4 to 31")]
    Cost(u32),
    /// Does not happen short of a bug: see `work`.
    #[error("the bcrypt threads stopped before the hash was computed")]
    Stopped,
}

impl HashPool {
    /// Starts `threads` threads (at least one).
    pub fn start(threads: usize) -> Self {
        let queue = Arc::new(Queue::default());
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("bcrypt-{i}"))
                .spawn(move || work(&queue))
                .expect("the operating system refused a thread for bcrypt");
        }
        HashPool { queue }
    }

    /// bcrypt's 23-byte digest of `password` with `salt` at `cost` (in [`eks::COSTS`]).
    pub async fn digest(
        &self,
        password: Zeroizing<Vec<u8>>,
        salt: [u8; 16],
        cost: u32,
    ) -> Result<Digest, PoolError> {
        if !eks::COSTS.contains(&cost) {
            return Err(PoolError::Cost(cost));
        }
        let (done, result) = oneshot::channel();
        let job = Job {
            password,
            salt,
            cost,
            done,
        };
        self.pending().jobs.push_back(job);
        self.queue.arrived.notify_one();
        result.await.map_err(|_| PoolError::Stopped)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic never happens while the lock is held (only queue operations run under it).
        self.queue
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.pending().closed = true;
        self.queue.arrived.notify_all();
    }
}

/// A thread's loop: wait for jobs, take a batch, compute it, answer.
fn work(queue: &Queue) {
    loop {
        let batch = {
            let mut pending = queue.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            while pending.jobs.is_empty() {
                if pending.closed {
                    return;
                }
                pending = queue
                    .arrived
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            take_batch(&mut pending.jobs)
        };
        // A panic here would be a bug in `eks`; the batch's callers then see `Stopped`
        // (their senders are dropped) and the thread goes on with the next jobs.
        let digests = catch_unwind(AssertUnwindSafe(|| compute(&batch)));
        if let Ok(digests) = digests {
            for (job, digest) in batch.into_iter().zip(digests) {
                let _ = job.done.send(digest);
            }
        }
    }
}

/// Up to [`MAX_LANES`] jobs of the first job's cost, oldest first. A job whose caller has
/// gone (its reconcile cancelled) is dropped, not computed.
fn take_batch(jobs: &mut VecDeque<Job>) -> Vec<Job> {
    jobs.retain(|j| !j.done.is_closed());
    let cost = jobs.front().map(|j| j.cost);
    let mut batch = Vec::with_capacity(MAX_LANES);
    let mut i = 0;
    while batch.len() < MAX_LANES && i < jobs.len() {
        if Some(jobs[i].cost) != cost {
            i += 1;
        } else if let Some(job) = jobs.remove(i) {
            batch.push(job);
        }
    }
    batch
}

fn compute(batch: &[Job]) -> Vec<Digest> {
    let cost = batch[0].cost;
    fn lane(job: &Job) -> Lane<'_> {
        Lane {
            password: job.password.as_slice(),
            salt: job.salt,
        }
    }
    match batch {
        [a] => eks::bcrypt::<1>(cost, &[lane(a)]).to_vec(),
        [a, b] => eks::bcrypt::<2>(cost, &[lane(a), lane(b)]).to_vec(),
        [a, b, c] => eks::bcrypt::<3>(cost, &[lane(a), lane(b), lane(c)]).to_vec(),
        [a, b, c, d] => eks::bcrypt::<4>(cost, &[lane(a), lane(b), lane(c), lane(d)]).to_vec(),
        _ => unreachable!("a batch holds 1 to MAX_LANES jobs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(cost: u32) -> (Job, oneshot::Receiver<Digest>) {
        let (done, rx) = oneshot::channel();
        let job = Job {
            password: Zeroizing::new(b"p".to_vec()),
            salt: [0; 16],
            cost,
            done,
        };
        (job, rx)
    }

    #[test]
    fn a_batch_takes_one_cost_oldest_first_and_at_most_four() {
        let (mut jobs, _waiting): (VecDeque<Job>, Vec<_>) =
            [10, 4, 10, 10, 10, 10].into_iter().map(job).unzip();
        let batch = take_batch(&mut jobs);
        assert_eq!(batch.len(), MAX_LANES);
        assert!(batch.iter().all(|j| j.cost == 10));
        let left: Vec<u32> = jobs.iter().map(|j| j.cost).collect();
        assert_eq!(left, vec![4, 10]);
        assert_eq!(take_batch(&mut jobs).len(), 1, "the cost-4 job, alone");
    }

    #[test]
    fn a_job_whose_caller_has_gone_is_not_computed() {
        let (gone, rx) = job(10);
        drop(rx);
        let (waited, _rx) = job(10);
        let mut jobs = VecDeque::from([gone, waited]);
        assert_eq!(take_batch(&mut jobs).len(), 1);
        assert!(jobs.is_empty());
    }

    #[tokio::test]
    async fn a_cost_outside_bcrypts_is_refused_before_any_work() {
        let pool = HashPool::start(1);
        for cost in [0, 3, 32, 64] {
            let refused = pool
                .digest(Zeroizing::new(b"p".to_vec()), [0; 16], cost)
                .await;
            assert!(matches!(refused, Err(PoolError::Cost(c)) if c == cost));
        }
    }

    #[tokio::test]
    async fn concurrent_jobs_each_get_their_own_digest() {
        let pool = Arc::new(HashPool::start(2));
        let tasks: Vec<_> = (0..9u8)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let password = format!("password-{i}").into_bytes();
                    let digest = pool
                        .digest(Zeroizing::new(password.clone()), [i; 16], 4)
                        .await
                        .unwrap();
                    (password, i, digest)
                })
            })
            .collect();
        for task in tasks {
            let (password, i, digest) = task.await.unwrap();
            let [alone] = eks::bcrypt::<1>(
                4,
                &[Lane {
                    password: &password,
                    salt: [i; 16],
                }],
            );
            assert_eq!(digest, alone);
        }
    }
}
