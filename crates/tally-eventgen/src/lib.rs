//! Realistic, deterministic audit events in Tally's schema v1.
//!
//! [`EventGenerator`] draws actors and resources from Zipf distributions (a few accounts and
//! documents are touched far more often than the rest, as in real audit trails), picks actions
//! that fit the actor (services capture payments, people log in), and fills `before`/`after`
//! snapshots and `metadata` with the kind of personal data audit logs really carry. Events
//! average about 480 bytes of compact JSON, of which the members every event carries (ids,
//! times, actor, resource, outcome) take about 380.
//!
//! Everything is derived from the seed and the base time, so two generators built alike produce
//! byte-identical streams, which makes a benchmark run reproducible.
//!
//! ```
//! use tally_eventgen::EventGenerator;
//! use time::macros::datetime;
//!
//! let mut gen = EventGenerator::new(7).with_base_time(datetime!(2026-11-22 10:00 UTC));
//! let event: serde_json::Value = serde_json::from_slice(&gen.next_json()).unwrap();
//! assert!(event["actor"]["id"].is_string());
//! let batch = gen.json_array(10);
//! assert_eq!(serde_json::from_slice::<Vec<serde_json::Value>>(&batch).unwrap().len(), 10);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt::Write as _;
use std::ops::Range;

use rand::distributions::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tally_event::{ActorType, Outcome};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Duration as TimeDelta, OffsetDateTime};
use uuid::Uuid;

/// Number of distinct actors (people, services and system jobs) events are attributed to.
pub const ACTORS: u64 = 10_000;
/// Number of distinct resources across all resource types.
pub const RESOURCES: u64 = 100_000;
/// Zipf exponent for actor and resource popularity; 1.1 gives the heavy head seen in real logs.
pub const ZIPF_EXPONENT: f64 = 1.1;

/// Byte range of the event id inside every serialized event: `id` is serialized first, so the
/// load drivers can give a reused body fresh ids by overwriting these 36 bytes in place.
pub const ID_RANGE: Range<usize> = 7..43;

/// Fields of the schema registry (`tally_event::fields`) that generated events never carry:
/// `schema_version` because absent means 1, and `correlation_id` because the generator models
/// requests and traces but no multi-event business operations. Every other field a client may
/// send is filled (`tenant` when the generator is given one).
pub const NOT_GENERATED: [&str; 2] = ["schema_version", "correlation_id"];

/// Events are spread over the five minutes before the base time: close to "now" without ever
/// being in the future, which a server could reasonably reject.
const TIME_WINDOW_MS: i64 = 5 * 60 * 1000;

const RFC3339_MS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// One generated audit event, shaped like Tally's schema v1.
///
/// Serializing it (see [`Event::to_json`]) yields compact JSON with `id` as the first member.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Client-supplied event id: a UUID v4 drawn from the generator's seeded RNG.
    pub id: Uuid,
    /// Tenant the event belongs to; present only when the generator was given one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// RFC 3339 UTC timestamp with millisecond precision, e.g. `2026-11-22T10:00:00.123Z`.
    pub time: String,
    /// Who acted.
    pub actor: Actor,
    /// Dotted action name, e.g. `user.password.change`.
    pub action: &'static str,
    /// Category consistent with the action, e.g. `UPDATE`.
    pub category: &'static str,
    /// What was acted on.
    pub resource: Resource,
    /// `SUCCESS`, `FAILURE`, `UNAUTHORIZED` or `DENIED`.
    pub outcome: &'static str,
    /// Why the action did not succeed; absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Id of the application request that caused the event.
    pub request_id: String,
    /// W3C trace id: 32 lowercase hex digits.
    pub trace_id: String,
    /// Snapshot before a change (updates, deletes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Snapshot after a change (creates, updates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// Free-form context: region, calling service, and action-specific details.
    pub metadata: Map<String, Value>,
}

impl Event {
    /// Compact JSON encoding of the event, `id` first.
    pub fn to_json(&self) -> Vec<u8> {
        let bytes = serde_json::to_vec(self).expect("an Event always serializes");
        debug_assert_eq!(&bytes[..ID_RANGE.start], b"{\"id\":\"");
        bytes
    }
}

/// The `actor` object of an event.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    /// Stable actor id, e.g. `user-48213` or `svc-billing-worker-17`.
    pub id: String,
    /// `user`, `service` or `system`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Source IPv4 or IPv6 address.
    pub ip: String,
    /// Browser, SDK or CLI user agent; system jobs have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'static str>,
    /// Login session of a person using a browser or app; token-based callers have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// The `resource` object of an event.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    /// `USER`, `ORDER`, `PAYMENT`, `REPORT`, `DOCUMENT`, `ROLE`, `SETTING` or `API_KEY`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Stable resource id, e.g. `doc_83121`.
    pub id: String,
    /// Human-readable name; for a `USER` it is the person's name (PII).
    pub name: String,
}

/// Deterministic source of realistic audit events; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct EventGenerator {
    rng: StdRng,
    tenant: Option<String>,
    base_time: OffsetDateTime,
    actors: Vec<ActorProfile>,
    actor_zipf: Zipf<f64>,
    resource_zipf: [Zipf<f64>; RES_KINDS.len()],
    actions_by_kind: [(Vec<usize>, WeightedIndex<u32>); 3],
    span: Option<TimeSpan>,
}

