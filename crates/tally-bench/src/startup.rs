//! `tally-bench startup`: resident memory and start-up time of the embedded store as one
//! tenant's log grows (issue 8). Fills a data directory through the store API (not HTTP),
//! then measures in a fresh child process: the time `Log::open` takes (recovery: checkpoints,
//! the persisted tree state, the id index's catch-up, the start-up check), resident memory
//! after it, and lookups by id (known ids and unknown ones) with resident memory after them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tally_store::{DataDir, Log, LogConfig, PreparedEvent};

const TENANT: &str = "bench";

/// Measure start-up time and resident memory of a log of N events in one tenant.
///
/// Steps: (1) fill DATA with N events (realistic records from the event generator, each with
/// its own random client-supplied id) through the embedded store, unless DATA already holds
/// exactly N; (2) in a fresh child process, time `Log::open` and read VmRSS and VmHWM after
/// it, then look up 10,000 stored ids and 10,000 unknown ones and read them again; then wait
/// until the in-memory id filter is filled (in the background) and look up 10,000 unknown
/// ids again and read resident memory a last time (steady state).
///
/// Example: tally-bench startup --events 10000000 --data /tmp/startup-10m
#[derive(Debug, Args)]
pub struct StartupArgs {
    /// Events in the tenant's log.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Data directory to fill (or reuse) and open.
    #[arg(long)]
    data: PathBuf,
    /// Drop the page cache before the measured open (needs root): a cold start.
    #[arg(long)]
    cold: bool,
    /// Internal: measure in this process (what the parent runs as a child).
    #[arg(long, hide = true)]
    probe: bool,
}

