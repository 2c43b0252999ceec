//! The figures, their targets, and the report: a Markdown table (`target/bench/report.md`) with
//! PostgreSQL and SQLite side by side, and the same data as JSON (`target/bench/report.json`).

use std::fmt::Write as _;

use serde_json::json;

use super::service::StoreKind;

/// What a figure must reach.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Within `tolerance` (a fraction) of `target`.
    Within {
        target: f64,
        tolerance: f64,
    },
    /// Reported for context; no target.
    None,
}

impl Goal {
    fn describe(self, unit: &str) -> String {
        match self {
            Goal::AtLeast(target) => format!(">= {} {unit}", figure_value(target)),
            Goal::AtMost(target) => format!("<= {} {unit}", figure_value(target)),
            Goal::Within { target, tolerance } => {
                format!(
                    "{} {unit} ± {:.0}%",
                    figure_value(target),
                    tolerance * 100.0
                )
            }
            Goal::None => String::new(),
        }
    }

    /// How the value compares with the target, as a multiple where 1 or more means met (for a
    /// ceiling, target / value); `None` when there is no ratio to give.
    fn ratio(self, value: f64) -> Option<f64> {
        match self {
            Goal::AtLeast(target) if target > 0.0 => Some(value / target),
            Goal::AtMost(target) if target > 0.0 && value > 0.0 => Some(target / value),
            Goal::Within { target, .. } if target > 0.0 => Some(value / target),
            _ => None,
        }
    }

