//! [`Log`]: the embedded store as a whole — every tenant's log, the sequencer threads, and the
//! checkpoint signer.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tally_tlog::note::NoteVerifier;
use tally_tlog::Hash;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::{AppendError, Damage, SigningTrouble, StoreError, WriteHealth};
use crate::idindex::IdIndex;
use crate::layout::DataDir;
use crate::metrics::LogMetrics;
use crate::sequencer::{self, Job};
use crate::signer::{self, KeySource, Signer};
use crate::tenant::{OpenTenant, RecoveryReport, SignedCheckpoint, TenantLog};

/// Settings of a [`Log`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Base origin: the signing key's name, and the prefix of every tenant's checkpoint
    /// origin (`<origin>/<tenant>`). A schema-less URL without spaces or `+`.
    pub origin: String,
    /// A segment is closed and a new one started once it exceeds this many bytes.
    pub segment_bytes: u64,
    /// How often a growing tenant log gets a new signed checkpoint.
    pub checkpoint_interval: Duration,
    /// Upper bound on the events one group commit gathers.
    pub max_group_events: usize,
    /// Tenants whose records may be opened although they have no signed checkpoint history
    /// at all (normally refused as damage): an operator's decision after restoring records by
    /// hand, reported in [`OpenReport`] so the server can record it in the tenant's log.
    pub accept_unsigned_history: Vec<String>,
    /// How often the scrub re-reads and re-hashes every record (`None`: never).
    pub scrub_interval: Option<Duration>,
    /// The scrub's read rate limit, so that it never competes with ingest for the disk.
    pub scrub_bytes_per_second: u64,
    /// Where the checkpoint signing key lives: `DATA_DIR/log.key` (the default), a key file
    /// elsewhere, or a command that signs. With either of the last two the data directory
    /// holds no `log.key`, only `log.pub`.
    pub signing: KeySource,
    /// Where the tenant logs' bytes are kept: local files ([`crate::PosixStorage`]) unless
    /// another driver is given.
    pub storage: Arc<dyn crate::storage::Storage>,
    /// Faults to inject (tests only; `None` in production): the storage driver is wrapped in
    /// a [`crate::FaultyStorage`] that fails its I/O as armed, and the sequencer's crash points
    /// between I/O operations consult them too.
    pub faults: Option<Arc<crate::faults::Faults>>,
    /// How often published event ids are moved from memory to the on-disk id index (sooner
    /// when a tenant has more than [`crate::tenant::INDEX_LAG_BOUND`] of them waiting).
    pub id_index_interval: Duration,
    /// How often a growing tenant's tree state is persisted (at a signed checkpoint; also
    /// at start and stop): a start after a crash replays at most this much of the log.
    pub tree_state_interval: Duration,
    /// Encryption at rest: when set, every record appended is stored encrypted under its
    /// tenant's data key, and encrypted records are decrypted when read. `None`: records are
    /// stored as they are hashed (and encrypted records already stored cannot be read).
    pub at_rest: Option<Arc<crate::at_rest::AtRest>>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            origin: "tally.localhost".to_string(),
            segment_bytes: 256 << 20,
            checkpoint_interval: Duration::from_secs(1),
            max_group_events: 65_536,
            accept_unsigned_history: Vec::new(),
            scrub_interval: Some(Duration::from_secs(24 * 3600)),
            scrub_bytes_per_second: 64 << 20,
            signing: KeySource::DataDir,
            storage: crate::storage::PosixStorage::shared(),
            faults: None,
            id_index_interval: Duration::from_secs(1),
            tree_state_interval: Duration::from_secs(10),
            at_rest: None,
        }
    }
}

/// Turns validated events into the records the log stores, before they are hashed: the
/// server's privacy layer seals personal values here. The log itself never looks inside a
/// record, so it knows nothing of what sealing means.
pub trait RecordSealer: Send + Sync + 'static {
    /// Replaces the `record` of every event by its stored form. Runs on a blocking thread and
    /// may write durably (new keys) before returning. All or nothing: an error refuses the
    /// whole request, and the reason is shown to the client (say what failed, not where).
    fn seal(&self, events: &mut [tally_event::ValidEvent]) -> Result<(), String>;

    /// Seals as [`seal`](Self::seal) does if it can without blocking (every key it needs is
    /// in memory), on the caller's thread; `None` (nothing changed) when it would have to
    /// read or write a file. Spares small requests a hop to a blocking thread.
    fn seal_in_memory(&self, events: &mut [tally_event::ValidEvent]) -> Option<Result<(), String>> {
        let _ = events;
        None
    }

    /// The sealer as `Any`, so that its owner can find its own type again through
    /// [`Log::sealer`] (one sealer per log: its key caches must not be duplicated).
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

