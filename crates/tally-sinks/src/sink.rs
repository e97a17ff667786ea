//! A sink: a durable consumer that sends the events matching its search to one receiver,
//! in one format, from its own cursor (`DATA_DIR/consumers/sink-<name>.json`).
//!
//! Delivery is at least once, in leaf order per tenant: a batch that could not be sent is
//! sent again whole (the consumer runtime retries with backoff, and the sink's lag grows in
//! `/metrics` and `/healthz` while its receiver is down), so a receiver may see an event
//! twice after a failure; every event carries its id and leaf index to deduplicate on.

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tally_consumers::{Batch, Consumer, ConsumerError, ConsumerSettings};
use tally_event::Record;
use tally_query::{NoTokens, Query};

use crate::format::{self, Format};
use crate::transport::{self, SplunkHec, SyslogTcp, Webhook, WebhookStyle};

/// Opens records for a sink.
pub trait EventViews: Send + Sync + 'static {
    /// The record with personal values in the clear (what the sink's search is matched
    /// against), as JSON bytes.
    fn clear(&self, tenant: &str, stored: &[u8]) -> Result<Vec<u8>, String>;
    /// The record as the sink shows it: masked (personal values as tokens), or in the
    /// clear when `clear`.
    fn shown(&self, tenant: &str, stored: &[u8], clear: bool) -> Result<Vec<u8>, String>;
}

/// How personal values leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonalData {
    /// As masking tokens, as a reader without `read:pii` sees them (the default).
    #[default]
    Masked,
    /// In the clear: for a SIEM inside the same trust boundary.
    Clear,
}

/// A sink as written in a sinks file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// Names the sink (its consumer is `sink-NAME`): 1 to 59 of `a-z`, `0-9`, `-`, `_`.
    pub name: String,
    /// The receiver: `syslog+tcp://HOST:PORT` or `splunk-hec+http(s)://HOST:PORT[/PATH]`
    /// (path `/services/collector/event` by default).
    pub to: String,
    /// `json` (default), `ocsf` or `cef`.
    #[serde(default)]
    pub format: Format,
    /// Which events: a search in the query language (every event when empty).
    #[serde(default, rename = "match")]
    pub matches: String,
    /// `masked` (default) or `clear`.
    #[serde(default)]
    pub personal_data: PersonalData,
    /// Only these tenants' events (every tenant's when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
    /// Splunk: the environment variable holding the HEC token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Splunk: the index to write to (the token's default when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Webhooks: the environment variable holding the secret each request is signed with
    /// (header `Tally-Signature: t=UNIX_SECONDS,v1=HMAC-SHA256(secret, "t." + body)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// After this many failed attempts at one batch, write it to the sink's dead-letter file
    /// (`DATA_DIR/consumers/sink-NAME.dead-letter.jsonl`) and go on; without it, retry for
    /// ever (nothing is skipped, the sink lags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// A sinks file: `sinks:` and a list of [`SinkSpec`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkFile {
    /// The sinks, each name once.
    pub sinks: Vec<SinkSpec>,
}

/// A sink that cannot be used: which, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink `{sink}`, {field}: {message}")]
pub struct SinkError {
    /// The sink's name as written.
    pub sink: String,
    /// The field.
    pub field: &'static str,
    /// What is wrong and what to write.
    pub message: String,
}

/// Where a checked sink sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A syslog receiver over TCP.
    SyslogTcp(String),
    /// A Splunk HTTP Event Collector URL and its token.
    SplunkHec {
        /// The collector's URL.
        url: String,
        /// The token, read from `token_env`.
        token: String,
    },
    /// An endpoint taking one POST per event.
    Webhook {
        /// Its URL.
        url: String,
        /// Plain JSON, Slack or PagerDuty.
        style: WebhookStyle,
        /// PagerDuty's routing key (from `token_env`).
        token: Option<String>,
        /// The signing secret (from `secret_env`).
        secret: Option<String>,
    },
}

/// A checked sink.
#[derive(Debug, Clone)]
pub struct Sink {
    /// As written.
    pub spec: SinkSpec,
    /// Its search, parsed.
    pub query: Query,
    /// Its receiver.
    pub target: Target,
}

/// The consumer name of a sink.
pub fn consumer_name(sink: &str) -> String {
    format!("sink-{sink}")
}