/// Spreads a known number of events over a time span in order (see
/// [`EventGenerator::with_time_span`]).
#[derive(Debug, Clone, Copy)]
struct TimeSpan {
    span_ms: i64,
    events: u64,
    /// Events generated so far: the position of the next one in the span.
    emitted: u64,
}

impl EventGenerator {
    /// A generator whose events are determined by `seed` and stamped near the current time.
    ///
    /// For byte-identical output across runs also fix the clock with [`Self::with_base_time`].
    pub fn new(seed: u64) -> Self {
        // The population gets its own RNG stream so that it does not shift when event
        // generation changes how many numbers it draws.
        let mut population_rng = StdRng::seed_from_u64(seed ^ 0x7a11_9e0b_ac70_5eed);
        let actors = (0..ACTORS)
            .map(|rank| ActorProfile::new(rank, &mut population_rng))
            .collect();
        let actions_by_kind = [USER, SERVICE, SYSTEM].map(|kind| {
            let allowed: Vec<usize> = (0..ACTIONS.len())
                .filter(|&i| ACTIONS[i].actors & kind != 0)
                .collect();
            let weights = WeightedIndex::new(allowed.iter().map(|&i| ACTIONS[i].weight))
                .expect("every actor kind has at least one action");
            (allowed, weights)
        });
        Self {
            rng: StdRng::seed_from_u64(seed),
            tenant: None,
            base_time: OffsetDateTime::now_utc(),
            actors,
            actor_zipf: zipf(ACTORS),
            resource_zipf: RES_KINDS.map(|kind| zipf(kind.population())),
            actions_by_kind,
            span: None,
        }
    }

    /// Adds `"tenant": tenant` to every event (Tally otherwise takes the tenant from the key).
    pub fn with_tenant(mut self, tenant: Option<String>) -> Self {
        self.tenant = tenant;
        self
    }

    /// Stamps events within the five minutes before `base_time` instead of before "now".
    pub fn with_base_time(mut self, base_time: OffsetDateTime) -> Self {
        self.base_time = base_time;
        self
    }

    /// Spreads the next `events` events evenly over the `span` before the base time, in
    /// increasing time order, instead of at random within the last five minutes.
    ///
    /// Event *k* (from 0) falls at a random instant of the *k*-th of `events` equal slots of
    /// the span, so times grow with the order of generation (a log filled in that order has
    /// leaf order equal to time order) and a bound such as "the last hour" or "the last 30
    /// days" selects its share of the events, as it would in a log that has been receiving a
    /// steady stream. While slots are at least a millisecond wide (`span / events`), no two
    /// events share a timestamp. Events beyond `events` are stamped at the base time.
    pub fn with_time_span(mut self, span: std::time::Duration, events: u64) -> Self {
        self.span = Some(TimeSpan {
            span_ms: i64::try_from(span.as_millis()).unwrap_or(i64::MAX),
            events: events.max(1),
            emitted: 0,
        });
        self
    }

    /// The next event as a structure.
    pub fn next_event(&mut self) -> Event {
        let actor_rank = self.actor_zipf.sample(&mut self.rng) as usize - 1;
        let profile = &self.actors[actor_rank];
        let (allowed, weights) = &self.actions_by_kind[profile.kind_index()];
        let spec = &ACTIONS[allowed[weights.sample(&mut self.rng)]];

        let id = uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid();
        let offset_ms = next_offset_ms(&mut self.span, &mut self.rng);
        let time = (self.base_time - TimeDelta::milliseconds(offset_ms))
            .to_offset(time::UtcOffset::UTC)
            .format(RFC3339_MS)
            .expect("a UTC time always formats");

        let session_id = profile.interactive.then(|| {
            // A person holds a couple of sessions at once (laptop, phone).
            let session = self.rng.gen_range(0..2u64);
            format!("sess_{:012x}", mix(profile.session_salt ^ session) >> 16)
        });
        let actor = Actor {
            id: profile.id.clone(),
            kind: profile.kind_name(),
            ip: profile.ip.clone(),
            user_agent: profile.user_agent,
            session_id,
        };

        let resource = if spec.resource == ResKind::SelfUser {
            Resource {
                kind: "USER",
                id: profile.id.clone(),
                name: profile.full_name(),
            }
        } else {
            let kind_index = RES_KINDS
                .iter()
                .position(|k| *k == spec.resource)
                .expect("listed");
            let rank = self.resource_zipf[kind_index].sample(&mut self.rng) as u64;
            match self.actors.get(rank as usize - 1) {
                // The most popular accounts are also the most acted upon (by admins, support).
                Some(target) if spec.resource == ResKind::User && target.kind == USER => Resource {
                    kind: "USER",
                    id: target.id.clone(),
                    name: target.full_name(),
                },
                _ => spec.resource.resource(rank),
            }
        };

        let (outcome, reason) = spec.outcome_profile.draw(&mut self.rng);
        let mut metadata = Map::new();
        metadata.insert("region".into(), profile.region.into());
        let (before, after) = if outcome == Outcome::Success.as_str() {
            spec.change
                .snapshots(&mut self.rng, profile, &resource, &mut metadata)
        } else {
            (None, None)
        };
        spec.details(&mut self.rng, profile, &mut metadata);

        let mut request_id = String::with_capacity(16);
        request_id.push_str("req_");
        push_hex(&mut request_id, &self.rng.gen::<[u8; 6]>());
        let mut trace_id = String::with_capacity(32);
        push_hex(&mut trace_id, &self.rng.gen::<[u8; 16]>());

        Event {
            id,
            tenant: self.tenant.clone(),
            time,
            actor,
            action: spec.name,
            category: spec.category,
            resource,
            outcome,
            reason,
            request_id,
            trace_id,
            before,
            after,
            metadata,
        }
    }