/// An event ready for the log: validated, encoded, hashed.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// The tenant whose log it goes to.
    pub tenant: String,
    /// The event id.
    pub id: Uuid,
    /// Whether the client chose the id (only then are retries recognised).
    pub id_supplied: bool,
    /// The canonical record bytes (what is hashed).
    pub record: Vec<u8>,
    /// RFC 6962 leaf hash of `record`.
    pub leaf_hash: Hash,
    /// CRC-32C of the stored bytes ([`stored`](Self::stored)), for their frame.
    pub record_crc: u32,
    /// `record` encrypted at rest, when the log encrypts (see [`LogConfig::at_rest`]).
    pub encrypted: Option<Vec<u8>>,
    /// The record before a [`RecordSealer`] changed it, kept only for a client-supplied id:
    /// a retry of an event stored before sealing began is recognised against it.
    pub unsealed: Option<Vec<u8>>,
}

impl PreparedEvent {
    /// Hashes and checksums a validated event. Done by the caller's thread, off the
    /// sequencer.
    pub fn new(event: tally_event::ValidEvent) -> Self {
        PreparedEvent {
            leaf_hash: tally_tlog::leaf_hash(&event.record),
            record_crc: crc32c::crc32c(&event.record),
            tenant: event.tenant,
            id: event.id,
            id_supplied: event.id_supplied,
            record: event.record,
            unsealed: None,
            encrypted: None,
        }
    }

    /// The bytes its frame holds: the encrypted record if it was encrypted, else the record.
    pub fn stored(&self) -> &[u8] {
        self.encrypted.as_deref().unwrap_or(&self.record)
    }

    /// Encrypts the record at rest (once; its leaf hash is unchanged).
    pub fn encrypt(&mut self, at_rest: &crate::at_rest::AtRest) -> Result<(), StoreError> {
        if self.encrypted.is_none() {
            let stored =
                at_rest.encrypt_record(&self.tenant, &self.leaf_hash, self.id, &self.record)?;
            self.record_crc = crc32c::crc32c(&stored);
            self.encrypted = Some(stored);
        }
        Ok(())
    }
}

/// Where an appended event is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its tenant.
    pub tenant: String,
    /// Its id.
    pub id: Uuid,
    /// Its leaf index in the tenant's tree.
    pub index: u64,
    /// True when the event was already stored (an idempotent retry) and nothing was written.
    pub duplicate: bool,
}

/// A checkpoint the log has just signed and made durable, as [`Log::subscribe_checkpoints`]
/// delivers it.
#[derive(Debug, Clone)]
pub struct CheckpointEvent {
    /// The tenant whose log it signs.
    pub tenant: String,
    /// The checkpoint, with its note exactly as stored and served.
    pub checkpoint: SignedCheckpoint,
}

/// Checkpoint events a slow subscriber may fall behind by before it misses the oldest ones.
const CHECKPOINT_EVENTS_BUFFER: usize = 4096;

/// Shared between the [`Log`] handle and the sequencer threads.
pub(crate) struct Inner {
    pub(crate) dir: DataDir,
    /// The storage driver (with the faults of [`LogConfig::faults`] applied).
    pub(crate) storage: Arc<dyn crate::storage::Storage>,
    pub(crate) config: LogConfig,
    pub(crate) signer: Signer,
    pub(crate) verifier: NoteVerifier,
    /// The on-disk event-id index of every tenant.
    ids: Arc<IdIndex>,
    tenants: RwLock<BTreeMap<String, Arc<TenantLog>>>,
    pub(crate) failed: Mutex<Option<String>>,
    /// The last record write that failed and was undone, until one succeeds again.
    pub(crate) write_trouble: Mutex<Option<String>>,
    /// The last checkpoint append that failed and was undone, until one succeeds again
    /// (apart from record writes: a small append may succeed on a disk too full for a group).
    pub(crate) checkpoint_trouble: Mutex<Option<String>>,
    pub(crate) metrics: LogMetrics,
    /// Number of the last group the syncer published (groups are numbered from 1).
    pub(crate) published_group: std::sync::atomic::AtomicU64,
    /// Every signed checkpoint, for subscribers that copy them outside the machine.
    pub(crate) checkpoint_events: tokio::sync::broadcast::Sender<CheckpointEvent>,
    /// Wakes followers (consumers) after each publish.
    pub(crate) growth: Arc<crate::growth::GrowthSignal>,
    /// What turns validated events into stored records, if anything does ([`Log::prepare`]).
    sealer: std::sync::OnceLock<Arc<dyn RecordSealer>>,
}

