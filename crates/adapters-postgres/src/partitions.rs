//! Weekly partitions on PostgreSQL (migration 0037): messages and verifications are
//! partitioned by ranges of their UUIDv7 ids, a week each, and their attempts, delivery events
//! and codes over the same ranges. The service creates the weeks ahead of the ids being minted;
//! retention detaches a week that is wholly past the retention and drops it, folding its
//! messages into the rollups first, instead of deleting its rows one by one.

use std::sync::PoisonError;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ports::{Removed, StoreError};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::lifecycle::fold_table_sql;
use crate::rows::store_error;
use crate::verifications::CLOCK_SKEW;

/// Weeks are created this far ahead of the ids minted now, so that a week's partition exists
/// long before its first row, however many maintenance runs fail meanwhile.
const AHEAD_DAYS: i32 = 14;

/// How long a detach waits for its lock (the whole parent's, for a moment): waiting longer
/// would hold the API's queries behind it. A detach not granted is tried again a few times,
/// then at the next run.
const LOCK_TIMEOUT: &str = "100ms";
const DETACH_TRIES: u32 = 3;
const DETACH_PAUSE: Duration = Duration::from_millis(200);

/// The PostgreSQL error of a lock not granted within `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// A partitioned table with the tables partitioned over the same ranges as it, which retention
/// drops with it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Family {
    Messages,
    Verifications,
}

impl Family {
    /// The parent first.
    fn tables(self) -> &'static [&'static str] {
        match self {
            Family::Messages => &["messages", "message_attempts", "message_events"],
            Family::Verifications => &["verifications", "verification_codes"],
        }
    }

    fn parent(self) -> &'static str {
        self.tables()[0]
    }

    /// Whether the week `table` may go whole: nothing in it is still in the queue, and
    /// nothing was created at or after `before` (an id's time and a row's creation time agree
    /// only as far as the clocks that made them do).
    fn wholly_expired_sql(self, table: &str) -> String {
        let table = ident(table);
        match self {
            Family::Messages => format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {table} WHERE status = 'queued') \
                 AND NOT EXISTS (SELECT 1 FROM {table} WHERE status = 'sending') \
                 AND NOT EXISTS (SELECT 1 FROM {table} WHERE created_at >= $1)"
            ),
            Family::Verifications => {
                format!("SELECT NOT EXISTS (SELECT 1 FROM {table} WHERE created_at >= $1)")
            }
        }
    }
}

/// Creates the weeks that the ids minted in the next [`AHEAD_DAYS`] fall into, where missing;
/// answers how many partitions it created.
pub(crate) async fn prepare(pool: &PgPool) -> Result<u64, StoreError> {
    let created: i32 = sqlx::query_scalar(
        "SELECT sms_notify_prepare_partitions(now() + make_interval(days => $1))",
    )
    .bind(AHEAD_DAYS)
    .fetch_one(pool)
    .await
    .map_err(store_error)?;
    Ok(u64::try_from(created).unwrap_or_default())
}

/// How long a read [`QueueFloor`] is used before it is read again: far less than the clocks'
/// skew that it allows for.
const QUEUE_FLOOR_AGE: Duration = Duration::from_secs(30);

/// The lowest id a message in the queue (`queued` or `sending`) can have, read now and then:
/// the claims, the in-flight count and the next due time read the weeks from it on, instead
/// of every week's indexes (a database keeping months of messages has a partition a week).
/// A message never returns to the queue once it has left it, and a message's id is minted as
/// it is queued, so no message below the floor joins the queue while it is used.
#[derive(Debug, Default)]
pub(crate) struct QueueFloor(std::sync::Mutex<Option<(std::time::Instant, Floor)>>);

impl QueueFloor {
    pub(crate) async fn get(&self, pool: &PgPool) -> Result<Floor, StoreError> {
        let read = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, floor)) = read {
            if at.elapsed() < QUEUE_FLOOR_AGE {
                return Ok(floor);
            }
        }
        let floor = Floor(queue_floor(pool).await?);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((std::time::Instant::now(), floor));
        Ok(floor)
    }
}

/// The queue's floor as a constant of a statement's text rather than a parameter: the plan
/// then leaves the weeks before it out as it is made, where a generic plan with the floor as
/// a parameter names every week and prunes them each time it starts, a cost that grew with
/// the weeks kept (docs/performance.md, "The floor in the statement"). It is always a week's
/// first id, so each connection plans these statements again only when the floor's week moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Floor(Uuid);

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}'::uuid", self.0)
    }
}

/// The first id of the oldest week that holds a message in the queue, or, when no week
/// before it does, of the week that the first id minted the clocks' skew ago falls in (ids
/// are minted by the system's clock).
async fn queue_floor(pool: &PgPool) -> Result<Uuid, StoreError> {
    let recent = crate::verifications::uuid_at(Utc::now() - CLOCK_SKEW);
    let weeks = message_weeks(pool).await?;
    let begun = weeks.partition_point(|(_, lower)| *lower < recent);
    // The week `recent` falls in is the floor whatever it holds: only older ones are probed.
    let Some(((_, current), older)) = weeks[..begun].split_last() else {
        return Ok(recent);
    };
    for (week, lower) in older {
        let table = ident(week);
        let queued: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE status = 'queued') \
             OR EXISTS (SELECT 1 FROM {table} WHERE status = 'sending')"
        ))
        .fetch_one(pool)
        .await
        .map_err(store_error)?;
        if queued {
            return Ok(*lower);
        }
    }
    Ok(*current)
}