    fn met(self, value: f64) -> Option<bool> {
        match self {
            Goal::AtLeast(target) => Some(value >= target),
            Goal::AtMost(target) => Some(value <= target),
            Goal::Within { target, tolerance } => {
                Some((value - target).abs() <= target * tolerance)
            }
            Goal::None => None,
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Figure {
    /// The figure number (1-13).
    pub number: u8,
    pub name: String,
    pub store: StoreKind,
    pub value: f64,
    pub unit: &'static str,
    pub goal: Goal,
    /// One-minute load average of the machine when the figure was taken.
    pub load: f64,
    /// How it was measured (connections, rate, durations).
    pub method: String,
}

pub struct Report {
    pub title: String,
    pub conditions: Vec<String>,
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut text = format!("# {}\n\n", self.title);
        for condition in &self.conditions {
            let _ = writeln!(text, "- {condition}");
        }
        text.push_str(
            "\nratio: value / target for a floor, target / value for a ceiling: 1 or more meets \
             it. load: the machine's one-minute load average as the figure was taken.\n\n",
        );
        text.push_str(
            "| figure | target | PostgreSQL | ratio | SQLite | ratio | load (pg / sqlite) |\n",
        );
        text.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
        for (number, name) in self.rows() {
            let find = |store| {
                self.figures.iter().find(|figure| {
                    figure.number == number && figure.name == name && figure.store == store
                })
            };
            let (postgres, sqlite) = (find(StoreKind::Postgres), find(StoreKind::Sqlite));
            let Some(any) = postgres.or(sqlite) else {
                continue;
            };
            let cells = |figure: Option<&Figure>| match figure {
                Some(figure) => (
                    format!("{} {}", figure_value(figure.value), figure.unit),
                    ratio_cell(figure),
                    format!("{:.1}", figure.load),
                ),
                None => ("-".into(), String::new(), "-".into()),
            };
            let (pg_value, pg_ratio, pg_load) = cells(postgres);
            let (lite_value, lite_ratio, lite_load) = cells(sqlite);
            let _ = writeln!(
                text,
                "| {number}. {name} | {} | {pg_value} | {pg_ratio} | {lite_value} | {lite_ratio} | {pg_load} / {lite_load} |",
                any.goal.describe(any.unit),
            );
        }
        text.push_str("\n## Method\n\n");
        let mut described: Vec<&str> = Vec::new();
        for (number, name) in self.rows() {
            let figure = self
                .figures
                .iter()
                .find(|figure| figure.number == number && figure.name == name);
            if let Some(figure) =
                figure.filter(|figure| !described.contains(&figure.method.as_str()))
            {
                described.push(&figure.method);
                let _ = writeln!(text, "- {number}. {name}: {}", figure.method);
            }
        }
        text
    }

    pub fn json(&self) -> serde_json::Value {
        let figures: Vec<_> = self
            .figures
            .iter()
            .map(|figure| {
                let (goal, target, tolerance) = match figure.goal {
                    Goal::AtLeast(target) => ("at_least", Some(target), None),
                    Goal::AtMost(target) => ("at_most", Some(target), None),
                    Goal::Within { target, tolerance } => ("within", Some(target), Some(tolerance)),
                    Goal::None => ("none", None, None),
                };
                json!({
                    "figure": figure.number,
                    "name": figure.name,
                    "store": figure.store.name(),
                    "value": finite(figure.value),
                    "unit": figure.unit,
                    "goal": goal,
                    "target": target,
                    "tolerance": tolerance,
                    "ratio": figure.goal.ratio(figure.value).and_then(finite),
                    "met": figure.goal.met(figure.value),
                    "load_average": figure.load,
                    "method": figure.method,
                })
            })
            .collect();
        json!({
            "title": self.title,
            "conditions": self.conditions,
            "figures": figures,
        })
    }

    /// Each figure once, in the order first measured.
    fn rows(&self) -> Vec<(u8, String)> {
        let mut rows: Vec<(u8, String)> = Vec::new();
        for figure in &self.figures {
            if !rows
                .iter()
                .any(|(number, name)| *number == figure.number && *name == figure.name)
            {
                rows.push((figure.number, figure.name.clone()));
            }
        }
        rows
    }
}

fn ratio_cell(figure: &Figure) -> String {
    let verdict = match figure.goal.met(figure.value) {
        Some(true) => "met",
        Some(false) => "short",
        None => return String::new(),
    };
    match figure.goal.ratio(figure.value) {
        Some(ratio) => format!("{ratio:.2} {verdict}"),
        None => verdict.to_owned(),
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// Figures as people read them: thousands separated, one decimal below 100.
fn figure_value(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    if value.abs() < 100.0 && value.fract() != 0.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(store: StoreKind, value: f64, goal: Goal) -> Figure {
        Figure {
            number: 1,
            name: "accepted messages".into(),
            store,
            value,
            unit: "/s",
            goal,
            load: 2.0,
            method: "closed loop".into(),
        }
    }

    #[test]
    fn a_ceiling_is_met_at_or_below_it_and_its_ratio_says_by_how_much() {
        assert_eq!(Goal::AtMost(20.0).met(10.0), Some(true));
        assert_eq!(Goal::AtMost(20.0).ratio(10.0), Some(2.0));
        assert_eq!(Goal::AtMost(0.0).met(0.0), Some(true));
        assert_eq!(Goal::AtMost(0.0).ratio(0.0), None);
        assert_eq!(Goal::AtLeast(5000.0).ratio(2500.0), Some(0.5));
        assert_eq!(Goal::AtLeast(5000.0).met(2500.0), Some(false));
    }

    #[test]
    fn a_rate_within_tolerance_is_met_on_either_side() {
        let goal = Goal::Within {
            target: 50.0,
            tolerance: 0.05,
        };
        assert_eq!(goal.met(48.0), Some(true));
        assert_eq!(goal.met(52.4), Some(true));
        assert_eq!(goal.met(47.0), Some(false));
    }

    #[test]
    fn the_table_puts_both_stores_of_a_figure_on_one_row() {
        let report = Report {
            title: "bench".into(),
            conditions: vec![],
            figures: vec![
                figure(StoreKind::Postgres, 2500.0, Goal::AtLeast(5000.0)),
                figure(StoreKind::Sqlite, 6000.0, Goal::AtLeast(5000.0)),
            ],
        };
        let markdown = report.markdown();
        assert!(
            markdown.contains(
                "| 1. accepted messages | >= 5,000 /s | 2,500 /s | 0.50 short | 6,000 /s | 1.20 met | 2.0 / 2.0 |"
            ),
            "{markdown}"
        );
        assert_eq!(report.json()["figures"][1]["met"], true);
    }
}
