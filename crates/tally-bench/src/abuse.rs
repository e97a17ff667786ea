//! `tally-bench abuse`: normal ingest beside clients that try to hold the server's resources
//! (idle connections, slow request heads, stalled large bodies), against a running server.
//! What a reader of BENCHMARKS.md needs: whether normal ingest and `/healthz` keep being
//! answered, at what latency, and whether the server's memory returns after the abusers leave.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Run normal ingest alone, then beside abusive clients, then alone again, against a running
/// server, and print, per phase, how normal requests and health checks fared and the
/// server's resident memory.
///
/// Example:
///   tally serve --data /tmp/abuse --no-index --admin-token-file /tmp/abuse.token &
///   tally-bench abuse --url http://127.0.0.1:7700 --token "$(cat /tmp/abuse.token)" --pid $!
#[derive(Debug, Args)]
pub struct AbuseArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    url: String,
    /// An API key with the ingest scope.
    #[arg(long, env = "TALLY_TOKEN", hide_env_values = true)]
    token: String,
    /// The server's process id, to read its resident memory (/proc/PID/status).
    #[arg(long)]
    pid: Option<u32>,
    /// Connections opened and left silent.
    #[arg(long, default_value_t = 25_000)]
    idle: usize,
    /// Connections that send a request head one byte a second.
    #[arg(long, default_value_t = 500)]
    slow_heads: usize,
    /// Clients (with the key) that announce a 16 MiB body, send most of it and stall.
    #[arg(long, default_value_t = 40)]
    stalled_bodies: usize,
    /// MiB each stalled client sends before stalling.
    #[arg(long, default_value_t = 15)]
    stalled_mib: usize,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

/// How normal clients fared in one phase.
#[derive(Debug, Default)]
struct Fared {
    ok: u64,
    failed: u64,
    latencies: Vec<Duration>,
    health_ok: u64,
    health_failed: u64,
}

impl Fared {
    fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }
}

pub async fn run(args: AbuseArgs) -> Result<()> {
    tally_server::process::raise_open_files_limit();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    http.get(format!("{}/healthz", args.url))
        .send()
        .await
        .context("the server does not answer /healthz")?;
    let host = args
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let phase = Duration::from_secs(args.duration);
    println!(
        "{:<22} {:>9} {:>7} {:>8} {:>8} {:>12} {:>10} {:>9}",
        "phase", "ingest ok", "failed", "p50 ms", "p99 ms", "health ok", "held", "RSS MiB"
    );

    let mut before = normal_load(&args, &http, phase).await;
    report("alone", &mut before, "-", rss(args.pid));

    // The abusers: opened, then held while normal clients work.
    let mut abusers = JoinSet::new();
    let held = open_abusers(&args, &host, &mut abusers).await?;
    let mut during = normal_load(&args, &http, phase).await;
    report(
        "beside abusers",
        &mut during,
        &held.to_string(),
        rss(args.pid),
    );
    abusers.shutdown().await;

    // Give the server its body timeout to notice the stalled ones are gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut after = normal_load(&args, &http, phase).await;
    report("after they left", &mut after, "-", rss(args.pid));
    Ok(())
}

fn report(name: &str, fared: &mut Fared, held: &str, rss: Option<u64>) {
    let (p50, p99) = (fared.percentile(0.5), fared.percentile(0.99));
    println!(
        "{name:<22} {:>9} {:>7} {p50:>8.2} {p99:>8.2} {:>12} {held:>10} {:>9}",
        fared.ok,
        fared.failed,
        format!(
            "{}/{}",
            fared.health_ok,
            fared.health_ok + fared.health_failed
        ),
        rss.map_or("-".to_string(), |kb| (kb / 1024).to_string()),
    );
}

/// Resident memory of `pid`, in KiB.
fn rss(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Four clients ingesting ten events per request, and a health check every 200 ms, each on
/// its own connection pool, for `phase`.
async fn normal_load(args: &AbuseArgs, http: &reqwest::Client, phase: Duration) -> Fared {
    let end = Instant::now() + phase;
    let mut tasks = JoinSet::new();
    for client in 0..4u64 {
        let (http, url, token) = (http.clone(), args.url.clone(), args.token.clone());
        tasks.spawn(async move {
            let mut fared = Fared::default();
            let mut n = 0u64;
            while Instant::now() < end {
                let events: Vec<serde_json::Value> = (0..10)
                    .map(|i| {
                        serde_json::json!({
                            "time": "2026-11-30T10:00:00Z",
                            "actor": {"id": format!("user-{client}-{n}-{i}"), "ip": "192.0.2.1"},
                            "action": "document.read",
                            "outcome": "SUCCESS",
                        })
                    })
                    .collect();
                n += 1;
                let started = Instant::now();
                match http
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(&token)
                    .json(&events)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        fared.ok += 1;
                        fared.latencies.push(started.elapsed());
                    }
                    _ => {
                        fared.failed += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            fared
        });
    }
    {
        let url = args.url.clone();
        tasks.spawn(async move {
            let mut fared = Fared::default();
            while Instant::now() < end {
                // A new connection each time, as a load balancer's probe would.
                let fresh = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("a client");
                match fresh.get(format!("{url}/healthz")).send().await {
                    Ok(r) if r.status().is_success() => fared.health_ok += 1,
                    _ => fared.health_failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            fared
        });
    }
    let mut total = Fared::default();
    while let Some(Ok(f)) = tasks.join_next().await {
        total.ok += f.ok;
        total.failed += f.failed;
        total.latencies.extend(f.latencies);
        total.health_ok += f.health_ok;
        total.health_failed += f.health_failed;
    }
    total
}

/// Opens every abusive connection; they stay open (slow heads keep trickling, stalled bodies
/// hold) until their tasks are stopped. Returns how many are open.
async fn open_abusers(args: &AbuseArgs, host: &str, tasks: &mut JoinSet<()>) -> Result<usize> {
    let mut idle = Vec::with_capacity(args.idle);
    for _ in 0..args.idle {
        match TcpStream::connect(host).await {
            Ok(s) => idle.push(s),
            Err(e) => bail!(
                "opened {} idle connections, then: {e} (raise ulimit -n for this client)",
                idle.len()
            ),
        }
    }
    let opened = idle.len();
    tasks.spawn(async move {
        let _held = idle;
        std::future::pending::<()>().await;
    });
    for _ in 0..args.slow_heads {
        let mut s = TcpStream::connect(host).await?;
        tasks.spawn(async move {
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await;
            loop {
                if s.write_all(b"a").await.is_err() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..args.stalled_bodies {
        let mut s = TcpStream::connect(host).await?;
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            args.token,
            16usize << 20
        );
        let (chunk, mib) = (chunk.clone(), args.stalled_mib);
        tasks.spawn(async move {
            if s.write_all(head.as_bytes()).await.is_ok() {
                for _ in 0..mib {
                    if s.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
            std::future::pending::<()>().await;
        });
    }
    // Let the stalled bodies arrive before the phase starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(opened + args.slow_heads + args.stalled_bodies)
}