impl Sink {
    /// Checks a sink as written; `env` reads environment variables (the token).
    pub fn new(spec: SinkSpec, env: &dyn Fn(&str) -> Option<String>) -> Result<Sink, SinkError> {
        let err = |field: &'static str, message: String| SinkError {
            sink: spec.name.clone(),
            field,
            message,
        };
        let b = spec.name.as_bytes();
        if b.is_empty()
            || b.len() > 59
            || !b[0].is_ascii_alphanumeric()
            || !b
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        {
            return Err(err(
                "name",
                "1 to 59 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
                    .into(),
            ));
        }
        let query = tally_query::parse(&spec.matches)
            .map_err(|e| err("match", format!("{} (at column {})", e.message, e.column)))?;
        if let Some(tenants) = &spec.tenants {
            if let Some(bad) = tenants.iter().find(|t| !tally_event::is_valid_tenant(t)) {
                return Err(err("tenants", format!("`{bad}` is not a tenant name")));
            }
        }
        let target = if let Some(rest) = spec.to.strip_prefix("syslog+tcp://") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
                err(
                    "to",
                    "write syslog+tcp://HOST:PORT, such as syslog+tcp://siem.internal:6514".into(),
                )
            })?;
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) || rest.contains('/')
            {
                return Err(err(
                    "to",
                    format!("`{}` is not syslog+tcp://HOST:PORT", spec.to),
                ));
            }
            Target::SyslogTcp(rest.to_string())
        } else if let Some(url) = spec.to.strip_prefix("splunk-hec+") {
            let parsed = reqwest::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    err(
                        "to",
                        format!("`{}` is not splunk-hec+https://HOST:PORT[/PATH]", spec.to),
                    )
                })?;
            let mut url = parsed;
            if url.path() == "/" || url.path().is_empty() {
                url.set_path("/services/collector/event");
            }
            let var = spec.token_env.as_deref().ok_or_else(|| {
                err("token_env", "a Splunk sink needs the environment variable holding its HEC token (token_env: SPLUNK_HEC_TOKEN)".into())
            })?;
            let token = env(var).filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                err(
                    "token_env",
                    format!("the environment variable {var} is not set"),
                )
            })?;
            Target::SplunkHec {
                url: url.to_string(),
                token: token.trim().to_string(),
            }
        } else if let Some((style, url)) = [
            ("webhook+", WebhookStyle::Plain),
            ("slack+", WebhookStyle::Slack),
            ("pagerduty+", WebhookStyle::PagerDuty),
        ]
        .iter()
        .find_map(|(prefix, style)| spec.to.strip_prefix(prefix).map(|u| (*style, u)))
        {
            reqwest::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    err(
                        "to",
                        format!("`{}` is not a webhook+https://… URL", spec.to),
                    )
                })?;
            let from_env =
                |field: &'static str, var: &Option<String>| -> Result<Option<String>, SinkError> {
                    match var {
                        None => Ok(None),
                        Some(var) => env(var)
                            .filter(|t| !t.trim().is_empty())
                            .map(|t| Some(t.trim().to_string()))
                            .ok_or_else(|| {
                                err(field, format!("the environment variable {var} is not set"))
                            }),
                    }
                };
            let token = from_env("token_env", &spec.token_env)?;
            if style == WebhookStyle::PagerDuty && token.is_none() {
                return Err(err("token_env", "a PagerDuty sink needs the environment variable holding its routing key (token_env: PAGERDUTY_ROUTING_KEY)".into()));
            }
            Target::Webhook {
                url: url.to_string(),
                style,
                token,
                secret: from_env("secret_env", &spec.secret_env)?,
            }
        } else {
            return Err(err(
                "to",
                format!(
                    "`{}`: a sink sends to syslog+tcp://HOST:PORT, splunk-hec+https://HOST:PORT, webhook+https://…, slack+https://… or pagerduty+https://…",
                    spec.to
                ),
            ));
        };
        if spec.max_attempts == Some(0) {
            return Err(err(
                "max_attempts",
                "at least 1 (leave it out to retry for ever)".into(),
            ));
        }
        if spec.format == Format::Cef && !matches!(target, Target::SyslogTcp(_)) {
            return Err(err(
                "format",
                "CEF travels over syslog; HTTP receivers take json or ocsf".into(),
            ));
        }
        Ok(Sink {
            spec,
            query,
            target,
        })
    }
}