impl Inner {
    /// The injected faults, if any (tests).
    pub(crate) fn faults(&self) -> Option<&crate::faults::Faults> {
        self.config.faults.as_deref()
    }

    /// Whether a simulated crash has struck: the sequencer then does nothing more.
    pub(crate) fn crashed(&self) -> bool {
        self.faults().is_some_and(crate::faults::Faults::crashed)
    }

    pub(crate) fn tenant_logs(&self) -> Vec<Arc<TenantLog>> {
        self.tenants.read().values().cloned().collect()
    }

    /// The tenant's log and whether this call created it. Called by the sequencer only, so
    /// creation never races with itself.
    pub(crate) fn tenant_or_create(
        &self,
        tenant: &str,
    ) -> Result<(Arc<TenantLog>, bool), StoreError> {
        if let Some(log) = self.tenants.read().get(tenant) {
            return Ok((log.clone(), false));
        }
        if !tally_event::is_valid_tenant(tenant) {
            return Err(StoreError::Format(format!(
                "invalid tenant name {tenant:?}"
            )));
        }
        let origin = tenant_origin(&self.config.origin, tenant);
        let (log, _) = TenantLog::open(
            self.dir.tenant(tenant),
            &OpenTenant {
                name: tenant,
                origin: &origin,
                verifier: &self.verifier,
                sign: &|body| self.signer.sign(body),
                accept_unsigned_history: false,
                metrics: &self.metrics,
                ids: &self.ids,
                storage: &self.storage,
                at_rest: self.config.at_rest.as_ref(),
            },
        )?;
        let log = Arc::new(log);
        self.tenants.write().insert(tenant.to_string(), log.clone());
        tracing::info!(tenant, "created the log of a new tenant");
        Ok((log, true))
    }

    /// Removes a tenant created for a request that was then refused, so that a refused
    /// request leaves no trace. Only for a tenant with no events.
    pub(crate) fn forget_empty_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        let Some(log) = self.tenants.write().remove(tenant) else {
            return Ok(());
        };
        debug_assert_eq!(log.size(), 0);
        self.ids.forget(&log.ids)?;
        let root = log.dir.root().to_path_buf();
        drop(log);
        self.storage
            .remove_dir_all(&root)
            .map_err(|e| StoreError::io(&root, e))?;
        let tenants = self.dir.tenants_path();
        self.storage
            .sync_dir(&tenants)
            .map_err(|e| StoreError::io(&tenants, e))
    }
}

/// The checkpoint origin of a tenant's log.
pub fn tenant_origin(base: &str, tenant: &str) -> String {
    format!("{base}/{tenant}")
}

/// The embedded log store. Cheap to clone; the sequencer stops when [`Log::shutdown`] is called.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
    tx: Arc<Mutex<Option<mpsc::Sender<Job>>>>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Held while the log may write; released by [`Log::shutdown`].
    lock: Arc<Mutex<Option<Box<dyn crate::storage::WriterLock>>>>,
    /// The scrub thread and the sender whose drop stops it.
    scrub: Arc<Mutex<Option<ScrubThread>>>,
    /// The id indexer thread and the sender whose drop stops it.
    indexer: Arc<Mutex<Option<ScrubThread>>>,
}

/// The scrub's thread and the sender whose drop stops it.
type ScrubThread = (mpsc::Sender<()>, JoinHandle<()>);

/// What [`Log::open`] found.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// Whether a new signing key was generated (first start).
    pub key_created: bool,
    /// Recovery results per tenant.
    pub tenants: Vec<(String, RecoveryReport)>,
}

