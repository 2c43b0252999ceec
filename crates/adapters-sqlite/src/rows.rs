//! SQLite's encoding: times are integer microseconds since the Unix epoch, ids hyphenated UUID
//! text, integers one type. Rows are read through [`StoredRow`] and parameters bound from
//! [`Param`]; what the columns mean is `ports::rows` and `ports::params`.

use chrono::{DateTime, Utc};
use domain::MessageId;
use ports::params::Param;
use ports::rows::StoredRow;
use ports::StoreError;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row as _, Sqlite, SqliteExecutor, Type};
use uuid::fmt::Hyphenated;
use uuid::Uuid;

/// A sqlx failure as the port sees it: a value that does not decode is corrupt data; SQLite
/// refusing a statement is [`StoreError::Refused`] unless its answer is about the file rather
/// than the statement (see [`file_unavailable`]); anything else (the pool, I/O) is the database
/// being unavailable.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(error.to_string()),
        sqlx::Error::Database(ref answer) if !file_unavailable(answer.as_ref()) => {
            StoreError::Refused(Box::new(error))
        }
        other => StoreError::Unavailable(Box::new(other)),
    }
}

/// Whether SQLite's answer (an extended result code, whose low byte is the primary code) is
/// about the database file, the lock or the memory, which would fail any statement: BUSY (5),
/// LOCKED (6), NOMEM (7), READONLY (8), INTERRUPT (9), IOERR (10), CORRUPT (11), FULL (13),
/// CANTOPEN (14), PROTOCOL (15), NOTADB (26).
fn file_unavailable(answer: &dyn sqlx::error::DatabaseError) -> bool {
    answer
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5..=11 | 13..=15 | 26))
}

/// Message ids as one JSON array, bound once and read with `json_each` rather than a statement
/// per list length.
pub(crate) fn json_ids(ids: &[MessageId]) -> String {
    json_uuids(ids.iter().map(MessageId::as_uuid))
}

/// Ids of any kind as [`json_ids`] binds them.
pub(crate) fn json_uuids(ids: impl IntoIterator<Item = Uuid>) -> String {
    serde_json::Value::from(
        ids.into_iter()
            .map(|id| id.hyphenated().to_string())
            .collect::<Vec<_>>(),
    )
    .to_string()
}

/// How a timestamp is stored.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A stored timestamp.
pub(crate) fn instant(column: &str, micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("{column}: {micros} is not a time")))
}

/// A parameter as it goes into a JSON array that a statement reads with `json_each`.
pub(crate) fn json_value(param: Param<'_>) -> serde_json::Value {
    match param {
        Param::Text(text) => text.into(),
        Param::Integer(n) => n.into(),
        Param::Flag(flag) => flag.into(),
        Param::Id(id) => id.map(|id| id.hyphenated().to_string()).into(),
        Param::Time(at) => at.map(micros).into(),
    }
}

/// A row as SQLite returns it.
pub(crate) struct Lite(pub(crate) SqliteRow);

impl Lite {
    fn get<'r, T>(&'r self, column: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, Sqlite> + Type<Sqlite>,
    {
        self.0.try_get(column).map_err(store_error)
    }
}

impl StoredRow for Lite {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.get(column)
    }

    fn integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.get(column)
    }

    fn flag(&self, column: &str) -> Result<Option<bool>, StoreError> {
        self.get(column)
    }

    fn id(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .get::<Option<Hyphenated>>(column)?
            .map(Hyphenated::into_uuid))
    }

    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let micros: Option<i64> = self.get(column)?;
        micros.map(|micros| instant(column, micros)).transpose()
    }
}

/// A statement with `params` bound as `$1`, `$2`, ...
pub(crate) fn query<'q>(
    sql: &'q str,
    params: &[Param<'q>],
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    params
        .iter()
        .fold(sqlx::query(sql), |query, param| match *param {
            Param::Text(text) => query.bind(text),
            Param::Integer(n) => query.bind(n),
            Param::Flag(flag) => query.bind(flag),
            Param::Id(id) => query.bind(id.map(Uuid::hyphenated)),
            Param::Time(at) => query.bind(at.map(micros)),
        })
}

/// How a row of a query's answer becomes a value (a function of `ports::rows`).
pub(crate) type Decode<T> = fn(&Lite) -> Result<T, StoreError>;

/// Every row `query` returns, decoded.
pub(crate) async fn all<'q, 'c, T>(
    query: Query<'q, Sqlite, SqliteArguments<'q>>,
    executor: impl SqliteExecutor<'c>,
    decode: Decode<T>,
) -> Result<Vec<T>, StoreError> {
    let found = query.fetch_all(executor).await.map_err(store_error)?;
    found.into_iter().map(|row| decode(&Lite(row))).collect()
}

/// The row `query` returns, if any, decoded.
pub(crate) async fn optional<'q, 'c, T>(
    query: Query<'q, Sqlite, SqliteArguments<'q>>,
    executor: impl SqliteExecutor<'c>,
    decode: Decode<T>,
) -> Result<Option<T>, StoreError> {
    let found = query.fetch_optional(executor).await.map_err(store_error)?;
    found.map(|row| decode(&Lite(row))).transpose()
}

/// The one row `query` returns, decoded.
pub(crate) async fn one<'q, 'c, T>(
    query: Query<'q, Sqlite, SqliteArguments<'q>>,
    executor: impl SqliteExecutor<'c>,
    decode: Decode<T>,
) -> Result<T, StoreError> {
    decode(&Lite(query.fetch_one(executor).await.map_err(store_error)?))
}

/// Runs `query`: how many rows it changed.
pub(crate) async fn execute<'q, 'c>(
    query: Query<'q, Sqlite, SqliteArguments<'q>>,
    executor: impl SqliteExecutor<'c>,
) -> Result<u64, StoreError> {
    let done = query.execute(executor).await.map_err(store_error)?;
    Ok(done.rows_affected())
}
