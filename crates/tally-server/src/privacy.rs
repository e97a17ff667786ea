//! The privacy layer between the API and the log: personal values are sealed under their
//! subjects' keys before the log hashes a record ([`Privacy`] is the log's
//! [`RecordSealer`]), and every record a reader gets is opened for that reader: in the clear
//! with the `read:pii` scope, masked otherwise (`tally-privacy` holds the formats and keys).
//!
//! Which values are personal is the tenant's policy: the schema's personal fields and the
//! tenant's [`PersonalPath`]s (from the registry). A policy applies to the events sealed after
//! it is set; records keep what they were sealed with.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use parking_lot::RwLock;
use tally_event::ValidEvent;
use tally_privacy::keystore::{FileCipher, KeyStoreError, SubjectKeys};
use tally_privacy::policy::Policy;
use tally_privacy::record::{self, Opened, View};
use tally_privacy::seal::{KeyId, SubjectKey};
use tally_store::{AtRest, DataDir, RecordSealer};

use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::tenants::{PersonalPath, TenantRegistry};

/// Seals at ingest and opens for readers; one per server, shared by every request.
pub struct Privacy {
    dir: DataDir,
    tenants: Arc<TenantRegistry>,
    /// Encrypts the key files at rest, when a key-encryption key is configured.
    at_rest: Option<Arc<AtRest>>,
    /// Whether this is the running server's (which may rewrite key files), not a tool's.
    writer: bool,
    keys: RwLock<HashMap<String, Arc<SubjectKeys>>>,
    policies: RwLock<HashMap<String, CachedPolicy>>,
}

/// Encrypts a tenant's subject-key file under its data keys (encryption at rest).
struct KeyFileCipher {
    at_rest: Arc<AtRest>,
    tenant: String,
}

impl FileCipher for KeyFileCipher {
    fn seal(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        self.at_rest
            .seal(&self.tenant, b"subject-keys", body)
            .map_err(|e| e.to_string())
    }

    fn open(&self, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        self.at_rest
            .open(&self.tenant, b"subject-keys", sealed)
            .map_err(|e| e.to_string())
    }
}

/// A tenant's policy, and the registry's paths it was made from (to notice a change).
type CachedPolicy = (Vec<PersonalPath>, Arc<Policy>);

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privacy")
            .field("dir", &self.dir.privacy_path())
            .finish()
    }
}

/// Refuses `view` the hashed form of a record stored with its personal values in the clear
/// (schema 1: stored before sealing, or by a server that does not seal): the bytes a proof is
/// about would show a masked reader what masking hides. Sealed records' hashed form holds
/// ciphertext only, and anyone who may read the record may read it.
pub(crate) fn check_hashed_form(view: View, stored: &[u8], index: u64) -> Result<(), ApiError> {
    if view == View::Clear || record::is_sealed(stored) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "personal_data",
        format!(
            "record {index} was stored with its personal values in the clear (before they were \
             sealed), so its hashed form shows them; only a key with the read:pii scope may read it"
        ),
    ))
}

/// How `who` sees personal values.
pub fn view_for(who: &Principal) -> View {
    if who.has(Scope::ReadPii) {
        View::Clear
    } else {
        View::Masked
    }
}

impl Privacy {
    /// The privacy layer of a data directory; key files are opened as tenants need them, and
    /// kept encrypted under `at_rest`'s data keys when it is given.
    pub fn new(
        dir: DataDir,
        tenants: Arc<TenantRegistry>,
        at_rest: Option<Arc<AtRest>>,
    ) -> Privacy {
        Privacy {
            dir,
            tenants,
            at_rest,
            writer: false,
            keys: RwLock::new(HashMap::new()),
            policies: RwLock::new(HashMap::new()),
        }
    }

