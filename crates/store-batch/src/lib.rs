//! Group commit for store adapters: single-row writes of one kind that arrive together reach
//! the database as one statement or transaction, committed once, each caller still answered
//! on its own once its row is durable.
//!
//! Why: a write on its own costs the database a statement, a commit and a flush, and costs the
//! driver a connection check-out (sqlx pings a PostgreSQL connection on its return), and the
//! dispatcher's finishes arrive in bursts when a batch of sends comes back
//! (`docs/performance.md`, "Group commit"). Here a burst is one write: its cost shrinks as load
//! grows, and an idle service still writes at once (a batch is whatever is waiting, even one
//! row).
//!
//! This crate knows no database: an adapter says how to write a batch ([`BatchWrite`]) on its
//! own connection pool. It depends on `ports` (for [`StoreError`]) and tokio, nothing else.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ports::StoreError;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

/// Most rows in one statement; beyond this a batch gains little and a statement's parameter
/// arrays grow large.
const MAX_ROWS: usize = 256;

/// Writes waiting for a writer; callers wait for room beyond it.
const QUEUE: usize = 4_096;

/// One kind of write that can be batched.
pub trait BatchWrite: Send + Sync + 'static {
    /// What the writes run on (a connection pool).
    type Pool: Clone + Send + Sync + 'static;
    type Item: Send + 'static;
    type Output: Send + 'static;

    /// Writes `items` at once, durable when it returns, with one output per item in the
    /// items' order.
    fn write(
        &self,
        pool: &Self::Pool,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, StoreError>> + Send;
}

type Answer<W> = oneshot::Sender<Result<<W as BatchWrite>::Output, StoreError>>;
/// A write, who waits for its answer, and since when.
type Job<W> = (<W as BatchWrite>::Item, Answer<W>, Instant);

/// When a batch of this batcher last failed because the database was unavailable, shared by
/// its writers: a write queued before then waited for that failure (up to the adapter's
/// connection timeout) and is answered at once, rather than after a wait of its own for the
/// same database; a write queued after it is tried as usual.
#[derive(Debug, Default)]
struct LastUnavailable(std::sync::Mutex<Option<Instant>>);

impl LastUnavailable {
    fn get(&self) -> Option<Instant> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, at: Instant) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }
}

/// Hands writes to the writer tasks. The tasks end when the last clone of the store that
/// owns this is dropped.
pub struct Batcher<W: BatchWrite> {
    jobs: mpsc::Sender<Job<W>>,
}

impl<W: BatchWrite> std::fmt::Debug for Batcher<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

/// How many batches are written at once, and how long a writer under load lingers.
#[derive(Debug, Clone, Copy)]
pub struct Writers {
    pub count: usize,
    /// How long a writer under load (its last batch held more than one write) waits for more
    /// writes before it takes its next batch, like PostgreSQL's `commit_delay` for whole
    /// statements: worth it where a batch costs about the same whatever its size. An idle
    /// store writes at once: a write on its own does not wait.
    pub linger: Duration,
}

impl<W: BatchWrite> Batcher<W> {
    /// Starts the writer tasks, each writing one batch at a time: while some write, the writes
    /// arriving meanwhile gather into the next batch. Needs a tokio runtime.
    pub fn start(write: W, pool: W::Pool, writers: Writers) -> Self {
        let (jobs, waiting) = mpsc::channel(QUEUE);
        let (write, waiting) = (Arc::new(write), Arc::new(Mutex::new(waiting)));
        let unavailable = Arc::new(LastUnavailable::default());
        for _ in 0..writers.count.max(1) {
            tokio::spawn(write_batches(
                write.clone(),
                pool.clone(),
                waiting.clone(),
                unavailable.clone(),
                writers.linger,
            ));
        }
        Self { jobs }
    }

    /// Writes `item` with whatever other writes are waiting; returns once it is durable.
    pub async fn write(&self, item: W::Item) -> Result<W::Output, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send((item, answer, Instant::now()))
            .await
            .map_err(|_| writer_gone())?;
        answered.await.map_err(|_| writer_gone())?
    }
}

