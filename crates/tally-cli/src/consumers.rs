//! `tally consumers`: where each consumer of the log stands, and how far it lags.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use tally_consumers::{ConsumerReport, CursorFile, LastError, TenantPosition};
use tally_store::DataDir;

use crate::ServerArgs;

/// Show each consumer of the log (the search index, and every other follower) with its
/// durable position in each tenant's log and how many events it still has to consume.
///
/// With --data, reads the cursors in the data directory (DATA_DIR/consumers/*.json); this
/// works whether or not a server runs on it, and takes no lock. Without it, asks the running
/// server (its /healthz), which also tells whether a consumer is failing and why.
///
/// Examples: tally consumers --data ./data
///           tally consumers --url http://127.0.0.1:7700 --json
#[derive(Debug, Args)]
pub struct ConsumersArgs {
    /// Read the cursors of this data directory instead of asking a server.
    #[arg(long, short = 'd')]
    data: Option<PathBuf>,
    /// Print JSON (one object per consumer, as /healthz reports them) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub async fn run(args: ConsumersArgs) -> Result<()> {
    let reports = match &args.data {
        Some(path) => from_data_dir(path)?,
        None => from_server(&args.server).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    if reports.is_empty() {
        println!(
            "no consumers have a position yet (they write one once they have consumed something)"
        );
        return Ok(());
    }
    print!("{}", table(&reports));
    Ok(())
}

/// Reports from the cursor files; log sizes from each tenant's leaf entries on disk.
fn from_data_dir(path: &std::path::Path) -> Result<Vec<ConsumerReport>> {
    let dir = DataDir::open_existing(path)
        .with_context(|| format!("opening data directory {}", path.display()))?;
    let mut sizes = Vec::new();
    for tenant in dir.list_tenants()? {
        let size = dir.tenant(&tenant).leaf_count()?;
        sizes.push((tenant, size));
    }
    let cursors = CursorFile::list(&dir)?;
    Ok(cursors
        .into_iter()
        .map(|cursor| {
            let tenants: Vec<TenantPosition> = sizes
                .iter()
                .map(|(tenant, size)| {
                    let next = cursor.tenants.get(tenant).copied().unwrap_or(0);
                    TenantPosition {
                        tenant: tenant.clone(),
                        next,
                        size: *size,
                        lag: size.saturating_sub(next),
                    }
                })
                .collect();
            ConsumerReport {
                name: cursor.consumer.clone(),
                state: "stored",
                lag: tenants.iter().map(|t| t.lag).sum(),
                delivered: 0,
                tenants,
                last_error: None,
            }
        })
        .collect())
}

/// The consumer reports of a running server's /healthz.
async fn from_server(server: &ServerArgs) -> Result<Vec<ConsumerReport>> {
    #[derive(Deserialize)]
    struct Health {
        #[serde(default)]
        consumers: std::collections::BTreeMap<String, Report>,
    }
    #[derive(Deserialize)]
    struct Report {
        name: String,
        state: String,
        lag: u64,
        delivered: u64,
        tenants: Vec<TenantPosition>,
        last_error: Option<LastError>,
    }
    let client = crate::client::ApiClient::new(server)?;
    // /healthz answers 503 when the log fails or is damaged; its body still has the consumers.
    let response = client.get_public_any_status("/healthz").await?;
    let health: Health = response
        .json()
        .await
        .context("reading /healthz (is this a Tally server?)")?;
    Ok(health
        .consumers
        .into_values()
        .map(|r| ConsumerReport {
            name: r.name,
            state: match r.state.as_str() {
                "ok" => "ok",
                "failing" => "failing",
                _ => "unknown",
            },
            lag: r.lag,
            delivered: r.delivered,
            tenants: r.tenants,
            last_error: r.last_error,
        })
        .collect())
}

fn table(reports: &[ConsumerReport]) -> String {
    use std::fmt::Write;
    let mut rows = vec![[
        "CONSUMER".to_string(),
        "TENANT".into(),
        "POSITION".into(),
        "LOG SIZE".into(),
        "LAG".into(),
        "STATE".into(),
    ]];
    for r in reports {
        for t in &r.tenants {
            rows.push([
                r.name.clone(),
                t.tenant.clone(),
                t.next.to_string(),
                t.size.to_string(),
                t.lag.to_string(),
                r.state.to_string(),
            ]);
        }
        if r.tenants.is_empty() {
            rows.push([
                r.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "0".into(),
                r.state.to_string(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if (2..5).contains(&c) {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for r in reports {
        if let Some(e) = &r.last_error {
            let _ = writeln!(
                out,
                "\n{} is failing ({} times in a row, last at {}): {}",
                r.name, e.consecutive_failures, e.at, e.message
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_numbers_and_names_a_failing_consumer() {
        let reports = vec![ConsumerReport {
            name: "search-index".into(),
            state: "failing",
            lag: 5,
            delivered: 10,
            tenants: vec![TenantPosition {
                tenant: "acme".into(),
                next: 10,
                size: 15,
                lag: 5,
            }],
            last_error: Some(LastError {
                message: "disk full".into(),
                at: "2026-11-30T15:00:00Z".into(),
                consecutive_failures: 3,
            }),
        }];
        let t = table(&reports);
        assert!(
            t.starts_with("CONSUMER      TENANT  POSITION  LOG SIZE  LAG  STATE\n"),
            "{t}"
        );
        assert!(
            t.contains("search-index  acme          10        15    5  failing\n"),
            "{t}"
        );
        assert!(t.contains("search-index is failing (3 times in a row, last at 2026-11-30T15:00:00Z): disk full"), "{t}");
    }
}