impl Log {
    /// Opens the data directory for writing: takes its lock, sets up the checkpoint signer
    /// (loading or, on first start, generating `log.key` unless the key is configured
    /// elsewhere; refusing a key other than the one `log.pub` records), recovers every
    /// tenant, and starts the sequencer.
    pub fn open(dir: DataDir, config: LogConfig) -> Result<(Log, OpenReport), StoreError> {
        let storage: Arc<dyn crate::storage::Storage> = match &config.faults {
            Some(faults) => Arc::new(crate::storage::FaultyStorage::new(
                config.storage.clone(),
                faults.clone(),
            )),
            None => config.storage.clone(),
        };
        let lock_path = dir.lock_path();
        let lock = match storage.lock_writer(&lock_path) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(StoreError::Locked(dir.root().to_path_buf()))
            }
            Err(e) => return Err(StoreError::io(&lock_path, e)),
        };
        let (signer, key_created) = signer::open_signer(&dir, &config.signing, &config.origin)?;
        let verifier = signer.verifier().clone();
        let metrics = LogMetrics::default();
        let signer = Signer::new(signer, config.checkpoint_interval, metrics.clone());
        let ids = Arc::new(IdIndex::open(&dir.id_index_path())?);
        let mut tenants = BTreeMap::new();
        let mut reports = Vec::new();
        for name in dir.list_tenants()? {
            let origin = tenant_origin(&config.origin, &name);
            let (log, report) = TenantLog::open(
                dir.tenant(&name),
                &OpenTenant {
                    name: &name,
                    origin: &origin,
                    verifier: &verifier,
                    sign: &|body| signer.sign(body),
                    accept_unsigned_history: config.accept_unsigned_history.contains(&name),
                    metrics: &metrics,
                    ids: &ids,
                    storage: &storage,
                    at_rest: config.at_rest.as_ref(),
                },
            )?;
            tracing::info!(tenant = name, size = report.size, "recovered tenant log");
            tenants.insert(name.clone(), Arc::new(log));
            reports.push((name, report));
        }
        // Only now, with every tenant's last checkpoint verified under it, is the key known to
        // be this log's.
        signer::record_verifier(&dir, &verifier)?;
        for (name, log) in &tenants {
            metrics
                .tree_size
                .get_or_create(&vec![("tenant".to_string(), name.clone())])
                .set(log.size() as i64);
        }
        let inner = Arc::new(Inner {
            dir,
            storage,
            config,
            signer,
            verifier,
            ids,
            tenants: RwLock::new(tenants),
            failed: Mutex::new(None),
            write_trouble: Mutex::new(None),
            checkpoint_trouble: Mutex::new(None),
            metrics,
            published_group: Default::default(),
            checkpoint_events: tokio::sync::broadcast::Sender::new(CHECKPOINT_EVENTS_BUFFER),
            growth: Default::default(),
            sealer: std::sync::OnceLock::new(),
        });
        let (tx, rx) = mpsc::channel();
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("tally-sequencer".into())
            .spawn(move || sequencer::run(thread_inner, rx))
            .map_err(|e| StoreError::io(inner.dir.root(), e))?;
        let scrub = match inner.config.scrub_interval {
            Some(interval) => {
                let (stop, stopped) = mpsc::channel::<()>();
                let scrub_inner = inner.clone();
                let handle = std::thread::Builder::new()
                    .name("tally-scrub".into())
                    .spawn(move || crate::scrub::run(scrub_inner, interval, stopped))
                    .map_err(|e| StoreError::io(inner.dir.root(), e))?;
                Some((stop, handle))
            }
            None => None,
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let indexer_inner = inner.clone();
        let interval = inner.config.id_index_interval;
        let indexer = std::thread::Builder::new()
            .name("tally-id-indexer".into())
            .spawn(move || crate::idindex::run(indexer_inner, interval, stopped))
            .map_err(|e| StoreError::io(inner.dir.root(), e))?;
        Ok((
            Log {
                inner,
                tx: Arc::new(Mutex::new(Some(tx))),
                thread: Arc::new(Mutex::new(Some(thread))),
                lock: Arc::new(Mutex::new(Some(lock))),
                scrub: Arc::new(Mutex::new(scrub)),
                indexer: Arc::new(Mutex::new(Some((stop, indexer)))),
            },
            OpenReport {
                key_created,
                tenants: reports,
            },
        ))
    }

    /// Makes `sealer` turn every event [`prepare`](Self::prepare)d from now on into its stored
    /// form. Set once, before the first append; a second call is ignored (returns false).
    pub fn set_sealer(&self, sealer: Arc<dyn RecordSealer>) -> bool {
        self.inner.sealer.set(sealer).is_ok()
    }

    /// The sealer set by [`set_sealer`](Self::set_sealer), if any.
    pub fn sealer(&self) -> Option<Arc<dyn RecordSealer>> {
        self.inner.sealer.get().cloned()
    }

    /// Seals (if a [`RecordSealer`] is set), hashes and encrypts at rest (if
    /// [`LogConfig::at_rest`] is set) validated events, ready for [`append`](Self::append).
    /// Sealing and encryption run on a blocking thread.
    pub async fn prepare(
        &self,
        events: Vec<tally_event::ValidEvent>,
    ) -> Result<Vec<PreparedEvent>, AppendError> {
        let sealer = self.inner.sealer.get().cloned();
        let at_rest = self.inner.config.at_rest.clone();
        if sealer.is_none() && at_rest.is_none() {
            return Ok(events.into_iter().map(PreparedEvent::new).collect());
        }
        let mut events = events;
        let unsealed = keep_unsealed(sealer.is_some(), &events);
        // A small request whose keys are all in memory is prepared here: a hop to a blocking
        // thread would cost more than the work.
        if events.len() <= INLINE_PREPARE_EVENTS
            && at_rest
                .as_ref()
                .is_none_or(|a| events.iter().all(|e| a.has_usable_key(&e.tenant)))
        {
            let sealed = match &sealer {
                Some(sealer) => sealer.seal_in_memory(&mut events),
                None => Some(Ok(())),
            };
            if let Some(sealed) = sealed {
                sealed.map_err(AppendError::Unavailable)?;
                return finish_prepare(at_rest.as_deref(), events, unsealed);
            }
        }
        tokio::task::spawn_blocking(move || {
            if let Some(sealer) = &sealer {
                sealer.seal(&mut events).map_err(AppendError::Unavailable)?;
            }
            finish_prepare(at_rest.as_deref(), events, unsealed)
        })
        .await
        .map_err(|e| AppendError::Unavailable(format!("preparing events stopped: {e}")))?
    }

    /// Appends a request's events, all or nothing. Resolves once they are durable and part of
    /// their tenants' trees, with each event's leaf index.
    pub async fn append(
        &self,
        mut events: Vec<PreparedEvent>,
    ) -> Result<Vec<Appended>, AppendError> {
        if let Some(at_rest) = &self.inner.config.at_rest {
            // Events not made by `prepare` (tests, tools) are encrypted here: with a KEK
            // configured, nothing reaches a segment in the clear.
            for event in events.iter_mut().filter(|e| e.encrypted.is_none()) {
                event
                    .encrypt(at_rest)
                    .map_err(|e| AppendError::Unavailable(e.summary()))?;
            }
        }
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.tx.lock();
            let Some(tx) = tx.as_ref() else {
                return Err(AppendError::Unavailable("the log is shutting down".into()));
            };
            if let Some(reason) = self.inner.failed.lock().clone() {
                return Err(AppendError::Unavailable(reason));
            }
            tx.send(Job { events, reply })
                .map_err(|_| AppendError::Unavailable("the log is shutting down".into()))?;
        }
        rx.await
            .map_err(|_| AppendError::Unavailable("the log stopped before answering".into()))?
    }

    /// A tenant's log, if it has one.
    pub fn tenant(&self, name: &str) -> Option<Arc<TenantLog>> {
        self.inner.tenants.read().get(name).cloned()
    }

    /// Every checkpoint signed from now on, in signing order. A subscriber that falls more
    /// than a few thousand checkpoints behind misses the oldest ones (it is told how many);
    /// [`TenantLog::checkpoint`] always has each tenant's newest.
    pub fn subscribe_checkpoints(&self) -> tokio::sync::broadcast::Receiver<CheckpointEvent> {
        self.inner.checkpoint_events.subscribe()
    }

    /// A subscription to the log's growth: [`crate::Growth::wait`] returns once any tenant's
    /// log has published new records (for followers such as the consumers, instead of
    /// polling).
    pub fn subscribe_growth(&self) -> crate::Growth {
        crate::Growth::new(self.inner.growth.clone())
    }

    /// Names of all tenants with a log.
    pub fn tenants(&self) -> Vec<String> {
        self.inner.tenants.read().keys().cloned().collect()
    }

    /// The public key that verifies this log's checkpoints.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.inner.verifier
    }

    /// The configuration the log runs with.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.inner.dir
    }

    /// Counters and histograms of the write path.
    pub fn metrics(&self) -> &LogMetrics {
        &self.inner.metrics
    }

    /// [`WriteHealth::Stopped`] once a failed fsync has stopped the log (until a restart),
    /// [`WriteHealth::WriteUndone`] while writes fail (a full disk, EIO: each failed write is
    /// undone, nothing acknowledged is lost, and this clears by itself once a write succeeds
    /// again).
    pub fn health(&self) -> Result<(), WriteHealth> {
        if let Some(reason) = self.inner.failed.lock().clone() {
            return Err(WriteHealth::Stopped(reason));
        }
        let trouble = self.inner.write_trouble.lock().clone();
        match trouble.or_else(|| self.inner.checkpoint_trouble.lock().clone()) {
            Some(e) => Err(WriteHealth::WriteUndone(e)),
            None => Ok(()),
        }
    }

    /// Damage found in any tenant's log since start (start-up check, scrub or a read), by
    /// tenant. The log keeps accepting events; the damaged records need restoring.
    pub fn damage(&self) -> Vec<Damage> {
        self.inner
            .tenant_logs()
            .iter()
            .filter_map(|t| t.damage())
            .collect()
    }

    /// Runs one scrub of every tenant now, on the calling thread (the background scrub runs
    /// on its own schedule); returns the damage known afterwards.
    pub fn scrub_now(&self) -> Vec<Damage> {
        crate::scrub::scrub_all(&self.inner, &|| false);
        self.damage()
    }

    /// `Err(reason)` while checkpoints cannot be signed (e.g. a signing command fails). The
    /// log still accepts events; signing is retried.
    pub fn signer_health(&self) -> Result<(), SigningTrouble> {
        self.inner.signer.health()
    }

    /// Stops taking requests, lets the sequencer finish what it has, signs final
    /// checkpoints, and waits for it. Idempotent.
    pub fn shutdown(&self) {
        if let Some((stop, thread)) = self.scrub.lock().take() {
            drop(stop);
            let _ = thread.join();
        }
        self.tx.lock().take();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
        // After the sequencer: its last pass indexes everything published, so a clean
        // restart has nothing to catch up.
        if let Some((stop, thread)) = self.indexer.lock().take() {
            drop(stop);
            let _ = thread.join();
            // Release the index's files, so the directory can be opened again at once.
            for log in self.inner.tenant_logs() {
                log.ids.close();
            }
            self.inner.ids.close();
        }
        // Nothing writes any more: another process may now open the directory.
        self.lock.lock().take();
    }
}

