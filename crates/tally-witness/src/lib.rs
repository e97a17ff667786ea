//! A C2SP tlog-witness (<https://c2sp.org/tlog-witness>) for Tally logs and any C2SP log.
//!
//! A witness keeps, for every log it is configured for (an origin and the log's public key),
//! the latest checkpoint it cosigned. It cosigns a new checkpoint only if the log signed it and
//! a consistency proof shows it extends that latest one; it never cosigns two checkpoints of
//! one log that are inconsistent with each other, even across restarts. Whoever rewrites a
//! log's history and re-signs it with the log's own key is then caught: no honest witness
//! cosigns the rewritten tree.
//!
//! Main items: [`Witness`] (the state directory, the key, the checks of `add-checkpoint`),
//! [`TrustedLog`] (one configured log), [`Refusal`] (every answer but a cosignature, with its
//! HTTP status), and [`router`] (`POST /add-checkpoint` over HTTP).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tally_witness::{router, TrustedLog, Witness};
//! let logs = vec![TrustedLog::parse("tally.example/*=tally.example+0e87568f+AUeqzaAeGtlBGzmkJt459zjXS9U6DtctJWVEth8VwXIK")?];
//! let witness = Arc::new(Witness::open("./witness-state".as_ref(), Some("witness.example/w1"), logs)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7780").await?;
//! axum::serve(listener, router(witness)).await?;
//! # Ok(()) }
//! ```
//!
//! On disk (the state directory; [`StateDir`] is the only code that builds its paths):
//!
//! ```text
//! STATE_DIR/
//!   LOCK                  flock'd by the witness process: one writer per state directory
//!   witness.key           the cosigning key, signed-note "PRIVATE+KEY+<name>+<id>+<base64>" (0600)
//!   witness.pub           its cosignature/v1 verifier key "<name>+<id>+base64(0x04 || key)"
//!   logs/<sha256(origin)> the latest cosigned checkpoint note of that log, exactly as received
//!   evidence/             requests signed by a log but inconsistent with what was cosigned
//! ```
//!
//! Architecture Invariant: for each origin, checking a request against the stored checkpoint
//! and storing the new one happen under one lock, and the new checkpoint is durable (fsync'd
//! file and directory) before the cosignature leaves; so the stored size never goes down.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tally_tlog::note::{self, NoteError, NoteVerifier};
use tally_tlog::witness::{conflict_body, AddCheckpointRequest, CONFLICT_CONTENT_TYPE};
use tally_tlog::{Checkpoint, CosignatureSigner, CosignatureVerifier, Hash};

/// Largest `add-checkpoint` body accepted (a note with many signatures and 63 proof lines is
/// a few tens of KiB).
pub const MAX_BODY_BYTES: usize = 256 << 10;

/// Errors opening or configuring a witness.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// A file of the state directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another process holds the state directory.
    #[error("{0} is in use by another witness process: one process per state directory")]
    Locked(PathBuf),
    /// The key file or its name is wrong.
    #[error("{0}")]
    Key(String),
    /// A `--log` entry is malformed.
    #[error("{0}")]
    Config(String),
    /// A stored checkpoint cannot be read back.
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which origins a configured log key covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// Exactly this origin.
    Exact(String),
    /// Every origin `<prefix><name>` where `<name>` is non-empty and has no `/`: written
    /// `<prefix>*`, e.g. `tally.example/*` for every tenant of one Tally server.
    Prefix(String),
}

impl OriginPattern {
    /// Whether `origin` is covered.
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Exact(o) => o == origin,
            OriginPattern::Prefix(p) => origin
                .strip_prefix(p.as_str())
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')),
        }
    }
}

impl std::fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginPattern::Exact(o) => f.write_str(o),
            OriginPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// One log the witness cosigns for: its origin (or origins) and its public key.
#[derive(Debug, Clone)]
pub struct TrustedLog {
    /// The origins covered.
    pub origin: OriginPattern,
    /// The log's signed-note Ed25519 verifier key.
    pub key: NoteVerifier,
}

impl TrustedLog {
    /// Parses `ORIGIN=VKEY` (split at the first `=`, so an origin cannot contain one). An
    /// origin ending in `/*` covers every origin under that prefix: `tally.example/*` is every
    /// tenant of the Tally server whose key is `VKEY`.
    pub fn parse(s: &str) -> Result<Self, WitnessError> {
        let bad = |why: String| {
            WitnessError::Config(format!(
                "--log {s:?}: {why}; expected ORIGIN=VKEY, e.g. \
                 tally.example/*=tally.example+0e87568f+AUeq… (the log's public key)"
            ))
        };
        let (origin, vkey) = s
            .split_once('=')
            .ok_or_else(|| bad("no '=' between origin and key".into()))?;
        if origin.is_empty() || origin.bytes().any(|b| b < 0x20) {
            return Err(bad("the origin is empty or has control characters".into()));
        }
        let key = NoteVerifier::parse_vkey(vkey.trim())
            .map_err(|e| bad(format!("not a log public key: {e}")))?;
        let origin = match origin.strip_suffix('*') {
            Some(prefix) if prefix.ends_with('/') => OriginPattern::Prefix(prefix.to_owned()),
            Some(_) => return Err(bad("'*' may only follow a '/' at the end".into())),
            None => OriginPattern::Exact(origin.to_owned()),
        };
        Ok(TrustedLog { origin, key })
    }
}