    /// The next event as compact JSON bytes, `id` first.
    pub fn next_json(&mut self) -> Vec<u8> {
        self.next_event().to_json()
    }

    /// `n` events as one JSON array, the body of a batched `POST /v1/events`.
    pub fn json_array(&mut self, n: usize) -> Vec<u8> {
        self.json_array_spans(n).0
    }

    /// [`Self::json_array`] plus, for each event, where it starts and ends in the array.
    pub fn json_array_spans(&mut self, n: usize) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut out = Vec::with_capacity(n * 500 + 2);
        let mut spans = Vec::with_capacity(n);
        out.push(b'[');
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            let start = out.len();
            out.extend_from_slice(&self.next_json());
            spans.push(start..out.len());
        }
        out.push(b']');
        (out, spans)
    }

    /// `n` events as newline-delimited JSON (JSON Lines), one event per line.
    pub fn ndjson(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n * 500);
        for _ in 0..n {
            out.extend_from_slice(&self.next_json());
            out.push(b'\n');
        }
        out
    }
}

/// Milliseconds before the base time at which the next event falls.
fn next_offset_ms(span: &mut Option<TimeSpan>, rng: &mut StdRng) -> i64 {
    match span {
        None => rng.gen_range(0..TIME_WINDOW_MS),
        Some(span) => {
            let k = span.emitted;
            span.emitted += 1;
            if k >= span.events {
                return 0;
            }
            // Slot k is [k·span/events, (k+1)·span/events) in whole milliseconds, so
            // slots never share a millisecond when they are at least one wide.
            let (span_ms, events) = (span.span_ms as u128, span.events as u128);
            let lo = (k as u128 * span_ms / events) as i64;
            let hi = ((k as u128 + 1) * span_ms / events) as i64;
            let after_start = lo + rng.gen_range(0..(hi - lo).max(1));
            (span.span_ms - after_start).max(0)
        }
    }
}

/// A fresh random event id, hyphenated and lowercase, as in generated events.
pub fn fresh_id(rng: &mut impl Rng) -> [u8; 36] {
    let mut buf = [0u8; 36];
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf);
    buf
}

fn zipf(n: u64) -> Zipf<f64> {
    Zipf::new(n, ZIPF_EXPONENT).expect("population and exponent are valid")
}

/// SplitMix64 finaliser: cheap, well-mixed, and stable, so names derived from a rank never
/// change between runs or versions.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Spreads popularity ranks over the id space so that the busiest user is not `user-1`;
/// multiplying by a unit modulo a prime keeps the numbers distinct.
fn spread(rank: u64) -> u64 {
    rank * 48_271 % 1_000_003
}

fn pick<T: Copy>(items: &[T], key: u64) -> T {
    items[(key % items.len() as u64) as usize]
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// Popularity ranks that always belong to service accounts.
const BUSIEST_SERVICES: u64 = 3;

// Actor kinds, as bits so that an action can list every kind allowed to perform it.
const USER: u8 = 1;
const SERVICE: u8 = 2;
const SYSTEM: u8 = 4;

#[derive(Debug, Clone)]
struct ActorProfile {
    id: String,
    kind: u8,
    ip: String,
    user_agent: Option<&'static str>,
    first: &'static str,
    last: &'static str,
    email: String,
    phone: String,
    region: &'static str,
    session_salt: u64,
    /// Signs in through a browser or app, so its events carry a session.
    interactive: bool,
}

impl ActorProfile {
    fn new(rank: u64, rng: &mut StdRng) -> Self {
        let number = spread(rank + 1);
        // The busiest actors in a real audit trail are integrations and service accounts, not
        // people; pinning the head of the distribution also keeps the event mix (and size)
        // from swinging with the seed.
        let kind = if rank < BUSIEST_SERVICES {
            SERVICE
        } else {
            match rng.gen_range(0..100) {
                0..=77 => USER,
                78..=93 => SERVICE,
                _ => SYSTEM,
            }
        };
        let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())];
        let domain = EMAIL_DOMAINS[rng.gen_range(0..EMAIL_DOMAINS.len())];
        let (id, ip, user_agent, interactive) = match kind {
            USER => {
                let ip = if rng.gen_bool(0.12) {
                    format!(
                        "2001:db8:{:x}:{:x}::{:x}",
                        rng.gen::<u16>(),
                        rng.gen::<u16>(),
                        rng.gen::<u16>()
                    )
                } else {
                    let first_octet = PUBLIC_OCTETS[rng.gen_range(0..PUBLIC_OCTETS.len())];
                    format!(
                        "{first_octet}.{}.{}.{}",
                        rng.gen::<u8>(),
                        rng.gen::<u8>(),
                        rng.gen_range(1..255)
                    )
                };
                let (ua, interactive) = USER_AGENTS[rng.gen_range(0..USER_AGENTS.len())];
                (format!("user-{number}"), ip, Some(ua), interactive)
            }
            SERVICE => {
                let name = SERVICES[rng.gen_range(0..SERVICES.len())];
                let ip = format!(
                    "10.{}.{}.{}",
                    rng.gen_range(0..32),
                    rng.gen::<u8>(),
                    rng.gen_range(1..255)
                );
                (
                    format!("svc-{}-{}", name.0, number % 100),
                    ip,
                    Some(name.1),
                    false,
                )
            }
            _ => {
                let job = SYSTEM_JOBS[rng.gen_range(0..SYSTEM_JOBS.len())];
                let ip = format!("10.250.{}.{}", rng.gen::<u8>(), rng.gen_range(1..255));
                (format!("system-{job}"), ip, None, false)
            }
        };
        Self {
            id,
            kind,
            ip,
            user_agent,
            first,
            last,
            email: format!("{}.{}@{domain}", first.to_lowercase(), last.to_lowercase()),
            phone: format!(
                "+1-{}-555-01{:02}",
                rng.gen_range(201..990),
                rng.gen_range(0..100)
            ),
            region: REGIONS[rng.gen_range(0..REGIONS.len())],
            session_salt: rng.gen(),
            interactive,
        }
    }

    /// The position of the kind in [`ActorType::ALL`].
    fn kind_index(&self) -> usize {
        match self.kind {
            USER => 0,
            SERVICE => 1,
            _ => 2,
        }
    }

    fn kind_name(&self) -> &'static str {
        ActorType::NAMES[self.kind_index()]
    }

    fn full_name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
}

