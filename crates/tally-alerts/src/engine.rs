//! Rules evaluated over a tenant's records in leaf order, and the alerts they raise.
//!
//! Windows run on each record's `received_at`, the server's clock, which a client cannot set:
//! a backdated event still counts when it arrives. After an alert, its group starts counting
//! afresh, so a burst raises one alert per threshold crossed rather than one per event.
//!
//! The state keeps no value of any record: groups and distinct values are held as salted
//! digests, so that erasing a person leaves nothing of them in the consumer's saved state. An
//! alert's group values come from the record that completed it, which is in hand.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tally_event::Record;
use tally_query::Tokens;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rule::{Condition, Rule, Severity};

/// Actions of the events alerts are recorded as; rules never see them, so an alert cannot
/// feed another.
pub const ALERT_ACTION_PREFIX: &str = "tally.alert.";
/// The action of an alert's event.
pub const RAISE_ACTION: &str = "tally.alert.raise";
/// At most this many triggering events are named in an alert (the newest); `count` says how
/// many there were.
pub const MAX_LEAVES: usize = 100;

/// An alert raised by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Derived from the tenant, the rule and the event that completed it: raising it again
    /// (after a restart replays records) appends nothing new.
    pub id: Uuid,
    /// Whose log it is about (and goes in).
    pub tenant: String,
    /// The rule's id.
    pub rule: String,
    /// The rule's title.
    pub title: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The group's field values (`actor.id` → `alice`); empty without `by`.
    pub group: Vec<(String, String)>,
    /// Leaf indexes of the triggering events, oldest first (the newest [`MAX_LEAVES`]).
    pub leaves: Vec<u64>,
    /// How many events triggered it.
    pub count: u64,
    /// `received_at` of the first and the last triggering event.
    pub first_at: OffsetDateTime,
    /// See `first_at`.
    pub last_at: OffsetDateTime,
}

impl Alert {
    /// The event recording the alert in the tenant's log, as the JSON a client would send:
    /// written by the server, timed at the last triggering event, the same bytes each time.
    pub fn event(&self) -> serde_json::Value {
        let group: serde_json::Map<String, serde_json::Value> = self
            .group
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        let rfc3339 = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        serde_json::json!({
            "id": self.id.to_string(),
            "tenant": self.tenant,
            "time": rfc3339(self.last_at),
            "actor": {"id": tally_event::SERVER_ACTOR_ID, "type": "system"},
            "action": RAISE_ACTION,
            "category": "ALERT",
            "resource": {"type": "alert-rule", "id": self.rule},
            "outcome": "SUCCESS",
            "reason": self.title,
            "metadata": {
                "rule": self.rule,
                "severity": self.severity.as_str(),
                "count": self.count,
                "leaves": self.leaves,
                "first_at": rfc3339(self.first_at),
                (tally_privacy::policy::ALERT_GROUP_MEMBER): group,
            },
        })
    }
}

/// The id of the event recording that alert `alert` moved to `state` (`acknowledged`,
/// `resolved`): derived, so that each happens at most once and is found by id alone.
pub fn state_event_id(alert: Uuid, state: &str) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"tally alert state v1\0");
    h.update(alert.as_bytes());
    h.update(state.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    uuid::Builder::from_custom_bytes(digest[..16].try_into().expect("16 bytes")).into_uuid()
}

fn alert_id(tenant: &str, rule: &str, leaf: u64) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"tally alert v1\0");
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(rule.as_bytes());
    h.update([0]);
    h.update(leaf.to_be_bytes());
    let digest: [u8; 32] = h.finalize().into();
    uuid::Builder::from_custom_bytes(digest[..16].try_into().expect("16 bytes")).into_uuid()
}

/// One group's matching events in its window, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Window {
    /// `received_at` in Unix milliseconds, leaf index, and the counted value (`distinct`).
    events: VecDeque<(i64, u64, Option<String>)>,
}

impl Window {
    fn evict_before(&mut self, ms: i64) {
        while self.events.front().is_some_and(|e| e.0 < ms) {
            self.events.pop_front();
        }
    }