    /// A tenant's subject keys, opening (or creating, 0600 in a 0700 directory) its key file.
    pub fn keys(&self, tenant: &str) -> Result<Arc<SubjectKeys>, KeyStoreError> {
        if let Some(keys) = self.keys.read().get(tenant) {
            return Ok(keys.clone());
        }
        let mut all = self.keys.write();
        if let Some(keys) = all.get(tenant) {
            return Ok(keys.clone());
        }
        let path = self.dir.subject_keys_path(tenant);
        if let Some(parent) = path.parent() {
            tally_store::layout::create_private_dir_all(parent).map_err(|source| {
                KeyStoreError::Io {
                    path: parent.to_path_buf(),
                    source,
                }
            })?;
        }
        let cipher = self.at_rest.as_ref().map(|at_rest| {
            Arc::new(KeyFileCipher {
                at_rest: at_rest.clone(),
                tenant: tenant.to_string(),
            }) as Arc<dyn FileCipher>
        });
        let keys = Arc::new(SubjectKeys::open_with(&path, cipher)?);
        if self.writer {
            keys.encrypt_clear_frames()?;
        }
        all.insert(tenant.to_string(), keys.clone());
        Ok(keys)
    }

    /// The policy in force for a tenant (the schema's defaults for a tenant the registry
    /// does not know, such as the server's own).
    pub fn policy(&self, tenant: &str) -> Arc<Policy> {
        let paths = self
            .tenants
            .get(tenant)
            .map(|t| t.personal_paths)
            .unwrap_or_default();
        if let Some((cached, policy)) = self.policies.read().get(tenant) {
            if *cached == paths {
                return policy.clone();
            }
        }
        let rules: Vec<_> = paths.iter().map(PersonalPath::rule).collect();
        // Checked when set; a registry edited by hand into an invalid state keeps the defaults
        // rather than refusing every event.
        let policy = Arc::new(Policy::with_tenant_rules(&rules).unwrap_or_else(|errors| {
            tracing::error!(
                tenant,
                ?errors,
                "the tenant's personal paths are invalid; using the schema's only"
            );
            Policy::default()
        }));
        self.policies
            .write()
            .insert(tenant.to_string(), (paths, policy.clone()));
        policy
    }

    /// A stored record as `view` shows it.
    pub fn open(&self, tenant: &str, stored: &[u8], view: View) -> Result<Opened, ApiError> {
        if view == View::Clear && !record::is_sealed(stored) {
            // A schema-1 record holds its values in the clear already: no key file needed.
            return Ok(Opened {
                bytes: stored.to_vec(),
                sealed: Vec::new(),
                tokens: Vec::new(),
                erased: 0,
                unavailable: 0,
            });
        }
        let keys = self.keys(tenant).map_err(key_store_error)?;
        record::open_record(stored, view, &self.policy(tenant), &keys).map_err(|e| {
            tracing::error!(tenant, error = %e, "a stored record does not open");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "damaged_record",
                format!("a stored record's personal values do not open: {e}; run tally verify"),
            )
        })
    }

    /// The sealed records of one tenant's events, in order. With `in_memory`, `Ok(None)` when
    /// a key is not in memory (its file would have to be read or written).
    fn seal_tenant(
        &self,
        tenant: &str,
        records: &[&[u8]],
        in_memory: bool,
    ) -> Result<Option<Vec<Vec<u8>>>, String> {
        let policy = self.policy(tenant);
        let keys = if in_memory {
            match self.keys.read().get(tenant).cloned() {
                Some(keys) => keys,
                None => return Ok(None),
            }
        } else {
            self.keys(tenant).map_err(|e| {
                tracing::error!(tenant, error = %e, "the subject key file cannot be opened");
                "the personal-data keys cannot be read or written".to_string()
            })?
        };
        // Each record is walked once: its plan gives the subjects, then seals it.
        let plans = records
            .iter()
            .map(|r| record::plan_record(r, &policy))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut seen = std::collections::HashSet::new();
        let subjects: Vec<String> = plans
            .iter()
            .flat_map(|p| p.subjects())
            .filter(|s| seen.insert(s.clone()))
            .collect();
        let subject_keys = if in_memory {
            match keys.existing_keys(&subjects) {
                Some(found) => found,
                None => return Ok(None),
            }
        } else {
            keys.ensure_keys(&subjects).map_err(|e| {
                tracing::error!(tenant, error = %e, "new subject keys cannot be stored");
                "new personal-data keys could not be stored durably; nothing of this request \
                 was stored"
                    .to_string()
            })?
        };
        let by_subject: HashMap<&str, (KeyId, SubjectKey)> = subjects
            .iter()
            .map(String::as_str)
            .zip(subject_keys)
            .collect();
        let key_of = |subject: &str| by_subject.get(subject).cloned();
        plans
            .iter()
            .map(|p| p.seal_with(&key_of))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Seals every event, tenant by tenant; changes nothing unless all are sealed.
    fn seal_all(&self, events: &mut [ValidEvent], in_memory: bool) -> Result<Option<()>, String> {
        let mut by_tenant: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            by_tenant.entry(&event.tenant).or_default().push(i);
        }
        let mut sealed: Vec<(usize, Vec<u8>)> = Vec::with_capacity(events.len());
        for (tenant, positions) in by_tenant {
            let records: Vec<&[u8]> = positions.iter().map(|&i| &events[i].record[..]).collect();
            let Some(records) = self.seal_tenant(tenant, &records, in_memory)? else {
                return Ok(None);
            };
            sealed.extend(positions.into_iter().zip(records));
        }
        for (i, record) in sealed {
            events[i].record = record;
        }
        Ok(Some(()))
    }
}

