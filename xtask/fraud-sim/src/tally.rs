//! What the run counted: per stream (legitimate, the surge, each attack) the codes asked for,
//! those refused and why, and hour by hour the sends, refusals and conversion for the chart.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::params::Params;
use crate::traffic::Stream;

#[derive(Debug, Default, Clone, Serialize)]
pub struct StreamCounts {
    /// Requests for a code (first or again).
    pub codes: u64,
    pub refused: u64,
    /// Codes after the attack's grace (its first codes), and how many of them were refused;
    /// for legitimate traffic, every code.
    pub judged: u64,
    pub judged_refused: u64,
    /// Users whose first code went.
    pub users: u64,
    pub approved: u64,
    /// What refused the codes, by name (`Refused/RateLimited`).
    pub reasons: BTreeMap<String, u64>,
}

impl StreamCounts {
    pub fn refused_share(&self) -> f64 {
        share(self.judged_refused, self.judged)
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Hour {
    pub legitimate_sent: u64,
    pub legitimate_refused: u64,
    pub attack_sent: u64,
    pub attack_refused: u64,
    /// Legitimate users whose first code went this hour, and approvals this hour.
    pub legitimate_users: u64,
    pub legitimate_approved: u64,
}

impl Hour {
    /// Approvals per user who got a code, legitimate traffic only.
    pub fn legitimate_conversion(&self) -> Option<f64> {
        (self.legitimate_users > 0)
            .then(|| self.legitimate_approved as f64 / self.legitimate_users as f64)
    }

    /// Approvals per code sent, all traffic: what an operator's dashboard shows.
    pub fn conversion(&self) -> Option<f64> {
        let sent = self.legitimate_sent + self.attack_sent;
        (sent > 0).then(|| self.legitimate_approved as f64 / sent as f64)
    }
}

pub struct Tally {
    start: DateTime<Utc>,
    grace: u64,
    pub streams: BTreeMap<Stream, StreamCounts>,
    pub hours: Vec<Hour>,
    /// The last day printed, for the progress lines: what it counted until then.
    printed: (u64, u64, u64, u64),
}

impl Tally {
    pub fn new(params: &Params) -> Self {
        Self {
            start: params.start,
            grace: u64::from(params.targets.attack_grace_codes),
            streams: BTreeMap::new(),
            hours: vec![Hour::default(); params.days as usize * 24 + 1],
            printed: (0, 0, 0, 0),
        }
    }

    fn hour(&mut self, at: DateTime<Utc>) -> &mut Hour {
        let index = usize::try_from((at - self.start).num_hours().max(0)).unwrap_or(0);
        let last = self.hours.len() - 1;
        &mut self.hours[index.min(last)]
    }

    /// A request for a code at `at`, sent or refused for `refusal`.
    pub fn asked(
        &mut self,
        stream: Stream,
        at: DateTime<Utc>,
        first: bool,
        refusal: Option<String>,
    ) {
        let grace = if stream.is_legitimate() {
            0
        } else {
            self.grace
        };
        let counts = self.streams.entry(stream).or_default();
        counts.codes += 1;
        let judged = counts.codes > grace;
        if judged {
            counts.judged += 1;
        }
        let refused = refusal.is_some();
        if let Some(reason) = refusal {
            counts.refused += 1;
            if judged {
                counts.judged_refused += 1;
            }
            *counts.reasons.entry(reason).or_default() += 1;
        } else if first {
            counts.users += 1;
        }
        let hour = self.hour(at);
        match (stream.is_legitimate(), refused) {
            (true, false) => {
                hour.legitimate_sent += 1;
                if first {
                    hour.legitimate_users += 1;
                }
            }
            (true, true) => hour.legitimate_refused += 1,
            (false, false) => hour.attack_sent += 1,
            (false, true) => hour.attack_refused += 1,
        }
    }

    /// A code typed at `at`.
    pub fn checked(&mut self, stream: Stream, at: DateTime<Utc>, approved: bool) {
        if !approved {
            return;
        }
        self.streams.entry(stream).or_default().approved += 1;
        if stream.is_legitimate() {
            self.hour(at).legitimate_approved += 1;
        }
    }

    /// Every legitimate stream together (the surge's users included).
    pub fn legitimate(&self) -> StreamCounts {
        let mut total = StreamCounts::default();
        for (_, counts) in self
            .streams
            .iter()
            .filter(|(stream, _)| stream.is_legitimate())
        {
            total.codes += counts.codes;
            total.refused += counts.refused;
            total.judged += counts.judged;
            total.judged_refused += counts.judged_refused;
            total.users += counts.users;
            total.approved += counts.approved;
            for (reason, count) in &counts.reasons {
                *total.reasons.entry(reason.clone()).or_default() += count;
            }
        }
        total
    }

    /// One line for the day just simulated.
    pub fn print_day(&mut self, day: u32, days: u32, elapsed: Duration) {
        let totals = self.hours.iter().fold((0, 0, 0, 0), |sum, hour| {
            (
                sum.0 + hour.legitimate_sent + hour.legitimate_refused,
                sum.1 + hour.legitimate_refused,
                sum.2 + hour.attack_sent + hour.attack_refused,
                sum.3 + hour.attack_refused,
            )
        });
        let (legitimate, legitimate_refused, attack, attack_refused) = (
            totals.0 - self.printed.0,
            totals.1 - self.printed.1,
            totals.2 - self.printed.2,
            totals.3 - self.printed.3,
        );
        self.printed = totals;
        eprintln!(
            "day {day}/{days}: {legitimate} legitimate codes, {} refused; {attack} attack codes, {} refused ({:.0}s)",
            percent(share(legitimate_refused, legitimate)),
            percent(share(attack_refused, attack)),
            elapsed.as_secs_f64()
        );
    }
}

pub fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

pub fn percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}
