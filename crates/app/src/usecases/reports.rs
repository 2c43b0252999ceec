//! Usage and conversion reports: the figures the store aggregates over a time range, in
//! groups, read in one place for `GET /v1/reports/usage`, `GET /v1/reports/conversion` and the
//! CLI's `report`.

use ports::{
    ConversionGroup, ConversionQuery, CostSum, ErrorCodeCount, StoreError, UsageGroup, UsageQuery,
};

use crate::usecases::Services;

/// What a usage report is made of, each part aggregated by the store.
#[derive(Debug)]
pub struct Usage {
    pub groups: Vec<UsageGroup>,
    /// Per group, most frequent first.
    pub error_codes: Vec<ErrorCodeCount>,
    /// Per group and currency.
    pub costs: Vec<CostSum>,
}

impl Services {
    /// The messages `query` selects, counted per group, with their error codes and costs.
    pub async fn usage(&self, query: &UsageQuery) -> Result<Usage, StoreError> {
        Ok(Usage {
            groups: self.reports.usage(query).await?,
            error_codes: self.reports.error_codes(query).await?,
            costs: self.reports.costs(query).await?,
        })
    }

    /// The verifications `query` selects, in groups: their funnel, latencies and costs.
    pub async fn conversion(
        &self,
        query: &ConversionQuery,
    ) -> Result<Vec<ConversionGroup>, StoreError> {
        self.reports.conversion(query).await
    }
}
