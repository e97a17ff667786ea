//! The data set: a Tally data directory filled with generated events through the embedded
//! store, its manifest, and the query parameters picked from the generated population.
//!
//! Filling goes through the same steps as `POST /v1/events` minus HTTP (JSON body →
//! `tally_event::parse_body` → `validate` → `PreparedEvent` → `Log::append`), in batches of
//! [`FILL_BATCH`] events, one append in flight so that leaf order stays generation order (and so
//! time order, see [`EventGenerator::with_time_span`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tally_event::{BodyFormat, IngestContext};
use tally_store::{DataDir, Log, LogConfig, PreparedEvent};
use time::OffsetDateTime;

use super::{InvestigateError, Observer};
use crate::generate::{Event, EventGenerator};

/// Events per append while filling: one group commit (and one fsync) each.
pub const FILL_BATCH: usize = 20_000;

/// File in the data directory describing what the benchmark put there.
pub const MANIFEST_FILE: &str = "bench-search.json";

/// What a data directory filled by the benchmark holds; written once the fill is durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Generator seed.
    pub seed: u64,
    /// Events generated (the first `events` leaves of the tenant's log; searches made by the
    /// benchmark append their own audit events after them).
    pub events: u64,
    /// Seconds of event time the events are spread over, ending at `now_ms`.
    pub span_secs: u64,
    /// The tenant holding the events.
    pub tenant: String,
    /// "Now" of the data set, Unix milliseconds: relative bounds ("the last 30 days") are
    /// taken from it, so that a rerun days later selects the same events.
    pub now_ms: i64,
    /// The query parameters picked from the population.
    pub params: Params,
}

/// One picked value and how many events carry it over the whole span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Picked {
    /// The value (an actor id, a resource id, an e-mail address).
    pub value: String,
    /// Events with it in the whole data set.
    pub events: u64,
    /// Its rank by number of events among its kind (1 = most), and the size of its kind.
    pub rank: (usize, usize),
}

/// Query parameters chosen from the generated population, as an investigator would meet them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// The person (`actor.type` user) with the most events.
    pub actor_popular: Picked,
    /// The person at the median of people ranked by events: a typical employee.
    pub actor_typical: Picked,
    /// The person with the most DELETE and EXPORT events (the suspect of an exfiltration
    /// investigation); `events` counts those.
    pub actor_suspect: Picked,
    /// The document accessed most.
    pub document_popular: Picked,
    /// The document at the median of accessed documents.
    pub document_typical: Picked,
    /// An e-mail address of the most active person, as it appears in login metadata and
    /// profile snapshots (a PII search); `events` counts that person's events.
    pub email: Picked,
}

/// How the fill went.
#[derive(Debug, Clone)]
pub struct FillStats {
    /// Events appended.
    pub events: u64,
    /// Wall time of the fill, generation included.
    pub elapsed: Duration,
    /// Bytes of the tenant's directory (segments, leaves, checkpoints) after the fill.
    pub log_bytes: u64,
}

/// A data directory ready for the benchmark: its open log and its manifest.
pub struct Dataset {
    /// The open log (the directory's lock is held).
    pub log: Log,
    /// What the directory holds.
    pub manifest: Manifest,
    /// `Some` when this run filled the directory, `None` when it reused one.
    pub fill: Option<FillStats>,
}

