//! The auditors are audited: every failed authentication (401) and refused authorisation (403)
//! becomes an audit event, so that brute force against Tally itself is visible and can be
//! alerted on, without letting a misbehaving client fill the log with denials.
//!
//! Where: a request whose token names an existing key is recorded in that key's tenant's log
//! (the tenant whose credential misbehaves), or in the system tenant's for a key of every
//! tenant; a request with no key, a malformed one or an unknown key id in the system tenant's.
//! The request's own claims (a `tenant` parameter) never choose the log: an anonymous caller
//! cannot write into a tenant's log by naming it.
//!
//! Aggregation: denials are grouped by (log, status, error code, key id, client IP, method and
//! path). The first
//! of a group in a window is recorded at once (`count: 1`); the rest of the window is counted
//! and recorded as one event when the window closes (`count: n`, first and last time). At most
//! [`DenialSettings::max_groups`] groups per window; beyond, further denials of a log share one
//! overflow group without key or IP. So a flood costs at most two events per group and window.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;

use crate::admin::SYSTEM_TENANT;
use crate::aggregate::{rfc3339, AggregateSettings, Aggregator};
use crate::audit;

/// One refused request.
#[derive(Debug, Clone)]
pub struct Denial {
    /// 401 or 403.
    pub status: u16,
    /// The error code answered (`unauthorized`, `forbidden`, `tenant_disabled`, …).
    pub code: &'static str,
    /// The key the token named, when it names an existing key.
    pub key: Option<KnownKey>,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent`, at most 256 characters.
    pub user_agent: Option<String>,
    /// `GET /v1/events`, … (the path without its query, which may hold search terms).
    pub request: String,
}

/// A key a refused request named.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KnownKey {
    /// Its id.
    pub id: String,
    /// Its tenant, or `*`.
    pub tenant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Group {
    log: String,
    status: u16,
    code: &'static str,
    key_id: Option<String>,
    ip: Option<IpAddr>,
    request: String,
}

/// Metrics of the denials.
#[derive(Debug, Clone, Default)]
pub struct DenialMetrics {
    /// Refused requests, by status.
    pub denials: Family<Vec<(String, String)>, Counter>,
    /// Audit events written for them.
    pub events: Counter,
    /// Audit events that could not be written (the log refused them).
    pub lost: Counter,
}

/// Records denials, aggregated (see the module's docs); [`DenialRecorder::flush`] closes a
/// window.
pub struct DenialRecorder {
    log: tally_store::Log,
    window: Duration,
    groups: Aggregator<Group, LatestAgent>,
    metrics: DenialMetrics,
}

/// The user agent of a group's latest refusal.
#[derive(Debug, Default)]
struct LatestAgent(Option<String>);

impl DenialRecorder {
    /// A recorder writing into `log`.
    pub fn new(log: tally_store::Log, settings: &AggregateSettings) -> Arc<DenialRecorder> {
        Arc::new(DenialRecorder {
            log,
            window: settings.window,
            groups: Aggregator::new(settings.max_groups),
            metrics: DenialMetrics::default(),
        })
    }

    /// Registers the metrics under `registry` (prefix `tally_http`).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "denials",
            "Requests refused with 401 or 403, by status",
            self.metrics.denials.clone(),
        );
        registry.register(
            "denial_events",
            "Audit events written for refused requests (aggregated)",
            self.metrics.events.clone(),
        );
        registry.register(
            "denial_events_lost",
            "Audit events of refused requests the log could not take",
            self.metrics.lost.clone(),
        );
    }

    /// Notes one refused request: written at once when it opens a group, else counted.
    pub async fn note(&self, denial: Denial) {
        self.metrics
            .denials
            .get_or_create(&vec![("status".to_string(), denial.status.to_string())])
            .inc();
        let log = match &denial.key {
            Some(key) if key.tenant != "*" => key.tenant.clone(),
            _ => SYSTEM_TENANT.to_string(),
        };
        let group = Group {
            log,
            status: denial.status,
            code: denial.code,
            key_id: denial.key.as_ref().map(|k| k.id.clone()),
            ip: denial.ip,
            request: denial.request.clone(),
        };
        let agent = denial.user_agent.clone();
        let (group, first) = self.groups.note(
            group,
            // Too many distinct callers in this window: the rest share one group per log.
            |g| Group {
                log: g.log,
                status: g.status,
                code: "overflow",
                key_id: None,
                ip: None,
                request: String::new(),
            },
            |latest| latest.0 = agent,
        );
        if first {
            let now = time::OffsetDateTime::now_utc();
            self.write(&group, denial.user_agent.as_deref(), 1, now, now)
                .await;
        }
    }

    /// Writes what the window counted and opens a new window.
    pub async fn flush(&self) {
        for (group, p) in self.groups.close_window() {
            self.write(
                &group,
                p.merged.0.as_deref(),
                p.unwritten,
                p.first_at,
                p.last_at,
            )
            .await;
        }
    }

    async fn write(
        &self,
        group: &Group,
        user_agent: Option<&str>,
        count: u64,
        first_at: time::OffsetDateTime,
        last_at: time::OffsetDateTime,
    ) {
        let (action, category, outcome) = if group.status == 401 {
            ("tally.auth.failed", "LOGIN", "UNAUTHORIZED")
        } else {
            ("tally.auth.denied", "AUTHZ", "DENIED")
        };
        let mut actor = match &group.key_id {
            Some(id) => {
                json!({"id": format!("{}{id}", tally_event::KEY_ACTOR_PREFIX), "type": "service"})
            }
            None => json!({"id": "unauthenticated"}),
        };
        if let Some(ip) = group.ip {
            actor["ip"] = ip.to_string().into();
        }
        if let Some(ua) = user_agent {
            if group.code != "overflow" {
                actor["user_agent"] = ua.into();
            }
        }
        let body = json!({
            "tenant": group.log,
            "actor": actor,
            "action": action,
            "category": category,
            "outcome": outcome,
            "resource": {"type": "API", "id": if group.request.is_empty() { "*" } else { &group.request }},
            "metadata": {
                "status": group.status,
                "code": group.code,
                "key_id": group.key_id,
                "count": count,
                "first_at": rfc3339(first_at),
                "last_at": rfc3339(last_at),
                "window_seconds": self.window.as_secs(),
            },
        });
        match audit::append_server_event(&self.log, &group.log, body).await {
            Ok(()) => {
                self.metrics.events.inc();
            }
            Err(e) => {
                self.metrics.lost.inc();
                tally_store::throttled_error!(
                    "denial_not_recorded",
                    "a refused request could not be recorded in the audit log: {e}"
                );
            }
        }
    }
}

/// Longest `User-Agent` kept, in characters.
const MAX_USER_AGENT: usize = 256;
/// Longest request path kept, in characters.
const MAX_REQUEST: usize = 200;

/// The layer that notes every 401 and 403 the API answers (see the module's docs).
pub(crate) async fn record_refusals(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ip = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    // Taken before the request moves on (nothing borrowing it may live across an await: its
    // body is not Sync). Cheap reference-counted copies: the strings are made only for the
    // refused requests, never on the path of the others.
    let (user_agent, authorization) = {
        let header = |name| request.headers().get(name).cloned();
        (
            header(axum::http::header::USER_AGENT),
            header(axum::http::header::AUTHORIZATION),
        )
    };
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if status != 401 && status != 403 {
        return response;
    }
    let user_agent = user_agent
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(MAX_USER_AGENT).collect::<String>());
    let authorization = authorization.as_ref().and_then(|v| v.to_str().ok());
    let target = format!("{method} {}", uri.path())
        .chars()
        .take(MAX_REQUEST)
        .collect::<String>();
    // Only a key that exists chooses the log; a made-up id is anyone's.
    let key = authorization
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .and_then(|token| token.trim().strip_prefix("tly_"))
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(id, _)| state.keys.get(id))
        .map(|k| KnownKey {
            id: k.id,
            tenant: k.tenant,
        });
    let code = response
        .extensions()
        .get::<crate::error::ErrorCode>()
        .map_or("refused", |c| c.0);
    state
        .denials
        .note(Denial {
            status,
            code,
            key,
            ip,
            user_agent,
            request: target,
        })
        .await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(status: u16, key: Option<&str>, ip: [u8; 4]) -> Denial {
        Denial {
            status,
            code: if status == 401 {
                "unauthorized"
            } else {
                "forbidden"
            },
            key: key.map(|k| KnownKey {
                id: k.to_string(),
                tenant: if k == "global" {
                    "*".into()
                } else {
                    "acme".into()
                },
            }),
            ip: Some(IpAddr::from(ip)),
            user_agent: Some("curl/8".into()),
            request: "GET /v1/events".into(),
        }
    }

    async fn recorded(log: &tally_store::Log, tenant: &str) -> Vec<serde_json::Value> {
        let Some(t) = log.tenant(tenant) else {
            return Vec::new();
        };
        t.records(0, t.size())
            .unwrap()
            .iter()
            // The record bytes are canonical JSON.
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_flood_is_one_event_per_group_and_window_and_keys_choose_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let data = tally_store::DataDir::create_or_open(dir.path()).unwrap();
        let (log, _) = tally_store::Log::open(data, tally_store::LogConfig::default()).unwrap();
        let recorder = DenialRecorder::new(
            log.clone(),
            &AggregateSettings {
                window: Duration::from_secs(3600),
                max_groups: 3,
            },
        );
        // 50 wrong tokens from one address: one event now, one for the other 49 at the flush.
        for _ in 0..50 {
            recorder.note(denial(401, None, [192, 0, 2, 1])).await;
        }
        // A tenant's key lacking a scope: in that tenant's log.
        for _ in 0..3 {
            recorder.note(denial(403, Some("k1"), [192, 0, 2, 2])).await;
        }
        // A key of every tenant: the system log.
        recorder
            .note(denial(403, Some("global"), [192, 0, 2, 3]))
            .await;
        // The group limit (3) is reached: 20 more addresses share one overflow group.
        for i in 0..20 {
            recorder.note(denial(401, None, [198, 51, 100, i])).await;
        }
        assert_eq!(recorded(&log, SYSTEM_TENANT).await.len(), 3);
        recorder.flush().await;
        let system = recorded(&log, SYSTEM_TENANT).await;
        let acme = recorded(&log, "acme").await;
        let counts = |events: &[serde_json::Value]| -> Vec<(String, u64)> {
            events
                .iter()
                .map(|e| {
                    (
                        e["action"].as_str().unwrap().to_string(),
                        e["metadata"]["count"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            counts(&system),
            [
                ("tally.auth.failed".to_string(), 1),
                ("tally.auth.denied".to_string(), 1),
                ("tally.auth.failed".to_string(), 1),
                ("tally.auth.failed".to_string(), 49),
                ("tally.auth.failed".to_string(), 19),
            ]
        );
        assert_eq!(
            counts(&acme),
            [
                ("tally.auth.denied".to_string(), 1),
                ("tally.auth.denied".to_string(), 2)
            ]
        );
        let first = &system[0];
        assert_eq!(first["outcome"], "UNAUTHORIZED");
        assert_eq!(first["category"], "LOGIN");
        assert_eq!(first["actor"]["ip"], "192.0.2.1");
        assert_eq!(first["actor"]["user_agent"], "curl/8");
        assert_eq!(acme[0]["actor"]["id"], "api-key:k1");
        assert_eq!(acme[0]["outcome"], "DENIED");
        assert_eq!(system[4]["metadata"]["code"], "overflow");
        assert!(system[4]["actor"].get("ip").is_none());
        log.shutdown();
    }
}