    fn distinct(&self) -> u64 {
        let mut seen: Vec<&str> = self.events.iter().filter_map(|e| e.2.as_deref()).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64
    }
}

/// One group's values seen so far (digests), for `first_seen` rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Seen {
    /// `received_at` (Unix ms) of the group's first matching event.
    since: i64,
    /// The digests of the values seen, at most [`MAX_SEEN_VALUES`].
    values: std::collections::BTreeSet<String>,
}

/// At most this many values are remembered per group of a `first_seen` rule; past it, new
/// values raise nothing (a group with so many is not one whose novelties mean much).
pub const MAX_SEEN_VALUES: usize = 10_000;

/// A group as saved: the rule's id, the tenant and the group's field values.
type SavedGroup = (String, String, Vec<Option<String>>);

/// The state of the rules: each group's window, and how far each tenant's log was observed.
/// It is what a restart must get back to raise the same alerts ([`Engine::snapshot`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineState {
    /// The salt of the digests that stand for values (hex); made when first needed.
    #[serde(default)]
    salt: String,
    /// Per rule id, tenant and group values: the window.
    windows: Vec<(SavedGroup, Window)>,
    /// Per tenant: the leaf index after the last record observed.
    pub observed: Vec<(String, u64)>,
    /// Per `first_seen` rule id, tenant and group: the values seen.
    #[serde(default)]
    seen: Vec<(SavedGroup, Seen)>,
}

/// Rules evaluated over records.
pub struct Engine {
    rules: Vec<Rule>,
    salt: [u8; 16],
    windows: HashMap<(usize, String, Vec<Option<String>>), Window>,
    seen: HashMap<(usize, String, Vec<Option<String>>), Seen>,
    observed: HashMap<String, u64>,
    /// Per tenant: `received_at` (Unix ms) of the last record observed, which idle groups
    /// are swept against (never another tenant's clock: one tenant may be hours behind).
    last_ms: HashMap<String, i64>,
    since_sweep: u64,
}

/// Observations between sweeps of idle groups.
const SWEEP_EVERY: u64 = 10_000;

impl Engine {
    /// An engine with no state.
    pub fn new(rules: Vec<Rule>) -> Engine {
        Engine {
            rules,
            salt: uuid::Uuid::new_v4().into_bytes(),
            windows: HashMap::new(),
            seen: HashMap::new(),
            observed: HashMap::new(),
            last_ms: HashMap::new(),
            since_sweep: 0,
        }
    }

    /// An engine resuming from a [`snapshot`](Self::snapshot); windows of rules no longer
    /// in `rules` are dropped.
    pub fn with_state(rules: Vec<Rule>, state: EngineState) -> Engine {
        let mut engine = Engine::new(rules);
        if let Some(salt) = parse_salt(&state.salt) {
            engine.salt = salt;
        } else if !state.windows.is_empty() || !state.seen.is_empty() {
            // Digests under a lost salt can never match again: start those windows afresh.
            tracing::warn!("the alert rules' saved state has no valid salt; windows start empty");
            engine.observed = state.observed.into_iter().collect();
            return engine;
        }
        for ((rule, tenant, key), window) in state.windows {
            if let Some(i) = engine.rules.iter().position(|r| r.spec.id == rule) {
                engine.windows.insert((i, tenant, key), window);
            }
        }
        for ((rule, tenant, key), seen) in state.seen {
            if let Some(i) = engine.rules.iter().position(|r| r.spec.id == rule) {
                engine.seen.insert((i, tenant, key), seen);
            }
        }
        engine.observed = state.observed.into_iter().collect();
        engine
    }

