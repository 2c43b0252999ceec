//! Group commit: single-row writes of one kind that arrive together reach PostgreSQL as one
//! statement, committed once, each caller still answered on its own once its row is durable.
//!
//! Why: a statement on its own costs PostgreSQL a parse-bind-execute, a commit and a flush, and
//! costs sqlx a connection check-out with a ping on its return. On the benchmark machine (2
//! cores shared by the service, the load generator and the database) one statement per
//! accepted message kept PostgreSQL on a whole core at 2,665 messages/s, and the dispatcher's
//! finishes, which arrive in bursts when a batch of sends comes back, waited 13 ms (median) for
//! a connection. Here a burst is one statement: the cost of a write shrinks as load grows, and
//! an idle service still writes at once (a batch is whatever is waiting, even one row).

use std::future::Future;
use std::sync::Arc;

use ports::StoreError;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Most rows in one statement; beyond this a batch gains little and a statement's parameter
/// arrays grow large.
const MAX_ROWS: usize = 256;
/// Statements of one kind in flight at once: while some run, the writes arriving meanwhile
/// gather into the next.
const WRITERS: usize = 2;
/// Writes waiting for a writer; callers wait for room beyond it.
const QUEUE: usize = 4_096;

/// One kind of write that can be batched.
pub(crate) trait BatchWrite: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;

    /// Writes `items` in one statement, durable when it returns, with one output per item in
    /// the items' order.
    fn write(
        &self,
        pool: &PgPool,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, StoreError>> + Send;
}

type Answer<W> = oneshot::Sender<Result<<W as BatchWrite>::Output, StoreError>>;
type Job<W> = (<W as BatchWrite>::Item, Answer<W>);

/// Hands writes to the writer tasks. The tasks end when the last clone of the store that
/// owns this is dropped.
pub(crate) struct Batcher<W: BatchWrite> {
    jobs: mpsc::Sender<Job<W>>,
}

impl<W: BatchWrite> std::fmt::Debug for Batcher<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<W: BatchWrite> Batcher<W> {
    pub(crate) fn start(write: W, pool: PgPool) -> Self {
        let (jobs, waiting) = mpsc::channel(QUEUE);
        let (write, waiting) = (Arc::new(write), Arc::new(Mutex::new(waiting)));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(write.clone(), pool.clone(), waiting.clone()));
        }
        Self { jobs }
    }

    /// Writes `item` with whatever other writes are waiting; returns once it is durable.
    pub(crate) async fn write(&self, item: W::Item) -> Result<W::Output, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send((item, answer))
            .await
            .map_err(|_| writer_gone())?;
        answered.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

async fn write_batches<W: BatchWrite>(
    write: Arc<W>,
    pool: PgPool,
    waiting: Arc<Mutex<mpsc::Receiver<Job<W>>>>,
) {
    let mut batch = Vec::with_capacity(MAX_ROWS);
    loop {
        // Waits for one write, then takes every other one already waiting.
        if waiting.lock().await.recv_many(&mut batch, MAX_ROWS).await == 0 {
            return;
        }
        let (items, answers): (Vec<W::Item>, Vec<Answer<W>>) = batch.drain(..).unzip();
        match write.write(&pool, &items).await {
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
            // One row the database refuses must not fail the writes that came with it: each
            // is tried alone, and only what fails alone fails.
            Err(_) => {
                for (item, answer) in items.into_iter().zip(answers) {
                    let alone = write
                        .write(&pool, std::slice::from_ref(&item))
                        .await
                        .and_then(|outputs| {
                            outputs.into_iter().next().ok_or_else(|| {
                                StoreError::Corrupt("a write returned no row".into())
                            })
                        });
                    let _ = answer.send(alone);
                }
            }
        }
    }
}