pub async fn run(args: StartupArgs) -> Result<()> {
    if args.probe {
        return probe(&args.data).await;
    }
    let have = existing_size(&args.data);
    if have != Some(args.events) {
        if have.is_some() {
            std::fs::remove_dir_all(&args.data)
                .with_context(|| format!("removing {}", args.data.display()))?;
        }
        let started = Instant::now();
        fill(&args.data, args.events).await?;
        eprintln!(
            "filled {} events in {:.1} s",
            args.events,
            started.elapsed().as_secs_f64()
        );
    }
    if args.cold {
        let _ = Command::new("sync").status();
        std::fs::write("/proc/sys/vm/drop_caches", "3").context("dropping the page cache")?;
    }
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["startup", "--probe", "--data"])
        .arg(&args.data)
        .env("TALLY_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!("the probe failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

fn existing_size(data: &Path) -> Option<u64> {
    let leaves = data.join("tenants").join(TENANT).join("leaves");
    std::fs::metadata(leaves)
        .ok()
        .map(|m| m.len() / tally_store::frame::LEAF_ENTRY as u64)
}

fn config() -> LogConfig {
    LogConfig {
        scrub_interval: None,
        ..LogConfig::default()
    }
}

/// Realistic records (from the generator, validated once) whose ids are replaced per event.
struct Templates {
    records: Vec<(Vec<u8>, usize)>,
}

impl Templates {
    fn new() -> Result<Templates> {
        let mut generator = tally_eventgen::EventGenerator::new(8).with_tenant(Some(TENANT.into()));
        let ctx = tally_event::IngestContext {
            received_at: time::OffsetDateTime::now_utc(),
            key_id: "bench-startup",
            default_tenant: None,
            max_future_skew: time::Duration::minutes(5),
        };
        let mut records = Vec::new();
        for _ in 0..64 {
            let json = generator.next_event().to_json();
            let input = tally_event::parse_body(&json, tally_event::BodyFormat::Json, 1)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .pop()
                .context("one event")?;
            let valid = tally_event::validate(input, &ctx).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let text = valid.id.hyphenated().to_string();
            let at = valid
                .record
                .windows(text.len())
                .position(|w| w == text.as_bytes())
                .context("the id inside the record")?;
            records.push((valid.record, at));
        }
        Ok(Templates { records })
    }

    fn event(&self, n: u64, id: uuid::Uuid) -> PreparedEvent {
        let (template, at) = &self.records[(n % self.records.len() as u64) as usize];
        let mut record = template.clone();
        let mut buf = uuid::Uuid::encode_buffer();
        let text = id.hyphenated().encode_lower(&mut buf);
        record[*at..*at + text.len()].copy_from_slice(text.as_bytes());
        PreparedEvent::new(tally_event::ValidEvent {
            id,
            id_supplied: true,
            tenant: TENANT.to_string(),
            record,
        })
    }
}

async fn fill(data: &Path, events: u64) -> Result<()> {
    let (log, _) = Log::open(DataDir::create_or_open(data)?, config())?;
    let templates = std::sync::Arc::new(Templates::new()?);
    const BATCH: u64 = 20_000;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<PreparedEvent>>(4);
    let t = templates.clone();
    let producer = std::thread::spawn(move || {
        let mut n = 0u64;
        while n < events {
            let k = BATCH.min(events - n);
            let batch = (n..n + k)
                .map(|i| t.event(i, uuid::Uuid::new_v4()))
                .collect();
            if tx.blocking_send(batch).is_err() {
                return;
            }
            n += k;
        }
    });
    let mut done = 0u64;
    let mut last = Instant::now();
    while let Some(batch) = rx.recv().await {
        done += batch.len() as u64;
        log.append(batch).await.context("appending")?;
        if last.elapsed() > Duration::from_secs(10) {
            eprintln!("  {done} / {events}");
            last = Instant::now();
        }
    }
    let _ = producer.join();
    log.shutdown();
    Ok(())
}

fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn probe(data: &Path) -> Result<()> {
    let started = Instant::now();
    let (log, report) = Log::open(DataDir::open_existing(data)?, config())?;
    let open = started.elapsed();
    let (rss_open, hwm_open) = memory();
    let tenant = log.tenant(TENANT).context("the tenant")?;
    let size = tenant.size();
    let recovery = &report.tenants[0].1;
    // Stored ids: read from records at spread-out indexes.
    let mut known = Vec::new();
    for k in 0..10_000u64 {
        let index = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1) % size;
        let record = tenant.record(index)?;
        known.push((tally_event::record_id(&record).context("an id")?, index));
    }
    let t = Instant::now();
    for (id, index) in &known {
        if tenant.lookup(id)? != Some(*index) {
            bail!("lookup of {id} did not give {index}");
        }
    }
    let hits = t.elapsed();
    let t = Instant::now();
    for _ in 0..10_000 {
        if tenant.lookup(&uuid::Uuid::new_v4())?.is_some() {
            bail!("a random id was found");
        }
    }
    let misses = t.elapsed();
    let (rss_after, hwm_after) = memory();
    // Steady state: the id filter filled in the background, unknown ids looked up again.
    let waited = Instant::now();
    while !tenant.id_filter_ready() && waited.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let filled = waited.elapsed();
    let t = Instant::now();
    for _ in 0..10_000 {
        if tenant.lookup(&uuid::Uuid::new_v4())?.is_some() {
            bail!("a random id was found");
        }
    }
    let steady_misses = t.elapsed();
    let (rss_steady, hwm_steady) = memory();
    println!(
        "| {size} | {:.0} ms | {} | {} | {:.1} MB | {:.1} MB | {:.1} MB ({:.1} s) | {:.1} MB | {:.1} µs | {:.1} µs | {:.2} µs |",
        open.as_secs_f64() * 1000.0,
        recovery.tree_state.map_or("none".into(), |s| s.to_string()),
        recovery.leaves_replayed,
        rss_open as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_steady as f64 / 1024.0,
        filled.as_secs_f64(),
        hwm_open.max(hwm_after).max(hwm_steady) as f64 / 1024.0,
        hits.as_secs_f64() * 1e6 / 10_000.0,
        misses.as_secs_f64() * 1e6 / 10_000.0,
        steady_misses.as_secs_f64() * 1e6 / 10_000.0,
    );
    drop(tenant);
    log.shutdown();
    Ok(())
}
