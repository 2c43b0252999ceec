//! [`Batched`]: every batched write of a store (see `store_batch`), started together on the
//! writer connection: those of `messages` (enqueue, finish).

use std::time::Duration;

use sqlx::SqlitePool;
use store_batch::{Batcher, Writers};

use crate::messages::{Enqueues, Finishes};

/// SQLite has one writer at a time, so one writer task; and a batch costs it little beyond its
/// rows, so a writer lingering for more (as on PostgreSQL) would only leave the database idle
/// and accept fewer messages.
const WRITERS: Writers = Writers {
    count: 1,
    linger: Duration::ZERO,
};

/// The batched writes of one store.
#[derive(Debug)]
pub(crate) struct Batched {
    pub enqueues: Batcher<Enqueues>,
    pub finishes: Batcher<Finishes>,
}

impl Batched {
    pub(crate) fn start(writer: &SqlitePool) -> Self {
        Self {
            enqueues: Batcher::start(Enqueues, writer.clone(), WRITERS),
            finishes: Batcher::start(Finishes, writer.clone(), WRITERS),
        }
    }
}