/// Waits for one write, then (after `linger`) takes every other one waiting. `false` once
/// every sender is gone.
async fn next_batch<W: BatchWrite>(
    waiting: &Mutex<mpsc::Receiver<Job<W>>>,
    batch: &mut Vec<Job<W>>,
    linger: Duration,
) -> bool {
    // Held while lingering, so that the writes gathered go to this writer's batch.
    let mut waiting = waiting.lock().await;
    if waiting.recv_many(batch, MAX_ROWS).await == 0 {
        return false;
    }
    if !linger.is_zero() && batch.len() < MAX_ROWS {
        tokio::time::sleep(linger).await;
        while batch.len() < MAX_ROWS {
            let Ok(job) = waiting.try_recv() else { break };
            batch.push(job);
        }
    }
    true
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

async fn write_batches<W: BatchWrite>(
    write: Arc<W>,
    pool: W::Pool,
    waiting: Arc<Mutex<mpsc::Receiver<Job<W>>>>,
    unavailable: Arc<LastUnavailable>,
    linger: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_ROWS);
    let mut under_load = false;
    loop {
        let linger = if under_load { linger } else { Duration::ZERO };
        if !next_batch::<W>(&waiting, &mut batch, linger).await {
            return;
        }
        under_load = batch.len() > 1;
        if let Some(failed_at) = unavailable.get() {
            let (waited, fresh): (Vec<Job<W>>, Vec<Job<W>>) = batch
                .drain(..)
                .partition(|(_, _, queued_at)| *queued_at < failed_at);
            for (_, answer, _) in waited {
                let _ = answer.send(Err(StoreError::Unavailable(
                    "the database was unavailable while this write waited".into(),
                )));
            }
            batch.extend(fresh);
            if batch.is_empty() {
                continue;
            }
        }
        let (items, answers): (Vec<W::Item>, Vec<Answer<W>>) = batch
            .drain(..)
            .map(|(item, answer, _)| (item, answer))
            .unzip();
        let written = write.write(&pool, &items).await;
        if matches!(written, Err(StoreError::Unavailable(_))) {
            unavailable.set(Instant::now());
        }
        match written {
            Ok(outputs) if outputs.len() == items.len() => {
                for (answer, output) in answers.into_iter().zip(outputs) {
                    // A caller that went away no longer needs its answer.
                    let _ = answer.send(Ok(output));
                }
            }
            Ok(outputs) => {
                let error = format!("{} rows written for {} writes", outputs.len(), items.len());
                for answer in answers {
                    let _ = answer.send(Err(StoreError::Corrupt(error.clone())));
                }
            }
            Err(error) if items.len() == 1 => {
                if let Some(answer) = answers.into_iter().next() {
                    let _ = answer.send(Err(error));
                }
            }
            // The database, not a row, failed: each row alone would wait for it in turn, and
            // the writes queued behind them with it.
            Err(StoreError::Unavailable(error)) => {
                let error = error.to_string();
                for answer in answers {
                    let _ = answer.send(Err(StoreError::Unavailable(error.clone().into())));
                }
            }
            // One row the database refuses must not fail the writes that came with it: each
            // is tried alone, and only what fails alone fails.
            Err(_) => {
                let mut down: Option<String> = None;
                for (item, answer) in items.into_iter().zip(answers) {
                    // Once the database itself failed, the rows after wait for it no more.
                    if let Some(error) = &down {
                        let _ = answer.send(Err(StoreError::Unavailable(error.clone().into())));
                        continue;
                    }
                    let alone = write
                        .write(&pool, std::slice::from_ref(&item))
                        .await
                        .and_then(|outputs| {
                            outputs.into_iter().next().ok_or_else(|| {
                                StoreError::Corrupt("a write returned no row".into())
                            })
                        });
                    if let Err(error @ StoreError::Unavailable(_)) = &alone {
                        unavailable.set(Instant::now());
                        down = Some(error.to_string());
                    }
                    let _ = answer.send(alone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// Doubles numbers; refuses 13, and any batch holding it. Notes each batch it was given.
    #[derive(Default)]
    struct Doubling {
        batches: StdMutex<Vec<Vec<u32>>>,
    }

    impl BatchWrite for Arc<Doubling> {
        type Pool = ();
        type Item = u32;
        type Output = u32;

        async fn write(&self, _: &(), items: &[u32]) -> Result<Vec<u32>, StoreError> {
            self.batches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(items.to_vec());
            tokio::task::yield_now().await;
            if items.contains(&13) {
                return Err(StoreError::Refused("13".into()));
            }
            Ok(items.iter().map(|n| n * 2).collect())
        }
    }

    const LINGER: Duration = Duration::from_millis(1);

    fn one_writer(doubling: &Arc<Doubling>) -> Batcher<Arc<Doubling>> {
        Batcher::start(
            doubling.clone(),
            (),
            Writers {
                count: 1,
                linger: LINGER,
            },
        )
    }

    async fn write_all(batcher: Arc<Batcher<Arc<Doubling>>>, numbers: &[u32]) -> Vec<String> {
        let tasks: Vec<_> = numbers
            .iter()
            .map(|&n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.write(n).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(match task.await.unwrap() {
                Ok(doubled) => doubled.to_string(),
                Err(error) => error.to_string(),
            });
        }
        answers
    }

    #[tokio::test]
    async fn writes_waiting_together_are_one_batch_and_each_gets_its_own_answer() {
        let doubling = Arc::new(Doubling::default());
        let batcher = Arc::new(one_writer(&doubling));
        let answers = write_all(batcher, &(20..40).collect::<Vec<_>>()).await;
        let expected: Vec<String> = (20..40).map(|n: u32| (n * 2).to_string()).collect();
        assert_eq!(answers, expected);
        let batches = doubling.batches.lock().unwrap().len();
        assert!(batches < 20, "20 writes in {batches} batches");
    }

    #[tokio::test]
    async fn a_refused_item_fails_alone_and_its_batch_is_written_one_by_one() {
        let doubling = Arc::new(Doubling::default());
        let batcher = Arc::new(one_writer(&doubling));
        let answers = write_all(batcher, &[1, 13, 2]).await;
        assert_eq!(answers[0], "2");
        assert!(answers[1].contains("13"), "{answers:?}");
        assert_eq!(answers[2], "4");
    }

    /// Refuses every batch as the database being down, counting the writes it was given.
    #[derive(Default)]
    struct Down {
        tried: StdMutex<usize>,
    }

    impl BatchWrite for Arc<Down> {
        type Pool = ();
        type Item = u32;
        type Output = u32;

        async fn write(&self, _: &(), items: &[u32]) -> Result<Vec<u32>, StoreError> {
            *self.tried.lock().unwrap() += 1;
            tokio::task::yield_now().await;
            Err(StoreError::Unavailable(
                format!("{} writes refused", items.len()).into(),
            ))
        }
    }

    /// Tried row by row, each write of a batch would wait for the database in turn (an
    /// acquire timeout each), and so would every write queued behind them.
    #[tokio::test]
    async fn a_batch_refused_because_the_database_is_down_fails_at_once_not_row_by_row() {
        let down = Arc::new(Down::default());
        let batcher = Arc::new(Batcher::start(
            down.clone(),
            (),
            Writers {
                count: 1,
                linger: LINGER,
            },
        ));
        let tasks: Vec<_> = (0..20)
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.write(n).await })
            })
            .collect();
        for task in tasks {
            assert!(matches!(
                task.await.unwrap(),
                Err(StoreError::Unavailable(_))
            ));
        }
        let tried = *down.tried.lock().unwrap();
        assert!(tried < 20, "20 writes tried in {tried} statements");
    }

    /// A database that takes a second to fail each batch (a connection timeout), or to write
    /// one once it is back.
    #[derive(Default)]
    struct SlowlyDown {
        up: std::sync::atomic::AtomicBool,
        tried: StdMutex<Vec<Vec<u32>>>,
    }

    impl BatchWrite for Arc<SlowlyDown> {
        type Pool = ();
        type Item = u32;
        type Output = u32;

        async fn write(&self, _: &(), items: &[u32]) -> Result<Vec<u32>, StoreError> {
            self.tried.lock().unwrap().push(items.to_vec());
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.up.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(items.to_vec())
            } else {
                Err(StoreError::Unavailable("timed out".into()))
            }
        }
    }

    /// A write queued while a batch waits for a database that is down is answered with that
    /// batch's failure, not after a wait of its own (a request would wait both); a write
    /// queued afterwards is tried, and written once the database is back.
    #[tokio::test(start_paused = true)]
    async fn writes_queued_behind_a_batch_the_database_failed_fail_with_it() {
        let down = Arc::new(SlowlyDown::default());
        let batcher = Arc::new(Batcher::start(
            down.clone(),
            (),
            Writers {
                count: 1,
                linger: LINGER,
            },
        ));
        let started = tokio::time::Instant::now();
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.write(1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let queued = tokio::spawn({
            let batcher = batcher.clone();
            async move { (batcher.write(2).await, started.elapsed()) }
        });
        assert!(matches!(
            first.await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        let (answer, took) = queued.await.unwrap();
        assert!(
            matches!(answer, Err(StoreError::Unavailable(_))),
            "{answer:?}"
        );
        assert_eq!(
            took,
            Duration::from_secs(1),
            "the queued write waited on its own"
        );
        assert_eq!(*down.tried.lock().unwrap(), [vec![1]]);

        down.up.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(batcher.write(3).await.unwrap(), 3);
    }

    /// Written row by row after a refusal, the rows after one that found the database down
    /// fail with it instead of each waiting for the database in turn.
    #[tokio::test(start_paused = true)]
    async fn rows_tried_alone_stop_at_the_first_that_finds_the_database_down() {
        #[derive(Default)]
        struct RefusesThenDown {
            tried: StdMutex<Vec<Vec<u32>>>,
        }
        impl BatchWrite for Arc<RefusesThenDown> {
            type Pool = ();
            type Item = u32;
            type Output = u32;
            async fn write(&self, _: &(), items: &[u32]) -> Result<Vec<u32>, StoreError> {
                let first = self.tried.lock().unwrap().is_empty();
                self.tried.lock().unwrap().push(items.to_vec());
                if first {
                    return Err(StoreError::Refused("a row refused".into()));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Err(StoreError::Unavailable("timed out".into()))
            }
        }
        let store = Arc::new(RefusesThenDown::default());
        let batcher = Arc::new(Batcher::start(
            store.clone(),
            (),
            Writers {
                count: 1,
                linger: LINGER,
            },
        ));
        let started = tokio::time::Instant::now();
        let (sender, mut jobs) = mpsc::unbounded_channel();
        // One batch of three: queued before the writer looks.
        for n in 1..=3 {
            let (batcher, sender) = (batcher.clone(), sender.clone());
            tokio::spawn(async move { sender.send(batcher.write(n).await) });
        }
        drop(sender);
        let mut answers = Vec::new();
        while let Some(answer) = jobs.recv().await {
            answers.push(answer);
        }
        assert!(answers
            .iter()
            .all(|answer| matches!(answer, Err(StoreError::Unavailable(_)))));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(store.tried.lock().unwrap().len(), 2, "{:?}", store.tried);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_on_its_own_is_written_at_once() {
        let doubling = Arc::new(Doubling::default());
        let batcher = one_writer(&doubling);
        let start = tokio::time::Instant::now();
        assert_eq!(batcher.write(1).await.unwrap(), 2);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn under_load_writes_arriving_within_the_linger_share_a_batch() {
        let doubling = Arc::new(Doubling::default());
        let batcher = Arc::new(one_writer(&doubling));
        write_all(batcher.clone(), &[1, 2]).await;
        let late = {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LINGER / 2).await;
                batcher.write(4).await
            })
        };
        assert_eq!(batcher.write(3).await.unwrap(), 6);
        assert_eq!(late.await.unwrap().unwrap(), 8);
        assert_eq!(*doubling.batches.lock().unwrap(), [vec![1, 2], vec![3, 4]]);
    }
}
