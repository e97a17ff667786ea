//! The rules as a durable consumer of the log: records in, alerts out, state kept across
//! restarts.
//!
//! Guarantees:
//! - **No alert lost.** An alert is raised through [`AlertOutput`] (the server appends it to
//!   the tenant's log) before the consumer's cursor passes the record that completed it; one
//!   that could not be raised is kept and raised again before anything else.
//! - **None raised twice.** Records delivered again after a failure count once (the engine
//!   ignores leaves it observed), and an alert's id is derived from its rule and triggering
//!   record, so one raised again after a crash is the same event, which the log stores once.
//! - **Windows survive restarts.** The engine's state is saved beside the cursors at most
//!   every [`AlertConsumer::SAVE_EVERY`]; a restart resumes each tenant from the saved state
//!   and replays the records after it, which raises exactly what an engine that never
//!   stopped would have raised.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_consumers::index::RecordOpener;
use tally_consumers::{Batch, Consumer, ConsumerError, ConsumerSettings};
use tally_event::Record;
use tally_query::NoTokens;
use tally_store::layout::DataDir;

use crate::engine::{Alert, Engine, EngineState};
use crate::rule::Rule;

/// The consumer name of the rules (cursor `consumers/alerts.json`, state
/// `consumers/alerts.state.json`).
pub const NAME: &str = "alerts";

/// Where alerts go.
pub trait AlertOutput: Send + 'static {
    /// Records `alert` durably. Called again with the same alert after a failure or a
    /// restart: doing so must be harmless (the log stores an event id once).
    fn raise(&mut self, alert: &Alert) -> Result<(), ConsumerError>;
}

/// Where new rules are handed to a running [`AlertConsumer`]: they take effect from the next
/// batch it is delivered.
#[derive(Clone, Default)]
pub struct RuleUpdates(Arc<Mutex<Option<Vec<Rule>>>>);

impl RuleUpdates {
    /// Puts `rules` in force in place of the current ones.
    pub fn replace(&self, rules: Vec<Rule>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(rules);
    }

    fn take(&self) -> Option<Vec<Rule>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The rules following the log.
pub struct AlertConsumer {
    engine: Engine,
    updates: RuleUpdates,
    opener: Arc<dyn RecordOpener>,
    output: Box<dyn AlertOutput>,
    pending: VecDeque<Alert>,
    state_path: PathBuf,
    saved_at: Option<Instant>,
    /// Whether a saved state was read at start.
    resumed: bool,
    start_at: HashMap<String, u64>,
}

impl AlertConsumer {
    /// How often the engine's state is saved: a restart replays at most this much of the log.
    pub const SAVE_EVERY: Duration = Duration::from_secs(2);

    /// The consumer of `rules`, resuming from the state saved in `dir`.
    ///
    /// Without a saved state (rules run for the first time on this data directory, or the
    /// state was lost), windows start empty and each tenant starts at its cursor, else at
    /// `start_at` (the size of each tenant's log now: rules apply to events received from
    /// the moment they run, not to history), else at its first record (a tenant created
    /// later).
    pub fn open(
        dir: &DataDir,
        rules: Vec<Rule>,
        opener: Arc<dyn RecordOpener>,
        output: impl AlertOutput,
        updates: RuleUpdates,
        start_at: HashMap<String, u64>,
    ) -> AlertConsumer {
        let state_path = dir.consumer_state_path(NAME);
        let mut resumed = false;
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => match serde_json::from_slice::<EngineState>(&bytes) {
                Ok(state) => {
                    resumed = true;
                    state
                }
                Err(e) => {
                    tracing::warn!(
                        path = %state_path.display(),
                        "the alert rules' saved state is damaged ({e}); windows start empty"
                    );
                    EngineState::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => EngineState::default(),
            Err(e) => {
                tracing::warn!(
                    path = %state_path.display(),
                    "the alert rules' saved state cannot be read ({e}); windows start empty"
                );
                EngineState::default()
            }
        };
        AlertConsumer {
            engine: Engine::with_state(rules, state),
            updates,
            opener,
            output: Box::new(output),
            pending: VecDeque::new(),
            state_path,
            saved_at: None,
            resumed,
            start_at,
        }
    }

    /// The settings `tally serve` uses: small batches flushed often, so that an alert
    /// follows its event by a fraction of a second.
    pub fn settings() -> ConsumerSettings {
        ConsumerSettings {
            batch_records: 1024,
            flush_interval: Duration::from_millis(100),
            ..ConsumerSettings::default()
        }
    }

    fn raise_pending(&mut self) -> Result<(), ConsumerError> {
        while let Some(alert) = self.pending.front() {
            self.output.raise(alert)?;
            self.pending.pop_front();
        }
        Ok(())
    }

    fn save(&mut self) -> Result<(), ConsumerError> {
        let bytes = serde_json::to_vec(&self.engine.snapshot())?;
        // Before any cursor is stored, the consumers' directory may not exist yet.
        if let Some(dir) = self.state_path.parent() {
            tally_store::layout::create_private_dir_all(dir)?;
        }
        tally_store::layout::write_file_durably(&self.state_path, &bytes)?;
        self.saved_at = Some(Instant::now());
        Ok(())
    }
}

/// Record `leaf` of `tenant` as the rules see it: opened (personal values in the clear) and
/// parsed. `None` for a record that cannot be parsed once opened (an erased value can leave a
/// typed field unreadable): it is skipped rather than holding every rule back.
pub(crate) fn open_record(
    opener: &dyn RecordOpener,
    tenant: &str,
    leaf: u64,
    stored: &[u8],
) -> Result<Option<Record>, ConsumerError> {
    let opened = opener
        .open_for_index(tenant, stored)
        .map_err(|e| format!("record {leaf} of tenant {tenant} cannot be opened: {e}"))?;
    match Record::parse(&opened.bytes) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            tracing::warn!(
                tenant,
                leaf,
                "a record the alert rules cannot read is skipped: {e}"
            );
            Ok(None)
        }
    }
}

