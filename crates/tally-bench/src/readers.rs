//! Readers that compete with ingest, for measuring what reads cost acknowledgements: a
//! whole-log export and a read of every entry bundle (what `tally reindex` reads), each in a
//! loop over HTTP until stopped. Against a running server (`--url`) or the embedded one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tally_tlog::tile::TilePath;

/// What one reader did.
#[derive(Debug, Clone)]
pub struct ReaderStats {
    /// `export` or `bundles`.
    pub name: &'static str,
    /// Complete passes over the log.
    pub rounds: u64,
    /// Bytes received.
    pub bytes: u64,
}

impl std::fmt::Display for ReaderStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reader {}: {} complete passes, {:.1} MiB read",
            self.name,
            self.rounds,
            self.bytes as f64 / (1 << 20) as f64
        )
    }
}

/// The running readers.
pub struct Readers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<ReaderStats>>>,
}

impl Readers {
    /// Starts both readers on the default tenant of the server at `url`.
    pub fn start(url: &str, token: &str) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::new();
        let export = {
            let (http, url, token, stop) = (
                http.clone(),
                url.to_string(),
                token.to_string(),
                stop.clone(),
            );
            tokio::spawn(async move { export_loop(&http, &url, &token, &stop).await })
        };
        let bundles = {
            let (url, token, stop) = (url.to_string(), token.to_string(), stop.clone());
            tokio::spawn(async move { bundles_loop(&http, &url, &token, &stop).await })
        };
        Readers {
            stop,
            tasks: vec![export, bundles],
        }
    }

    /// Stops the readers after their current request; what each did.
    pub async fn stop(self) -> Result<Vec<ReaderStats>> {
        self.stop.store(true, Ordering::Release);
        let mut out = Vec::new();
        for task in self.tasks {
            out.push(task.await.context("a reader panicked")??);
        }
        Ok(out)
    }
}

/// How long a reader waits when the log has nothing for it yet.
const NOTHING_YET: std::time::Duration = std::time::Duration::from_millis(100);

/// GETs `url` and reads the body to its end (or until a stop): its length, and whether it
/// was read whole.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    stop: &AtomicBool,
) -> Result<(u64, bool)> {
    let mut response = http.get(url).bearer_auth(token).send().await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        // No events yet (the readers start with the load): nothing to read this time.
        tokio::time::sleep(NOTHING_YET).await;
        return Ok((0, false));
    }
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
        if stop.load(Ordering::Acquire) {
            return Ok((bytes, false));
        }
    }
    Ok((bytes, true))
}

async fn export_loop(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    stop: &AtomicBool,
) -> Result<ReaderStats> {
    let mut stats = ReaderStats {
        name: "export",
        rounds: 0,
        bytes: 0,
    };
    while !stop.load(Ordering::Acquire) {
        let (bytes, complete) = fetch(http, &format!("{url}/v1/export"), token, stop).await?;
        stats.bytes += bytes;
        stats.rounds += u64::from(complete);
    }
    Ok(stats)
}

async fn bundles_loop(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    stop: &AtomicBool,
) -> Result<ReaderStats> {
    let mut stats = ReaderStats {
        name: "bundles",
        rounds: 0,
        bytes: 0,
    };
    'rounds: while !stop.load(Ordering::Acquire) {
        let response = http
            .get(format!("{url}/checkpoint"))
            .bearer_auth(token)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            tokio::time::sleep(NOTHING_YET).await;
            continue;
        }
        let checkpoint = response.error_for_status()?.text().await?;
        let size: u64 = checkpoint
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .context("the checkpoint has no size line")?;
        if size < 256 {
            tokio::time::sleep(NOTHING_YET).await;
            continue;
        }
        for n in 0..size / 256 {
            let path = TilePath::entries(n, 256)?.to_path();
            let (bytes, complete) = fetch(http, &format!("{url}/{path}"), token, stop).await?;
            stats.bytes += bytes;
            if !complete && stop.load(Ordering::Acquire) {
                break 'rounds;
            }
        }
        stats.rounds += 1;
    }
    Ok(stats)
}
