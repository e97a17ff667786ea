//! The rules a new installation runs: the alerts a security team expects from an audit log
//! on day one. Each can be changed or switched off (`enabled: false`) like any other rule.

use crate::rule::{RuleSpec, Severity, WhenSpec};

/// The default rule pack.
///
/// - `brute-force`: more than 5 failed logins by one actor within 5 minutes.
/// - `bulk-export`: a single export of more than 10,000 records (`metadata.rows`, which Tally's
///   own exports record and applications are asked to send with their export events).
/// - `admin-grant`: an administrator role granted (`role.grant` mentioning `admin`).
/// - `off-hours-pii`: personal data viewed (`category:VIEW_PII`) outside 09:00-18:00,
///   Monday to Friday, UTC: set `time_zone` to the organisation's.
/// - `login-after-failures`: a successful login by an actor right after more than 5 failed
///   ones within 15 minutes (a guessed password).
pub fn default_rules() -> Vec<RuleSpec> {
    let rule = |id: &str, title: &str, severity, matches: &str, condition: Option<&str>| RuleSpec {
        id: id.into(),
        title: title.into(),
        description: None,
        severity,
        matches: matches.into(),
        condition: condition.map(Into::into),
        then: None,
        when: None,
        enabled: true,
    };
    let mut off_hours = rule(
        "off-hours-pii",
        "Personal data viewed outside working hours",
        Severity::Medium,
        "category:VIEW_PII",
        None,
    );
    off_hours.when = Some(WhenSpec {
        time_zone: Some("UTC".into()),
        days: Some("mon-fri".into()),
        hours: Some("09:00-18:00".into()),
        outside: true,
    });
    let mut guessed = rule(
        "login-after-failures",
        "A successful login right after more than 5 failed ones",
        Severity::Critical,
        "category:LOGIN outcome:FAILURE,UNAUTHORIZED,DENIED",
        Some("count > 5 within 15m by actor.id"),
    );
    guessed.then = Some("category:LOGIN outcome:SUCCESS".into());
    vec![
        rule(
            "brute-force",
            "More than 5 failed logins by one actor within 5 minutes",
            Severity::High,
            "category:LOGIN outcome:FAILURE,UNAUTHORIZED,DENIED",
            Some("count > 5 within 5m by actor.id"),
        ),
        rule(
            "bulk-export",
            "An export of more than 10,000 records",
            Severity::High,
            "category:EXPORT",
            Some("value metadata.rows > 10000"),
        ),
        rule(
            "admin-grant",
            "An administrator role granted",
            Severity::Critical,
            "action:role.grant outcome:SUCCESS admin",
            None,
        ),
        off_hours,
        guessed,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pack_is_valid() {
        let rules = crate::check_rules(default_rules()).unwrap();
        assert_eq!(rules.len(), 5);
    }
}
