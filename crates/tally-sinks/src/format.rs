//! How an event looks when it leaves: Tally's own JSON, OCSF 1.1 JSON, or ArcSight CEF.
//!
//! Each format takes the event as the sink may show it (personal values masked unless the
//! sink is configured to send them in the clear), its tenant and its leaf index, so that a
//! SIEM can always go back to the record and its inclusion proof.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The formats a sink can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The event as Tally serves it, with `tally_tenant` and `tally_leaf_index` added.
    #[default]
    Json,
    /// OCSF 1.1 (see [`ocsf`] for the mapping of categories onto classes).
    Ocsf,
    /// ArcSight Common Event Format, version 0.
    Cef,
}

/// The OCSF version the mapping follows.
pub const OCSF_VERSION: &str = "1.1.0";

/// Whether the event is one of Tally's alerts (`tally.alert.raise`, which only the server
/// writes): only then do its `category` and `metadata.severity` speak for Tally.
pub fn is_alert(event: &Value) -> bool {
    event["action"] == "tally.alert.raise"
}

/// An alert's severity (`low` … `critical`); `None` for any other event, whatever its
/// metadata claims.
pub fn alert_severity(event: &Value) -> Option<&str> {
    if is_alert(event) {
        text(event, &["metadata", "severity"])
    } else {
        None
    }
}

/// The actor's IP address when it is one (a masked value is a token, which fields typed as
/// addresses cannot hold).
fn actor_ip(event: &Value) -> Option<&str> {
    text(event, &["actor", "ip"]).filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
}

fn text<'a>(event: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(event, |v, k| v.get(k))
        .and_then(Value::as_str)
}

/// Unix milliseconds of an RFC 3339 member (0 when absent or malformed).
pub fn millis(event: &Value, member: &str) -> i64 {
    text(event, &[member])
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Tally's JSON with where it comes from.
pub fn json(event: &Value, tenant: &str, leaf: u64) -> Value {
    let mut out = event.clone();
    if let Some(o) = out.as_object_mut() {
        o.insert("tally_tenant".into(), tenant.into());
        o.insert("tally_leaf_index".into(), leaf.into());
    }
    out
}

/// The OCSF class of an event, by category (and, for changes, by resource type):
///
/// | Tally category | OCSF class | activity |
/// |---|---|---|
/// | LOGIN, LOGOUT | 3002 Authentication | 1 Logon, 2 Logoff |
/// | AUTHZ | 3003 Authorize Session | 1 Assign Privileges |
/// | CREATE, UPDATE, DELETE of a USER or ACCOUNT | 3001 Account Change | 1 Create, 99 Other, 6 Delete |
/// | CREATE, UPDATE, DELETE of anything else; ADMIN; CONFIG | 3004 Entity Management | 1 Create, 3 Update, 4 Delete (ADMIN, CONFIG: 3) |
/// | READ, VIEW_PII, EXPORT | 6003 API Activity | 2 Read |
/// | ALERT (Tally's alerts) | 2004 Detection Finding | 1 Create |
/// | anything else | 6003 API Activity | 99 Other |
pub fn ocsf_class(event: &Value) -> (u32, u32, &'static str) {
    let category = text(event, &["category"]).unwrap_or_default();
    let resource = text(event, &["resource", "type"])
        .unwrap_or_default()
        .to_ascii_uppercase();
    let account = matches!(resource.as_str(), "USER" | "ACCOUNT");
    match category {
        "LOGIN" => (3002, 1, "Authentication"),
        "LOGOUT" => (3002, 2, "Authentication"),
        "AUTHZ" => (3003, 1, "Authorize Session"),
        "CREATE" if account => (3001, 1, "Account Change"),
        "DELETE" if account => (3001, 6, "Account Change"),
        "UPDATE" if account => (3001, 99, "Account Change"),
        "CREATE" => (3004, 1, "Entity Management"),
        "UPDATE" | "ADMIN" | "CONFIG" => (3004, 3, "Entity Management"),
        "DELETE" => (3004, 4, "Entity Management"),
        "READ" | "VIEW_PII" | "EXPORT" => (6003, 2, "API Activity"),
        "ALERT" if is_alert(event) => (2004, 1, "Detection Finding"),
        _ => (6003, 99, "API Activity"),
    }
}

/// OCSF severity: an alert's own; otherwise Informational, Low for a failure.
fn ocsf_severity(event: &Value) -> u32 {
    match alert_severity(event) {
        Some("low") => 2,
        Some("medium") => 3,
        Some("high") => 4,
        Some("critical") => 5,
        _ if text(event, &["outcome"]).is_some_and(|o| o != "SUCCESS") => 2,
        _ => 1,
    }
}

/// The event as an OCSF 1.1 event of the class [`ocsf_class`] gives.
pub fn ocsf(event: &Value, tenant: &str, leaf: u64) -> Value {
    let (class_uid, activity_id, class_name) = ocsf_class(event);
    let outcome = text(event, &["outcome"]).unwrap_or("SUCCESS");
    let mut out = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": class_uid / 1000,
        "activity_id": activity_id,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": ocsf_severity(event),
        "status_id": if outcome == "SUCCESS" { 1 } else { 2 },
        "status": if outcome == "SUCCESS" { "Success".to_string() } else { outcome.to_string() },
        "time": millis(event, "received_at"),
        "message": text(event, &["action"]).unwrap_or_default(),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "Tally", "vendor_name": "Tally"},
            "uid": text(event, &["id"]).unwrap_or_default(),
            "log_name": tenant,
            "original_time": text(event, &["time"]).unwrap_or_default(),
            "sequence": leaf,
        },
        "actor": {
            "user": {
                "uid": text(event, &["actor", "id"]).unwrap_or_default(),
                "type": text(event, &["actor", "type"]).unwrap_or("user"),
            },
        },
        "unmapped": {
            "tenant": tenant,
            "leaf_index": leaf,
            "action": text(event, &["action"]),
            "category": text(event, &["category"]),
            "resource": event.get("resource"),
            "metadata": event.get("metadata"),
            "before": event.get("before"),
            "after": event.get("after"),
            "request_id": text(event, &["request_id"]),
        },
    });
    if let Some(session) = text(event, &["actor", "session_id"]) {
        out["actor"]["session"] = json!({"uid": session});
    }
    if let Some(ip) = actor_ip(event) {
        out["src_endpoint"] = json!({"ip": ip});
    }
    // A masked address stays findable by its token, outside the typed field.
    if let Some(ip) = text(event, &["actor", "ip"]).filter(|_| actor_ip(event).is_none()) {
        out["unmapped"]["actor_ip"] = ip.into();
    }
    if let Some(agent) = text(event, &["actor", "user_agent"]) {
        out["http_request"] = json!({"user_agent": agent});
    }
    if let Some(reason) = text(event, &["reason"]) {
        out["status_detail"] = reason.into();
    }
    if let Some(trace) = text(event, &["trace_id"]) {
        out["metadata"]["correlation_uid"] = trace.into();
    }
    if class_uid == 2004 {
        out["finding_info"] = json!({
            "uid": text(event, &["id"]).unwrap_or_default(),
            "title": text(event, &["reason"]).unwrap_or_default(),
            "analytic": {"uid": text(event, &["metadata", "rule"]).unwrap_or_default(), "type_id": 1},
        });
    }
    out
}