/// Every answer to `add-checkpoint` other than a cosignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the body is malformed, or the old size exceeds the checkpoint's size.
    BadRequest(String),
    /// 404: no log with this origin is configured.
    UnknownOrigin(String),
    /// 403: no signature verifies with a key trusted for the origin.
    Forbidden(String),
    /// 409 with a `text/x.tlog.size` body: the old size is not the size last cosigned.
    StaleOldSize {
        /// The size of the latest checkpoint cosigned for the origin.
        latest: u64,
    },
    /// 409: same size as the latest cosigned checkpoint but another root: a fork.
    RootMismatch(String),
    /// 422: the consistency proof does not verify.
    InvalidProof(String),
    /// 500: the state could not be stored; nothing was cosigned.
    Storage(String),
}

impl Refusal {
    /// The HTTP status the spec prescribes.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::UnknownOrigin(_) => StatusCode::NOT_FOUND,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::StaleOldSize { .. } | Refusal::RootMismatch(_) => StatusCode::CONFLICT,
            Refusal::InvalidProof(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadRequest(m)
            | Refusal::UnknownOrigin(m)
            | Refusal::Forbidden(m)
            | Refusal::RootMismatch(m)
            | Refusal::InvalidProof(m)
            | Refusal::Storage(m) => f.write_str(m),
            Refusal::StaleOldSize { latest } => {
                write!(f, "old size mismatch: the latest cosigned size is {latest}")
            }
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::StaleOldSize { latest } => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, CONFLICT_CONTENT_TYPE)],
                conflict_body(latest),
            )
                .into_response(),
            other => (
                other.status(),
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{other}\n"),
            )
                .into_response(),
        }
    }
}

/// The paths of a witness state directory: the one place that builds them.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("LOCK")
    }

    /// The private cosigning key.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("witness.key")
    }

    /// The public cosignature/v1 key.
    pub fn vkey_path(&self) -> PathBuf {
        self.root.join("witness.pub")
    }

    /// The directory of latest cosigned checkpoints.
    pub fn logs_path(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The latest cosigned checkpoint of `origin`. Origins are arbitrary text, so files are
    /// named by the SHA-256 of the origin.
    pub fn log_path(&self, origin: &str) -> PathBuf {
        self.logs_path()
            .join(hex::encode(Sha256::digest(origin.as_bytes())))
    }

    /// The directory of evidence of log misbehaviour.
    pub fn evidence_path(&self) -> PathBuf {
        self.root.join("evidence")
    }
}

/// Writes a small file so that it is complete and durable when this returns: temp file,
/// fsync, rename, fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8], private: bool) -> Result<(), WitnessError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The latest checkpoint cosigned for one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// The note as it was received (the log's signature and whatever else it carried).
    pub note: String,
}

/// Per-origin state: `None` until the first cosignature. Loaded from disk on first use.
type Slot = Arc<Mutex<Option<Option<Latest>>>>;

/// A witness: its key, its configured logs and its durable state.
pub struct Witness {
    dir: StateDir,
    signer: CosignatureSigner,
    logs: Vec<TrustedLog>,
    slots: Mutex<HashMap<String, Slot>>,
    /// Held for the witness's lifetime: a second process on the same directory could roll
    /// a log's state back.
    _lock: fs::File,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("dir", &self.dir)
            .field("signer", &self.signer)
            .field("logs", &self.logs.len())
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// Opens (or creates) a state directory: takes its lock and loads the cosigning key, or
    /// on first start generates it (0600) under `name`. A `name` that differs from the stored
    /// key's is refused: a witness's identity cannot change.
    pub fn open(
        root: &Path,
        name: Option<&str>,
        logs: Vec<TrustedLog>,
    ) -> Result<Witness, WitnessError> {
        let dir = StateDir {
            root: root.to_path_buf(),
        };
        fs::create_dir_all(dir.logs_path()).map_err(io_err(root))?;
        let lock_path = dir.lock_path();
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(WitnessError::Locked(dir.root)),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let key_path = dir.key_path();
        let signer = match fs::read_to_string(&key_path) {
            Ok(text) => {
                let signer = CosignatureSigner::parse_skey(text.trim())
                    .map_err(|e| WitnessError::Key(format!("{}: {e}", key_path.display())))?;
                if let Some(name) = name.filter(|n| *n != signer.name()) {
                    return Err(WitnessError::Key(format!(
                        "{} belongs to witness {:?}, not {name:?}: a witness keeps its name; \
                         drop --name or use another state directory",
                        key_path.display(),
                        signer.name()
                    )));
                }
                signer
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = name.ok_or_else(|| {
                    WitnessError::Key(format!(
                        "{} has no witness key yet: give --name (a schema-less URL naming this \
                         witness, e.g. witness.example.com/w1) to create one",
                        root.display()
                    ))
                })?;
                let signer = CosignatureSigner::generate(name)
                    .map_err(|e| WitnessError::Key(format!("witness name {name:?}: {e}")))?;
                write_durably(
                    &key_path,
                    format!("{}\n", signer.to_skey()).as_bytes(),
                    true,
                )?;
                write_durably(
                    &dir.vkey_path(),
                    format!("{}\n", signer.verifier().to_vkey()).as_bytes(),
                    false,
                )?;
                signer
            }
            Err(e) => return Err(io_err(&key_path)(e)),
        };
        Ok(Witness {
            dir,
            signer,
            logs,
            slots: Mutex::new(HashMap::new()),
            _lock: lock,
        })
    }