/// Opens `data`, reusing it when its manifest says it holds the same events (same seed,
/// count, span and tenant), or fills it when it has no events yet. A directory holding other
/// events is refused rather than touched.
pub async fn prepare(
    data: &Path,
    events: u64,
    span: Duration,
    seed: u64,
    tenant: &str,
    observer: &dyn Observer,
) -> Result<Dataset, InvestigateError> {
    let dir = DataDir::create_or_open(data).map_err(|e| store(data, e))?;
    let manifest_path = data.join(MANIFEST_FILE);
    let existing: Option<Manifest> = match std::fs::read(&manifest_path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| InvestigateError::Data(format!("{}: {e}", manifest_path.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(InvestigateError::Io(manifest_path, e)),
    };
    let config = LogConfig {
        origin: log_origin(&dir),
        ..LogConfig::default()
    };
    let (log, _) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || Log::open(dir, config))
            .await
            .map_err(|e| InvestigateError::Task(e.to_string()))?
            .map_err(|e| store(data, e))?
    };
    let size = log.tenant(tenant).map_or(0, |t| t.size());
    let span_secs = span.as_secs();
    if let Some(m) = existing {
        let same = m.seed == seed && m.events == events && m.span_secs == span_secs;
        if same && m.tenant == tenant && size >= events {
            observer.note(&format!(
                "reusing {}: {} events of tenant {tenant} (seed {seed})",
                data.display(),
                m.events
            ));
            return Ok(Dataset {
                log,
                manifest: m,
                fill: None,
            });
        }
        log.shutdown();
        return Err(InvestigateError::Data(format!(
            "{} was filled with {} events (seed {}, span {} s, tenant {}) and its log has {size}; \
             this run wants {events} (seed {seed}, span {span_secs} s, tenant {tenant}): \
             use another --data directory or delete this one",
            data.display(),
            m.events,
            m.seed,
            m.span_secs,
            m.tenant
        )));
    }
    if !log.tenants().is_empty() {
        log.shutdown();
        return Err(InvestigateError::Data(format!(
            "{} already holds tenant logs ({}) not made by this benchmark; \
             use an empty or new --data directory",
            data.display(),
            log.tenants().join(", ")
        )));
    }
    // Whole milliseconds: event times have millisecond precision.
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let started = Instant::now();
    let population = fill(&log, events, span, seed, tenant, now_ms, observer).await?;
    let elapsed = started.elapsed();
    let manifest = Manifest {
        seed,
        events,
        span_secs,
        tenant: tenant.to_string(),
        now_ms,
        params: population.pick()?,
    };
    let text = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    tally_store::layout::write_file_durably(&manifest_path, &text).map_err(|e| store(data, e))?;
    let log_bytes = dir_bytes(&dir.tenant(tenant).root().to_path_buf());
    Ok(Dataset {
        log,
        manifest,
        fill: Some(FillStats {
            events,
            elapsed,
            log_bytes,
        }),
    })
}

/// The log's name from `log.pub` (`tally serve --origin`), or the default for a new directory.
fn log_origin(dir: &DataDir) -> String {
    std::fs::read_to_string(dir.verifier_key_path())
        .ok()
        .and_then(|k| k.split('+').next().map(str::to_string))
        .unwrap_or_else(|| LogConfig::default().origin)
}

fn store(path: &Path, e: impl std::fmt::Display) -> InvestigateError {
    InvestigateError::Data(format!("{}: {e}", path.display()))
}

/// Bytes of every file under `path`.
pub(crate) fn dir_bytes(path: &PathBuf) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Generates on one thread, validates on another, appends here: the three stages overlap.
async fn fill(
    log: &Log,
    events: u64,
    span: Duration,
    seed: u64,
    tenant: &str,
    now_ms: i64,
    observer: &dyn Observer,
) -> Result<Population, InvestigateError> {
    let base = OffsetDateTime::from_unix_timestamp_nanos(now_ms as i128 * 1_000_000)
        .expect("now is a valid time");
    let generator = EventGenerator::new(seed)
        .with_tenant(Some(tenant.to_string()))
        .with_base_time(base)
        .with_time_span(span, events);
    // Bounded channels: generation runs at most a few batches ahead of the log.
    let (body_tx, body_rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let (prepared_tx, mut prepared_rx) =
        tokio::sync::mpsc::channel::<Result<Vec<PreparedEvent>, String>>(4);
    let generating = std::thread::Builder::new()
        .name("fill-generate".into())
        .spawn(move || generate(generator, events, body_tx))
        .map_err(|e| InvestigateError::Task(e.to_string()))?;
    let validating = std::thread::Builder::new()
        .name("fill-validate".into())
        .spawn(move || {
            let received_at = OffsetDateTime::now_utc();
            let ctx = IngestContext {
                received_at,
                key_id: "bench-search",
                default_tenant: None,
                max_future_skew: time::Duration::minutes(5),
            };
            for body in body_rx {
                let batch = prepare_batch(&body, &ctx);
                if prepared_tx.blocking_send(batch).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| InvestigateError::Task(e.to_string()))?;

    observer.start("fill", Some(events));
    let mut appended = 0u64;
    let mut failure = None;
    while let Some(batch) = prepared_rx.recv().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                failure = Some(InvestigateError::Data(format!("a generated event: {e}")));
                break;
            }
        };
        let n = batch.len() as u64;
        if let Err(e) = log.append(batch).await {
            failure = Some(InvestigateError::Data(format!("appending: {e}")));
            break;
        }
        appended += n;
        observer.advance(n);
    }
    drop(prepared_rx);
    observer.finish();
    let _ = validating.join();
    let population = generating
        .join()
        .map_err(|_| InvestigateError::Task("the generating thread panicked".into()))?;
    if let Some(e) = failure {
        return Err(e);
    }
    if appended != events {
        return Err(InvestigateError::Data(format!(
            "appended {appended} of {events} events"
        )));
    }
    Ok(population)
}

