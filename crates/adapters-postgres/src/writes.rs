//! [`Batched`]: every batched write of a store (see `store_batch`), started together on the
//! hot paths' connections: those of `messages` (enqueue, finish), `verifications` (create,
//! checks, lookups of pending ones), `rate_limits` (send limits), `fraud` (the guard's code counts and decision log) and
//! `webhooks` (the deliverer's kept event data and finished deliveries).

use std::time::Duration;

use store_batch::{Batcher, Writers};

use crate::connections::Connections;
use crate::fraud::{CodeCounter, DecisionLogger};
use crate::messages::{Enqueues, Finishes};
use crate::rate_limits::Acquires;
use crate::verifications::{Checks, Creates, Lookups};
use crate::webhooks::{DeliveryFinishes, EventData};

/// Statements of one kind in flight at once, and how long a writer under load waits for more
/// writes: under load the writes of a burst reach a writer a few at a time, and a statement
/// costs PostgreSQL about the same for a few rows as for many, so less CPU spent per write
/// leaves more for the rest (`docs/performance.md`, "Lingering writers").
const WRITERS: Writers = Writers {
    count: 2,
    linger: Duration::from_millis(1),
};

/// The batched writes of one store.
#[derive(Debug)]
pub(crate) struct Batched {
    pub enqueues: Batcher<Enqueues>,
    pub finishes: Batcher<Finishes>,
    pub creates: Batcher<Creates>,
    pub acquires: Batcher<Acquires>,
    pub checks: Batcher<Checks>,
    pub lookups: Batcher<Lookups>,
    pub code_counts: Batcher<CodeCounter>,
    pub decisions: Batcher<DecisionLogger>,
    pub delivery_finishes: Batcher<DeliveryFinishes>,
    pub event_data: Batcher<EventData>,
}

impl Batched {
    pub(crate) fn start(connections: &Connections) -> Self {
        Self {
            enqueues: Batcher::start(Enqueues, connections.clone(), WRITERS),
            finishes: Batcher::start(Finishes, connections.clone(), WRITERS),
            creates: Batcher::start(Creates, connections.clone(), WRITERS),
            // One at a time: each batch locks a client's API-key row for all its sends.
            acquires: Batcher::start(
                Acquires,
                connections.clone(),
                Writers {
                    count: 1,
                    ..WRITERS
                },
            ),
            checks: Batcher::start(Checks, connections.clone(), WRITERS),
            lookups: Batcher::start(Lookups, connections.clone(), WRITERS),
            code_counts: Batcher::start(CodeCounter, connections.clone(), WRITERS),
            decisions: Batcher::start(DecisionLogger, connections.clone(), WRITERS),
            delivery_finishes: Batcher::start(DeliveryFinishes, connections.clone(), WRITERS),
            event_data: Batcher::start(EventData, connections.clone(), WRITERS),
        }
    }
}
