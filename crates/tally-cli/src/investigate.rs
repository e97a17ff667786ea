//! `tally query` (search a running server) and `tally reindex` (rebuild the search index of a
//! data directory from its log).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tally_store::{LogReader, TenantRecords};

use crate::client::ApiClient;
use crate::commands::tenant_query;
use crate::{ServerArgs, TenantArg};
use tally_server::wire::TenantInfo;

/// Search events with the investigation syntax.
///
/// Terms: field:value (actor, actor.type, ip, session, action, category, outcome,
/// resource.type, resource, resource.name, request, trace, correlation, key, id),
/// a,b for any of several values, prefix* for prefixes, ip:203.0.113.0/24 for blocks,
/// after:/before: with 2026-01-31, an RFC 3339 time or 30m/24h/7d/2w ago, -term to negate,
/// bare words and "quoted phrases" for free text over the whole event.
/// Every search is recorded in the tenant's audit log.
///
/// Examples: tally query 'actor:alice after:30d'
///           tally query 'action:user.login outcome:FAILURE after:1h' --format table
///           tally query 'resource.type:PATIENT resource:p-123' --all > access.jsonl
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The query (empty: every event).
    #[arg(default_value = "")]
    query: String,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tenant: TenantArg,
    /// Results per page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
    /// Oldest first instead of newest first.
    #[arg(long)]
    oldest_first: bool,
    /// Follow the pages to the end (a snapshot: events arriving meanwhile are not included).
    #[arg(long)]
    all: bool,
    /// Output: one JSON record per line, or a table for people.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Jsonl,
    Table,
}

/// A page of search results, with each record kept byte for byte as the server sent it.
#[derive(serde::Deserialize)]
struct Page {
    events: Vec<Hit>,
    next_cursor: Option<String>,
}

#[derive(serde::Deserialize)]
struct Hit {
    index: u64,
    record: Box<serde_json::value::RawValue>,
}

fn table_row(index: u64, r: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    format!(
        "{:>8}  {:24}  {:24}  {:28}  {:12}  {}",
        index,
        s(&r["time"]),
        s(&r["actor"]["id"]),
        s(&r["action"]),
        s(&r["outcome"]),
        match (r["resource"]["type"].as_str(), r["resource"]["id"].as_str()) {
            (Some(t), Some(i)) => format!("{t}/{i}"),
            (Some(t), None) => t.to_string(),
            _ => "-".into(),
        }
    )
}

pub async fn query(args: QueryArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let mut params = tenant_query(&args.tenant);
    params.push(("q", args.query.clone()));
    params.push(("limit", args.limit.to_string()));
    if args.oldest_first {
        params.push(("order", "oldest".into()));
    }
    if args.format == Format::Table {
        println!(
            "{:>8}  {:24}  {:24}  {:28}  {:12}  resource",
            "index", "time", "actor", "action", "outcome"
        );
    }
    let spinner = if args.all {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} events {msg}").expect("valid"),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut cursor: Option<String> = None;
    loop {
        let mut page_params = params.clone();
        if let Some(c) = &cursor {
            page_params.push(("cursor", c.clone()));
        }
        let page: Page = client.get("/v1/events", &page_params).await?.json().await?;
        spinner.suspend(|| {
            for e in &page.events {
                print_event(args.format, e.index, e.record.get());
            }
        });
        spinner.inc(page.events.len() as u64);
        cursor = page.next_cursor;
        if !args.all || cursor.is_none() {
            break;
        }
    }
    spinner.finish_and_clear();
    if !args.all && cursor.is_some() {
        eprintln!("more results: repeat with --all, or raise --limit");
    }
    Ok(())
}

/// Rebuild the search index of a data directory from its log.
///
/// The index is a projection: deleting it loses nothing, and the server rebuilds a missing or
/// damaged one on start in the background. This command does it up front, with a progress
/// bar. It reads the log without taking the writer's lock, up to each tenant's last signed
/// checkpoint; the server must be stopped because it owns the index while it runs.
///
/// Example: tally reindex --data ./data
#[derive(Debug, Args)]
pub struct ReindexArgs {
    /// Data directory.
    #[arg(long, short = 'd', env = "TALLY_DATA", default_value = "./data")]
    data: PathBuf,
    /// Only this tenant.
    #[arg(long, short = 't')]
    tenant: Option<String>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// The key-encryption key, if the server encrypts at rest.
    #[command(flatten)]
    kek: crate::kek::KekArgs,
}

/// The logs of a read-only reader's tenants, or of `only` that one (an error naming it when
/// it has none).
pub(crate) fn tenant_readers(
    reader: &LogReader,
    only: Option<&str>,
) -> Result<Vec<tally_store::TenantReader>> {
    let mut tenants = reader.tenants()?;
    if let Some(t) = only {
        if !tenants.iter().any(|n| n == t) {
            bail!("tenant {t} has no log");
        }
        tenants = vec![t.to_string()];
    }
    tenants
        .iter()
        .map(|t| {
            reader
                .tenant(t)?
                .with_context(|| format!("tenant {t} has no log"))
        })
        .collect()
}

