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
    match event.pointer("/metadata/severity").and_then(Value::as_str) {
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
    url: String,
    token: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl SplunkHec {
    /// The collector at `url`, authenticated with `token`; requests run on `runtime` (a
    /// sink runs on its own thread).
    pub fn new(
        url: String,
        token: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SplunkHec {
            url,
            token,
            client,
            runtime,
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
        let request = self
            .client
            .post(&self.url)
            .header("Authorization", format!("Splunk {}", self.token))
            .header("Content-Type", "application/json")
            .body(body);
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| format!("cannot reach the HTTP Event Collector {}: {e}", self.url))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                let text = response.text().await.unwrap_or_default();
                Err(format!(
                    "the HTTP Event Collector {} answered {status}: {}",
                    self.url,
                    text.chars().take(300).collect::<String>()
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let alert = serde_json::json!({"metadata": {"severity": "critical"}, "outcome": "SUCCESS"});
        assert!(syslog_message(&alert, "t", 0, "h", "x").starts_with("<106>1 "));
    }
}