/// Each week of `messages` (not the default partition) with its first id, oldest first; the
/// first week's range starts at MINVALUE, its first id the nil id.
async fn message_weeks(pool: &PgPool) -> Result<Vec<(String, Uuid)>, StoreError> {
    sqlx::query_as(
        r#"SELECT c.relname::text,
               coalesce(substring(pg_get_expr(c.relpartbound, c.oid)
                   FROM 'FROM \(''([0-9a-f-]+)''\)')::uuid,
                   '00000000-0000-0000-0000-000000000000') AS lower
           FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'messages'::regclass
             AND pg_get_expr(c.relpartbound, c.oid) LIKE 'FOR VALUES FROM%'
           ORDER BY lower"#,
    )
    .fetch_all(pool)
    .await
    .map_err(store_error)
}

/// Drops every week of `family` whose ids were all minted before `before` (and before now)
/// and whose rows may all go, each with what hangs off its rows; answers what went. A week a
/// crash left detached is dropped first.
pub(crate) async fn drop_expired(
    pool: &PgPool,
    family: Family,
    before: DateTime<Utc>,
) -> Result<Removed, StoreError> {
    let mut removed = Removed::default();
    for week in detached_weeks(pool, family).await? {
        removed.add(fold_and_drop(pool, family, &week).await?);
    }
    for week in expired_weeks(pool, family, before).await? {
        let whole: bool = sqlx::query_scalar(&family.wholly_expired_sql(&week.of(family.parent())))
            .bind(before)
            .fetch_one(pool)
            .await
            .map_err(store_error)?;
        if whole && detach(pool, family, &week).await? {
            removed.add(fold_and_drop(pool, family, &week).await?);
        }
    }
    Ok(removed)
}

/// A week, as the suffix its partitions' names share (`_p20261207`).
struct Week(String);

impl Week {
    fn of(&self, table: &str) -> String {
        format!("{table}{}", self.0)
    }
}

/// The weeks of `family`'s parent whose ids all sort below the first id minted at `before`
/// (and now), oldest first. The DEFAULT partition has no range, so it is never among them.
async fn expired_weeks(
    pool: &PgPool,
    family: Family,
    before: DateTime<Utc>,
) -> Result<Vec<Week>, StoreError> {
    let weeks: Vec<String> = sqlx::query_scalar(
        r#"SELECT substr(week.relname, length($1) + 1)
           FROM (
               SELECT c.relname,
                   substring(pg_get_expr(c.relpartbound, c.oid)
                       FROM 'TO \(''([0-9a-f-]+)''\)')::uuid AS upper
               FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
               WHERE i.inhparent = $1::regclass
           ) AS week
           WHERE week.upper <= sms_notify_uuid_at(least($2, now()))
           ORDER BY week.upper"#,
    )
    .bind(family.parent())
    .bind(before)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(weeks.into_iter().map(Week).collect())
}

/// The weeks of `family` detached from their parent and not yet dropped (a run that stopped
/// in between).
async fn detached_weeks(pool: &PgPool, family: Family) -> Result<Vec<Week>, StoreError> {
    let weeks: Vec<String> = sqlx::query_scalar(
        r#"SELECT substr(relname, length($1) + 1) FROM pg_class
           WHERE relkind = 'r' AND NOT relispartition
             AND relnamespace = current_schema()::regnamespace
             AND relname LIKE $1 || '\_p%'
           ORDER BY relname"#,
    )
    .bind(family.parent())
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    Ok(weeks.into_iter().map(Week).collect())
}

/// Detaches `week` of every table of `family`, in one short transaction: the parents are locked
/// only for the catalog's change (no row is read), and a lock not granted at once is given up
/// and asked for again after a pause. Answers whether the week was detached.
async fn detach(pool: &PgPool, family: Family, week: &Week) -> Result<bool, StoreError> {
    for _ in 0..DETACH_TRIES {
        let mut transaction = pool.begin().await.map_err(store_error)?;
        let detached = detach_in(&mut transaction, family, week).await;
        match detached {
            Ok(()) => {
                transaction.commit().await.map_err(store_error)?;
                return Ok(true);
            }
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(LOCK_NOT_AVAILABLE) =>
            {
                drop(transaction);
                tokio::time::sleep(DETACH_PAUSE).await;
            }
            Err(error) => return Err(store_error(error)),
        }
    }
    tracing::info!(
        week = week.of(family.parent()),
        "the week's partitions stay attached: the API kept them busy; rows go in batches"
    );
    Ok(false)
}

