//! The usage report as a table, the shape the operator CLI prints (`sms-notify report`): the
//! same aggregates as `GET /v1/reports/usage`, by day.

use chrono::{DateTime, Utc};
use ports::{UsageGrouping, UsageQuery};

use crate::Services;

/// A report laid out for a terminal: a header and rows of the same width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Services {
    /// Usage from `since` until now, a row per day, of every API key's messages: for the
    /// operator.
    pub async fn usage_table(&self, since: DateTime<Utc>) -> Result<UsageTable, ports::StoreError> {
        let groups = self
            .reports
            .usage(&UsageQuery {
                since,
                until: self.clock.now(),
                group_by: UsageGrouping::Day,
                api_key: None,
            })
            .await?;
        let columns = [
            "day",
            "messages",
            "segments",
            "delivered",
            "failed",
            "delivery rate",
        ];
        let rows = groups
            .into_iter()
            .map(|group| {
                let settled = group.delivered + group.failed;
                // Of the messages whose fate is known; in flight ones say nothing yet.
                let rate = if settled == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.1}%", 100.0 * group.delivered as f64 / settled as f64)
                };
                vec![
                    group.key.unwrap_or_default(),
                    group.messages.to_string(),
                    group.segments.to_string(),
                    group.delivered.to_string(),
                    group.failed.to_string(),
                    rate,
                ]
            })
            .collect();
        Ok(UsageTable {
            columns: columns.map(str::to_owned).to_vec(),
            rows,
        })
    }
}
