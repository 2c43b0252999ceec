//! `report`: the usage report as a table.

use std::process::ExitCode;

use app::config::Sending;
use app::usage::UsageTable;

use crate::args::ReportArgs;
use crate::environment;

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let assembled = environment::assemble(Sending::NotNeeded).await?;
    let since = assembled.services.clock.now() - args.since;
    let table = assembled.services.usage_table(since).await?;
    print!("{}", layout(&table));
    Ok(ExitCode::SUCCESS)
}

/// Columns padded to their widest cell, two spaces apart.
fn layout(table: &UsageTable) -> String {
    let mut widths: Vec<usize> = table.columns.iter().map(|c| c.chars().count()).collect();
    for row in &table.rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(&table.columns);
    for row in &table.rows {
        text.push_str(&line(row));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_widest_cell() {
        let table = UsageTable {
            columns: vec!["status".into(), "messages".into()],
            rows: vec![
                vec!["delivered".into(), "12".into()],
                vec!["failed".into(), "1".into()],
            ],
        };
        assert_eq!(
            layout(&table),
            "status     messages\ndelivered  12\nfailed     1\n"
        );
    }
}
