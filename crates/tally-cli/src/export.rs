//! `tally export`: matching events to a JSON Lines, CSV or Parquet file that carries its own
//! proof, and `tally verify --export`, which checks such a file offline.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tally_export::{bundle::Line, ExportFile, Format, Verified};
use tally_tlog::note::NoteVerifier;

use crate::client::ApiClient;
use crate::commands::{tenant_query, KeyArg};
use crate::{ServerArgs, TenantArg};

/// Export events to a file that anyone holding the log's public key can check offline.
///
/// The export is pinned to the log's latest signed checkpoint: it holds that checkpoint, every
/// matching record exactly as stored with its leaf index, and one proof that all of them are
/// in the signed tree. Without a query it is an unfiltered range (--from/--to, default the
/// whole log) and the check also proves that no record of the range was left out. Every
/// export is recorded in the tenant's audit log (who, what query, how many rows).
///
/// Formats (picked from the file extension, or --format):
///   .jsonl    the bundle as is (header line, one {"index","event"} line per record, end line)
///   .csv      one row per record, flat columns plus the whole record in `event`; the proof
///             goes to FILE.proof.json beside it (keep the two together). Cells starting with
///             = + - @ get a leading ' so spreadsheets do not run them as formulas.
///   .parquet  typed columns (times as UTC timestamps), the proof in the file's metadata
///
/// The file appears only once the export is complete and the proof received; it is then
/// checked against --key (or the server's key, with a warning) before the command succeeds.
///
/// Examples: tally export 'actor:alice after:30d' -o alice.csv
///           tally export 'resource.type:PATIENT resource:p-123' -o p-123.parquet
///           tally export --from 0 --to 100000 -o first-100k.jsonl --key ./data/log.pub
///           tally verify --export alice.csv --key ./data/log.pub
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The query, as for `tally query` (empty: every event of the range).
    #[arg(default_value = "")]
    query: String,
    /// Output file.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// File format (default: from the output file's extension).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// First leaf index to export.
    #[arg(long)]
    from: Option<u64>,
    /// One past the last leaf index to export (default and at most: the checkpoint's size).
    #[arg(long)]
    to: Option<u64>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tenant: TenantArg,
    #[command(flatten)]
    key: KeyArg,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Jsonl,
    Csv,
    Parquet,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Csv => Format::Csv,
            FormatArg::Parquet => Format::Parquet,
        }
    }
}

fn progress(quiet: bool, len: Option<u64>) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec}) {msg}",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {pos} records ({per_sec}) {msg}",
            )
            .expect("valid template"),
        ),
    }
}

pub async fn export(args: ExportArgs) -> Result<()> {
    let format: Format = match args.format {
        Some(f) => f.into(),
        None => Format::from_path(&args.output).ok_or_else(|| {
            anyhow!(
                "cannot tell the format from {}: name the file .jsonl, .csv or .parquet, or pass --format",
                args.output.display()
            )
        })?,
    };
    if args.output.exists() && !args.force {
        bail!(
            "{} exists: pass --force to replace it, or choose another --output",
            args.output.display()
        );
    }
    let client = ApiClient::new(&args.server)?;
    let key = args.key.load(Some(&client)).await?;
    let mut params = tenant_query(&args.tenant);
    if !args.query.is_empty() {
        params.push(("q", args.query.clone()));
    }
    params.push(("format", format.name().to_string()));
    if let Some(f) = args.from {
        params.push(("from", f.to_string()));
    }
    if let Some(t) = args.to {
        params.push(("to", t.to_string()));
    }
    let response = client.get("/v1/export", &params).await?;
    let mut body = response.bytes_stream();

    let mut pending: Vec<u8> = Vec::new();
    let mut file: Option<ExportFile> = None;
    let mut pb = ProgressBar::hidden();
    let mut done = false;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the connection to the server broke during the export")?;
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = std::str::from_utf8(&pending[start..start + nl])
                .context("the server sent a line that is not UTF-8")?;
            start += nl + 1;
            if done {
                bail!("the server sent data after the end of the export");
            }
            match tally_export::bundle::parse_line(line)
                .map_err(|e| anyhow!("the server sent an unreadable line: {e}"))?
            {
                Line::Header(header) => {
                    if file.is_some() {
                        bail!("the server sent a second export header");
                    }
                    pb = progress(args.quiet, header.expected_rows);
                    pb.set_message(args.output.display().to_string());
                    file = Some(ExportFile::create(&args.output, format, &header)?);
                }
                Line::Record {
                    index,
                    event,
                    shown,
                    keys,
                } => {
                    let f = file
                        .as_mut()
                        .ok_or_else(|| anyhow!("the server sent records before the header"))?;
                    f.record_shown(
                        index,
                        event.get().as_bytes(),
                        shown.map(|s| s.get().as_bytes()),
                        keys.map(|k| k.get().as_bytes()),
                    )?;
                    pb.inc(1);
                }
                Line::End(end) => {
                    let f = file
                        .take()
                        .ok_or_else(|| anyhow!("the server sent an end before the header"))?;
                    f.finish(&end)?;
                    done = true;
                }
                Line::Error(message) => {
                    bail!("the server stopped the export: {message} (no file was written)")
                }
            }
        }
        pending.drain(..start);
    }
    pb.finish_and_clear();
    if !done {
        bail!(
            "the export was cut short before its proof arrived (no file was written); run it again"
        );
    }
    let (output, quiet) = (args.output.clone(), args.quiet);
    let verified = tokio::task::spawn_blocking(move || check(&output, &key, quiet)).await??;
    println!(
        "exported {} to {}",
        summary(&verified),
        args.output.display()
    );
    println!("{}", scope(&verified));
    if format == Format::Csv {
        println!(
            "the proof is in {} (keep it with the CSV)",
            tally_export::csv_sidecar(&args.output).display()
        );
    }
    println!(
        "check it anywhere with: tally verify --export {} --key <log public key>",
        args.output.display()
    );
    Ok(())
}

