//! `tally consumers`: where each consumer of the log stands, and how far it lags.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;
use tally_consumers::{ConsumerReport, CursorFile, LastError, TenantPosition};
use tally_store::{DataDir, Storage};

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
///           tally consumers rewind sink-siem --to-time 2026-11-30T00:00:00Z --data ./data
#[derive(Debug, Args)]
pub struct ConsumersArgs {
    #[command(subcommand)]
    action: Option<ConsumersAction>,
    /// Read the cursors of this data directory instead of asking a server.
    #[arg(long, short = 'd')]
    data: Option<PathBuf>,
    /// Print JSON (one object per consumer, as /healthz reports them) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum ConsumersAction {
    /// Send a sink's events again from a leaf index or a time: moves its cursor back in the
    /// data directory (stop the server first; it takes the directory's lock). The sink sends
    /// every event from there on when the server starts; receivers see them again, with the
    /// same ids and leaf indexes to deduplicate on.
    ///
    /// Only sinks: the search index is rebuilt with `tally reindex`, and the alert rules run
    /// over history with `tally rules test`.
    Rewind {
        /// The sink's consumer name (sink-NAME, as `tally consumers` lists it).
        consumer: String,
        /// Resend from this leaf index (in each tenant that is past it; name one with
        /// --tenant).
        #[arg(long, conflicts_with = "to_time", required_unless_present = "to_time")]
        to_index: Option<u64>,
        /// Resend the events received at or after this time (RFC 3339).
        #[arg(long)]
        to_time: Option<String>,
        /// Only this tenant (default: every tenant the sink has a position in).
        #[arg(long, short = 't')]
        tenant: Option<String>,
        /// Data directory.
        #[arg(long, short = 'd', env = "TALLY_DATA", default_value = "./data")]
        data: PathBuf,
        /// The key-encryption key, if the server encrypts at rest (to read receive times).
        #[command(flatten)]
        kek: crate::kek::KekArgs,
    },
}

/// Moves a sink's cursor back (see [`ConsumersAction::Rewind`]).
fn rewind(action: ConsumersAction) -> Result<()> {
    let ConsumersAction::Rewind {
        consumer,
        to_index,
        to_time,
        tenant,
        data,
        kek,
    } = action;
    if !consumer.starts_with("sink-") {
        bail!(crate::UsageError(format!(
            "{consumer} is not a sink: only sinks are rewound (the search index is rebuilt \
             with `tally reindex`, the alert rules run over history with `tally rules test`)"
        )));
    }
    let since_ms = match &to_time {
        None => None,
        Some(text) => Some(
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|e| {
                    crate::UsageError(format!(
                        "--to-time {text:?}: {e}; give an RFC 3339 time such as 2026-11-30T00:00:00Z"
                    ))
                })?,
        ),
    };
    let dir = DataDir::open_existing(&data)
        .with_context(|| format!("opening data directory {}", data.display()))?;
    // A running server would overwrite the cursor with its own position.
    let _lock = tally_store::PosixStorage
        .lock_writer(&dir.lock_path())
        .map_err(|_| {
            anyhow::anyhow!(
                "{} is in use by a running Tally server; stop it first",
                data.display()
            )
        })?;
    let mut cursor = CursorFile::load(&dir, &consumer)?.with_context(|| {
        format!(
            "{consumer} has no position in {}: it has sent nothing yet",
            data.display()
        )
    })?;
    let tenants: Vec<String> = match &tenant {
        Some(t) if cursor.tenants.contains_key(t) => vec![t.clone()],
        Some(t) => bail!("{consumer} has no position in tenant {t}"),
        None => cursor.tenants.keys().cloned().collect(),
    };
    let reader = match since_ms {
        Some(_) => {
            let reader = tally_store::LogReader::open(&data)?;
            let at_rest = kek.at_rest(reader.data_dir())?;
            Some(reader.with_at_rest(at_rest))
        }
        None => None,
    };
    for t in tenants {
        let now = cursor.tenants[&t];
        let target = match (to_index, since_ms, &reader) {
            (Some(index), _, _) => index,
            (None, Some(ms), Some(reader)) => {
                use tally_store::TenantRecords;
                let log = reader
                    .tenant(&t)?
                    .with_context(|| format!("tenant {t} has no log"))?;
                // The first record received at or after the time (receive times grow with the
                // leaf index).
                let (mut lo, mut hi) = (0u64, now.min(log.size()));
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let record = log.records(mid, 1)?.pop().unwrap_or_default();
                    let value: serde_json::Value = serde_json::from_slice(&record)
                        .with_context(|| format!("record {mid} of tenant {t} is not JSON"))?;
                    let received = value["received_at"]
                        .as_str()
                        .and_then(|r| {
                            time::OffsetDateTime::parse(
                                r,
                                &time::format_description::well_known::Rfc3339,
                            )
                            .ok()
                        })
                        .map_or(i64::MIN, |r| (r.unix_timestamp_nanos() / 1_000_000) as i64);
                    if received < ms {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
            _ => unreachable!("clap requires --to-index or --to-time"),
        };
        if target > now {
            if tenant.is_some() {
                bail!(crate::UsageError(format!(
                    "{consumer} is at {now} in tenant {t}: rewinding moves back only (asked for {target})"
                )));
            }
            // Leaf indexes are per tenant: one that has not got that far stays where it is.
            continue;
        }
        cursor.tenants.insert(t.clone(), target);
        println!(
            "{consumer}: tenant {t} from {now} back to {target} ({} events will be sent again)",
            now - target
        );
    }
    cursor.store(&dir)?;
    Ok(())
}

pub async fn run(args: ConsumersArgs) -> Result<()> {
    if let Some(action) = args.action {
        return tokio::task::spawn_blocking(move || rewind(action)).await?;
    }
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
