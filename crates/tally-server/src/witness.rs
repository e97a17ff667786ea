//! Tally as a C2SP tlog-witness client: asks every configured witness to cosign each new
//! checkpoint of each tenant, and serves the checkpoint with the cosignatures gathered.
//!
//! ```text
//! TenantLog::checkpoint ──poll──▶ Witnessing::run (one tokio task, never on the ingest path)
//!     per witness: POST <url>/add-checkpoint  "old <size the witness cosigned>" + consistency proof
//!                  409 text/x.tlog.size ──▶ learn the witness's size, retry with that proof
//!                  200 ──▶ check the cosignature/v1 line with the witness's key, keep it
//!     log's note + cosignature lines ──▶ DATA_DIR/tenants/<t>/cosigned-checkpoint (durable)
//! GET /v1/checkpoint, /logs/{t}/checkpoint, /checkpoint ──▶ Witnessing::note_for
//! ```
//!
//! What is served: the latest checkpoint with the cosignatures made on it; while the
//! witnesses are still being asked about a new checkpoint (at most `grace`), the previous
//! cosigned one, so that clients requiring k of n witnesses do not see a gap every time the
//! log grows. Sizes served never go down. After `grace` without any cosignature (witnesses
//! down), the plain latest checkpoint is served and `/healthz` says which witness lags.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tally_store::{Log, SignedCheckpoint, TenantLog};
use tally_tlog::witness::{
    parse_conflict_body, parse_cosignature_lines, AddCheckpointRequest, ADD_CHECKPOINT_PATH,
    CONFLICT_CONTENT_TYPE,
};
use tally_tlog::CosignatureVerifier;

