//! `tally ingest`: send NDJSON events to a server in batches, with a progress bar.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tally_server::error::ErrorBody;
use tally_server::wire::IngestResponse;

use crate::client::{describe_error, ApiClient};
use crate::{is_stdin, ServerArgs, TenantArg};

/// Send events from an NDJSON file (one JSON event per line) or standard input.
///
/// Events are sent in batches, in file order; each batch is acknowledged only once durable.
/// On a rejected batch it stops and names the line and field at fault; everything before that
/// batch is stored (resume with --skip-lines). Events that carry an `id` are stored once even if
/// a batch is sent twice.
///
/// Example: tally ingest events.ndjson --tenant acme
///          generate-events | tally ingest -
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// NDJSON file, or - for standard input.
    file: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tenant: TenantArg,
    /// Events per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch_size: u64,
    /// Skip this many lines first (to resume after a rejected batch).
    #[arg(long, default_value_t = 0)]
    skip_lines: u64,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub async fn run(args: IngestArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let (reader, total): (Box<dyn Read + Send>, Option<u64>) = if is_stdin(&args.file) {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let len = file.metadata().map(|m| m.len()).ok();
        (Box::new(file), len)
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else if let Some(total) = total {
        ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
            )
            .expect("valid template"),
        )
    } else {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bytes} read {msg}")
                .expect("valid template"),
        )
    };
    let mut lines = BufReader::with_capacity(1 << 20, reader);
    let mut line_no = 0u64;
    let mut sent = 0u64;
    let mut duplicates = 0u64;
    let mut batch = Vec::with_capacity(1 << 20);
    let mut batch_lines: Vec<u64> = Vec::new();
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = lines
            .read_line(&mut buf)
            .with_context(|| format!("reading line {}", line_no + 1))?;
        if n > 0 {
            line_no += 1;
            bar.inc(n as u64);
            if line_no <= args.skip_lines || buf.trim().is_empty() {
                continue;
            }
            batch.extend_from_slice(buf.trim_end().as_bytes());
            batch.push(b'\n');
            batch_lines.push(line_no);
        }
        if (n == 0 && !batch_lines.is_empty()) || batch_lines.len() as u64 >= args.batch_size {
            let (stored, dups) = send_batch(&client, &args.tenant, &batch, &batch_lines)
                .await
                .inspect_err(|_| bar.abandon())?;
            sent += stored;
            duplicates += dups;
            bar.set_message(format!("{sent} events"));
            batch.clear();
            batch_lines.clear();
        }
        if n == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    println!("{sent} events acknowledged ({duplicates} were already stored)");
    Ok(())
}

async fn send_batch(
    client: &ApiClient,
    tenant: &TenantArg,
    body: &[u8],
    lines: &[u64],
) -> Result<(u64, u64)> {
    let mut request = client
        .request(reqwest::Method::POST, "/v1/events")?
        .header("content-type", "application/x-ndjson")
        .body(body.to_vec());
    if let Some(t) = &tenant.tenant {
        request = request.query(&[("tenant", t)]);
    }
    let response = request
        .send()
        .await
        .context("sending a batch (is the server running?)")?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => describe_error(&body, |i| match lines.get(i) {
                Some(l) => format!("line {l}"),
                None => format!("event {i}"),
            }),
            Err(_) => text,
        };
        bail!(
            "batch starting at line {} rejected (HTTP {}): {message}\nlines before {} are stored; fix the input and resume with --skip-lines {}",
            lines[0],
            status.as_u16(),
            lines[0],
            lines[0] - 1
        );
    }
    let answer: IngestResponse = response
        .json()
        .await
        .context("reading the server's answer")?;
    let events = answer.events;
    let dups = events.iter().filter(|e| e.duplicate).count() as u64;
    Ok((events.len() as u64 - dups, dups))
}