/// Resource types. `SelfUser` is the acting person's own account (logins, password changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResKind {
    SelfUser,
    User,
    Document,
    Order,
    Payment,
    Report,
    Role,
    Setting,
    ApiKey,
}

/// The resource types with their own populations, in the order of `resource_zipf`.
const RES_KINDS: [ResKind; 8] = [
    ResKind::User,
    ResKind::Document,
    ResKind::Order,
    ResKind::Payment,
    ResKind::Report,
    ResKind::Role,
    ResKind::Setting,
    ResKind::ApiKey,
];

impl ResKind {
    /// Sizes sum to [`RESOURCES`].
    fn population(self) -> u64 {
        match self {
            ResKind::SelfUser | ResKind::User => 20_000,
            ResKind::Document => 45_000,
            ResKind::Order => 25_000,
            ResKind::Payment => 8_000,
            ResKind::Report => 1_300,
            ResKind::Role => 50,
            ResKind::Setting => 150,
            ResKind::ApiKey => 500,
        }
    }

    /// The resource of popularity `rank` (from 1); the same rank always names the same one.
    fn resource(self, rank: u64) -> Resource {
        let key = mix(rank ^ ((self as u64) << 40));
        let number = spread(rank);
        let (kind, id, name) = match self {
            ResKind::SelfUser | ResKind::User => (
                "USER",
                format!("user-{number}"),
                format!("{} {}", pick(FIRST_NAMES, key), pick(LAST_NAMES, key >> 16)),
            ),
            ResKind::Document => (
                "DOCUMENT",
                format!("doc_{number}"),
                format!(
                    "{} {}.{}",
                    pick(ADJECTIVES, key),
                    pick(DOC_NOUNS, key >> 16),
                    pick(DOC_EXTS, key >> 32)
                ),
            ),
            ResKind::Order => (
                "ORDER",
                format!("ord_{number}"),
                format!("Order #{}", 100_000 + number),
            ),
            ResKind::Payment => (
                "PAYMENT",
                format!("pay_{number}"),
                format!("Invoice INV-{}", 20_000 + rank),
            ),
            ResKind::Report => (
                "REPORT",
                format!("rpt_{number}"),
                format!("{} {}", pick(REPORTS, key), 2020 + key % 7),
            ),
            ResKind::Role => (
                "ROLE",
                format!("role_{rank}"),
                pick(ROLES, rank).to_string(),
            ),
            ResKind::Setting => (
                "SETTING",
                format!("set_{rank}"),
                pick(SETTINGS, rank).to_string(),
            ),
            ResKind::ApiKey => (
                "API_KEY",
                format!("key_{number}"),
                format!("{} key", pick(SERVICES, key).0),
            ),
        };
        Resource { kind, id, name }
    }
}

/// How often an action fails, and why.
#[derive(Debug, Clone, Copy)]
enum OutcomeProfile {
    /// Writes and reads by authenticated callers: rarely anything but success.
    Normal,
    /// Logins: a steady trickle of wrong passwords, the pattern brute-force alerts look for.
    Login,
    /// Authorization checks: a sizeable share is denied.
    Authz,
}