    /// Puts `rules` in force from the next record on. A rule whose id, match and condition
    /// are unchanged keeps its windows (a new title or severity does not reset a count);
    /// the windows of a changed or removed rule are dropped.
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        let old = std::mem::replace(&mut self.rules, rules);
        let same = |i: usize| {
            let was = &old[i];
            self.rules.iter().position(|r| {
                r.spec.id == was.spec.id
                    && r.spec.matches == was.spec.matches
                    && r.condition == was.condition
            })
        };
        let mut windows = HashMap::new();
        for ((i, tenant, key), window) in std::mem::take(&mut self.windows) {
            if let Some(now) = same(i) {
                windows.insert((now, tenant, key), window);
            }
        }
        let mut seen = HashMap::new();
        for ((i, tenant, key), s) in std::mem::take(&mut self.seen) {
            if let Some(now) = same(i) {
                seen.insert((now, tenant, key), s);
            }
        }
        self.windows = windows;
        self.seen = seen;
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Where `tenant`'s records were observed up to (the leaf index after the last).
    pub fn observed(&self, tenant: &str) -> Option<u64> {
        self.observed.get(tenant).copied()
    }

    /// The state to resume from.
    pub fn snapshot(&self) -> EngineState {
        let mut windows: Vec<_> = self
            .windows
            .iter()
            .filter(|(_, w)| !w.events.is_empty())
            .map(|((i, tenant, key), w)| {
                (
                    (self.rules[*i].spec.id.clone(), tenant.clone(), key.clone()),
                    w.clone(),
                )
            })
            .collect();
        windows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut observed: Vec<_> = self.observed.iter().map(|(t, n)| (t.clone(), *n)).collect();
        observed.sort();
        let mut seen: Vec<_> = self
            .seen
            .iter()
            .map(|((i, tenant, key), s)| {
                (
                    (self.rules[*i].spec.id.clone(), tenant.clone(), key.clone()),
                    s.clone(),
                )
            })
            .collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        EngineState {
            salt: self.salt.iter().map(|b| format!("{b:02x}")).collect(),
            windows,
            observed,
            seen,
        }
    }