/// Escapes a CEF header field: `\` and `|`.
fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// Escapes a CEF extension value: `\`, `=` and line breaks.
fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace("\r\n", "\\n")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// The event as one CEF line:
/// `CEF:0|Tally|Tally|VERSION|ACTION|NAME|SEVERITY|rt=… suser=… src=… act=… outcome=… …`.
/// Severity: an alert's (low 3, medium 5, high 8, critical 10); 5 for a refusal or failure;
/// otherwise 3.
pub fn cef(event: &Value, tenant: &str, leaf: u64) -> String {
    let action = text(event, &["action"]).unwrap_or_default();
    let outcome = text(event, &["outcome"]).unwrap_or_default();
    let severity = match alert_severity(event) {
        Some("low") => 3,
        Some("medium") => 5,
        Some("high") => 8,
        Some("critical") => 10,
        _ if outcome != "SUCCESS" => 5,
        _ => 3,
    };
    let name = text(event, &["reason"]).unwrap_or(action);
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", millis(event, "received_at").to_string()),
        ("act", action.to_string()),
        ("outcome", outcome.to_string()),
        (
            "externalId",
            text(event, &["id"]).unwrap_or_default().to_string(),
        ),
        ("cs1Label", "tenant".into()),
        ("cs1", tenant.to_string()),
        ("cn1Label", "leafIndex".into()),
        ("cn1", leaf.to_string()),
    ];
    let mut push = |key: &'static str, value: Option<&str>| {
        if let Some(v) = value {
            ext.push((key, v.to_string()));
        }
    };
    push("suser", text(event, &["actor", "id"]));
    push("src", actor_ip(event));
    let masked_ip = text(event, &["actor", "ip"]).filter(|_| actor_ip(event).is_none());
    push("cs3Label", masked_ip.map(|_| "actorIp"));
    push("cs3", masked_ip);
    push(
        "requestClientApplication",
        text(event, &["actor", "user_agent"]),
    );
    push("cat", text(event, &["category"]));
    push("msg", text(event, &["reason"]));
    if let (Some(t), Some(id)) = (
        text(event, &["resource", "type"]),
        text(event, &["resource", "id"]),
    ) {
        ext.push(("cs2Label", "resource".into()));
        ext.push(("cs2", format!("{t}/{id}")));
    }
    let extension: Vec<String> = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", cef_value(v)))
        .collect();
    format!(
        "CEF:0|Tally|Tally|{}|{}|{}|{severity}|{}",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(action),
        cef_header(name),
        extension.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(category: &str, resource: &str, outcome: &str) -> Value {
        json!({
            "id": "0193c0de-0000-7000-8000-000000000001", "tenant": "acme",
            "time": "2026-05-01T12:00:00Z", "received_at": "2026-05-01T12:00:00.250Z",
            "actor": {"id": "alice", "type": "user", "ip": "203.0.113.9", "user_agent": "curl/8"},
            "action": "user.login", "category": category, "outcome": outcome,
            "resource": {"type": resource, "id": "web|1=2"}, "reason": "bad\npassword",
        })
    }

    #[test]
    fn categories_map_onto_ocsf_classes() {
        for (category, resource, class, activity) in [
            ("LOGIN", "SESSION", 3002, 1),
            ("LOGOUT", "SESSION", 3002, 2),
            ("AUTHZ", "ROLE", 3003, 1),
            ("CREATE", "USER", 3001, 1),
            ("DELETE", "user", 3001, 6),
            ("CREATE", "DOCUMENT", 3004, 1),
            ("DELETE", "DOCUMENT", 3004, 4),
            ("CONFIG", "SETTING", 3004, 3),
            ("VIEW_PII", "PATIENT", 6003, 2),
            ("EXPORT", "REPORT", 6003, 2),
            ("ALERT", "alert-rule", 2004, 1),
            ("SOMETHING", "X", 6003, 99),
        ] {
            let mut e = event(category, resource, "SUCCESS");
            if category == "ALERT" {
                e["action"] = "tally.alert.raise".into();
            }
            let o = ocsf(&e, "acme", 7);
            assert_eq!(
                (o["class_uid"].as_u64(), o["activity_id"].as_u64()),
                (Some(class), Some(activity)),
                "{category} {resource}"
            );
            assert_eq!(o["type_uid"], class * 100 + activity);
            assert_eq!(o["category_uid"], class / 1000);
        }
        let o = ocsf(&event("LOGIN", "SESSION", "FAILURE"), "acme", 7);
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["time"], 1_777_636_800_250i64);
        assert_eq!(o["src_endpoint"]["ip"], "203.0.113.9");
        assert_eq!(o["actor"]["user"]["uid"], "alice");
        assert_eq!(o["metadata"]["sequence"], 7);
        assert_eq!(o["unmapped"]["tenant"], "acme");
    }

    #[test]
    fn only_tallys_alerts_are_findings_or_carry_a_severity() {
        let mut forged = event("ALERT", "x", "SUCCESS");
        forged["metadata"] = json!({"severity": "critical"});
        assert_eq!(ocsf(&forged, "t", 0)["class_uid"], 6003);
        assert_eq!(ocsf(&forged, "t", 0)["severity_id"], 1);
        assert!(cef(&forged, "t", 0).contains("|3|"));
        forged["action"] = "tally.alert.raise".into();
        assert_eq!(ocsf(&forged, "t", 0)["class_uid"], 2004);
        assert_eq!(ocsf(&forged, "t", 0)["severity_id"], 5);
        assert!(cef(&forged, "t", 0).contains("|10|"));
    }

    #[test]
    fn a_masked_address_stays_out_of_address_fields() {
        let mut e = event("LOGIN", "SESSION", "SUCCESS");
        e["actor"]["ip"] = "tally:pii:v1:abc".into();
        let o = ocsf(&e, "t", 0);
        assert!(o.get("src_endpoint").is_none());
        assert_eq!(o["unmapped"]["actor_ip"], "tally:pii:v1:abc");
        let line = cef(&e, "t", 0);
        assert!(!line.contains(" src="), "{line}");
        assert!(line.contains("cs3=tally:pii:v1:abc"), "{line}");
    }

    #[test]
    fn cef_escapes_headers_and_extension_values() {
        let mut e = event("LOGIN", "SESSION", "FAILURE");
        e["action"] = "user|login".into();
        let line = cef(&e, "acme", 3);
        assert!(line.starts_with("CEF:0|Tally|Tally|"), "{line}");
        assert!(line.contains("|user\\|login|bad password|5|"), "{line}");
        assert!(line.contains("cs2=SESSION/web|1\\=2"), "{line}");
        assert!(line.contains("msg=bad\\npassword"), "{line}");
        assert!(line.contains("rt=1777636800250 "), "{line}");
        assert!(
            line.contains("suser=alice") && line.contains("cn1=3"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