impl OutcomeProfile {
    fn draw(self, rng: &mut StdRng) -> (&'static str, Option<&'static str>) {
        let failure_reasons: &[&'static str] = match self {
            OutcomeProfile::Login => &["invalid_password", "account_locked", "mfa_failed"],
            _ => &["validation_error", "conflict", "upstream_timeout"],
        };
        let (failure, unauthorized, denied) = match self {
            OutcomeProfile::Normal => (2, 1, 2),
            OutcomeProfile::Login => (9, 2, 1),
            OutcomeProfile::Authz => (1, 2, 22),
        };
        let roll = rng.gen_range(0..100);
        let pick_reason = |rng: &mut StdRng, reasons: &[&'static str]| {
            Some(reasons[rng.gen_range(0..reasons.len())])
        };
        if roll < failure {
            (Outcome::Failure.as_str(), pick_reason(rng, failure_reasons))
        } else if roll < failure + unauthorized {
            (
                Outcome::Unauthorized.as_str(),
                pick_reason(rng, &["token_expired", "invalid_token", "mfa_required"]),
            )
        } else if roll < failure + unauthorized + denied {
            (
                Outcome::Denied.as_str(),
                pick_reason(
                    rng,
                    &["insufficient_scope", "policy_violation", "ip_not_allowed"],
                ),
            )
        } else {
            (Outcome::Success.as_str(), None)
        }
    }
}

/// Which snapshots a successful action records.
#[derive(Debug, Clone, Copy)]
enum Change {
    None,
    Password,
    Mfa,
    Profile,
    CreateUser,
    DeleteUser,
    CreateDocument,
    Document,
    Order,
    Refund,
    Role,
    Setting,
}

impl Change {
    fn snapshots(
        self,
        rng: &mut StdRng,
        actor: &ActorProfile,
        resource: &Resource,
        metadata: &mut Map<String, Value>,
    ) -> (Option<Value>, Option<Value>) {
        let (before, after) = match self {
            Change::None => return (None, None),
            Change::Password => (
                json!({"password_age_days": rng.gen_range(30..400)}),
                json!({"password_age_days": 0}),
            ),
            Change::Mfa => (
                json!({"mfa": "none"}),
                json!({"mfa": "sms", "phone": actor.phone}),
            ),
            Change::Profile => {
                let domain = EMAIL_DOMAINS[rng.gen_range(0..EMAIL_DOMAINS.len())];
                let first = actor.first.to_lowercase();
                let email = format!("{first}{}@{domain}", rng.gen_range(1..99));
                (
                    json!({"email": actor.email, "phone": actor.phone}),
                    json!({"email": email, "phone": actor.phone}),
                )
            }
            Change::CreateUser => {
                let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
                let last = LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())];
                let name = format!("{first} {last}");
                let email = format!(
                    "{}.{}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                );
                return (
                    None,
                    Some(json!({"name": name, "email": email, "role": "viewer"})),
                );
            }
            Change::DeleteUser => {
                return (
                    Some(json!({"name": resource.name, "status": "active"})),
                    None,
                );
            }
            Change::CreateDocument => return (None, Some(json!({"visibility": "private"}))),
            Change::Document => {
                let (b, a) = pick_pair(rng, &["private", "team", "org", "public"]);
                (json!({"visibility": b}), json!({"visibility": a}))
            }
            Change::Order => {
                let (b, a) = pick_pair(
                    rng,
                    &["pending", "paid", "shipped", "delivered", "cancelled"],
                );
                (json!({"status": b}), json!({"status": a}))
            }
            Change::Refund => {
                let cents = rng.gen_range(500..50_000);
                metadata.insert("amount_cents".into(), cents.into());
                (json!({"status": "captured"}), json!({"status": "refunded"}))
            }
            Change::Role => {
                let (b, a) = pick_pair(rng, ROLES);
                metadata.insert(
                    "target_user".into(),
                    format!("user-{}", rng.gen_range(1..1_000_003)).into(),
                );
                (json!({"role": b}), json!({"role": a}))
            }
            Change::Setting => {
                let on = rng.gen_bool(0.5);
                (json!({"value": on}), json!({"value": !on}))
            }
        };
        (Some(before), Some(after))
    }
}