    /// Observes record `leaf` of `tenant`'s log (opened: personal values in the clear) and
    /// returns the alerts it completes. A record at or before one already observed is
    /// ignored, so records delivered again after a failure count once.
    pub fn observe(
        &mut self,
        tenant: &str,
        leaf: u64,
        record: &Record,
        tokens: &dyn Tokens,
    ) -> Vec<Alert> {
        let observed = self.observed.entry(tenant.to_string()).or_insert(0);
        if leaf < *observed {
            return Vec::new();
        }
        *observed = leaf + 1;
        if record.action.starts_with(ALERT_ACTION_PREFIX) {
            return Vec::new();
        }
        let at = record.received_at;
        let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
        self.last_ms.insert(tenant.to_string(), ms);
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.sweep();
        }
        let mut alerts = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.spec.enabled || rule.schedule.as_ref().is_some_and(|s| !s.admits(ms)) {
                continue;
            }
            let follows = rule
                .then
                .as_ref()
                .is_some_and(|then| then.matches(record, ms, tokens));
            let matches = rule.query.matches(record, ms, tokens);
            if !matches && !follows {
                continue;
            }
            let values: Vec<Option<String>> = rule
                .condition
                .group_by()
                .iter()
                .map(|f| text_of(f, record))
                .collect();
            let key: Vec<Option<String>> = values
                .iter()
                .map(|v| v.as_deref().map(|v| digest(&self.salt, v)))
                .collect();
            let group = || -> Vec<(String, String)> {
                rule.condition
                    .group_by()
                    .iter()
                    .zip(&values)
                    .filter_map(|(f, v)| Some((f.name.to_string(), v.clone()?)))
                    .collect()
            };
            let raise = |group: Vec<(String, String)>, events: &[(i64, u64)]| Alert {
                id: alert_id(tenant, &rule.spec.id, leaf),
                tenant: tenant.to_string(),
                rule: rule.spec.id.clone(),
                title: rule.spec.title.clone(),
                severity: rule.spec.severity,
                group,
                leaves: events
                    .iter()
                    .skip(events.len().saturating_sub(MAX_LEAVES))
                    .map(|e| e.1)
                    .collect(),
                count: events.len() as u64,
                first_at: from_ms(events.first().map_or(ms, |e| e.0)),
                last_at: at,
            };
            if rule.then.is_some() {
                // A sequence: the matching events arm the group, the following one fires it.
                let window = self
                    .windows
                    .entry((i, tenant.to_string(), key.clone()))
                    .or_default();
                if let Condition::Count { within, .. } | Condition::Distinct { within, .. } =
                    &rule.condition
                {
                    window.evict_before(ms.saturating_sub(within.as_millis() as i64));
                }
                if follows {
                    let reached = match &rule.condition {
                        Condition::Distinct { .. } => window.distinct(),
                        _ => window.events.len() as u64,
                    };
                    let min = match &rule.condition {
                        Condition::Count { min, .. } | Condition::Distinct { min, .. } => *min,
                        _ => 1,
                    };
                    if reached >= min {
                        let mut events: Vec<(i64, u64)> =
                            window.events.iter().map(|e| (e.0, e.1)).collect();
                        events.push((ms, leaf));
                        window.events.clear();
                        alerts.push(raise(group(), &events));
                        continue;
                    }
                }
                if matches {
                    let Some(counted) = counted(&rule.condition, record, &self.salt) else {
                        continue;
                    };
                    window.events.push_back((ms, leaf, counted));
                } else if window.events.is_empty() {
                    self.windows.remove(&(i, tenant.to_string(), key));
                }
                continue;
            }
            match &rule.condition {
                Condition::Each => alerts.push(raise(group(), &[(ms, leaf)])),
                Condition::FirstSeen { field, after, .. } => {
                    let Some(value) = text_of(field, record) else {
                        continue;
                    };
                    let d = digest(&self.salt, &value);
                    let seen = self
                        .seen
                        .entry((i, tenant.to_string(), key.clone()))
                        .or_insert_with(|| Seen {
                            since: ms,
                            values: Default::default(),
                        });
                    if seen.values.contains(&d) || seen.values.len() >= MAX_SEEN_VALUES {
                        continue;
                    }
                    seen.values.insert(d);
                    let learning =
                        after.is_some_and(|a| ms.saturating_sub(seen.since) < a.as_millis() as i64);
                    if !learning {
                        alerts.push(raise(group(), &[(ms, leaf)]));
                    }
                }
                Condition::Value {
                    path,
                    threshold,
                    inclusive,
                } => {
                    let over = number_at(record, path).is_some_and(|n| {
                        if *inclusive {
                            n >= *threshold
                        } else {
                            n > *threshold
                        }
                    });
                    if over {
                        alerts.push(raise(group(), &[(ms, leaf)]));
                    }
                }
                Condition::Count { min, within, .. } | Condition::Distinct { min, within, .. } => {
                    let Some(distinct) = counted(&rule.condition, record, &self.salt) else {
                        continue;
                    };
                    let window = self
                        .windows
                        .entry((i, tenant.to_string(), key.clone()))
                        .or_default();
                    window.evict_before(ms.saturating_sub(within.as_millis() as i64));
                    window.events.push_back((ms, leaf, distinct));
                    let reached = match rule.condition {
                        Condition::Distinct { .. } => window.distinct(),
                        _ => window.events.len() as u64,
                    };
                    if reached >= *min {
                        let events: Vec<(i64, u64)> =
                            window.events.iter().map(|e| (e.0, e.1)).collect();
                        window.events.clear();
                        alerts.push(raise(group(), &events));
                    }
                }
            }
        }
        alerts
    }

    /// Drops groups with nothing left in their window, each against its own tenant's clock:
    /// only what that tenant's next record would evict anyway, so sweeping never changes
    /// which alerts are raised.
    fn sweep(&mut self) {
        self.since_sweep = 0;
        let (rules, last_ms) = (&self.rules, &self.last_ms);
        self.windows.retain(|(i, tenant, _), w| {
            let within = match &rules[*i].condition {
                Condition::Count { within, .. } | Condition::Distinct { within, .. } => *within,
                Condition::Each | Condition::Value { .. } | Condition::FirstSeen { .. } => {
                    return false
                }
            };
            if let Some(now_ms) = last_ms.get(tenant) {
                w.evict_before(now_ms.saturating_sub(within.as_millis() as i64));
            }
            !w.events.is_empty()
        });
    }

    /// Starts `tenant` at leaf `next` when the engine has observed nothing of it (the saved
    /// state then says where it started, so a restart does not replay what came before).
    pub fn start_at(&mut self, tenant: &str, next: u64) {
        self.observed.entry(tenant.to_string()).or_insert(next);
    }
}

