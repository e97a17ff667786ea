//! `tally-bench privacy`: what protecting personal data costs, in one run. Ingest throughput
//! and acknowledgement latency with sealing and encryption at rest off, with sealing on, and
//! with both on, on three embedded servers alike but for that, in alternating rounds; then the
//! latency of a first page of search results for a masked reader and for a `read:pii` one.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tally_load::http::{run_http, HttpLoadOptions};
use tally_load::LoadMode;

use crate::alternate::Variant;
use tally_server::app::{AdminKey, App, AppSettings, AtRestSettings, Running};
use tally_server::ServerSettings;

/// Ingest and search with personal-data protection off and on, side by side.
///
/// Three embedded servers (no search index, each its own temporary data directory): "off"
/// stores records as sent (no sealing, no encryption at rest), "sealed" seals every personal
/// value under its subject's key, "sealed + at rest" also encrypts every record and key file
/// under a key-encryption key. Each round runs every workload on each; the table gives the
/// medians over the rounds and the ratio to "off". Events are the shared generator's (about
/// 400 bytes, actors, resources, IPs and snapshots with e-mail addresses: six personal values
/// an event on average).
///
/// Then, on two servers with the search index ("off" and "sealed + at rest") filled with
/// --search-events events: the first page (50 records) of `outcome:SUCCESS`, --search-runs
/// times alternately by a reader without read:pii (masked values) and an admin (clear values).
///
/// Example: tally-bench privacy --rounds 3 --duration 10
#[derive(Debug, Args)]
pub struct PrivacyArgs {
    #[command(flatten)]
    rounds: crate::alternate::RoundsArgs,
    /// Events loaded into each search server.
    #[arg(long, default_value_t = 50_000)]
    search_events: u64,
    /// First pages timed per reader and server.
    #[arg(long, default_value_t = 200)]
    search_runs: usize,
}

struct Server {
    running: Running,
    token: String,
    _tmp: tempfile::TempDir,
}

#[derive(Clone, Copy)]
enum Protection {
    Off,
    Sealed,
    SealedAtRest,
}

async fn start(protection: Protection, index: bool) -> Result<Server> {
    let tmp = tempfile::Builder::new()
        .prefix("tally-bench-privacy-")
        .tempdir()?;
    let defaults = AppSettings::new(tmp.path().join("data"));
    let at_rest = match protection {
        Protection::SealedAtRest => {
            use std::os::unix::fs::PermissionsExt;
            let kek = tmp.path().join("kek");
            std::fs::write(&kek, tally_store::Kek::generate_text().as_str())?;
            std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600))?;
            Some(AtRestSettings {
                kek: tally_store::KekSource::File(kek),
                rotate_after: None,
            })
        }
        _ => None,
    };
    let app = App::start(AppSettings {
        http: ServerSettings {
            seal_personal_data: !matches!(protection, Protection::Off),
            ..ServerSettings::default()
        },
        index: if index { defaults.index.clone() } else { None },
        admin: AdminKey::Create("bench".into()),
        at_rest,
        ..defaults
    })
    .await?;
    let token = app.admin_token().context("no admin key")?.to_string();
    let running = app.spawn("127.0.0.1:0").await?;
    Ok(Server {
        running,
        token,
        _tmp: tmp,
    })
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// Runs `tally-bench privacy`.
pub async fn run(args: PrivacyArgs) -> Result<()> {
    if args.rounds.rounds == 0 || args.search_runs == 0 {
        bail!("--rounds and --search-runs must be at least 1");
    }
    ingest(&args).await?;
    search(&args).await
}

async fn ingest(args: &PrivacyArgs) -> Result<()> {
    let servers = [
        ("off", start(Protection::Off, false).await?),
        ("sealed", start(Protection::Sealed, false).await?),
        (
            "sealed + at rest",
            start(Protection::SealedAtRest, false).await?,
        ),
    ];
    let variants: Vec<Variant> = servers
        .iter()
        .map(|(name, server)| Variant {
            name: name.to_string(),
            options: HttpLoadOptions {
                url: server.running.url.clone(),
                token: server.token.clone(),
                ..HttpLoadOptions::default()
            },
        })
        .collect();
    args.rounds.compare("Protection", &variants).await?;
    for (_, server) in servers {
        server.running.stop().await;
    }
    Ok(())
}

async fn search(args: &PrivacyArgs) -> Result<()> {
    let http = reqwest::Client::new();
    println!();
    println!(
        "| Server | Reader | First page p50 ms | p99 ms | Pages (of {} events) |",
        args.search_events
    );
    println!("|---|---|---|---|---|");
    for (name, protection) in [
        ("off", Protection::Off),
        ("sealed + at rest", Protection::SealedAtRest),
    ] {
        let server = start(protection, true).await?;
        let url = server.running.url.clone();
        run_http(&HttpLoadOptions {
            url: url.clone(),
            token: server.token.clone(),
            mode: LoadMode::Batched { batch_size: 1000 },
            concurrency: 2,
            duration: Duration::ZERO,
            warmup: Duration::ZERO,
            total_events: Some(args.search_events),
            seed: 7,
            quiet: args.rounds.quiet,
            ..HttpLoadOptions::default()
        })
        .await
        .context("loading the search server")?;
        let reader: serde_json::Value = http
            .post(format!("{url}/v1/keys"))
            .bearer_auth(&server.token)
            .json(&serde_json::json!({"name": "reader", "scopes": ["read"], "tenant": "default"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let masked = reader["token"]
            .as_str()
            .context("no reader token")?
            .to_string();
        // Wait until the index has every event: the newest hit is at least the last one
        // loaded (each search adds its own audit event after them).
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let page: serde_json::Value = http
                .get(format!("{url}/v1/events"))
                .bearer_auth(&server.token)
                .query(&[("limit", "1"), ("tenant", "default")])
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if page["events"][0]["index"].as_u64().unwrap_or(0) + 1 >= args.search_events {
                break;
            }
            if Instant::now() > deadline {
                bail!("the index did not catch up within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let readers = [
            ("masked (read)", &masked),
            ("clear (read:pii)", &server.token),
        ];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); readers.len()];
        for run in 0..args.search_runs + 10 {
            for (r, (_, token)) in readers.iter().enumerate() {
                let started = Instant::now();
                let page: serde_json::Value = http
                    .get(format!("{url}/v1/events"))
                    .bearer_auth(token)
                    .query(&[
                        ("q", "outcome:SUCCESS"),
                        ("limit", "50"),
                        ("tenant", "default"),
                    ])
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let elapsed = started.elapsed().as_secs_f64() * 1000.0;
                if page["events"].as_array().map_or(0, Vec::len) != 50 {
                    bail!("a first page did not hold 50 events: {page}");
                }
                // The first ten of each are warm-up.
                if run >= 10 {
                    times[r].push(elapsed);
                }
            }
        }
        for (r, (reader, _)) in readers.iter().enumerate() {
            println!(
                "| {name} | {reader} | {:.2} | {:.2} | {} |",
                percentile(&mut times[r], 0.5),
                percentile(&mut times[r], 0.99),
                args.search_runs
            );
        }
        server.running.stop().await;
    }
    Ok(())
}
