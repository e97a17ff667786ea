//! The rules a new installation runs: the alerts a security team expects from an audit log
//! on day one. Each can be changed or switched off (`enabled: false`) like any other rule.

use crate::rule::{RuleSpec, Severity};

/// The default rule pack.
///
/// - `brute-force`: more than 5 failed logins by one actor within 5 minutes.
/// - `bulk-export`: a single export of more than 10,000 records (`metadata.rows`, which Tally's
///   own exports record and applications are asked to send with their export events).
/// - `admin-grant`: an administrator role granted (`role.grant` mentioning `admin`).
pub fn default_rules() -> Vec<RuleSpec> {
    let rule = |id: &str, title: &str, severity, matches: &str, condition: Option<&str>| RuleSpec {
        id: id.into(),
        title: title.into(),
        description: None,
        severity,
        matches: matches.into(),
        condition: condition.map(Into::into),
        enabled: true,
    };
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
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pack_is_valid() {
        let rules = crate::check_rules(default_rules()).unwrap();
        assert_eq!(rules.len(), 3);
    }
}