/// Requests of at most this many events are prepared on the caller's thread when they can be.
const INLINE_PREPARE_EVENTS: usize = 16;

/// The records as sent of events with a client-supplied id, when a sealer will change them.
fn keep_unsealed(sealing: bool, events: &[tally_event::ValidEvent]) -> Vec<Option<Vec<u8>>> {
    if !sealing {
        return Vec::new();
    }
    events
        .iter()
        .map(|e| e.id_supplied.then(|| e.record.clone()))
        .collect()
}

/// Hashes and, with encryption at rest, encrypts sealed events.
fn finish_prepare(
    at_rest: Option<&crate::at_rest::AtRest>,
    events: Vec<tally_event::ValidEvent>,
    unsealed: Vec<Option<Vec<u8>>>,
) -> Result<Vec<PreparedEvent>, AppendError> {
    let mut unsealed = unsealed.into_iter();
    events
        .into_iter()
        .map(|e| {
            let mut prepared = PreparedEvent {
                unsealed: unsealed.next().flatten(),
                ..PreparedEvent::new(e)
            };
            if let Some(at_rest) = at_rest {
                prepared.encrypt(at_rest).map_err(|e| {
                    tracing::error!("encrypting a record failed: {e}");
                    AppendError::Unavailable(e.summary())
                })?;
            }
            Ok(prepared)
        })
        .collect()
}
