//! Prometheus metrics of the write path, registered by the server into its registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label set naming a tenant.
pub type TenantLabels = Vec<(String, String)>;

/// Counters and histograms updated by the sequencer.
#[derive(Debug, Clone)]
pub struct LogMetrics {
    /// Events made durable (duplicates excluded).
    pub events: Counter,
    /// Group commits.
    pub groups: Counter,
    /// Events per group commit.
    pub group_events: Histogram,
    /// Time spent in fsync per group commit.
    pub fsync_seconds: Histogram,
    /// Time from the start of a group commit to its acknowledgement.
    pub commit_seconds: Histogram,
    /// Checkpoints signed.
    pub checkpoints: Counter,
    /// Tree size per tenant.
    pub tree_size: Family<TenantLabels, Gauge>,
    /// 1 for a tenant whose log was found damaged (start-up check, scrub or a read).
    pub damaged: Family<TenantLabels, Gauge>,
    /// The first damaged leaf index of a damaged tenant (-1 when none can be named).
    pub damage_index: Family<TenantLabels, Gauge>,
    /// Complete scrubs of every tenant.
    pub scrub_runs: Counter,
    /// Record bytes re-read and re-hashed by the scrub.
    pub scrub_bytes: Counter,
    /// Unix time at which the last complete scrub finished.
    pub scrub_last_completed: Gauge,
    /// Failed attempts to sign a checkpoint (each is retried).
    pub sign_failures: Counter,
    /// 1 while checkpoint signing fails, else 0.
    pub signer_failing: Gauge,
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics {
            events: Counter::default(),
            groups: Counter::default(),
            group_events: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            checkpoints: Counter::default(),
            tree_size: Family::default(),
            damaged: Family::default(),
            damage_index: Family::default(),
            scrub_runs: Counter::default(),
            scrub_bytes: Counter::default(),
            scrub_last_completed: Gauge::default(),
            sign_failures: Counter::default(),
            signer_failing: Gauge::default(),
        }
    }
}

impl LogMetrics {
    /// Registers every metric under the `tally_log_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tally_log");
        r.register(
            "events",
            "Events made durable in the log",
            self.events.clone(),
        );
        r.register(
            "group_commits",
            "Group commits (one fsync per touched file each)",
            self.groups.clone(),
        );
        r.register(
            "group_commit_events",
            "Events per group commit",
            self.group_events.clone(),
        );
        r.register(
            "fsync_seconds",
            "Time spent in fsync per group commit",
            self.fsync_seconds.clone(),
        );
        r.register(
            "commit_seconds",
            "Time from the start of a group commit to its acknowledgement",
            self.commit_seconds.clone(),
        );
        r.register(
            "checkpoints_signed",
            "Checkpoints signed",
            self.checkpoints.clone(),
        );
        r.register(
            "tree_size",
            "Leaves in each tenant's tree",
            self.tree_size.clone(),
        );
        r.register(
            "damaged",
            "1 for a tenant whose stored records no longer match what the log committed to",
            self.damaged.clone(),
        );
        r.register(
            "damage_first_index",
            "First damaged leaf index of a damaged tenant (-1: none named)",
            self.damage_index.clone(),
        );
        r.register(
            "scrub_runs",
            "Complete scrubs (every record re-read and re-hashed)",
            self.scrub_runs.clone(),
        );
        r.register(
            "scrub_bytes",
            "Record bytes re-read and re-hashed by the scrub",
            self.scrub_bytes.clone(),
        );
        r.register(
            "scrub_last_completed_seconds",
            "Unix time of the end of the last complete scrub",
            self.scrub_last_completed.clone(),
        );
        r.register(
            "checkpoint_sign_failures",
            "Failed attempts to sign a checkpoint (each is retried)",
            self.sign_failures.clone(),
        );
        r.register(
            "checkpoint_signer_failing",
            "1 while checkpoint signing fails (see /healthz for the reason), else 0",
            self.signer_failing.clone(),
        );
    }
}
