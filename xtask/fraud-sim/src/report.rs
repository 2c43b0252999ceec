//! The run's figures for people and machines: a table on standard output, the same as JSON,
//! and the targets of issue 18 judged (each attack's codes after its grace refused, legitimate
//! codes refused, the surge included).

use serde::Serialize;

use crate::params::Params;
use crate::tally::{percent, StreamCounts, Tally};
use crate::traffic::{Attack, Stream};

#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub days: u32,
    pub params: String,
    pub streams: Vec<Row>,
    pub targets: Vec<Target>,
    pub hours: Vec<crate::tally::Hour>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub key: String,
    pub label: String,
    #[serde(flatten)]
    pub counts: StreamCounts,
    /// Refused among the codes judged.
    pub refused_share: f64,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub value: f64,
    /// `>=` or `<=`.
    pub bound: &'static str,
    pub target: f64,
    pub met: bool,
}

impl Report {
    pub fn new(params: &Params, params_path: &str, tally: &Tally) -> Self {
        let row = |key: &str, label: &str, counts: StreamCounts| Row {
            key: key.to_owned(),
            label: label.to_owned(),
            refused_share: counts.refused_share(),
            counts,
        };
        let of = |stream| tally.streams.get(&stream).cloned().unwrap_or_default();
        let mut streams: Vec<Row> = Attack::ALL
            .iter()
            .map(|attack| row(attack.key(), attack.label(), of(Stream::Attack(*attack))))
            .collect();
        let legitimate = tally.legitimate();
        streams.push(row(
            "legitimate",
            "legitimate (surge included)",
            legitimate.clone(),
        ));
        streams.push(row("surge", "  of which the surge", of(Stream::Surge)));

        let targets_set = &params.targets;
        let mut targets: Vec<Target> = Attack::ALL
            .iter()
            .map(|attack| {
                let counts = of(Stream::Attack(*attack));
                let value = counts.refused_share();
                Target {
                    name: format!(
                        "{}: refused from its {} code on",
                        attack.label(),
                        ordinal(targets_set.attack_grace_codes + 1)
                    ),
                    value,
                    bound: ">=",
                    target: targets_set.attack_refused_min,
                    // An attack that did not run (cut by --days) is no miss.
                    met: counts.judged == 0 || value >= targets_set.attack_refused_min,
                }
            })
            .collect();
        let value = legitimate.refused_share();
        targets.push(Target {
            name: "legitimate codes refused (surge included)".to_owned(),
            value,
            bound: "<=",
            target: targets_set.legitimate_refused_max,
            met: value <= targets_set.legitimate_refused_max,
        });
        Report {
            seed: params.seed,
            days: params.days,
            params: params_path.to_owned(),
            streams,
            targets,
            hours: tally.hours.clone(),
        }
    }

    pub fn misses(&self) -> Vec<&Target> {
        self.targets.iter().filter(|target| !target.met).collect()
    }

    /// The table, then the targets, then what refused codes.
    pub fn table(&self, grace: u32) -> String {
        let mut out = String::new();
        let judged = format!("from {}", ordinal(grace + 1));
        out.push_str(&format!(
            "{:<38} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9}\n",
            "stream", "codes", "refused", &judged, "refused", "share", "approved"
        ));
        for row in &self.streams {
            let counts = &row.counts;
            out.push_str(&format!(
                "{:<38} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9}\n",
                row.label,
                counts.codes,
                counts.refused,
                counts.judged,
                counts.judged_refused,
                percent(row.refused_share),
                counts.approved,
            ));
        }
        out.push_str("\ntargets:\n");
        for target in &self.targets {
            out.push_str(&format!(
                "  {} {:<58} {:>8} {} {}\n",
                if target.met { "ok  " } else { "MISS" },
                target.name,
                percent(target.value),
                target.bound,
                percent(target.target),
            ));
        }
        out.push_str("\nrefused by:\n");
        for row in &self.streams {
            if row.counts.reasons.is_empty() || row.key == "surge" {
                continue;
            }
            let reasons: Vec<String> = row
                .counts
                .reasons
                .iter()
                .map(|(reason, count)| format!("{reason} {count}"))
                .collect();
            out.push_str(&format!("  {:<38} {}\n", row.label, reasons.join(", ")));
        }
        out
    }
}

/// `21st`, `22nd`, `23rd`, `24th`, `11th`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ordinals_have_their_english_suffixes() {
        let ordinals: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101]
            .map(super::ordinal)
            .into();
        assert_eq!(
            ordinals,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]
        );
    }
}
