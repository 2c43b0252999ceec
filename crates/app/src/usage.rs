//! The usage report as a table, the shape the operator CLI prints (`sms-notify report`).
//!
//! A seam: the report itself (counts by status, channel, template and country, delivery rate,
//! segments and cost, computed in SQL) arrives with the usage-report work; until it is wired
//! here, asking for it says so instead of guessing.

use chrono::{DateTime, Utc};

use crate::Services;

/// A report laid out for a terminal: a header and rows of the same width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("the usage report is not available in this version of sms-notify yet")]
    NotAvailable,
    #[error(transparent)]
    Store(#[from] ports::StoreError),
}

impl Services {
    /// Usage from `since` until now.
    pub async fn usage_table(&self, since: DateTime<Utc>) -> Result<UsageTable, UsageError> {
        let _ = since;
        Err(UsageError::NotAvailable)
    }
}