    /// The witness's public key, for logs and clients to trust.
    pub fn verifier(&self) -> CosignatureVerifier {
        self.signer.verifier()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &StateDir {
        &self.dir
    }

    /// The configured logs.
    pub fn logs(&self) -> &[TrustedLog] {
        &self.logs
    }

    fn slot(&self, origin: &str) -> Slot {
        self.slots
            .lock()
            .entry(origin.to_owned())
            .or_default()
            .clone()
    }

    fn load(&self, origin: &str) -> Result<Option<Latest>, WitnessError> {
        let path = self.dir.log_path(origin);
        let note = match fs::read_to_string(&path) {
            Ok(note) => note,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let damaged = |reason: String| WitnessError::Damaged {
            path: path.clone(),
            reason,
        };
        let (text, _) = note::split(&note).map_err(|e| damaged(e.to_string()))?;
        let cp = Checkpoint::parse(text).map_err(|e| damaged(e.to_string()))?;
        if cp.origin != origin {
            return Err(damaged(format!("holds origin {:?}", cp.origin)));
        }
        Ok(Some(Latest {
            size: cp.size,
            root: cp.root,
            note,
        }))
    }

    /// The latest checkpoint cosigned for `origin`, if any.
    pub fn latest(&self, origin: &str) -> Result<Option<Latest>, WitnessError> {
        let slot = self.slot(origin);
        let mut guard = slot.lock();
        if guard.is_none() {
            *guard = Some(self.load(origin)?);
        }
        Ok(guard.clone().flatten())
    }

    /// Handles an `add-checkpoint` body at time `now` (seconds since the Unix epoch): the
    /// checks of the tlog-witness spec in its order, then the new state is made durable and
    /// the cosignature line (with its newline) returned.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, Refusal> {
        let req = AddCheckpointRequest::parse(body)
            .map_err(|e| Refusal::BadRequest(format!("malformed request: {e}")))?;
        let (text, _) = note::split(&req.checkpoint)
            .map_err(|e| Refusal::BadRequest(format!("malformed checkpoint note: {e}")))?;
        let cp = Checkpoint::parse(text)
            .map_err(|e| Refusal::BadRequest(format!("malformed checkpoint: {e}")))?;
        let keys: Vec<NoteVerifier> = self
            .logs
            .iter()
            .filter(|l| l.origin.matches(&cp.origin))
            .map(|l| l.key.clone())
            .collect();
        if keys.is_empty() {
            return Err(Refusal::UnknownOrigin(format!(
                "unknown log origin {:?}: this witness is not configured for it",
                cp.origin
            )));
        }
        match note::open(&req.checkpoint, &keys) {
            Ok(_) => {}
            Err(NoteError::NoVerifiedSignature) => {
                return Err(Refusal::Forbidden(format!(
                    "no signature by a key trusted for {:?}",
                    cp.origin
                )))
            }
            Err(e @ NoteError::InvalidSignature { .. }) => {
                return Err(Refusal::Forbidden(format!("{e}")))
            }
            Err(e) => {
                return Err(Refusal::BadRequest(format!(
                    "malformed checkpoint note: {e}"
                )))
            }
        }
        if req.old_size > cp.size {
            return Err(Refusal::BadRequest(format!(
                "old size {} is larger than the checkpoint's size {}",
                req.old_size, cp.size
            )));
        }

        // From here to the durable write, one request per origin at a time: checking the old
        // size and storing the new checkpoint must be atomic, or a slow smaller request could
        // roll the state back after a larger one was cosigned.
        let slot = self.slot(&cp.origin);
        let mut guard = slot.lock();
        if guard.is_none() {
            *guard = Some(
                self.load(&cp.origin)
                    .map_err(|e| Refusal::Storage(e.to_string()))?,
            );
        }
        let latest = guard.clone().flatten();
        let latest_size = latest.as_ref().map_or(0, |l| l.size);
        if req.old_size != latest_size {
            return Err(Refusal::StaleOldSize {
                latest: latest_size,
            });
        }
        if req.old_size == 0 && !req.proof.is_empty() {
            return Err(Refusal::InvalidProof(
                "the consistency proof must be empty when the old size is 0".into(),
            ));
        }
        match &latest {
            Some(l) if l.size == cp.size => {
                if l.root != cp.root {
                    self.keep_evidence(&cp.origin, body, "same size, different root");
                    return Err(Refusal::RootMismatch(format!(
                        "the checkpoint of size {} has another root than the one cosigned: \
                         the log forked",
                        cp.size
                    )));
                }
                if !req.proof.is_empty() {
                    return Err(Refusal::InvalidProof(
                        "the consistency proof must be empty between equal sizes".into(),
                    ));
                }
            }
            Some(l) if l.size > 0 => {
                if let Err(e) =
                    tally_tlog::verify_consistency(l.size, cp.size, &req.proof, &l.root, &cp.root)
                {
                    self.keep_evidence(&cp.origin, body, "consistency proof does not verify");
                    return Err(Refusal::InvalidProof(format!(
                        "the checkpoint of size {} is not consistent with the one of size {} \
                         cosigned before: {e}",
                        cp.size, l.size
                    )));
                }
            }
            // Nothing cosigned yet, or only the empty tree, which every tree extends.
            _ => {}
        }
        if latest.as_ref().is_none_or(|l| l.size < cp.size) {
            write_durably(
                &self.dir.log_path(&cp.origin),
                req.checkpoint.as_bytes(),
                false,
            )
            .map_err(|e| Refusal::Storage(format!("cannot store the checkpoint: {e}")))?;
            *guard = Some(Some(Latest {
                size: cp.size,
                root: cp.root,
                note: req.checkpoint.clone(),
            }));
            tracing::info!(origin = cp.origin, size = cp.size, "cosigned");
        }
        self.signer
            .cosign(text, now)
            .map_err(|e| Refusal::Storage(format!("cannot cosign: {e}")))
    }

    /// Keeps a request that a trusted log signed but that contradicts what was cosigned: it
    /// may prove the log misbehaved. Best effort: failing to keep it refuses nothing.
    fn keep_evidence(&self, origin: &str, body: &[u8], what: &str) {
        tracing::warn!(origin, "refused a signed checkpoint: {what}");
        let dir = self.dir.evidence_path();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}-{}.{:09}.txt",
            &hex::encode(Sha256::digest(origin.as_bytes()))[..16],
            now.as_secs(),
            now.subsec_nanos()
        );
        let result = fs::create_dir_all(&dir).and_then(|()| fs::write(dir.join(name), body));
        if let Err(e) = result {
            tracing::warn!("cannot keep evidence in {}: {e}", dir.display());
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let result =
        tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, unix_now())).await;
    match result {
        Ok(Ok(line)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            line,
        )
            .into_response(),
        Ok(Err(refusal)) => refusal.into_response(),
        Err(e) => Refusal::Storage(format!("the request failed: {e}")).into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found: a tlog-witness answers POST /add-checkpoint only\n",
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::ALLOW, "POST"),
        ],
        "add-checkpoint takes POST\n",
    )
        .into_response()
}

/// The witness over HTTP: `POST /add-checkpoint` (the submission prefix is the root).
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(
            tally_tlog::witness::ADD_CHECKPOINT_PATH,
            post(add_checkpoint),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(witness)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns() {
        let key = tally_tlog::NoteSigner::from_seed("tally.example", [1; 32])
            .unwrap()
            .verifier();
        let t = TrustedLog::parse(&format!("tally.example/*={}", key.to_vkey())).unwrap();
        assert_eq!(t.origin, OriginPattern::Prefix("tally.example/".into()));
        assert_eq!(t.key, key);
        let t = TrustedLog::parse(&format!("o/x={}", key.to_vkey())).unwrap();
        assert_eq!(t.origin, OriginPattern::Exact("o/x".into()));
        let p = OriginPattern::Prefix("tally.example/".into());
        assert!(p.matches("tally.example/acme"));
        assert!(!p.matches("tally.example/"));
        assert!(!p.matches("tally.example/a/b"));
        assert!(!p.matches("tally.exampleX/a"));
        assert!(OriginPattern::Exact("o".into()).matches("o"));
        assert_eq!(p.to_string(), "tally.example/*");
        for bad in ["", "o", "=x", "o=notakey", "tally.example*=x"] {
            assert!(TrustedLog::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