fn pick_pair(rng: &mut StdRng, items: &[&'static str]) -> (&'static str, &'static str) {
    let b = rng.gen_range(0..items.len());
    let a = (b + rng.gen_range(1..items.len())) % items.len();
    (items[b], items[a])
}

/// Extra `metadata` some actions carry.
#[derive(Debug, Clone, Copy)]
enum Details {
    None,
    Login,
    Export,
    PiiView,
    Payment,
}

struct ActionSpec {
    name: &'static str,
    category: &'static str,
    resource: ResKind,
    weight: u32,
    actors: u8,
    outcome_profile: OutcomeProfile,
    change: Change,
    details: Details,
}

impl ActionSpec {
    fn details(&self, rng: &mut StdRng, actor: &ActorProfile, metadata: &mut Map<String, Value>) {
        match self.details {
            Details::None => {}
            Details::Login => {
                metadata.insert(
                    "method".into(),
                    pick(&["password", "sso", "passkey"], rng.gen()).into(),
                );
                metadata.insert("email".into(), actor.email.clone().into());
            }
            Details::Export => {
                metadata.insert(
                    "format".into(),
                    pick(&["csv", "xlsx", "json"], rng.gen()).into(),
                );
                metadata.insert("row_count".into(), rng.gen_range(10..50_000).into());
            }
            Details::PiiView => {
                metadata.insert("fields".into(), json!(["email", "phone", "address"]));
            }
            Details::Payment => {
                metadata.insert("amount_cents".into(), rng.gen_range(500..250_000).into());
                metadata.insert(
                    "currency".into(),
                    pick(&["USD", "EUR", "GBP"], rng.gen()).into(),
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    category: &'static str,
    resource: ResKind,
    weight: u32,
    actors: u8,
    outcome_profile: OutcomeProfile,
    change: Change,
    details: Details,
) -> ActionSpec {
    ActionSpec {
        name,
        category,
        resource,
        weight,
        actors,
        outcome_profile,
        change,
        details,
    }
}

use Change as C;
use Details as D;
use OutcomeProfile as O;
use ResKind as R;

/// The action catalogue with relative frequencies; reads and logins dominate, as in practice.
#[rustfmt::skip]
const ACTIONS: &[ActionSpec] = &[
    //   action                  category    resource     weight  actors                   outcomes   snapshots            metadata
    spec("user.login",           "LOGIN",    R::SelfUser, 180, USER,                     O::Login,  C::None,             D::Login),
    spec("user.logout",          "LOGOUT",   R::SelfUser,  60, USER,                     O::Normal, C::None,             D::None),
    spec("user.token.refresh",   "LOGIN",    R::SelfUser,  40, USER,                     O::Login,  C::None,             D::None),
    spec("user.password.change", "UPDATE",   R::SelfUser,   6, USER,                     O::Normal, C::Password,         D::None),
    spec("user.mfa.enroll",      "UPDATE",   R::SelfUser,   4, USER,                     O::Normal, C::Mfa,              D::None),
    spec("user.profile.update",  "UPDATE",   R::SelfUser,  10, USER,                     O::Normal, C::Profile,          D::None),
    spec("user.create",          "CREATE",   R::User,       5, USER | SERVICE,           O::Normal, C::CreateUser,       D::None),
    spec("user.delete",          "DELETE",   R::User,       1, USER | SYSTEM,            O::Normal, C::DeleteUser,       D::None),
    spec("user.pii.view",        "VIEW_PII", R::User,      25, USER,                     O::Normal, C::None,             D::PiiView),
    spec("user.impersonate",     "ADMIN",    R::User,       1, USER,                     O::Authz,  C::None,             D::None),
    spec("document.read",        "READ",     R::Document, 200, USER | SERVICE,           O::Normal, C::None,             D::None),
    spec("document.create",      "CREATE",   R::Document,  30, USER | SERVICE,           O::Normal, C::CreateDocument,   D::None),
    spec("document.update",      "UPDATE",   R::Document,  40, USER,                     O::Normal, C::Document,         D::None),
    spec("document.delete",      "DELETE",   R::Document,   5, USER,                     O::Normal, C::None,             D::None),
    spec("document.share",       "AUTHZ",    R::Document,  12, USER,                     O::Authz,  C::Document,         D::None),
    spec("order.create",         "CREATE",   R::Order,     60, USER | SERVICE,           O::Normal, C::None,             D::Payment),
    spec("order.read",           "READ",     R::Order,     80, USER | SERVICE,           O::Normal, C::None,             D::None),
    spec("order.update",         "UPDATE",   R::Order,     30, USER | SERVICE,           O::Normal, C::Order,            D::None),
    spec("payment.capture",      "CREATE",   R::Payment,   40, SERVICE,                  O::Normal, C::None,             D::Payment),
    spec("payment.refund",       "UPDATE",   R::Payment,    8, USER | SERVICE,           O::Normal, C::Refund,           D::None),
    spec("payment.method.view",  "VIEW_PII", R::Payment,   10, USER,                     O::Normal, C::None,             D::PiiView),
    spec("report.view",          "READ",     R::Report,    40, USER,                     O::Normal, C::None,             D::None),
    spec("report.export",        "EXPORT",   R::Report,     8, USER,                     O::Normal, C::None,             D::Export),
    spec("data.export",          "EXPORT",   R::Report,     3, USER | SERVICE | SYSTEM,  O::Normal, C::None,             D::Export),
    spec("role.grant",           "AUTHZ",    R::Role,       4, USER | SYSTEM,            O::Authz,  C::Role,             D::None),
    spec("role.revoke",          "AUTHZ",    R::Role,       2, USER | SYSTEM,            O::Normal, C::Role,             D::None),
    spec("permission.check",     "AUTHZ",    R::Document,  30, SERVICE,                  O::Authz,  C::None,             D::None),
    spec("apikey.create",        "ADMIN",    R::ApiKey,     2, USER,                     O::Normal, C::None,             D::None),
    spec("apikey.rotate",        "ADMIN",    R::ApiKey,     2, USER | SYSTEM,            O::Normal, C::None,             D::None),
    spec("config.update",        "CONFIG",   R::Setting,    3, USER | SYSTEM,            O::Normal, C::Setting,          D::None),
];

const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
    "Kerstin", "Liam", "Maria", "Nikhil", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tomoko",
    "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Garcia",
    "Nguyen",
    "Müller",
    "Rossi",
    "Kowalski",
    "Okafor",
    "Tanaka",
    "Dubois",
    "Silva",
    "Johansson",
    "Patel",
    "Cohen",
    "Ivanova",
    "Murphy",
    "Kim",
    "Haddad",
    "Novak",
];
const EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net", "corp.example"];
const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
];
/// First octets of ordinary public IPv4 space, so addresses look like real clients.
const PUBLIC_OCTETS: &[u8] = &[24, 31, 45, 62, 73, 81, 92, 104, 151, 176, 185, 203, 212];
/// User agents of people, and whether they are interactive (browser or app, so with a session)
/// rather than scripts calling with a personal token. Listed as often as they occur: in a B2B
/// product most audited calls come from apps, CLIs and scripts rather than a desktop browser.
const USER_AGENTS: &[(&str, bool)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", true),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0", true),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", true),
    ("AcmeApp/5.12.1 (Android 14; Pixel 8)", true),
    ("AcmeApp/5.12.1 (Android 15; SM-S921B)", true),
    ("AcmeApp/5.12.0 (iOS 18.1)", true),
    ("AcmeApp/5.11.4 (iOS 17.6)", true),
    ("tally-cli/0.4.2", false),
    ("curl/8.5.0", false),
    ("python-requests/2.32.3", false),
    ("Go-http-client/2.0", false),
    ("terraform-provider-acme/2.3.1", false),
];
/// Service names with the SDK user agent they call with.
const SERVICES: &[(&str, &str)] = &[
    ("billing-worker", "billing-worker/3.2.1"),
    ("orders-api", "orders-api/1.48.0"),
    ("docs-indexer", "docs-indexer/2.0.3"),
    ("auth-gateway", "envoy/1.31"),
    ("reporting", "reporting/0.9.8"),
];
const SYSTEM_JOBS: &[&str] = &["retention", "scheduler", "key-rotation", "provisioner"];
const ADJECTIVES: &[&str] = &[
    "Q3", "Draft", "Final", "Signed", "Internal", "Board", "Customer",
];
const DOC_NOUNS: &[&str] = &[
    "contract", "roadmap", "invoice", "budget", "minutes", "policy", "design",
];
const DOC_EXTS: &[&str] = &["pdf", "docx", "xlsx", "md"];
const REPORTS: &[&str] = &[
    "Revenue by region",
    "Active users",
    "Churn cohort",
    "PHI access",
    "SOX controls",
];
const ROLES: &[&str] = &[
    "viewer",
    "editor",
    "admin",
    "billing-admin",
    "auditor",
    "owner",
];
const SETTINGS: &[&str] = &[
    "sso.enforced",
    "mfa.required",
    "session.timeout",
    "ip.allowlist",
    "export.enabled",
];

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use time::macros::datetime;

    use super::*;

    fn generator(seed: u64) -> EventGenerator {
        EventGenerator::new(seed).with_base_time(datetime!(2026-11-22 10:00 UTC))
    }

    #[test]
    fn events_average_between_300_and_500_bytes() {
        let mut gen = generator(1);
        let sizes: Vec<usize> = (0..20_000).map(|_| gen.next_json().len()).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!(
            (300.0..=500.0).contains(&mean),
            "mean event size {mean:.1} bytes"
        );
        assert!(
            *sizes.iter().max().unwrap() < 1_000,
            "no event should be huge"
        );
    }

    #[test]
    fn ids_are_unique_and_first() {
        let mut gen = generator(2);
        let mut ids = HashSet::new();
        for _ in 0..50_000 {
            let json = gen.next_json();
            let id = std::str::from_utf8(&json[ID_RANGE]).unwrap().to_string();
            let value: Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(value["id"], id.as_str(), "the id must sit at ID_RANGE");
            assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 4);
            assert!(ids.insert(id), "duplicate id");
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = generator(42).json_array(500);
        let b = generator(42).json_array(500);
        let c = generator(43).json_array(500);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn actors_and_resources_are_skewed() {
        let mut gen = generator(3);
        let mut actors: HashMap<String, u32> = HashMap::new();
        let mut documents: HashMap<String, u32> = HashMap::new();
        for _ in 0..50_000 {
            let event = gen.next_event();
            *actors.entry(event.actor.id).or_default() += 1;
            if event.resource.kind == "DOCUMENT" {
                *documents.entry(event.resource.id).or_default() += 1;
            }
        }
        for (what, counts) in [("actor", actors), ("document", documents)] {
            let mut counts: Vec<u32> = counts.into_values().collect();
            counts.sort_unstable();
            let top = *counts.last().unwrap();
            let median = counts[counts.len() / 2];
            assert!(
                top >= 50 * median,
                "{what}: top {top} vs median {median}: no Zipf skew"
            );
        }
    }

    #[test]
    fn events_follow_schema_v1() {
        let mut gen = generator(4).with_tenant(Some("acme".into()));
        let categories = tally_event::WELL_KNOWN_CATEGORIES;
        let mut seen_updates_with_snapshots = 0;
        let mut seen_failures = 0;
        for _ in 0..5_000 {
            let json = gen.next_json();
            let v: Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(v["tenant"], "acme");
            let time = v["time"].as_str().unwrap();
            assert_eq!(time.len(), 24, "{time}");
            OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).unwrap();
            assert!(
                ("2026-11-22T09:55:00.000Z"..="2026-11-22T10:00:00.000Z").contains(&time),
                "{time}"
            );
            assert!(ActorType::NAMES.contains(&v["actor"]["type"].as_str().unwrap()));
            v["actor"]["ip"]
                .as_str()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .unwrap();
            assert!(categories.contains(&v["category"].as_str().unwrap()));
            let action = v["action"].as_str().unwrap();
            assert!(
                action.contains('.') && action.chars().all(|c| c.is_ascii_lowercase() || c == '.')
            );
            let outcome = v["outcome"].as_str().unwrap();
            assert!(Outcome::NAMES.contains(&outcome));
            assert_eq!(v.get("reason").is_some(), outcome != "SUCCESS");
            assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
            assert!(v["metadata"]["region"].is_string());
            if v["category"] == "UPDATE" && outcome == "SUCCESS" {
                assert!(v["before"].is_object() && v["after"].is_object(), "{v}");
                seen_updates_with_snapshots += 1;
            }
            seen_failures += usize::from(outcome != "SUCCESS");
        }
        assert!(seen_updates_with_snapshots > 100);
        assert!(
            (100..1_000).contains(&seen_failures),
            "{seen_failures} failures in 5,000"
        );
    }

    /// Generated events carry only fields of the schema registry, and every field a client may
    /// send except [`NOT_GENERATED`]: a field added to the schema fails here until the
    /// generator fills it or says why not.
    #[test]
    fn events_carry_the_registrys_fields() {
        use tally_event::fields::{self, Input, FIELDS};

        fn leaves(prefix: &str, v: &Value, out: &mut HashSet<String>) {
            for (k, v) in v.as_object().unwrap() {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                // Containers (`actor`, `resource`) are not fields; field values are leaves
                // even when they are objects (`before`, `metadata`).
                if v.is_object() && fields::field(&path).is_none() {
                    leaves(&path, v, out);
                } else {
                    out.insert(path);
                }
            }
        }
        let mut gen = generator(10).with_tenant(Some("acme".into()));
        let mut seen = HashSet::new();
        for _ in 0..5_000 {
            let v: Value = serde_json::from_slice(&gen.next_json()).unwrap();
            leaves("", &v, &mut seen);
        }
        for name in &seen {
            let f = fields::field(name).unwrap_or_else(|| panic!("{name} is not a schema field"));
            assert_ne!(f.input, Input::Server, "{name} is written by the server");
        }
        for f in FIELDS.iter().filter(|f| f.input != Input::Server) {
            assert_eq!(
                seen.contains(f.name),
                !NOT_GENERATED.contains(&f.name),
                "{}: generated, or listed in NOT_GENERATED",
                f.name
            );
        }
    }

    /// The events must be ones Tally accepts, or the benchmark would measure rejections.
    #[test]
    fn tally_event_accepts_every_event() {
        let base = datetime!(2026-11-22 10:00 UTC);
        let ctx = tally_event::IngestContext {
            received_at: base,
            key_id: "bench",
            default_tenant: Some("acme"),
            max_future_skew: time::Duration::ZERO,
        };
        for tenant in [None, Some("globex".to_string())] {
            let mut gen = generator(8).with_tenant(tenant.clone());
            let body = gen.json_array(5_000);
            let inputs = tally_event::parse_body(&body, tally_event::BodyFormat::Json, 5_000)
                .unwrap_or_else(|e| panic!("body rejected: {e}"));
            assert_eq!(inputs.len(), 5_000);
            for input in inputs {
                let valid = tally_event::validate(input, &ctx)
                    .unwrap_or_else(|errors| panic!("event rejected: {errors:?}"));
                assert!(valid.id_supplied);
                assert_eq!(valid.tenant, tenant.as_deref().unwrap_or("acme"));
            }
        }
    }

    #[test]
    fn a_time_span_spreads_events_in_increasing_order() {
        let base = datetime!(2026-11-22 10:00 UTC);
        let span = std::time::Duration::from_secs(120 * 86_400);
        let mut gen = generator(9).with_time_span(span, 10_000);
        let times: Vec<String> = (0..10_000).map(|_| gen.next_event().time).collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing, so leaf order is time order"
        );
        let parse =
            |t: &str| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339);
        let first = parse(&times[0]).unwrap();
        let last = parse(times.last().unwrap()).unwrap();
        assert!(first >= base - TimeDelta::days(120) && first < base - TimeDelta::days(119));
        assert!(last < base && last > base - TimeDelta::hours(19));
        // Evenly spread: a quarter of the span holds about a quarter of the events.
        let cutoff = base - TimeDelta::days(30);
        let recent = times.iter().filter(|t| parse(t).unwrap() >= cutoff).count();
        assert!((2_400..=2_600).contains(&recent), "{recent}");
        // Past the announced count, events are stamped at the base time.
        assert_eq!(parse(&gen.next_event().time).unwrap(), base);
    }

    #[test]
    fn tenant_is_absent_unless_asked() {
        let v: Value = serde_json::from_slice(&generator(5).next_json()).unwrap();
        assert!(v.get("tenant").is_none());
    }

    #[test]
    fn ndjson_has_one_event_per_line() {
        let body = generator(6).ndjson(25);
        let lines: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 25);
        for line in lines {
            serde_json::from_slice::<Value>(line).unwrap();
        }
    }
}