/// The value of `field` in `record` as text, unless the privacy layer withheld it.
fn text_of(field: &crate::rule::FieldRef, record: &Record) -> Option<String> {
    field
        .value(record)
        .and_then(|v| v.as_text())
        .filter(|v| !is_withheld(v))
        .map(|v| v.into_owned())
}

/// What an event adds to a window: for a `distinct` condition the digest of its counted
/// value, `None` for the others; `None` outside when the event counts for nothing (no
/// counted value).
fn counted(condition: &Condition, record: &Record, salt: &[u8; 16]) -> Option<Option<String>> {
    match condition {
        Condition::Distinct { field, .. } => text_of(field, record).map(|v| Some(digest(salt, &v))),
        _ => Some(None),
    }
}

/// Whether a value is one the privacy layer stands in for a value it cannot show (erased, or
/// under a key this process does not have): it names no one, so it groups and counts nothing.
fn is_withheld(value: &str) -> bool {
    value == tally_privacy::seal::ERASED || value == tally_privacy::seal::UNAVAILABLE
}

/// The number at `path` (`metadata.rows`) of `record`, if there is one there.
fn number_at(record: &Record, path: &[String]) -> Option<f64> {
    let (root, rest) = path.split_first()?;
    let mut value = match root.as_str() {
        "metadata" => record.metadata.as_ref()?.get(rest.first()?)?,
        "before" => record.before.as_ref()?,
        "after" => record.after.as_ref()?,
        _ => return None,
    };
    let rest = if root == "metadata" { &rest[1..] } else { rest };
    for name in rest {
        value = value.get(name)?;
    }
    value.as_f64()
}

