//! PostgreSQL's encoding: times are `timestamptz`, ids `uuid`, counters `bigint` (a priority
//! `smallint`, an HTTP status `integer`). Rows are read through [`StoredRow`] and parameters
//! bound from [`Param`]; what the columns mean is `ports::rows` and `ports::params`.

use ports::params::Param;
use ports::rows::StoredRow;
use ports::StoreError;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Column as _, PgExecutor, Postgres, Row as _, Type};
use uuid::Uuid;

/// Whether the price text in `column` is a plain decimal within `Amount`'s bounds, which
/// `::numeric` reads exactly: the only prices the reports, the rollups and the fraud guard's
/// spend count (prices are stored as the provider wrote them).
pub(crate) fn readable_price(column: &str) -> String {
    format!(r"{column} ~ '^-?[0-9]{{1,6}}(\.[0-9]{{1,8}})?$'")
}

/// A sqlx failure as the port sees it: a value that does not decode is corrupt data; the server
/// refusing a statement is [`StoreError::Refused`] unless its answer says the server itself
/// cannot serve (see [`server_unavailable`]); anything else (the connection, the pool, I/O) is
/// the database being unavailable.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(error.to_string()),
        sqlx::Error::Database(ref answer) if !server_unavailable(answer.as_ref()) => {
            StoreError::Refused(Box::new(error))
        }
        other => StoreError::Unavailable(Box::new(other)),
    }
}

/// Whether the server's error answer is about the server rather than the statement: a fatal
/// error ends the connection (a shutdown sends one to every session), and the SQLSTATE classes
/// of connection exceptions (08), insufficient resources (53), operator intervention (57: a
/// shutdown, a restart, a cancel) and system errors (58: I/O) would fail any statement.
fn server_unavailable(answer: &dyn sqlx::error::DatabaseError) -> bool {
    let fatal = answer
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some_and(|answer| {
            matches!(
                answer.severity(),
                sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
            )
        });
    fatal
        || answer.code().is_some_and(|code| {
            ["08", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
        })
}

/// One column of every row, as the array `unnest` reads.
pub(crate) fn column<'a, T, U>(rows: &'a [T], value: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(value).collect()
}

/// A row as PostgreSQL returns it.
pub(crate) struct Pg(pub(crate) PgRow);

impl Pg {
    fn get<'r, T>(&'r self, column: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, Postgres> + Type<Postgres>,
    {
        self.0.try_get(column).map_err(store_error)
    }
}

impl StoredRow for Pg {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.get(column)
    }

    fn integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        let column = self.0.try_column(column).map_err(store_error)?;
        let (index, kind) = (column.ordinal(), column.type_info());
        let value = if <i16 as Type<Postgres>>::compatible(kind) {
            self.0
                .try_get::<Option<i16>, _>(index)
                .map(|n| n.map(i64::from))
        } else if <i32 as Type<Postgres>>::compatible(kind) {
            self.0
                .try_get::<Option<i32>, _>(index)
                .map(|n| n.map(i64::from))
        } else {
            self.0.try_get::<Option<i64>, _>(index)
        };
        value.map_err(store_error)
    }

    fn flag(&self, column: &str) -> Result<Option<bool>, StoreError> {
        self.get(column)
    }

    fn id(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        self.get(column)
    }

    fn time(&self, column: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        self.get(column)
    }
}

/// A statement with `params` bound as `$1`, `$2`, ...
pub(crate) fn query<'q>(sql: &'q str, params: &[Param<'q>]) -> Query<'q, Postgres, PgArguments> {
    params
        .iter()
        .fold(sqlx::query(sql), |query, param| match *param {
            Param::Text(text) => query.bind(text),
            Param::Integer(n) => query.bind(n),
            Param::Flag(flag) => query.bind(flag),
            Param::Id(id) => query.bind(id),
            Param::Time(at) => query.bind(at),
        })
}

/// How a row of a query's answer becomes a value (a function of `ports::rows`).
pub(crate) type Decode<T> = fn(&Pg) -> Result<T, StoreError>;

/// Every row `query` returns, decoded.
pub(crate) async fn all<'q, 'c, T>(
    query: Query<'q, Postgres, PgArguments>,
    executor: impl PgExecutor<'c>,
    decode: Decode<T>,
) -> Result<Vec<T>, StoreError> {
    let found = query.fetch_all(executor).await.map_err(store_error)?;
    found.into_iter().map(|row| decode(&Pg(row))).collect()
}

/// The row `query` returns, if any, decoded.
pub(crate) async fn optional<'q, 'c, T>(
    query: Query<'q, Postgres, PgArguments>,
    executor: impl PgExecutor<'c>,
    decode: Decode<T>,
) -> Result<Option<T>, StoreError> {
    let found = query.fetch_optional(executor).await.map_err(store_error)?;
    found.map(|row| decode(&Pg(row))).transpose()
}

/// The one row `query` returns, decoded.
pub(crate) async fn one<'q, 'c, T>(
    query: Query<'q, Postgres, PgArguments>,
    executor: impl PgExecutor<'c>,
    decode: Decode<T>,
) -> Result<T, StoreError> {
    decode(&Pg(query.fetch_one(executor).await.map_err(store_error)?))
}

/// Runs `query`: how many rows it changed.
pub(crate) async fn execute<'q, 'c>(
    query: Query<'q, Postgres, PgArguments>,
    executor: impl PgExecutor<'c>,
) -> Result<u64, StoreError> {
    let done = query.execute(executor).await.map_err(store_error)?;
    Ok(done.rows_affected())
}