fn generate(
    mut generator: EventGenerator,
    events: u64,
    out: mpsc::SyncSender<Vec<u8>>,
) -> Population {
    let mut population = Population::default();
    let mut left = events;
    while left > 0 {
        let n = left.min(FILL_BATCH as u64) as usize;
        let mut body = Vec::with_capacity(n * 520 + 2);
        body.push(b'[');
        for i in 0..n {
            if i > 0 {
                body.push(b',');
            }
            let event = generator.next_event();
            body.extend_from_slice(&event.to_json());
            population.count(event);
        }
        body.push(b']');
        if out.send(body).is_err() {
            break;
        }
        left -= n as u64;
    }
    population
}

fn prepare_batch(body: &[u8], ctx: &IngestContext<'_>) -> Result<Vec<PreparedEvent>, String> {
    let inputs =
        tally_event::parse_body(body, BodyFormat::Json, FILL_BATCH).map_err(|e| e.to_string())?;
    inputs
        .into_iter()
        .map(|input| {
            tally_event::validate(input, ctx)
                .map(PreparedEvent::new)
                .map_err(|errors| format!("{errors:?}"))
        })
        .collect()
}

#[derive(Debug, Default)]
struct ActorCount {
    events: u64,
    person: bool,
    deletes_exports: u64,
    email: Option<String>,
}

/// Counts per actor and per document, gathered while generating.
#[derive(Debug, Default)]
struct Population {
    actors: HashMap<String, ActorCount>,
    documents: HashMap<String, u64>,
}

impl Population {
    fn count(&mut self, event: Event) {
        let actor = self.actors.entry(event.actor.id).or_default();
        actor.events += 1;
        actor.person = event.actor.kind == "user";
        if matches!(event.category, "DELETE" | "EXPORT") {
            actor.deletes_exports += 1;
        }
        if actor.email.is_none() {
            if let Some(email) = event.metadata.get("email").and_then(|v| v.as_str()) {
                actor.email = Some(email.to_string());
            }
        }
        if event.resource.kind == "DOCUMENT" {
            *self.documents.entry(event.resource.id).or_default() += 1;
        }
    }

    fn pick(&self) -> Result<Params, InvestigateError> {
        let none = |what: &str| InvestigateError::Data(format!("the data set has no {what}"));
        // Ranked by count, ties by id, so the pick is deterministic.
        let mut people: Vec<(&String, &ActorCount)> =
            self.actors.iter().filter(|(_, a)| a.person).collect();
        people.sort_by(|a, b| b.1.events.cmp(&a.1.events).then(a.0.cmp(b.0)));
        let mut documents: Vec<(&String, u64)> =
            self.documents.iter().map(|(d, &n)| (d, n)).collect();
        documents.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let at = |list_len: usize, i: usize, value: &str, events: u64| Picked {
            value: value.to_string(),
            events,
            rank: (i + 1, list_len),
        };
        let (top, top_count) = people.first().ok_or_else(|| none("people"))?;
        let mid = people.len() / 2;
        let mut suspects = people.clone();
        suspects.sort_by(|a, b| {
            b.1.deletes_exports
                .cmp(&a.1.deletes_exports)
                .then(a.0.cmp(b.0))
        });
        let (suspect, suspect_count) = suspects[0];
        let suspect_rank = people
            .iter()
            .position(|(id, _)| *id == suspect)
            .expect("a suspect is a person");
        // The most active person who logged in at least once (logins carry the e-mail).
        let (email_rank, (_, email_owner)) = people
            .iter()
            .enumerate()
            .find(|(_, (_, a))| a.email.is_some())
            .ok_or_else(|| none("login with an e-mail address"))?;
        let (top_doc, top_doc_count) = documents.first().ok_or_else(|| none("documents"))?;
        let mid_doc = documents.len() / 2;
        Ok(Params {
            actor_popular: at(people.len(), 0, top, top_count.events),
            actor_typical: at(people.len(), mid, people[mid].0, people[mid].1.events),
            actor_suspect: Picked {
                value: suspect.clone(),
                events: suspect_count.deletes_exports,
                rank: (suspect_rank + 1, people.len()),
            },
            document_popular: at(documents.len(), 0, top_doc, *top_doc_count),
            document_typical: at(
                documents.len(),
                mid_doc,
                documents[mid_doc].0,
                documents[mid_doc].1,
            ),
            email: at(
                people.len(),
                email_rank,
                email_owner.email.as_deref().expect("found with an e-mail"),
                email_owner.events,
            ),
        })
    }
}