async fn detach_in(
    connection: &mut PgConnection,
    family: Family,
    week: &Week,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *connection)
        .await?;
    for table in family.tables() {
        sqlx::query(&format!(
            "ALTER TABLE {} DETACH PARTITION {}",
            ident(table),
            ident(&week.of(table))
        ))
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

/// Counts a detached week's rows, folds its messages into the rollups, removes what hangs off
/// its rows elsewhere, and drops its tables, in one transaction: no lock any other query
/// waits for, since nothing else reads a detached table.
async fn fold_and_drop(pool: &PgPool, family: Family, week: &Week) -> Result<Removed, StoreError> {
    let mut transaction = pool.begin().await.map_err(store_error)?;
    crate::rollups::hold_shared(&mut transaction).await?;
    let parent = ident(&week.of(family.parent()));
    let mut counts = Vec::new();
    for table in family.tables() {
        let count: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {}", ident(&week.of(table))))
                .fetch_one(&mut *transaction)
                .await
                .map_err(store_error)?;
        counts.push(u64::try_from(count).unwrap_or_default());
    }
    let count = |index: usize| counts.get(index).copied().unwrap_or_default();
    let mut removed = Removed::default();
    let statements: Vec<String> = match family {
        Family::Messages => {
            removed.messages = count(0);
            removed.attempts = count(1);
            removed.delivery_events = count(2);
            vec![
                fold_table_sql(&parent),
                format!(
                    "DELETE FROM message_idempotency_keys AS k USING {parent} AS m \
                     WHERE k.api_key = m.api_key AND k.idempotency_key = m.idempotency_key \
                       AND k.message_id = m.id"
                ),
                format!(
                    "DELETE FROM webhook_events AS e USING {parent} AS m WHERE e.object_id = m.id"
                ),
            ]
        }
        Family::Verifications => {
            removed.verifications = count(0);
            removed.verification_codes = count(1);
            removed.fraud_decisions = sqlx::query(&format!(
                "DELETE FROM fraud_decisions AS f USING {parent} AS v \
                 WHERE f.verification_id = v.id"
            ))
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?
            .rows_affected();
            vec![
                format!(
                    "DELETE FROM webhook_events AS e USING {parent} AS v WHERE e.object_id = v.id"
                ),
                format!(
                    "DELETE FROM verification_workflows AS w USING {parent} AS v \
                     WHERE w.verification_id = v.id"
                ),
            ]
        }
    };
    for statement in statements {
        sqlx::query(&statement)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
    }
    let tables: Vec<String> = family.tables().iter().map(|t| ident(&week.of(t))).collect();
    sqlx::query(&format!("DROP TABLE IF EXISTS {}", tables.join(", ")))
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
    transaction.commit().await.map_err(store_error)?;
    tracing::info!(
        week = week.of(family.parent()),
        rows = removed.rows(),
        "retention dropped a week of partitions"
    );
    Ok(removed)
}

/// `name` as an SQL identifier. The names here come from this module's constants and the
/// catalog's names of partitions, never from input.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The least and the greatest of `ids`, bound beside a batch's array of ids so that the
/// planner reads only the weeks between them: it cannot see into the array, and without them
/// it plans (and probes) every week's partition, which a custom plan does on each execution.
/// No ids give bounds that hold nothing.
pub(crate) fn id_bounds(ids: impl IntoIterator<Item = Uuid>) -> (Uuid, Uuid) {
    ids.into_iter()
        .fold((Uuid::max(), Uuid::nil()), |(least, greatest), id| {
            (least.min(id), greatest.max(id))
        })
}

#[cfg(test)]
mod tests {
    use ports::testkit::notification;
    use ports::MessageStore;

    use super::*;
    use crate::testing::TestDatabase;

    /// The floor is always a week's first id, so that the statements it is written into stay
    /// the same text (and plan) for as long as the week; below every message in the queue.
    #[tokio::test]
    async fn the_queue_s_floor_is_a_week_s_first_id_at_or_below_the_queue() {
        let database = TestDatabase::create().await;
        let store = database.store().await;
        let pool = PgPool::connect(&database.url).await.unwrap();
        let weeks: Vec<Uuid> = message_weeks(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, lower)| lower)
            .collect();

        let floor = queue_floor(&pool).await.unwrap();
        assert!(weeks.contains(&floor), "{floor} is no week's first id");
        let recent = crate::verifications::uuid_at(Utc::now() - CLOCK_SKEW);
        assert!(floor <= recent);

        let queued = store.enqueue(notification(Utc::now())).await.unwrap();
        let floor = queue_floor(&pool).await.unwrap();
        assert!(weeks.contains(&floor), "{floor} is no week's first id");
        assert!(floor <= queued.message().id.as_uuid());
    }

    #[test]
    fn a_batch_s_id_bounds_hold_each_of_its_ids_and_no_ids_hold_nothing() {
        let ids = [
            Uuid::now_v7(),
            Uuid::from_u128(7),
            Uuid::now_v7(),
            Uuid::max(),
        ];
        let (least, greatest) = id_bounds(ids);
        assert_eq!((least, greatest), (Uuid::from_u128(7), Uuid::max()));
        let (least, greatest) = id_bounds([]);
        assert!(least > greatest);
    }
}