impl Privacy {
    /// The log's privacy layer: the one already sealing its records, or a new one, set as its
    /// sealer. One per log, so that every request sees the same keys (an erased key is gone
    /// for all).
    pub fn of_log(log: &tally_store::Log, tenants: Arc<TenantRegistry>) -> Arc<Privacy> {
        if let Some(existing) = log
            .sealer()
            .and_then(|s| s.into_any().downcast::<Privacy>().ok())
        {
            return existing;
        }
        let privacy = Arc::new(Privacy {
            writer: true,
            ..Privacy::new(
                log.data_dir().clone(),
                tenants,
                log.config().at_rest.clone(),
            )
        });
        if !log.set_sealer(privacy.clone()) {
            // Another thread set one between the two calls.
            if let Some(existing) = log
                .sealer()
                .and_then(|s| s.into_any().downcast::<Privacy>().ok())
            {
                return existing;
            }
        }
        privacy
    }
}

impl tally_consumers::index::RecordOpener for Privacy {
    fn open_for_index(&self, tenant: &str, stored: &[u8]) -> Result<Opened, String> {
        let keys = self.keys(tenant).map_err(|e| e.to_string())?;
        record::open_record(stored, View::Index, &self.policy(tenant), &keys)
            .map_err(|e| e.to_string())
    }
}

impl RecordSealer for Privacy {
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }

    fn seal(&self, events: &mut [ValidEvent]) -> Result<(), String> {
        self.seal_all(events, false).map(|_| ())
    }

    fn seal_in_memory(&self, events: &mut [ValidEvent]) -> Option<Result<(), String>> {
        self.seal_all(events, true).transpose()
    }
}

/// The answer when a tenant's subject key file cannot be used (the cause goes to the log, not
/// to the client: it names local paths).
pub(crate) fn key_store_error(e: KeyStoreError) -> ApiError {
    tracing::error!(error = %e, "the subject key file cannot be used");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the personal-data keys cannot be read; retry later, or ask the operator to check the \
         server's log",
    )
    .retry_after(5)
}

impl Privacy {
    /// A stored record as `view` shows it, as JSON to embed in an answer.
    pub fn event_json(
        &self,
        tenant: &str,
        stored: &[u8],
        view: View,
    ) -> Result<Box<serde_json::value::RawValue>, ApiError> {
        let opened = self.open(tenant, stored, view)?;
        raw_json(opened.bytes)
    }

    /// A value of `field` as `view` shows it: unchanged in the clear or for a field that holds
    /// no personal data, its masking token otherwise (stats group keys).
    pub fn shown_value(
        &self,
        tenant: &str,
        field: tally_query::Field,
        value: String,
        view: View,
    ) -> Result<String, ApiError> {
        if view == View::Clear || !field.spec().personal {
            return Ok(value);
        }
        let keys = self.keys(tenant).map_err(key_store_error)?;
        Ok(keys.tokens().token_of_str(&value))
    }
}