/// What stands for `value` in the state: the first 128 bits of SHA-256(salt ‖ value), hex.
fn digest(salt: &[u8; 16], value: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(value.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_salt(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut salt = [0u8; 16];
    for (i, b) in salt.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(salt)
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{check_rules, RuleSpec};
    use tally_query::NoTokens;

    fn rules(list: &[(&str, &str, Option<&str>)]) -> Vec<Rule> {
        check_rules(
            list.iter()
                .map(|(id, m, c)| RuleSpec {
                    id: id.to_string(),
                    title: format!("rule {id}"),
                    description: None,
                    severity: Severity::High,
                    matches: m.to_string(),
                    condition: c.map(str::to_string),
                    then: None,
                    when: None,
                    enabled: true,
                })
                .collect(),
        )
        .unwrap()
    }

    /// A record received `secs` seconds after 2026-05-01T12:00:00Z.
    fn record(secs: i64, actor: &str, action: &str, outcome: &str, resource: &str) -> Record {
        let at = OffsetDateTime::from_unix_timestamp(1_777_636_800 + secs).unwrap();
        let t = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "id": Uuid::now_v7().to_string(), "tenant": "acme",
            "time": t, "received_at": t, "key_id": "k",
            "actor": {"id": actor, "type": "user", "ip": "203.0.113.9"},
            "action": action, "outcome": outcome,
            "resource": {"type": "doc", "id": resource},
        }))
        .unwrap()
    }

    fn fired(engine: &mut Engine, events: &[Record]) -> Vec<(u64, String, Vec<u64>)> {
        let mut out = Vec::new();
        for (leaf, r) in events.iter().enumerate() {
            for a in engine.observe("acme", leaf as u64, r, &NoTokens) {
                let group = a.group.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>();
                out.push((
                    leaf as u64,
                    format!("{}:{}", a.rule, group.join(",")),
                    a.leaves,
                ));
            }
        }
        out
    }

    #[test]
    fn a_count_fires_once_per_threshold_crossed_in_its_window_and_group() {
        let mut engine = Engine::new(rules(&[(
            "brute",
            "action:auth.login outcome:FAILURE",
            Some("count > 2 within 1m by actor.id"),
        )]));
        let fail = |s, who| record(s, who, "auth.login", "FAILURE", "x");
        let events = vec![
            fail(0, "alice"),
            fail(10, "bob"),
            fail(20, "alice"),
            record(25, "alice", "auth.login", "SUCCESS", "x"), // does not match
            fail(30, "alice"),                                 // 3rd within 60 s: fires
            fail(40, "alice"),
            fail(50, "alice"),
            fail(200, "alice"), // the two before it are out of the window
            fail(201, "bob"),   // bob's first is out of the window too
            fail(202, "alice"),
            fail(203, "alice"), // fires
        ];
        assert_eq!(
            fired(&mut engine, &events),
            [
                (4, "brute:alice".to_string(), vec![0, 2, 4]),
                (10, "brute:alice".to_string(), vec![7, 9, 10]),
            ]
        );
    }

    #[test]
    fn distinct_counts_values_and_each_raises_per_event() {
        let mut engine = Engine::new(rules(&[
            (
                "scan",
                "action:doc.read",
                Some("distinct resource.id >= 3 within 10m by actor"),
            ),
            ("grant", "action:role.grant", None),
        ]));
        let read = |s, r| record(s, "carol", "doc.read", "SUCCESS", r);
        let events = vec![
            read(0, "a"),
            read(1, "a"),
            read(2, "b"),
            record(3, "root", "role.grant", "SUCCESS", "admin"),
            read(4, "c"), // third different document
        ];
        assert_eq!(
            fired(&mut engine, &events),
            [
                (3, "grant:".to_string(), vec![3]),
                (4, "scan:carol".to_string(), vec![0, 1, 2, 4]),
            ]
        );
    }

    #[test]
    fn a_value_condition_compares_a_number_of_each_event() {
        let mut engine = Engine::new(rules(&[
            (
                "bulk",
                "category:EXPORT",
                Some("value metadata.rows > 10000"),
            ),
            ("big", "", Some("value after.size.bytes >= 5")),
        ]));
        let export = |rows: serde_json::Value| {
            let mut r = record(0, "a", "report.export", "SUCCESS", "r");
            r.category = Some("EXPORT".into());
            r.metadata = Some(
                serde_json::json!({"rows": rows})
                    .as_object()
                    .unwrap()
                    .clone(),
            );
            r
        };
        let mut sized = record(0, "a", "doc.update", "SUCCESS", "r");
        sized.after = Some(serde_json::json!({"size": {"bytes": 5}}));
        let events = vec![
            export(serde_json::json!(10_000)),
            export(serde_json::json!(10_001)),
            export(serde_json::json!("20000")), // not a number: no alert
            sized,
        ];
        assert_eq!(
            fired(&mut engine, &events),
            [
                (1, "bulk:".to_string(), vec![1]),
                (3, "big:".to_string(), vec![3]),
            ]
        );
    }

    #[test]
    fn a_sequence_fires_when_the_following_event_comes_within_the_window() {
        let mut specs: Vec<RuleSpec> = rules(&[(
            "guessed",
            "action:auth.login outcome:FAILURE",
            Some("count >= 3 within 10m by actor.id"),
        )])
        .into_iter()
        .map(|r| r.spec)
        .collect();
        specs[0].then = Some("action:auth.login outcome:SUCCESS".into());
        let mut engine = Engine::new(check_rules(specs).unwrap());
        let fail = |s, who| record(s, who, "auth.login", "FAILURE", "x");
        let success = |s, who| record(s, who, "auth.login", "SUCCESS", "x");
        let events = vec![
            fail(0, "alice"),
            fail(1, "alice"),
            success(2, "alice"), // two failures only: not armed
            fail(3, "alice"),
            success(4, "bob"),   // another group
            success(5, "alice"), // three failures within 10 min, then a success: fires
            success(6, "alice"), // the group starts afresh
            fail(10, "carol"),
            fail(11, "carol"),
            fail(12, "carol"),
            success(1000, "carol"), // too late: the failures left the window
        ];
        assert_eq!(
            fired(&mut engine, &events),
            [(5, "guessed:alice".to_string(), vec![0, 1, 3, 5])]
        );
    }

    #[test]
    fn a_schedule_counts_only_events_in_or_out_of_its_hours() {
        let mut specs: Vec<RuleSpec> = rules(&[("off-hours", "action:patient.read", None)])
            .into_iter()
            .map(|r| r.spec)
            .collect();
        specs[0].when = Some(crate::rule::WhenSpec {
            time_zone: Some("America/New_York".into()),
            days: Some("mon-fri".into()),
            hours: Some("09:00-18:00".into()),
            outside: true,
        });
        let mut engine = Engine::new(check_rules(specs).unwrap());
        // 2026-05-01 is a Friday; 12:00 UTC is 08:00 in New York (EDT, UTC-4).
        let read = |s| record(s, "nurse", "patient.read", "SUCCESS", "p-1");
        let events = vec![
            read(0),                     // Fri 08:00 New York: before hours, fires
            read(3600),                  // Fri 09:00: in hours
            read(9 * 3600 - 1),          // Fri 16:59:59: in hours
            read(10 * 3600),             // Fri 18:00: after hours, fires
            read(2 * 86_400 + 3 * 3600), // Sun 11:00: weekend, fires
        ];
        let got: Vec<u64> = fired(&mut engine, &events).iter().map(|f| f.0).collect();
        assert_eq!(got, [0, 3, 4]);
    }

    #[test]
    fn erased_values_group_and_count_nothing() {
        let mut engine = Engine::new(rules(&[(
            "c",
            "",
            Some("count >= 2 within 1h by actor.id"),
        )]));
        let erased = |s| record(s, tally_privacy::seal::ERASED, "x.y", "SUCCESS", "r");
        let got = fired(&mut engine, &[erased(0), erased(1), erased(2)]);
        // No group of erased people: the events count in the group without a value.
        assert!(got.iter().all(|(_, g, _)| g == "c:"), "{got:?}");
    }

    #[test]
    fn first_seen_values_raise_after_the_group_has_learned() {
        let mut engine = Engine::new(rules(&[(
            "novel",
            "",
            Some("first_seen resource.type after 1h by actor.id"),
        )]));
        let touch = |s, who: &str, kind: &str| {
            let mut r = record(s, who, "x.read", "SUCCESS", "r");
            r.resource.as_mut().unwrap().kind = kind.to_string();
            r
        };
        let events = vec![
            touch(0, "alice", "doc"),        // learning
            touch(60, "alice", "invoice"),   // learning: usual for alice now
            touch(4000, "alice", "doc"),     // seen
            touch(4001, "alice", "patient"), // new, after an hour: fires
            touch(4002, "alice", "patient"), // seen now
            touch(4003, "bob", "patient"),   // bob is learning
        ];
        assert_eq!(
            fired(&mut engine, &events),
            [(3, "novel:alice".to_string(), vec![3])]
        );
    }

    #[test]
    fn records_seen_again_count_once_and_alerts_are_not_observed() {
        let mut engine = Engine::new(rules(&[("all", "", Some("count >= 2 within 1h"))]));
        let r = record(0, "a", "x.y", "SUCCESS", "r");
        assert!(engine.observe("acme", 0, &r, &NoTokens).is_empty());
        assert!(
            engine.observe("acme", 0, &r, &NoTokens).is_empty(),
            "a redelivery"
        );
        let alert_event = record(1, "a", RAISE_ACTION, "SUCCESS", "r");
        assert!(engine
            .observe("acme", 1, &alert_event, &NoTokens)
            .is_empty());
        let alerts = engine.observe("acme", 2, &r, &NoTokens);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].leaves, [0, 2]);
        // The alert's id is the same whoever computes it: a replay appends nothing new.
        assert_eq!(alerts[0].id, alert_id("acme", "all", 2));
        assert_ne!(alerts[0].id, alert_id("other", "all", 2));
        let event = alerts[0].event();
        assert_eq!(event["action"], RAISE_ACTION);
        assert_eq!(event["metadata"]["leaves"], serde_json::json!([0, 2]));
        assert_eq!(event["id"], alerts[0].id.to_string());
    }

    #[test]
    fn the_saved_state_holds_no_value_of_any_record() {
        let mut engine = Engine::new(rules(&[
            ("c", "", Some("count > 5 within 1h by actor.id")),
            (
                "d",
                "",
                Some("distinct resource.id > 5 within 1h by actor.ip"),
            ),
        ]));
        let events: Vec<Record> = (0..4)
            .map(|i| record(i, "alice@example.com", "doc.read", "SUCCESS", "patient-42"))
            .collect();
        assert!(fired(&mut engine, &events).is_empty());
        let saved = serde_json::to_string(&engine.snapshot()).unwrap();
        for value in ["alice", "patient-42", "203.0.113.9"] {
            assert!(!saved.contains(value), "{value} in {saved}");
        }
        // The same windows come back: two more events by alice fire rule c.
        let mut resumed =
            Engine::with_state(engine.rules.clone(), serde_json::from_str(&saved).unwrap());
        let more = record(5, "alice@example.com", "doc.read", "SUCCESS", "patient-42");
        assert!(resumed.observe("acme", 4, &more, &NoTokens).is_empty());
        let alerts = resumed.observe("acme", 5, &more, &NoTokens);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].group,
            [("actor.id".to_string(), "alice@example.com".to_string())]
        );
        assert_eq!(alerts[0].leaves, [0, 1, 2, 3, 4, 5]);
    }

    proptest::proptest! {
        /// Stopping anywhere and resuming from a snapshot raises exactly the alerts an engine
        /// that never stopped raises.
        #[test]
        fn a_snapshot_resumes_as_if_never_stopped(
            events in proptest::collection::vec((0i64..40, 0usize..3, 0usize..2, 0usize..4), 1..120),
            stop in 0usize..120,
        ) {
            let specs = [
                ("c", "outcome:FAILURE", Some("count > 2 within 30s by actor")),
                ("d", "", Some("distinct resource.id > 1 within 1m by actor")),
                ("e", "resource:r3", None),
                ("f", "", Some("first_seen resource.id after 20s by actor")),
            ];
            let mut secs = 0;
            let records: Vec<Record> = events
                .iter()
                .map(|&(gap, who, outcome, res)| {
                    secs += gap;
                    record(
                        secs,
                        ["alice", "bob", "carol"][who],
                        "doc.read",
                        ["SUCCESS", "FAILURE"][outcome],
                        &format!("r{res}"),
                    )
                })
                .collect();
            let whole = fired(&mut Engine::new(rules(&specs)), &records);
            let stop = stop.min(records.len());
            let mut first = Engine::new(rules(&specs));
            let mut got = fired(&mut first, &records[..stop]);
            let saved = serde_json::to_string(&first.snapshot()).unwrap();
            let mut second = Engine::with_state(rules(&specs), serde_json::from_str(&saved).unwrap());
            for (leaf, r) in records.iter().enumerate() {
                // Resuming replays from the start: what was observed counts once.
                for a in second.observe("acme", leaf as u64, r, &NoTokens) {
                    let group = a.group.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>();
                    got.push((leaf as u64, format!("{}:{}", a.rule, group.join(",")), a.leaves));
                }
            }
            proptest::prop_assert_eq!(got, whole);
        }
    }
}