/// Why a witness setting is wrong.
#[derive(Debug, thiserror::Error)]
pub enum WitnessConfigError {
    /// A `--witness` value is malformed.
    #[error("--witness {value:?}: {reason}; expected VKEY=URL, e.g. witness.example/w1+a1b2c3d4+BKxz…=https://witness.example/w1 (the witness's cosignature/v1 key, then its submission URL)")]
    Malformed {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same witness key was given twice.
    #[error("witness {0} is configured twice")]
    Duplicate(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(String),
}

/// One witness: its cosignature/v1 key and its submission prefix.
#[derive(Debug, Clone)]
pub struct WitnessEndpoint {
    /// The witness's public key; cosignatures by any other key are ignored.
    pub key: CosignatureVerifier,
    /// Submission prefix: `add-checkpoint` is POSTed to `<url>/add-checkpoint`.
    pub url: String,
}

impl WitnessEndpoint {
    /// Parses `VKEY=URL`. A vkey ends in base64 padding, so the split is at the `=` that
    /// starts `=http://` or `=https://`.
    pub fn parse(value: &str) -> Result<Self, WitnessConfigError> {
        let bad = |reason: String| WitnessConfigError::Malformed {
            value: value.to_owned(),
            reason,
        };
        let at = ["=http://", "=https://"]
            .iter()
            .filter_map(|sep| value.find(sep))
            .min()
            .ok_or_else(|| bad("no =http:// or =https:// after the key".into()))?;
        let key = CosignatureVerifier::parse_vkey(&value[..at])
            .map_err(|e| bad(format!("not a witness key: {e}")))?;
        let url = value[at + 1..].trim_end_matches('/').to_owned();
        Ok(WitnessEndpoint { key, url })
    }
}

/// Timing of the witness client.
#[derive(Debug, Clone)]
pub struct WitnessSettings {
    /// Timeout of one `add-checkpoint` request.
    pub timeout: Duration,
    /// How often the task looks for new checkpoints.
    pub poll: Duration,
    /// Longest wait between retries of a failing witness (backoff doubles from 1 s).
    pub max_backoff: Duration,
    /// How long the previous cosigned checkpoint is served while a new one waits for
    /// cosignatures.
    pub grace: Duration,
}

impl Default for WitnessSettings {
    fn default() -> Self {
        WitnessSettings {
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
            grace: Duration::from_secs(10),
        }
    }
}

/// What the client knows about one witness for one tenant.
#[derive(Debug, Clone, Default)]
struct Peer {
    /// The size the witness last cosigned for this tenant, when known.
    known_size: Option<u64>,
    /// Its cosignature line on the checkpoint of that size.
    line: Option<(u64, String)>,
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<String>,
    last_success: Option<SystemTime>,
}

/// A checkpoint note with cosignature lines appended.
#[derive(Debug, Clone)]
struct Cosigned {
    size: u64,
    note: String,
    cosignatures: usize,
}

#[derive(Debug, Default)]
struct TenantState {
    peers: Vec<Peer>,
    /// The newest checkpoint size the task has seen, and when.
    seen: Option<(u64, Instant)>,
    /// The newest note with at least one cosignature (persisted).
    cosigned: Option<Cosigned>,
    /// The largest size served so far: what is served never goes back.
    floor: u64,
}

/// Metrics of the witness client.
#[derive(Debug, Clone, Default)]
struct WitnessMetrics {
    requests: Family<Vec<(String, String)>, Counter>,
    lag: Family<Vec<(String, String)>, Gauge>,
    cosigned_size: Family<Vec<(String, String)>, Gauge>,
}

/// The witness client: its configuration, per-tenant state and metrics. Share it between the
/// task ([`Witnessing::run`]) and the handlers.
#[derive(Debug)]
pub struct Witnessing {
    endpoints: Vec<WitnessEndpoint>,
    settings: WitnessSettings,
    http: reqwest::Client,
    tenants: Mutex<HashMap<String, TenantState>>,
    metrics: WitnessMetrics,
}

impl Witnessing {
    /// Builds the client and loads each tenant's persisted cosigned checkpoint (one that no
    /// longer matches the log is dropped with a warning).
    pub fn new(
        endpoints: Vec<WitnessEndpoint>,
        settings: WitnessSettings,
        log: &Log,
    ) -> Result<Self, WitnessConfigError> {
        for (i, e) in endpoints.iter().enumerate() {
            if endpoints[..i].iter().any(|o| o.key == e.key) {
                return Err(WitnessConfigError::Duplicate(e.key.to_vkey()));
            }
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .build()
            .map_err(|e| WitnessConfigError::Http(e.to_string()))?;
        let mut tenants = HashMap::new();
        for name in log.tenants() {
            let Some(tl) = log.tenant(&name) else {
                continue;
            };
            let mut state = TenantState {
                peers: vec![Peer::default(); endpoints.len()],
                ..TenantState::default()
            };
            if let Some(c) = load_cosigned(log, &tl, &endpoints, &mut state.peers) {
                state.cosigned = Some(c);
            }
            tenants.insert(name, state);
        }
        Ok(Witnessing {
            endpoints,
            settings,
            http,
            tenants: Mutex::new(tenants),
            metrics: WitnessMetrics::default(),
        })
    }

    /// Registers the metrics under `tally_witness_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tally_witness");
        r.register(
            "requests",
            "add-checkpoint requests by witness and result (ok, conflict, error)",
            self.metrics.requests.clone(),
        );
        r.register(
            "lag_entries",
            "Entries of the latest checkpoint not yet cosigned, by tenant and witness",
            self.metrics.lag.clone(),
        );
        r.register(
            "cosigned_size",
            "Size of the latest checkpoint cosigned, by tenant and witness",
            self.metrics.cosigned_size.clone(),
        );
    }

    /// The configured witnesses.
    pub fn endpoints(&self) -> &[WitnessEndpoint] {
        &self.endpoints
    }

    /// Runs until the task is dropped or aborted: asks the witnesses about every new
    /// checkpoint of every tenant.
    pub async fn run(self: Arc<Self>, log: Log) {
        loop {
            // Tenants concurrently: a witness that hangs until its timeout delays one round,
            // not one round per tenant.
            let rounds = log.tenants().into_iter().filter_map(|name| {
                let tl = log.tenant(&name)?;
                let cp = tl.checkpoint()?;
                Some(self.witness_tenant(&log, tl, cp))
            });
            futures_util::future::join_all(rounds).await;
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// Starts [`Witnessing::run`] on the current runtime.
    pub fn spawn(self: &Arc<Self>, log: Log) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run(log))
    }

    async fn witness_tenant(&self, log: &Log, tl: Arc<TenantLog>, cp: SignedCheckpoint) {
        let now = Instant::now();
        let due: Vec<(usize, Option<u64>)> = {
            let mut tenants = self.tenants.lock();
            let state = tenants
                .entry(tl.name().to_owned())
                .or_insert_with(|| TenantState {
                    peers: vec![Peer::default(); self.endpoints.len()],
                    ..TenantState::default()
                });
            if state.seen.is_none_or(|(size, _)| size != cp.size) {
                state.seen = Some((cp.size, now));
            }
            state
                .peers
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.line.as_ref().is_none_or(|(size, _)| *size != cp.size)
                        && p.next_attempt.is_none_or(|t| t <= now)
                })
                .map(|(i, p)| (i, p.known_size))
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let results = futures_util::future::join_all(
            due.iter()
                .map(|&(i, known)| self.submit(i, known, &tl, &cp)),
        )
        .await;

        let to_persist = {
            let mut tenants = self.tenants.lock();
            let Some(state) = tenants.get_mut(tl.name()) else {
                return;
            };
            for (&(i, _), (learned, outcome)) in due.iter().zip(results) {
                let endpoint = &self.endpoints[i];
                let peer = &mut state.peers[i];
                if let Some(size) = learned {
                    peer.known_size = Some(size);
                }
                let labels = vec![("witness".to_owned(), endpoint.key.name().to_owned())];
                match outcome {
                    Ok(line) => {
                        self.metrics
                            .requests
                            .get_or_create(&with(&labels, "result", "ok"))
                            .inc();
                        if peer.failures > 0 {
                            tracing::info!(
                                witness = endpoint.key.name(),
                                tenant = tl.name(),
                                "witness cosigns again"
                            );
                        }
                        peer.known_size = Some(cp.size);
                        peer.line = Some((cp.size, line));
                        peer.failures = 0;
                        peer.next_attempt = None;
                        peer.last_error = None;
                        peer.last_success = Some(SystemTime::now());
                    }
                    Err(reason) => {
                        self.metrics
                            .requests
                            .get_or_create(&with(&labels, "result", "error"))
                            .inc();
                        if peer.last_error.as_deref() != Some(&reason) {
                            tracing::warn!(
                                witness = endpoint.key.name(),
                                url = endpoint.url,
                                tenant = tl.name(),
                                size = cp.size,
                                "witness did not cosign: {reason}"
                            );
                        }
                        peer.failures = peer.failures.saturating_add(1);
                        let backoff =
                            Duration::from_secs(1 << peer.failures.min(16).saturating_sub(1))
                                .min(self.settings.max_backoff);
                        peer.next_attempt = Some(Instant::now() + backoff);
                        peer.last_error = Some(reason);
                    }
                }
                let tenant_labels = with(&labels, "tenant", tl.name());
                let cosigned = peer.line.as_ref().map_or(0, |(s, _)| *s);
                self.metrics
                    .cosigned_size
                    .get_or_create(&tenant_labels)
                    .set(cosigned as i64);
                self.metrics
                    .lag
                    .get_or_create(&tenant_labels)
                    .set(cp.size.saturating_sub(cosigned) as i64);
            }
            let lines: Vec<&str> = state
                .peers
                .iter()
                .filter_map(|p| p.line.as_ref())
                .filter(|(size, _)| *size == cp.size)
                .map(|(_, line)| line.as_str())
                .collect();
            let better = !lines.is_empty()
                && state
                    .cosigned
                    .as_ref()
                    .is_none_or(|c| c.size < cp.size || c.cosignatures < lines.len());
            if better {
                let note = format!("{}{}", cp.note, lines.concat());
                state.cosigned = Some(Cosigned {
                    size: cp.size,
                    note: note.clone(),
                    cosignatures: lines.len(),
                });
                Some(note)
            } else {
                None
            }
        };
        if let Some(note) = to_persist {
            let path = log.data_dir().tenant(tl.name()).cosigned_checkpoint_path();
            let written = tokio::task::spawn_blocking(move || {
                tally_store::layout::write_file_durably(&path, note.as_bytes())
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(
                    tenant = tl.name(),
                    "cannot keep the cosigned checkpoint: {e}"
                ),
                Err(e) => tracing::warn!(tenant = tl.name(), "cosigned checkpoint write: {e}"),
            }
        }
    }

    /// Asks witness `i` to cosign `cp`, starting from the size it is known to have cosigned
    /// (0 if unknown) and learning the right one from a 409. Returns the size learned, if
    /// any, and the cosignature line or why there is none.
    async fn submit(
        &self,
        i: usize,
        known: Option<u64>,
        tl: &Arc<TenantLog>,
        cp: &SignedCheckpoint,
    ) -> (Option<u64>, Result<String, String>) {
        let endpoint = &self.endpoints[i];
        let mut old = known.unwrap_or(0);
        let mut learned = None;
        // Two 409s in a row mean the witness moved between requests (another client of the
        // same log); a third attempt would not be better informed.
        for _ in 0..3 {
            if old > cp.size {
                return (
                    learned,
                    Err(format!(
                        "the witness has cosigned size {old} of this log, larger than its \
                         latest checkpoint ({}): the log was rolled back or forked",
                        cp.size
                    )),
                );
            }
            let proof = if old == 0 || old == cp.size {
                Vec::new()
            } else {
                let tl = tl.clone();
                let size = cp.size;
                match tokio::task::spawn_blocking(move || tl.consistency_proof(old, size)).await {
                    Ok(Ok(proof)) => proof,
                    Ok(Err(e)) => return (learned, Err(format!("consistency proof: {e}"))),
                    Err(e) => return (learned, Err(format!("consistency proof: {e}"))),
                }
            };
            let body = AddCheckpointRequest {
                old_size: old,
                proof,
                checkpoint: cp.note.clone(),
            }
            .to_body();
            let response = match self
                .http
                .post(format!("{}{ADD_CHECKPOINT_PATH}", endpoint.url))
                .body(body)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return (learned, Err(format!("cannot reach {}: {e}", endpoint.url))),
            };
            let status = response.status();
            let size_body = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == CONFLICT_CONTENT_TYPE);
            let bytes = response.bytes().await.unwrap_or_default();
            match status.as_u16() {
                200 => {
                    let Some(lines) = parse_cosignature_lines(&bytes) else {
                        return (learned, Err("answered 200 without signature lines".into()));
                    };
                    let text = cp
                        .note
                        .rfind("\n\n")
                        .map_or(cp.note.as_str(), |at| &cp.note[..at + 1]);
                    // The witness may answer with several keys; keep the line of the key
                    // configured for it, and only if it verifies.
                    return match lines
                        .iter()
                        .find(|l| endpoint.key.verify_line(text, l).is_ok())
                    {
                        Some(line) => (learned, Ok(format!("{line}\n"))),
                        None => (
                            learned,
                            Err(format!(
                                "answered 200 without a valid cosignature by {}",
                                endpoint.key.to_vkey()
                            )),
                        ),
                    };
                }
                409 if size_body => {
                    self.metrics
                        .requests
                        .get_or_create(&vec![
                            ("witness".to_owned(), endpoint.key.name().to_owned()),
                            ("result".to_owned(), "conflict".to_owned()),
                        ])
                        .inc();
                    match parse_conflict_body(&bytes) {
                        Some(size) => {
                            learned = Some(size);
                            old = size;
                        }
                        None => return (learned, Err("answered 409 with a malformed size".into())),
                    }
                }
                409 => {
                    return (
                        learned,
                        Err(format!(
                            "refuses a checkpoint of the same size as the one it cosigned but \
                             another root (a fork): {}",
                            String::from_utf8_lossy(&bytes).trim()
                        )),
                    )
                }
                422 => {
                    return (
                        learned,
                        Err(format!(
                            "says the checkpoint is not consistent with the one it cosigned: {}",
                            String::from_utf8_lossy(&bytes).trim()
                        )),
                    )
                }
                _ => {
                    return (
                        learned,
                        Err(format!(
                            "answered {status}: {}",
                            String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).trim()
                        )),
                    )
                }
            }
        }
        (
            learned,
            Err("the witness's size kept changing (409 three times)".into()),
        )
    }

    /// The checkpoint note to serve for a tenant whose latest signed checkpoint is `cp`.
    pub fn note_for(&self, tenant: &str, cp: SignedCheckpoint) -> String {
        let mut tenants = self.tenants.lock();
        let Some(state) = tenants.get_mut(tenant) else {
            return cp.note;
        };
        let pending = state
            .seen
            .is_none_or(|(size, at)| size != cp.size || at.elapsed() < self.settings.grace);
        let (size, note) = match &state.cosigned {
            Some(c) if c.size == cp.size => (c.size, c.note.clone()),
            Some(c) if c.size < cp.size && pending && c.size >= state.floor => {
                (c.size, c.note.clone())
            }
            _ => (cp.size, cp.note),
        };
        state.floor = state.floor.max(size);
        note
    }

    /// The `witnesses` field of `/healthz`: per witness, whether it cosigned every tenant's
    /// latest checkpoint, how far it lags, and its last error.
    pub fn health(&self, log: &Log) -> serde_json::Value {
        let tenants = self.tenants.lock();
        let latest: Vec<(String, u64)> = log
            .tenants()
            .into_iter()
            .filter_map(|t| {
                let size = log.tenant(&t)?.checkpoint()?.size;
                Some((t, size))
            })
            .collect();
        let list: Vec<serde_json::Value> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut lagging = 0u64;
                let mut max_lag = 0u64;
                let mut failures = 0u32;
                let mut last_error: Option<String> = None;
                let mut last_success: Option<SystemTime> = None;
                for (tenant, size) in &latest {
                    let peer = tenants.get(tenant).and_then(|s| s.peers.get(i));
                    let cosigned = peer.and_then(|p| p.line.as_ref()).map_or(0, |(s, _)| *s);
                    if cosigned < *size {
                        lagging += 1;
                        max_lag = max_lag.max(size - cosigned);
                    }
                    if let Some(p) = peer {
                        if p.failures > failures {
                            failures = p.failures;
                            last_error = p.last_error.clone();
                        }
                        last_success = last_success.max(p.last_success);
                    }
                }
                json!({
                    "name": e.key.name(),
                    "url": e.url,
                    "ok": failures == 0,
                    "lagging_tenants": lagging,
                    "max_lag_entries": max_lag,
                    "consecutive_failures": failures,
                    "last_error": last_error,
                    "last_success_unix": last_success
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }
}

fn with(labels: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut out = labels.to_vec();
    out.push((key.to_owned(), value.to_owned()));
    out
}

/// Reads a tenant's persisted cosigned checkpoint; keeps it only if the log signed it and it
/// matches the log's tree at its size, and learns from its lines which size each witness
/// cosigned.
fn load_cosigned(
    log: &Log,
    tl: &TenantLog,
    endpoints: &[WitnessEndpoint],
    peers: &mut [Peer],
) -> Option<Cosigned> {
    let path = log.data_dir().tenant(tl.name()).cosigned_checkpoint_path();
    let note = std::fs::read_to_string(&path).ok()?;
    let checked = tally_store::open_checkpoint(&note, log.verifier())
        .map_err(|e| e.to_string())
        .and_then(|cp| {
            let root = tl.root_at(cp.size).map_err(|e| e.to_string())?;
            if root == cp.root {
                Ok(cp)
            } else {
                Err(format!(
                    "its root differs from the log's at size {}",
                    cp.size
                ))
            }
        });
    let cp = match checked {
        Ok(cp) => cp,
        Err(e) => {
            tracing::warn!(
                "ignoring {}: {e}; witnesses will be asked again",
                path.display()
            );
            return None;
        }
    };
    let (text, lines) = tally_tlog::note::split(&note).ok()?;
    let text = text.to_owned();
    let mut count = 0;
    for (e, peer) in endpoints.iter().zip(peers.iter_mut()) {
        let valid = lines
            .iter()
            .find(|l| e.key.matches(l) && e.key.verify(&text, &l.signature).is_ok());
        if let Some(l) = valid {
            let line = tally_tlog::note::format_signature_line(l.name, l.key_id, &l.signature);
            peer.known_size = Some(cp.size);
            peer.line = Some((cp.size, line));
            count += 1;
        }
    }
    (count > 0).then_some(Cosigned {
        size: cp.size,
        note: note.clone(),
        cosignatures: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_flag_format() {
        let w = tally_tlog::CosignatureSigner::from_seed("witness.example/w1", [1; 32]).unwrap();
        let vkey = w.verifier().to_vkey();
        let e = WitnessEndpoint::parse(&format!("{vkey}=http://127.0.0.1:7780/")).unwrap();
        assert_eq!(e.url, "http://127.0.0.1:7780");
        assert_eq!(e.key, w.verifier());
        let e = WitnessEndpoint::parse(&format!("{vkey}=https://w.example/a?b=c")).unwrap();
        assert_eq!(e.url, "https://w.example/a?b=c");
        for bad in [
            vkey.clone(),
            format!("{vkey}=ftp://x"),
            "x=http://y".to_owned(),
            format!("http://y={vkey}"),
        ] {
            assert!(WitnessEndpoint::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }
}