/// Bytes known to be a JSON document, for embedding.
pub fn raw_json(bytes: Vec<u8>) -> Result<Box<serde_json::value::RawValue>, ApiError> {
    let damaged = |detail: String| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            format!("a stored record is not JSON ({detail}); run tally verify"),
        )
    };
    let text = String::from_utf8(bytes).map_err(|_| damaged("not UTF-8".into()))?;
    serde_json::value::RawValue::from_string(text).map_err(|e| damaged(e.to_string()))
}

/// Refuses what would let a reader without `read:pii` learn personal values piece by piece:
/// a prefix or an address block on a personal field (whole values and masking tokens are
/// fine: they only confirm what the reader already has).
pub fn check_query(query: &tally_query::Query, view: View) -> Result<(), ApiError> {
    if view != View::Masked {
        return Ok(());
    }
    for term in &query.terms {
        if let tally_query::TermKind::Field { field, values } = &term.kind {
            let partial = values.iter().any(|v| {
                matches!(
                    v,
                    tally_query::Value::Prefix(_) | tally_query::Value::Cidr { .. }
                ) && !(matches!(v, tally_query::Value::Cidr { prefix_len, network }
                        if *prefix_len == if network.is_ipv4() { 32 } else { 128 }))
            });
            if field.spec().personal && partial {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "personal_data",
                    format!(
                        "{} holds personal data: without the read:pii scope it is matched only \
                         by whole values or masking tokens (tally:pii:…), not by a prefix or an \
                         address block",
                        field.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// How a read's query is recorded in the log: the query text with every value that may be
/// personal (values of personal fields, free text) replaced by `$1`, `$2`, …, and those
/// values under `query_values`, a path every tenant's policy seals with the value as its
/// subject. So the query is on the record, and erasing a person erases it from there too.
pub fn recorded_query(query: &tally_query::Query) -> serde_json::Value {
    use tally_query::{TermKind, Value};
    let mut shown = query.clone();
    let mut values = serde_json::Map::new();
    let next = |text: String, values: &mut serde_json::Map<String, serde_json::Value>| {
        let n = values.len() + 1;
        values.insert(n.to_string(), text.into());
        format!("${n}")
    };
    for term in &mut shown.terms {
        match &mut term.kind {
            TermKind::Field { field, values: vs } if field.spec().personal => {
                for v in vs.iter_mut() {
                    *v = match v {
                        // A token is already a pseudonym, and a reserved string no event may
                        // carry inside `query_values`: it stays in the text.
                        Value::Token(t) => Value::Token(std::mem::take(t)),
                        Value::Exact(t) => Value::Exact(next(std::mem::take(t), &mut values)),
                        Value::Prefix(t) => Value::Prefix(next(std::mem::take(t), &mut values)),
                        Value::Cidr { .. } => Value::Exact(next(v.to_string(), &mut values)),
                    };
                }
            }
            TermKind::Text { text, .. } => {
                *text = next(std::mem::take(text), &mut values);
            }
            _ => {}
        }
    }
    let mut out = serde_json::json!({ "query": shown.to_string() });
    if !values.is_empty() {
        out[tally_privacy::policy::QUERY_VALUES_MEMBER] = serde_json::Value::Object(values);
    }
    out
}

/// `metadata` (an object) with the query recorded as [`recorded_query`] says.
pub fn with_query(query: &tally_query::Query, metadata: serde_json::Value) -> serde_json::Value {
    let mut out = recorded_query(query);
    if let (Some(out), serde_json::Value::Object(members)) = (out.as_object_mut(), metadata) {
        out.extend(members);
    }
    out
}

/// What an erasure did.
#[derive(Debug, Default)]
pub struct Erased {
    /// The ids of the destroyed subject keys.
    pub erased_keys: Vec<String>,
    /// Records holding a value under one of them.
    pub records: u64,
    /// Keys whose values the search index could not forget yet (retried until it does).
    pub index_pending: Vec<String>,
}

/// Destroys the keys of `subjects` in `tenant` and makes the search index forget their values
/// (blocking: run off the async workers). Subjects without a key are skipped.
pub fn erase(
    state: &crate::AppState,
    tenant: &str,
    subjects: &[String],
) -> Result<Erased, ApiError> {
    let privacy = &state.privacy;
    let keys = privacy.keys(tenant).map_err(key_store_error)?;
    let tlog = state.log.tenant(tenant);
    let mut out = Erased::default();
    // A record with values of several of the subjects counts once.
    let mut touched = std::collections::BTreeSet::new();
    let unavailable = |what: &str| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what}; nothing more was erased. Retry"),
        )
        .retry_after(5)
    };
    for subject in subjects {
        let Some(kid) = keys.key_id_of(subject) else {
            continue;
        };
        let kid = kid.to_string();
        if state.index.is_some() {
            // Written ahead: a crash between destroying the key and rewriting the index must
            // not leave the index holding the values for good.
            pending_index_erasures(&privacy.dir, tenant, |pending| {
                if !pending.contains(&kid) {
                    pending.push(kid.clone());
                }
            })
            .map_err(|e| {
                tracing::error!(tenant, error = %e, "the pending index erasures could not be written");
                unavailable("the list of pending index erasures could not be written")
            })?;
        }
        keys.erase(subject).map_err(|e| {
            tracing::error!(tenant, error = %e, "a subject key could not be erased");
            unavailable("the personal-data keys could not be rewritten")
        })?;
        let Some(tlog) = &tlog else {
            out.erased_keys.push(kid);
            continue;
        };
        // Records the index holds are found (and rewritten) through it; the ones it has not
        // reached yet are counted by reading them (the index will take them erased).
        let mut scan_from = 0;
        if state.index.is_some() {
            match forget_in_index(state, tenant, &kid) {
                Ok(replaced) => touched.extend(replaced),
                Err(e) => {
                    tracing::error!(tenant, error = %e, "the search index could not forget an erased subject; retrying later");
                    out.index_pending.push(kid.clone());
                }
            }
            scan_from = state
                .index
                .as_ref()
                .and_then(|index| index.indexed(tenant).ok())
                .unwrap_or(0);
        }
        touched.extend(sealed_under(tlog, &kid, scan_from)?);
        out.erased_keys.push(kid);
    }
    out.records = touched.len() as u64;
    Ok(out)
}

/// Makes the search index replace every document holding a value under the (destroyed) key
/// `kid` by the record opened again, and takes `kid` off the pending list. Returns the leaf
/// indexes it rewrote.
fn forget_in_index(state: &crate::AppState, tenant: &str, kid: &str) -> Result<Vec<u64>, String> {
    let (Some(index), Some(tlog)) = (&state.index, state.log.tenant(tenant)) else {
        return Ok(Vec::new());
    };
    let privacy = &state.privacy;
    let replaced = index
        .erase_key(tenant, kid, &mut |i| {
            let stored = tlog.record(i).map_err(|e| e.to_string())?;
            tally_consumers::index::opened_with_personal(&**privacy, tenant, &stored)
        })
        .map_err(|e| e.to_string())?;
    pending_index_erasures(&privacy.dir, tenant, |pending| pending.retain(|k| k != kid))
        .map_err(|e| format!("taking {kid} off the pending list: {e}"))?;
    Ok(replaced)
}

/// Carries out every index erasure still pending (after a failure, or a crash between a key's
/// destruction and the index's rewrite). Returns how many are still pending.
pub fn retry_index_erasures(state: &crate::AppState) -> usize {
    if state.index.is_none() {
        return 0;
    }
    let dir = &state.privacy.dir;
    let Ok(entries) = std::fs::read_dir(dir.privacy_path()) else {
        return 0;
    };
    let mut left = 0;
    for tenant in entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|t| tally_event::is_valid_tenant(t))
    {
        let mut pending = Vec::new();
        if pending_index_erasures(dir, &tenant, |p| pending = p.clone()).is_err() {
            left += 1;
            continue;
        }
        for kid in pending {
            match forget_in_index(state, &tenant, &kid) {
                Ok(replaced) => tracing::info!(
                    tenant,
                    key = kid,
                    records = replaced.len(),
                    "the search index forgot the values of an erased subject"
                ),
                Err(e) => {
                    tracing::warn!(tenant, key = kid, error = %e, "a pending index erasure failed again");
                    left += 1;
                }
            }
        }
    }
    left
}

/// The erasures the search index has not carried out yet, as `/healthz` and `/metrics` report
/// them: while any is pending the status is `degraded` (the keys are destroyed, so no reader
/// can see the values, but the index still holds what it indexed of them).
pub struct PendingErasures {
    dir: DataDir,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl PendingErasures {
    /// The pending erasures of `dir`.
    pub fn new(dir: DataDir) -> Self {
        PendingErasures {
            dir,
            gauge: Default::default(),
        }
    }

    /// Each tenant with pending index erasures and how many.
    fn pending(&self) -> Vec<(String, usize)> {
        let Ok(entries) = std::fs::read_dir(self.dir.privacy_path()) else {
            return Vec::new();
        };
        let mut out: Vec<(String, usize)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|t| tally_event::is_valid_tenant(t))
            .filter_map(|t| {
                let text = std::fs::read_to_string(self.dir.index_erasures_path(&t)).ok()?;
                let n = text.lines().filter(|l| !l.is_empty()).count();
                (n > 0).then_some((t, n))
            })
            .collect();
        out.sort();
        out
    }
}

impl crate::Component for PendingErasures {
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "tally_index_erasures_pending",
            "Erased subjects whose values the search index has not forgotten yet (retried every minute)",
            self.gauge.clone(),
        );
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let pending = self.pending();
        let total: usize = pending.iter().map(|(_, n)| n).sum();
        self.gauge.set(total as i64);
        (
            total == 0,
            serde_json::json!({
                "index_erasures_pending": total,
                "tenants": pending.iter().map(|(t, n)| serde_json::json!({"tenant": t, "pending": n})).collect::<Vec<_>>(),
            }),
        )
    }
}