impl Consumer for AlertConsumer {
    fn resume(&mut self, tenant: &str, cursor: Option<u64>) -> Result<u64, ConsumerError> {
        // The saved state may trail the cursor (records after it are replayed into the
        // windows; their alerts are raised again, as the same events) or lead it (a crash
        // between saving and the cursor: those records are not counted twice).
        let next = match (self.engine.observed(tenant), cursor) {
            (Some(observed), Some(cursor)) => observed.min(cursor),
            (Some(observed), None) => observed,
            // The saved state predates every record of this tenant the rules saw (the state
            // records where each tenant started): all of them came after it, so all are
            // replayed.
            (None, _) if self.resumed => 0,
            (None, Some(cursor)) => cursor,
            (None, None) => self.start_at.get(tenant).copied().unwrap_or(0),
        };
        self.engine.start_at(tenant, next);
        Ok(next)
    }

    fn deliver(&mut self, batch: Batch<'_>) -> Result<(), ConsumerError> {
        self.raise_pending()?;
        if let Some(rules) = self.updates.take() {
            self.engine.set_rules(rules);
        }
        for (leaf, stored) in batch.iter() {
            let Some(record) = open_record(&*self.opener, batch.tenant, leaf, stored)? else {
                continue;
            };
            let alerts = self.engine.observe(batch.tenant, leaf, &record, &NoTokens);
            self.pending.extend(alerts);
        }
        self.raise_pending()
    }

    fn flush(&mut self) -> Result<(), ConsumerError> {
        self.raise_pending()?;
        if self
            .saved_at
            .is_none_or(|at| at.elapsed() >= Self::SAVE_EVERY)
        {
            self.save()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl AlertOutput for Nothing {
        fn raise(&mut self, _: &Alert) -> Result<(), ConsumerError> {
            Ok(())
        }
    }

    fn open(dir: &DataDir, start_at: &[(&str, u64)]) -> AlertConsumer {
        AlertConsumer::open(
            dir,
            Vec::new(),
            Arc::new(tally_consumers::index::UnsealedOnly),
            Nothing,
            RuleUpdates::default(),
            start_at.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        )
    }

    #[test]
    fn a_quiet_tenant_resumes_where_it_started_not_from_its_first_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create_or_open(tmp.path().join("data")).unwrap();
        // First run on a data directory holding history: rules start at the end of it.
        let mut first = open(&dir, &[("quiet", 1_000_000)]);
        assert_eq!(first.resume("quiet", None).unwrap(), 1_000_000);
        first.flush().unwrap();
        // Restarted with the state saved: the cursor (the runtime's) says 1,000,000 too, and
        // the history before it is not replayed.
        let mut second = open(&dir, &[]);
        assert_eq!(second.resume("quiet", Some(1_000_000)).unwrap(), 1_000_000);
        // A tenant created after the last save is replayed from its first record.
        assert_eq!(second.resume("new", Some(40)).unwrap(), 0);
        // Without any saved state, a cursor is trusted.
        std::fs::remove_file(dir.consumer_state_path(NAME)).unwrap();
        let mut third = open(&dir, &[]);
        assert_eq!(third.resume("other", Some(7)).unwrap(), 7);
    }
}