/// Reads a sinks file (YAML or JSON) and checks every sink; all broken ones are returned.
pub fn parse_sink_file(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Sink>, Vec<SinkError>> {
    let file: SinkFile = serde_saphyr::from_str(text).map_err(|e| {
        vec![SinkError {
            sink: String::new(),
            field: "sinks",
            message: format!(
                "not a sinks file ({e}); expected `sinks:` and a list of sinks, each with name, \
                 to and optionally format, match, personal_data, tenants, token_env, index, secret_env, max_attempts"
            ),
        }]
    })?;
    let mut errors = Vec::new();
    let mut sinks: Vec<Sink> = Vec::new();
    for spec in file.sinks {
        if sinks.iter().any(|s| s.spec.name == spec.name) {
            errors.push(SinkError {
                sink: spec.name.clone(),
                field: "name",
                message: "another sink has this name".into(),
            });
            continue;
        }
        match Sink::new(spec, env) {
            Ok(s) => sinks.push(s),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(sinks)
    } else {
        Err(errors)
    }
}

enum Sender {
    Syslog(SyslogTcp),
    Hec(SplunkHec),
    Webhook(Webhook, WebhookStyle, Option<String>),
}

/// A sink following the log.
pub struct SinkConsumer {
    sink: Sink,
    views: Arc<dyn EventViews>,
    sender: Sender,
    host: String,
    dead_letter: PathBuf,
    dead_lettered: Counter,
    /// The batch being retried (tenant, first leaf) and its failed attempts.
    failing: Option<((String, u64), u32)>,
}

impl SinkConsumer {
    /// The consumer of `sink`; HTTP requests run on `runtime`; batches given up on go to
    /// `dead_letter` (JSON Lines), counted in `dead_lettered`.
    pub fn new(
        sink: Sink,
        views: Arc<dyn EventViews>,
        runtime: tokio::runtime::Handle,
        dead_letter: PathBuf,
        dead_lettered: Counter,
    ) -> Result<SinkConsumer, String> {
        let sender = match &sink.target {
            Target::SyslogTcp(addr) => Sender::Syslog(SyslogTcp::new(addr.clone())),
            Target::SplunkHec { url, token } => {
                Sender::Hec(SplunkHec::new(url.clone(), token.clone(), runtime)?)
            }
            Target::Webhook {
                url,
                style,
                token,
                secret,
            } => Sender::Webhook(
                Webhook::new(url.clone(), secret.clone().map(String::into_bytes), runtime)?,
                *style,
                token.clone(),
            ),
        };
        Ok(SinkConsumer {
            sink,
            views,
            sender,
            host: transport::hostname(),
            dead_letter,
            dead_lettered,
            failing: None,
        })
    }

    /// Writes the events of a batch given up on to the dead-letter file, durably.
    fn bury(
        &self,
        tenant: &str,
        events: &[(u64, Value)],
        error: &str,
    ) -> Result<(), ConsumerError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.dead_letter.parent() {
            tally_store::layout::create_private_dir_all(dir)?;
        }
        // The owner's only, as everything in a data directory: it may hold personal data.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(tally_store::layout::PRIVATE_FILE_MODE)
            .open(&self.dead_letter)?;
        let mut lines = Vec::new();
        for (leaf, event) in events {
            serde_json::to_writer(
                &mut lines,
                &serde_json::json!({"tenant": tenant, "leaf_index": leaf, "error": error, "event": event}),
            )?;
            lines.push(b'\n');
        }
        file.write_all(&lines)?;
        file.sync_all()?;
        self.dead_lettered.inc_by(events.len() as u64);
        tracing::error!(
            sink = %self.sink.spec.name,
            tenant,
            events = events.len(),
            path = %self.dead_letter.display(),
            "a batch was given up on after {} attempts and written to the dead-letter file: {error}",
            self.sink.spec.max_attempts.unwrap_or_default()
        );
        Ok(())
    }

    fn send(&mut self, tenant: &str, events: &[(u64, Value)]) -> Result<(), String> {
        let format = self.sink.spec.format;
        let render = |e: &Value, leaf: u64| match format {
            Format::Ocsf => format::ocsf(e, tenant, leaf),
            _ => format::json(e, tenant, leaf),
        };
        match &mut self.sender {
            Sender::Syslog(syslog) => {
                let messages: Vec<String> = events
                    .iter()
                    .map(|(leaf, e)| {
                        let payload = match format {
                            Format::Json => format::json(e, tenant, *leaf).to_string(),
                            Format::Ocsf => format::ocsf(e, tenant, *leaf).to_string(),
                            Format::Cef => format::cef(e, tenant, *leaf),
                        };
                        transport::syslog_message(e, tenant, *leaf, &self.host, &payload)
                    })
                    .collect();
                syslog.send(&messages)
            }
            Sender::Hec(hec) => {
                let sourcetype = match format {
                    Format::Ocsf => "ocsf",
                    _ => "tally:audit",
                };
                let envelopes: Vec<Value> = events
                    .iter()
                    .map(|(leaf, e)| {
                        SplunkHec::envelope(
                            e,
                            render(e, *leaf),
                            sourcetype,
                            self.sink.spec.index.as_deref(),
                            &self.host,
                        )
                    })
                    .collect();
                hec.send(&envelopes)
            }
            Sender::Webhook(hook, style, token) => {
                let bodies: Vec<(String, Value)> = events
                    .iter()
                    .map(|(leaf, e)| {
                        (
                            e["id"].as_str().unwrap_or_default().to_string(),
                            transport::webhook_body(
                                *style,
                                e,
                                render(e, *leaf),
                                tenant,
                                token.as_deref(),
                            ),
                        )
                    })
                    .collect();
                hook.send(&bodies)
            }
        }
    }

    /// The settings `tally serve` uses for sinks: batches of up to 500 events, sent as they
    /// come.
    pub fn settings() -> ConsumerSettings {
        ConsumerSettings {
            batch_records: 500,
            flush_interval: std::time::Duration::from_millis(100),
            ..ConsumerSettings::default()
        }
    }

    /// The events of `batch` this sink sends, as shown to it, with their leaf indexes.
    fn selected(&self, batch: &Batch<'_>) -> Result<Vec<(u64, Value)>, ConsumerError> {
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let clear = self.sink.spec.personal_data == PersonalData::Clear;
        let mut out = Vec::new();
        for (leaf, stored) in batch.iter() {
            if !self.sink.query.terms.is_empty() {
                let opened = self.views.clear(batch.tenant, stored).map_err(|e| {
                    format!(
                        "record {leaf} of tenant {} cannot be opened: {e}",
                        batch.tenant
                    )
                })?;
                match Record::parse(&opened) {
                    Ok(record) if self.sink.query.matches(&record, now_ms, &NoTokens) => {}
                    Ok(_) => continue,
                    // An erased value can leave a typed field unreadable: whether it matches
                    // cannot be told, so it is not sent (as the alert rules skip it).
                    Err(e) => {
                        tracing::warn!(
                            sink = %self.sink.spec.name,
                            tenant = batch.tenant,
                            leaf,
                            "a record the sink's search cannot read is not sent: {e}"
                        );
                        continue;
                    }
                }
            }
            let shown = self.views.shown(batch.tenant, stored, clear).map_err(|e| {
                format!(
                    "record {leaf} of tenant {} cannot be opened: {e}",
                    batch.tenant
                )
            })?;
            let event: Value = serde_json::from_slice(&shown)?;
            out.push((leaf, event));
        }
        Ok(out)
    }
}

impl Consumer for SinkConsumer {
    fn deliver(&mut self, batch: Batch<'_>) -> Result<(), ConsumerError> {
        if let Some(tenants) = &self.sink.spec.tenants {
            if !tenants.iter().any(|t| t == batch.tenant) {
                return Ok(());
            }
        }
        let events = self.selected(&batch)?;
        if events.is_empty() {
            return Ok(());
        }
        let key = (batch.tenant.to_string(), batch.first);
        match self.send(batch.tenant, &events) {
            Ok(()) => {
                // Another tenant's batch may be the one being retried: its count stands.
                if self.failing.as_ref().is_some_and(|(k, _)| *k == key) {
                    self.failing = None;
                }
                Ok(())
            }
            Err(error) => {
                let attempts = match &self.failing {
                    Some((k, n)) if *k == key => n + 1,
                    _ => 1,
                };
                self.failing = Some((key, attempts));
                match self.sink.spec.max_attempts {
                    Some(max) if attempts >= max => {
                        self.bury(batch.tenant, &events, &error)?;
                        self.failing = None;
                        Ok(())
                    }
                    _ => Err(error.into()),
                }
            }
        }
    }

    fn flush(&mut self) -> Result<(), ConsumerError> {
        // Each batch was acknowledged by the receiver (or written to its socket) when
        // `deliver` returned: nothing is held back.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HEC_TOKEN").then(|| "secret-token".to_string())
    }

    /// Records as they are stored, shown as they are.
    struct AsStored;

    impl EventViews for AsStored {
        fn clear(&self, _: &str, stored: &[u8]) -> Result<Vec<u8>, String> {
            Ok(stored.to_vec())
        }
        fn shown(&self, _: &str, stored: &[u8], _: bool) -> Result<Vec<u8>, String> {
            Ok(stored.to_vec())
        }
    }

    fn record(tenant: &str, n: u32) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schema_version": 1, "id": format!("0193c0de-0000-7000-8000-{n:012}"),
            "tenant": tenant, "time": "2026-05-01T12:00:00Z",
            "received_at": "2026-05-01T12:00:00Z", "key_id": "k",
            "actor": {"id": "a"}, "action": "x.y", "outcome": "SUCCESS",
            "resource": {"type": "r", "id": "1"},
        }))
        .unwrap()
    }

    #[test]
    fn a_batch_given_up_on_goes_to_a_private_dead_letter_file_after_its_own_attempts() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        // A port nothing listens on: every send fails.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = format!(
            "sinks:\n  - name: s\n    to: syslog+tcp://127.0.0.1:{port}\n    max_attempts: 2\n"
        );
        let sink = parse_sink_file(&text, &env).unwrap().remove(0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let counter = Counter::default();
        let path = tmp.path().join("consumers/sink-s.dead-letter.jsonl");
        let mut consumer = SinkConsumer::new(
            sink,
            Arc::new(AsStored),
            runtime.handle().clone(),
            path.clone(),
            counter.clone(),
        )
        .unwrap();
        let (a, b) = (vec![record("a", 1)], vec![record("b", 2)]);
        let batch = |tenant, records: &'static [Vec<u8>]| Batch {
            tenant,
            first: 0,
            records,
        };
        let (a, b): (&'static [Vec<u8>], &'static [Vec<u8>]) = (
            Box::leak(a.into_boxed_slice()),
            Box::leak(b.into_boxed_slice()),
        );
        // Tenant b's first attempt, then tenant a's (another batch), then b's second: b's two
        // attempts are counted apart from a's.
        assert!(consumer.deliver(batch("b", b)).is_err());
        assert!(consumer.deliver(batch("a", a)).is_err());
        assert!(!path.exists(), "a's first failure is not b's second");
        assert!(
            consumer.deliver(batch("a", a)).is_ok(),
            "a's second attempt: given up on"
        );
        assert!(
            consumer.deliver(batch("b", b)).is_err(),
            "b starts counting again"
        );
        assert!(consumer.deliver(batch("b", b)).is_ok());
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["tenant"], "a");
        assert_eq!(lines[1]["tenant"], "b");
        assert!(lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("syslog receiver"));
        assert_eq!(counter.get(), 2);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the owner's only");
    }

    #[test]
    fn sinks_files_are_checked_and_every_broken_sink_named() {
        let good = "sinks:\n  - name: siem\n    to: syslog+tcp://127.0.0.1:6514\n    format: cef\n    match: outcome:FAILURE\n  - name: splunk\n    to: splunk-hec+https://splunk.internal:8088\n    token_env: HEC_TOKEN\n    format: ocsf\n";
        let sinks = parse_sink_file(good, &env).unwrap();
        assert_eq!(sinks[0].target, Target::SyslogTcp("127.0.0.1:6514".into()));
        assert_eq!(
            sinks[1].target,
            Target::SplunkHec {
                url: "https://splunk.internal:8088/services/collector/event".into(),
                token: "secret-token".into()
            }
        );
        let bad = "sinks:\n  - name: Bad\n    to: syslog+tcp://h:1\n  - name: a\n    to: ftp://x\n  - name: b\n    to: syslog+tcp://h:0\n  - name: c\n    to: splunk-hec+https://h\n  - name: d\n    to: splunk-hec+https://h\n    token_env: NOPE\n  - name: e\n    to: syslog+tcp://h:1\n    match: acter:x\n  - name: e\n    to: syslog+tcp://h:1\n  - name: f\n    to: splunk-hec+https://h\n    token_env: HEC_TOKEN\n    format: cef\n";
        let errors = parse_sink_file(bad, &env).unwrap_err();
        let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.sink.as_str(), e.field)).collect();
        assert_eq!(
            got,
            [
                ("Bad", "name"),
                ("a", "to"),
                ("b", "to"),
                ("c", "token_env"),
                ("d", "token_env"),
                ("e", "match"),
                ("f", "format"),
            ]
        );
        assert!(errors[4].message.contains("NOPE is not set"));
    }
}