/// Reads a tenant's pending index erasures, lets `change` edit them, and writes them back
/// durably if they changed (the file is removed when none are left).
fn pending_index_erasures(
    dir: &DataDir,
    tenant: &str,
    change: impl FnOnce(&mut Vec<String>),
) -> std::io::Result<()> {
    let path = dir.index_erasures_path(tenant);
    let before: Vec<String> = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut after = before.clone();
    change(&mut after);
    if after == before {
        return Ok(());
    }
    if after.is_empty() {
        std::fs::remove_file(&path)?;
    } else {
        let mut text = after.join("\n");
        text.push('\n');
        tally_store::layout::write_file_durably(&path, text.as_bytes())
            .map_err(std::io::Error::other)?;
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The records from `from` on that hold a value sealed under key id `kid`.
fn sealed_under(tlog: &tally_store::TenantLog, kid: &str, from: u64) -> Result<Vec<u64>, ApiError> {
    const CHUNK: u64 = 4096;
    let needle = format!(".{kid}.");
    let size = tlog.size();
    let mut out = Vec::new();
    let mut pos = from;
    while pos < size {
        let n = (size - pos).min(CHUNK);
        for (i, record) in tlog.records(pos, n)?.into_iter().enumerate() {
            if record.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                out.push(pos + i as u64);
            }
        }
        pos += n;
    }
    Ok(out)
}

/// The query as it is recorded: each masking token replaced by the value it stands for (found
/// through a record it matches), so that the recorded search is sealed under that value's
/// subject and erased with it, and no token outlives an erasure in the log. A token matching
/// nothing is recorded as such.
pub async fn query_for_record(
    state: &crate::AppState,
    tenant: &str,
    query: &tally_query::Query,
) -> tally_query::Query {
    use tally_query::{Term, TermKind, Value};
    let mut out = query.clone();
    let (Some(index), Some(tlog)) = (state.index.clone(), state.log.tenant(tenant)) else {
        return out;
    };
    for term in &mut out.terms {
        let TermKind::Field { field, values } = &mut term.kind else {
            continue;
        };
        for v in values.iter_mut() {
            let Value::Token(token) = v else { continue };
            let single = tally_query::Query {
                terms: vec![Term {
                    negated: false,
                    kind: TermKind::Field {
                        field: *field,
                        values: vec![Value::Token(token.clone())],
                    },
                    span: tally_query::Span { start: 0, end: 0 },
                }],
            };
            let (index, tenant_name, field) = (index.clone(), tenant.to_string(), *field);
            let found = tokio::task::spawn_blocking(move || {
                let opts = tally_index::SearchOptions {
                    now_ms: 0,
                    order: tally_index::Order::NewestFirst,
                    cursor: None,
                    limit: 1,
                    upto: None,
                };
                index.search(&tenant_name, &single, &opts).ok()
            })
            .await
            .ok()
            .flatten()
            .and_then(|page| page.indexes.first().copied());
            let clear = found
                .and_then(|i| tlog.record(i).ok())
                .and_then(|stored| state.privacy.open(tenant, &stored, View::Clear).ok())
                .and_then(|opened| tally_event::Record::parse(&opened.bytes).ok())
                .and_then(|record| {
                    field
                        .spec()
                        .value(&record)
                        .and_then(|v| v.as_text().map(|t| t.into_owned()))
                });
            *v =
                Value::Exact(clear.unwrap_or_else(|| "(a masking token matching no event)".into()));
        }
    }
    out
}

/// Applies a tenant's handling of secrets (credentials by name, card numbers) to a validated
/// event: unchanged when it holds none; refused with one error per secret; or redacted, each
/// secret replaced by `[redacted]` and the paths listed in `metadata.redacted`.
pub fn screen_secrets(
    handling: crate::tenants::SecretHandling,
    mut event: ValidEvent,
) -> Result<ValidEvent, Vec<tally_event::FieldError>> {
    use tally_privacy::secrets;
    if !secrets::may_hold_secrets(&event.record) {
        return Ok(event);
    }
    let Ok(mut record) = tally_event::Record::parse(&event.record) else {
        return Ok(event);
    };
    let mut metadata = record.metadata.take().map(serde_json::Value::Object);
    let members = [
        ("before", &mut record.before),
        ("after", &mut record.after),
        ("metadata", &mut metadata),
    ];
    let mut found = Vec::new();
    for (root, value) in &members {
        if let Some(v) = value.as_ref() {
            found.extend(secrets::find(root, v));
        }
    }
    if found.is_empty() {
        return Ok(event);
    }
    if handling == crate::tenants::SecretHandling::Refuse {
        return Err(found
            .into_iter()
            .map(|s| tally_event::FieldError {
                field: s.path,
                rule: format!(
                    "{}: secrets are never stored; remove it (or an administrator sets the \
                     tenant's secrets handling to redact)",
                    s.why
                ),
            })
            .collect());
    }
    let mut redacted = Vec::new();
    for (root, value) in members {
        if let Some(v) = value.as_mut() {
            redacted.extend(secrets::redact(root, v));
        }
    }
    let mut metadata = match metadata {
        Some(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    metadata.insert("redacted".into(), redacted.into());
    record.metadata = Some(metadata);
    event.record = record.to_bytes();
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Component;

    #[test]
    fn pending_erasures_make_the_health_degraded_until_carried_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create_or_open(tmp.path().join("data")).unwrap();
        let component = PendingErasures::new(dir.clone());
        assert!(component.health().0);
        std::fs::create_dir_all(dir.privacy_path().join("acme")).unwrap();
        pending_index_erasures(&dir, "acme", |p| p.extend(["k1".into(), "k2".into()])).unwrap();
        let (ok, report) = component.health();
        assert!(!ok);
        assert_eq!(report["index_erasures_pending"], 2);
        assert_eq!(report["tenants"][0]["tenant"], "acme");
        assert_eq!(component.gauge.get(), 2);
        pending_index_erasures(&dir, "acme", |p| p.retain(|k| k != "k1")).unwrap();
        assert_eq!(component.health().1["index_erasures_pending"], 1);
        pending_index_erasures(&dir, "acme", |p| p.clear()).unwrap();
        assert!(!dir.index_erasures_path("acme").exists());
        assert!(component.health().0);
        assert_eq!(component.gauge.get(), 0);
    }
}