/// A progress bar over `total` events (hidden with `quiet`).
pub(crate) fn events_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template"),
    )
}

pub async fn reindex(args: ReindexArgs) -> Result<()> {
    tokio::task::spawn_blocking(move || reindex_blocking(args)).await?
}

fn reindex_blocking(args: ReindexArgs) -> Result<()> {
    // Read-only: the log's writer lock is not taken. The search index is the one thing
    // reindex needs to itself, and opening it fails while a server has it open.
    let reader =
        LogReader::open(&args.data).with_context(|| format!("opening {}", args.data.display()))?;
    let at_rest = args.kek.at_rest(reader.data_dir())?;
    let reader = reader.with_at_rest(at_rest.clone());
    let index = tally_server::app::open_index(
        reader.data_dir(),
        tally_index::TantivyOptions::default(),
        at_rest.as_ref(),
    )?;
    let logs = tenant_readers(&reader, args.tenant.as_deref())?;
    let tenants: Vec<String> = logs.iter().map(|t| t.name().to_string()).collect();
    let total: u64 = logs.iter().map(|t| t.size()).sum();
    let bar = events_bar(total, args.quiet);
    // Sealed records are indexed with their personal values opened, as the server does.
    let registry =
        tally_server::tenants::TenantRegistry::open(reader.data_dir().tenant_registry_path())?;
    let privacy = tally_server::privacy::Privacy::new(
        reader.data_dir().clone(),
        std::sync::Arc::new(registry),
        at_rest,
    );
    for tlog in &logs {
        let tenant = tlog.name().to_string();
        bar.set_message(tenant.clone());
        let indexed =
            tally_consumers::index::rebuild(tlog, &*index, &privacy, None, &mut |n| bar.inc(n))?;
        // The index's consumer resumes from the index itself; its cursor follows, so that
        // `tally consumers` shows where it stands.
        let name = tally_consumers::index::NAME;
        let mut cursor = tally_consumers::CursorFile::load(reader.data_dir(), name)?
            .map_or_else(|| tally_consumers::CursorFile::new(name), Ok)?;
        cursor.tenants.insert(tenant, indexed);
        cursor.store(reader.data_dir())?;
    }
    bar.finish_and_clear();
    println!("reindexed {total} events of {} tenants", tenants.len());
    Ok(())
}

/// Show the latest events matching a query, and with -f follow new ones as they arrive.
///
/// Following uses the server's live stream (server-sent events at /v1/events/stream) and
/// reconnects where it left off if the connection drops.
///
/// Examples: tally tail -f 'outcome:FAILURE,DENIED'
///           tally tail -n 100 'actor:alice' --format table
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The query (empty: every event).
    #[arg(default_value = "")]
    query: String,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tenant: TenantArg,
    /// How many of the latest matching events to show first.
    #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=1000))]
    lines: u64,
    /// Keep following new events.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Output: one JSON record per line, or a table for people.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
}

fn print_event(format: Format, index: u64, record: &str) {
    match format {
        Format::Jsonl => println!("{record}"),
        Format::Table => {
            let v: serde_json::Value = serde_json::from_str(record).unwrap_or_default();
            println!("{}", table_row(index, &v));
        }
    }
}

pub async fn tail(args: TailArgs) -> Result<()> {
    use futures_util::StreamExt;

    let client = ApiClient::new(&args.server)?;
    let mut params = tenant_query(&args.tenant);
    params.push(("q", args.query.clone()));
    let mut next = 0u64;
    if args.lines > 0 {
        let mut p = params.clone();
        p.push(("limit", args.lines.to_string()));
        let page: Page = client.get("/v1/events", &p).await?.json().await?;
        for e in page.events.iter().rev() {
            print_event(args.format, e.index, e.record.get());
            next = next.max(e.index + 1);
        }
    }
    if !args.follow {
        return Ok(());
    }
    if next == 0 {
        // Start with what arrives from now on.
        let tenants: Vec<TenantInfo> = client.get("/v1/tenants", &[]).await?.json().await?;
        let tenant = args
            .tenant
            .tenant
            .clone()
            .unwrap_or_else(|| "default".into());
        next = tenants
            .iter()
            .find(|t| t.tenant.name == tenant)
            .map_or(0, |t| t.size);
    }
    loop {
        let mut p = params.clone();
        p.push(("from", next.to_string()));
        let response = client.get("/v1/events/stream", &p).await?;
        let mut body = response.bytes_stream();
        let mut buf = String::new();
        let (mut id, mut data) = (None::<u64>, String::new());
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line = buf[..end].trim_end_matches('\r').to_string();
                buf.drain(..=end);
                if line.is_empty() {
                    if let Some(i) = id.take() {
                        print_event(args.format, i, &data);
                        next = i + 1;
                    }
                    data.clear();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        }
        eprintln!("stream interrupted; reconnecting from index {next}");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
