//! Alert rules in the server: which rules are in force and where they come from
//! ([`RuleBook`]), and where their alerts go (the tenant's own log, [`LogAlertOutput`]).
//!
//! The rules come from one of three places, in this order: a rules file given to `tally
//! serve --rules` (read-only through the API: the file is the truth, under the operator's
//! configuration management), the rules set through `PUT /v1/rules` (kept in the data
//! directory), or the default rule pack ([`tally_alerts::pack`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tally_alerts::{
    check_rules, Alert, AlertOutput, Rule, RuleError, RuleFile, RuleSpec, RuleUpdates,
};
use tally_consumers::ConsumerError;
use tally_store::layout::DataDir;
use tally_store::Log;

/// How `tally serve` runs the alert rules.
#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    /// Read the rules from this file (YAML or JSON) instead of the data directory; the API
    /// then lists them but may not change them.
    pub rules_file: Option<PathBuf>,
}

/// Where the rules in force come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// `tally serve --rules FILE`.
    File,
    /// Set through the API (`PUT /v1/rules`), kept in the data directory.
    Api,
    /// The default rule pack: nothing was set.
    Default,
}

/// Why the rules could not be loaded or changed.
#[derive(Debug, thiserror::Error)]
pub enum RuleBookError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The rules could not be stored.
    #[error(transparent)]
    Store(tally_store::StoreError),
    /// Rules that break a rule of the language; each is named.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<RuleError>),
    /// The rules come from a file; change the file and restart.
    #[error("the alert rules come from {0} (tally serve --rules): change that file and restart the server")]
    FromFile(String),
}

/// The rules in force, and the way to change them.
pub struct RuleBook {
    source: Mutex<RuleSource>,
    file: Option<PathBuf>,
    stored: PathBuf,
    specs: Mutex<Vec<RuleSpec>>,
    updates: RuleUpdates,
    raised: Family<Vec<(String, String)>, Counter>,
    dropped: Family<Vec<(String, String)>, Counter>,
}

impl RuleBook {
    /// Loads the rules in force (see the [module documentation](self)) and checks them.
    pub fn load(
        dir: &DataDir,
        settings: &AlertSettings,
    ) -> Result<(RuleBook, Vec<Rule>), RuleBookError> {
        let stored = dir.alert_rules_path();
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| RuleBookError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let (source, specs) = match &settings.rules_file {
            Some(file) => {
                let rules =
                    tally_alerts::parse_rule_file(&read(file)?).map_err(RuleBookError::Invalid)?;
                (
                    RuleSource::File,
                    rules.into_iter().map(|r| r.spec).collect(),
                )
            }
            None if stored.exists() => {
                let file: RuleFile =
                    serde_json::from_str(&read(&stored)?).map_err(|e| RuleBookError::Io {
                        path: stored.display().to_string(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    })?;
                (RuleSource::Api, file.rules)
            }
            None => (RuleSource::Default, tally_alerts::pack::default_rules()),
        };
        let rules = check_rules(specs.clone()).map_err(RuleBookError::Invalid)?;
        Ok((
            RuleBook {
                source: Mutex::new(source),
                file: settings.rules_file.clone(),
                stored,
                specs: Mutex::new(specs),
                updates: RuleUpdates::default(),
                raised: Family::default(),
                dropped: Family::default(),
            },
            rules,
        ))
    }

    /// What the consumer watches for new rules.
    pub fn updates(&self) -> RuleUpdates {
        self.updates.clone()
    }

    /// The rules in force, as written, and where they come from.
    pub fn current(&self) -> (RuleSource, Vec<RuleSpec>) {
        (
            *self.source.lock().unwrap_or_else(|e| e.into_inner()),
            self.specs.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        )
    }

    /// Checks `specs` and, when every one is valid, stores them durably and puts them in force
    /// (from the next records the rules see). Refused when the rules come from a file.
    pub fn replace(&self, specs: Vec<RuleSpec>) -> Result<(), RuleBookError> {
        if let Some(file) = &self.file {
            return Err(RuleBookError::FromFile(file.display().to_string()));
        }
        let rules = check_rules(specs.clone()).map_err(RuleBookError::Invalid)?;
        let mut current = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = serde_json::to_vec_pretty(&RuleFile {
            rules: specs.clone(),
        })
        .expect("rules serialize");
        tally_store::layout::write_file_durably(&self.stored, &bytes)
            .map_err(RuleBookError::Store)?;
        *current = specs;
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = RuleSource::Api;
        self.updates.replace(rules);
        Ok(())
    }
}

impl crate::Component for RuleBook {
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = registry.sub_registry_with_prefix("tally_alerts");
        r.register(
            "raised",
            "Alerts raised and recorded in their tenant's log, by tenant and rule",
            self.raised.clone(),
        );
        r.register(
            "unrecordable",
            "Alerts the log refused for good (invalid, or their id taken twice), logged and skipped so that the rules go on",
            self.dropped.clone(),
        );
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let (source, specs) = self.current();
        (
            true,
            serde_json::json!({
                "rules": specs.len(),
                "enabled": specs.iter().filter(|s| s.enabled).count(),
                "source": source,
            }),
        )
    }
}

/// Appends each alert to its tenant's log, as an event the server writes.
pub struct LogAlertOutput {
    log: Log,
    runtime: tokio::runtime::Handle,
    book: Arc<RuleBook>,
}

impl LogAlertOutput {
    /// Appends through `log`, waiting on `runtime` (the consumer runs on its own thread).
    pub fn new(log: Log, runtime: tokio::runtime::Handle, book: Arc<RuleBook>) -> Self {
        LogAlertOutput { log, runtime, book }
    }
}

impl AlertOutput for LogAlertOutput {
    fn raise(&mut self, alert: &Alert) -> Result<(), ConsumerError> {
        use crate::audit::RecordError;
        let labels = vec![
            ("tenant".to_string(), alert.tenant.clone()),
            ("rule".to_string(), alert.rule.clone()),
        ];
        let append = |event: serde_json::Value| {
            self.runtime.block_on(crate::audit::append_server_event(
                &self.log,
                &alert.tenant,
                event,
            ))
        };
        let mut outcome = append(alert.event());
        if let Err(RecordError::Conflict(_)) = &outcome {
            // Its id is taken by other content (an event sent with that id, or the same alert
            // raised before a rule's title changed): recorded under a second id derived from
            // the first, so that a replay still finds it.
            let mut event = alert.event();
            event["id"] = tally_alerts::engine::state_event_id(alert.id, "conflict")
                .to_string()
                .into();
            outcome = append(event);
        }
        match outcome {
            Ok(()) => {
                self.book.raised.get_or_create(&labels).inc();
                Ok(())
            }
            // Waiting cannot help these: skipping one alert is better than stopping them all.
            Err(e @ (RecordError::Invalid(_) | RecordError::Conflict(_))) => {
                tracing::error!(
                    tenant = alert.tenant,
                    rule = alert.rule,
                    alert = %alert.id,
                    "an alert the log refuses for good is skipped: {e}"
                );
                self.book.dropped.get_or_create(&labels).inc();
                Ok(())
            }
            Err(e) => Err(format!(
                "alert {} of rule {} could not be recorded: {e}",
                alert.id, alert.rule
            )
            .into()),
        }
    }
}
