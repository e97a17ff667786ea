//! Where a sink's events go: a syslog receiver over TCP (RFC 5424 messages, RFC 6587 octet
//! counting) or Splunk's HTTP Event Collector.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// How long a connection attempt or a write may take before the batch is retried.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The syslog severity of an event: an alert's own, a warning for a failure, else
/// informational.
fn syslog_severity(event: &Value) -> u8 {
    match crate::format::alert_severity(event) {
        Some("critical") => 2,
        Some("high") => 3,
        Some("medium") => 4,
        Some("low") => 5,
        _ if event["outcome"].as_str().is_some_and(|o| o != "SUCCESS") => 4,
        _ => 6,
    }
}

/// Escapes an RFC 5424 SD-PARAM value: `"`, `\` and `]`.
fn sd_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// The machine's name for the HOSTNAME field (`-` when unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".into())
}

/// One RFC 5424 message: facility 13 (log audit), the event's severity, its receive time,
/// APP-NAME `tally`, MSGID `audit`, structured data `[tally@32473 tenant="…" leaf="…"]`
/// and `payload` as the message.
pub fn syslog_message(event: &Value, tenant: &str, leaf: u64, host: &str, payload: &str) -> String {
    let pri = 13 * 8 + u16::from(syslog_severity(event));
    let ts = event["received_at"].as_str().unwrap_or("-");
    format!(
        "<{pri}>1 {ts} {host} tally {} audit [tally@32473 tenant=\"{}\" leaf=\"{leaf}\"] {payload}",
        std::process::id(),
        sd_value(tenant),
    )
}

/// A syslog receiver over TCP, messages framed by octet counting (`LEN SP MSG`), so that a
/// message may hold any byte, line breaks included.
pub struct SyslogTcp {
    address: String,
    stream: Option<TcpStream>,
}

impl SyslogTcp {
    /// A receiver at `address` (`host:port`); connects on first use.
    pub fn new(address: String) -> Self {
        SyslogTcp {
            address,
            stream: None,
        }
    }

    /// Sends `messages` in order. On any error the connection is dropped (the next attempt
    /// reconnects) and the whole batch is to be sent again.
    pub fn send(&mut self, messages: &[String]) -> Result<(), String> {
        let mut framed = Vec::new();
        for m in messages {
            framed.extend_from_slice(format!("{} ", m.len()).as_bytes());
            framed.extend_from_slice(m.as_bytes());
        }
        let result = self.write(&framed);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.stream.is_none() {
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&self.address)
                .map_err(|e| format!("syslog receiver {}: {e}", self.address))?
                .next()
                .ok_or_else(|| format!("syslog receiver {}: no address", self.address))?;
            let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| {
                format!(
                    "cannot connect to the syslog receiver {}: {e}",
                    self.address
                )
            })?;
            stream
                .set_write_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected");
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| format!("sending to the syslog receiver {}: {e}", self.address))
    }
}

/// Splunk's HTTP Event Collector (`/services/collector/event`): a batch is one POST of
/// concatenated event objects, acknowledged by a 200.
pub struct SplunkHec {
    endpoint: Endpoint,
    token: String,
}

/// An HTTP endpoint a sink posts JSON to, on the server's runtime (a sink runs on its own
/// thread): what the collector and the webhooks share.
struct Endpoint {
    url: String,
    /// Names it in errors: `the HTTP Event Collector`, `the webhook`.
    what: &'static str,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl Endpoint {
    fn new(
        url: String,
        what: &'static str,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Endpoint {
            url,
            what,
            client,
            runtime,
        })
    }

    /// Posts `body` (JSON) with `headers`; any answer but a success is an error naming the
    /// endpoint and quoting the start of its answer.
    fn post(&self, headers: &[(&str, String)], body: Vec<u8>) -> Result<(), String> {
        let mut request = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(body);
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| format!("cannot reach {} {}: {e}", self.what, self.url))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                let text = response.text().await.unwrap_or_default();
                Err(format!(
                    "{} {} answered {status}: {}",
                    self.what,
                    self.url,
                    text.chars().take(300).collect::<String>()
                ))
            }
        })
    }
}

