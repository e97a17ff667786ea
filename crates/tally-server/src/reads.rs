//! Reads of records one at a time — an event by id or index, an entry bundle (up to 256 full
//! records), an inclusion proof by event id (which says whether an id exists) — by people
//! (signed in through the OIDC issuer) always, and by API keys when the server is told to
//! (`ServerSettings::record_key_reads`), recorded as
//! `tally.events.get`, `tally.tiles.entries` and `tally.proofs.inclusion_by_id` in the tenant's
//! log, aggregated per (tenant, key, action, client IP) and window like refused requests
//! ([`crate::aggregate`]): the first read of a group in a window at once, the rest as one event
//! with their count and leaf indexes when the window closes.
//!
//! Not recorded, because they reveal no record: checkpoints, hash tiles, inclusion proofs by
//! leaf index, consistency proofs, the log key, `/healthz`, `/metrics` and this API's document.
//! Searches, statistics, live tails and exports are recorded one by one, before they are
//! answered (`audit::record_read`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde_json::json;

use crate::aggregate::Aggregator;
use crate::auth::Principal;

/// Most leaf indexes listed in one aggregated event; the count says how many reads there were.
const MAX_INDEXES: usize = 100;

/// Which single-record read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ReadKind {
    /// `GET /v1/events/{key}`.
    Event,
    /// An entry bundle of the tlog tiles.
    EntryBundle,
    /// `GET /v1/proof/inclusion?id=`.
    ProofById,
}

impl ReadKind {
    fn action(self) -> &'static str {
        match self {
            ReadKind::Event => "tally.events.get",
            ReadKind::EntryBundle => "tally.tiles.entries",
            ReadKind::ProofById => "tally.proofs.inclusion_by_id",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Group {
    tenant: String,
    key_id: String,
    person: Option<String>,
    kind: ReadKind,
    ip: Option<IpAddr>,
}

/// The leaf indexes of a group's reads after its first.
#[derive(Debug, Default)]
struct Indexes(Vec<u64>);

/// Records single-record reads, aggregated (see the module's docs).
pub struct ReadRecorder {
    enabled: bool,
    log: tally_store::Log,
    window: Duration,
    groups: Aggregator<Group, Indexes>,
    events: Counter,
    lost: Counter,
}

impl ReadRecorder {
    /// A recorder writing into `log` (when `enabled`), its windows `window` long.
    pub fn new(
        enabled: bool,
        log: tally_store::Log,
        window: Duration,
        max_groups: usize,
    ) -> Arc<ReadRecorder> {
        Arc::new(ReadRecorder {
            enabled,
            log,
            window,
            groups: Aggregator::new(max_groups),
            events: Counter::default(),
            lost: Counter::default(),
        })
    }

    /// Registers the metrics under `registry` (prefix `tally_http`).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "read_events",
            "Audit events written for reads of single records (aggregated)",
            self.events.clone(),
        );
        registry.register(
            "read_events_lost",
            "Audit events of reads of single records the log could not take",
            self.lost.clone(),
        );
    }

    /// Notes a read of leaf `index` (the first of a bundle) of `tenant` by `who`.
    pub(crate) async fn note(
        &self,
        who: &Principal,
        ip: Option<IpAddr>,
        tenant: &str,
        kind: ReadKind,
        index: u64,
    ) {
        // People's reads always; keys' when the server records them.
        if !self.enabled && who.person.is_none() {
            return;
        }
        let group = Group {
            tenant: tenant.to_string(),
            key_id: who.key_id.clone(),
            person: who.person.clone(),
            kind,
            ip,
        };
        let (group, first) = self.groups.note(
            group,
            // A key reading from very many addresses at once: one group without the address.
            |mut g| {
                g.ip = None;
                g
            },
            |merged| {
                if merged.0.len() < MAX_INDEXES {
                    merged.0.push(index);
                }
            },
        );
        if first {
            let now = time::OffsetDateTime::now_utc();
            self.write(&group, 1, &[index], now, now).await;
        }
    }

    /// Writes what the window counted and opens a new window.
    pub async fn flush(&self) {
        for (group, p) in self.groups.close_window() {
            self.write(&group, p.unwritten, &p.merged.0, p.first_at, p.last_at)
                .await;
        }
    }

    async fn write(
        &self,
        group: &Group,
        count: u64,
        indexes: &[u64],
        first_at: time::OffsetDateTime,
        last_at: time::OffsetDateTime,
    ) {
        let mut actor = match &group.person {
            Some(person) => json!({"id": person, "type": "user"}),
            None => json!({
                "id": format!("{}{}", tally_event::KEY_ACTOR_PREFIX, group.key_id),
                "type": "service",
            }),
        };
        if let Some(ip) = group.ip {
            actor["ip"] = ip.to_string().into();
        }
        let body = json!({
            "tenant": group.tenant,
            "actor": actor,
            "action": group.kind.action(),
            "category": "READ",
            "outcome": "SUCCESS",
            "resource": {"type": "AUDIT_LOG", "id": group.tenant},
            "metadata": {
                "count": count,
                "indexes": indexes,
                "first_at": crate::aggregate::rfc3339(first_at),
                "last_at": crate::aggregate::rfc3339(last_at),
                "window_seconds": self.window.as_secs(),
            },
        });
        match crate::audit::append_server_event(&self.log, &group.tenant, body).await {
            Ok(()) => {
                self.events.inc();
            }
            Err(e) => {
                self.lost.inc();
                tally_store::throttled_error!(
                    "read_not_recorded",
                    "a read of a record could not be recorded in the audit log: {e}"
                );
            }
        }
    }
}