/// What was proven: the records' authenticity, always.
fn summary(v: &Verified) -> String {
    format!(
        "{} records of tenant {}, each in the tree of {} records signed by the log at the leaf index it claims",
        v.rows, v.tenant, v.size
    )
}

/// What was proven about completeness, and what was not.
/// What a version 2 export proves of the personal values it shows.
fn personal_values(v: &Verified) -> Option<String> {
    let view = v.view.as_deref()?;
    Some(format!(
        "personal values ({view} view): {} shown in the clear, each opened with its disclosed key \
         and equal to the value sealed in the record hashed; {} masked as tokens; {} erased",
        v.opened, v.masked, v.erased
    ))
}

fn scope(v: &Verified) -> String {
    let range = format!("leaf range [{}, {})", v.range.from, v.range.to);
    let whole = if v.whole_tree() {
        ", the whole signed log"
    } else {
        ""
    };
    if v.complete {
        format!("{range} (complete{whole}): no record of the range is missing")
    } else {
        format!(
            "{range}{whole} filtered by {:?} (the exporter's word: the query is not signed): \
             nothing signed says which records match a query, so this export cannot prove \
             that no other record matched",
            v.query
        )
    }
}

/// Verifies an export file, with a progress spinner unless `quiet`.
fn check(path: &Path, key: &NoteVerifier, quiet: bool) -> Result<Verified> {
    let pb = progress(quiet, None);
    pb.set_message(format!("checking {}", path.display()));
    let result = tally_export::verify_file(path, key, |rows| pb.set_position(rows));
    pb.finish_and_clear();
    result.map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// `tally verify --export FILE`: checks an export offline with the given key; with
/// `require_complete`, a filtered export (which cannot prove completeness) fails.
pub fn verify_export(path: &Path, key: &KeyArg, quiet: bool, require_complete: bool) -> Result<()> {
    let key = key.given()?.ok_or_else(|| {
        anyhow!(
            "pass the log's public key with --key (a copy of DATA_DIR/log.pub you trust, or the \
             text served at /v1/log-key): an export proves nothing against a key it carries itself"
        )
    })?;
    let verified = check(path, &key, quiet)?;
    println!("OK: {}", summary(&verified));
    println!("{}", scope(&verified));
    if let Some(values) = personal_values(&verified) {
        println!("{values}");
    }
    if require_complete && !verified.complete {
        bail!(
            "{}: --require-complete: the export is filtered by {:?}, so it cannot prove that it \
             holds every record of [{}, {}); export the range without a query for that",
            path.display(),
            verified.query,
            verified.range.from,
            verified.range.to
        );
    }
    Ok(())
}