impl SplunkHec {
    /// The collector at `url`, authenticated with `token`; requests run on `runtime` (a
    /// sink runs on its own thread).
    pub fn new(
        url: String,
        token: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, String> {
        Ok(SplunkHec {
            endpoint: Endpoint::new(url, "the HTTP Event Collector", runtime)?,
            token,
        })
    }

    /// The HEC envelope of one event: `time` in seconds, `host`, `source`, `sourcetype`,
    /// optionally `index`, and the event.
    pub fn envelope(
        event: &Value,
        body: Value,
        sourcetype: &str,
        index: Option<&str>,
        host: &str,
    ) -> Value {
        let ms = crate::format::millis(event, "received_at");
        let mut out = serde_json::json!({
            "time": ms as f64 / 1000.0,
            "host": host,
            "source": "tally",
            "sourcetype": sourcetype,
            "event": body,
        });
        if let Some(index) = index {
            out["index"] = index.into();
        }
        out
    }

    /// Posts `envelopes` as one request.
    pub fn send(&self, envelopes: &[Value]) -> Result<(), String> {
        let mut body = Vec::new();
        for e in envelopes {
            serde_json::to_writer(&mut body, e).map_err(|e| e.to_string())?;
            body.push(b'\n');
        }
        self.endpoint
            .post(&[("Authorization", format!("Splunk {}", self.token))], body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_are_hmac_sha256_of_the_time_and_body() {
        // RFC 4231 test case 2's key, over "1700000000.{}".
        let sig = signature(b"Jefe", 1_700_000_000, b"{}");
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(
            sig,
            format!(
                "t=1700000000,v1={}",
                hex::encode(mac.finalize().into_bytes())
            )
        );
        assert_ne!(sig, signature(b"Jefe", 1_700_000_001, b"{}"));
    }

    #[test]
    fn slack_and_pagerduty_bodies_summarise_an_alert() {
        let alert = serde_json::json!({
            "id": "a-1", "action": "tally.alert.raise", "reason": "Brute force",
            "received_at": "2026-05-01T12:00:00Z",
            "metadata": {"severity": "high", "rule": "brute-force", "count": 6, "alert_group": {"actor.id": "tally:pii:x"}},
        });
        let slack = webhook_body(WebhookStyle::Slack, &alert, Value::Null, "acme", None);
        assert_eq!(slack["text"], "[high] Brute force (rule brute-force, 6 events, actor.id=tally:pii:x) in tenant acme, alert a-1");
        let pd = webhook_body(
            WebhookStyle::PagerDuty,
            &alert,
            serde_json::json!({"x": 1}),
            "acme",
            Some("rk"),
        );
        assert_eq!(pd["routing_key"], "rk");
        assert_eq!(pd["event_action"], "trigger");
        assert_eq!(pd["dedup_key"], "a-1");
        assert_eq!(pd["payload"]["severity"], "error");
        assert_eq!(pd["payload"]["source"], "tally/acme");
        assert_eq!(pd["payload"]["custom_details"]["x"], 1);
    }

    #[test]
    fn a_syslog_message_carries_facility_severity_and_where_it_comes_from() {
        let event = serde_json::json!({
            "received_at": "2026-05-01T12:00:00.250Z", "outcome": "FAILURE",
        });
        let m = syslog_message(&event, "ac\"me", 7, "host1", "CEF:0|x");
        let pid = std::process::id();
        assert_eq!(
            m,
            format!("<108>1 2026-05-01T12:00:00.250Z host1 tally {pid} audit [tally@32473 tenant=\"ac\\\"me\" leaf=\"7\"] CEF:0|x")
        );
        let alert = serde_json::json!({"action": "tally.alert.raise", "metadata": {"severity": "critical"}, "outcome": "SUCCESS"});
        assert!(syslog_message(&alert, "t", 0, "h", "x").starts_with("<106>1 "));
    }
}

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookStyle {
    /// The event (Tally JSON, or OCSF).
    Plain,
    /// A Slack incoming-webhook message (`{"text": …}`).
    Slack,
    /// A PagerDuty Events API v2 trigger; the routing key is the sink's token.
    PagerDuty,
}

/// The signature header of a webhook request: `t=UNIX_SECONDS,v1=HEX`, where HEX is
/// HMAC-SHA256 under the sink's secret of `UNIX_SECONDS.` followed by the body, so that a
/// receiver can check who sent it and refuse replays of old requests.
pub fn signature(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A one-line summary of an event for people: an alert's title and group, or who did what.
pub fn summary(event: &Value, tenant: &str) -> String {
    let s = |p: &str| event.pointer(p).and_then(Value::as_str).unwrap_or_default();
    if crate::format::is_alert(event) {
        let group: Vec<String> = event
            .pointer("/metadata/alert_group")
            .and_then(Value::as_object)
            .map(|g| {
                g.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "[{}] {} (rule {}, {} events{}) in tenant {tenant}, alert {}",
            s("/metadata/severity"),
            s("/reason"),
            s("/metadata/rule"),
            event
                .pointer("/metadata/count")
                .and_then(Value::as_u64)
                .unwrap_or(1),
            if group.is_empty() {
                String::new()
            } else {
                format!(", {}", group.join(" "))
            },
            s("/id"),
        )
    } else {
        format!(
            "{} by {} on {}/{}: {} (tenant {tenant}, event {})",
            s("/action"),
            s("/actor/id"),
            s("/resource/type"),
            s("/resource/id"),
            s("/outcome"),
            s("/id"),
        )
    }
}

/// The body a webhook of `style` sends for one event.
pub fn webhook_body(
    style: WebhookStyle,
    event: &Value,
    rendered: Value,
    tenant: &str,
    token: Option<&str>,
) -> Value {
    match style {
        WebhookStyle::Plain => rendered,
        WebhookStyle::Slack => serde_json::json!({"text": summary(event, tenant)}),
        WebhookStyle::PagerDuty => {
            let severity = match crate::format::alert_severity(event) {
                Some("critical") => "critical",
                Some("high") => "error",
                Some("medium") => "warning",
                _ => "info",
            };
            serde_json::json!({
                "routing_key": token.unwrap_or_default(),
                "event_action": "trigger",
                // PagerDuty deduplicates on it: an event sent again is the same incident.
                "dedup_key": event["id"],
                "payload": {
                    "summary": summary(event, tenant).chars().take(1024).collect::<String>(),
                    "source": format!("tally/{tenant}"),
                    "severity": severity,
                    "timestamp": event["received_at"],
                    "component": event.pointer("/metadata/rule").cloned().unwrap_or(Value::Null),
                    "class": event["action"],
                    "custom_details": rendered,
                },
            })
        }
    }
}

/// An HTTPS (or HTTP) endpoint taking one JSON POST per event, signed when a secret is set.
pub struct Webhook {
    endpoint: Endpoint,
    secret: Option<Vec<u8>>,
}

impl Webhook {
    /// The endpoint at `url`; requests run on `runtime`.
    pub fn new(
        url: String,
        secret: Option<Vec<u8>>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, String> {
        Ok(Webhook {
            endpoint: Endpoint::new(url, "the webhook", runtime)?,
            secret,
        })
    }

    /// Posts each body in order; the first failure fails the batch.
    pub fn send(&self, bodies: &[(String, Value)]) -> Result<(), String> {
        for (id, body) in bodies {
            let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
            let mut headers = vec![("Tally-Event-Id", id.clone())];
            if let Some(secret) = &self.secret {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                headers.push(("Tally-Signature", signature(secret, now, &bytes)));
            }
            self.endpoint.post(&headers, bytes)?;
        }
        Ok(())
    }
}
