//! The vocabulary of schema v1: closed value sets and the syntax of names.
//!
//! Kept apart from `validate` so that `record` (reading stored events) shares the exact same
//! definitions as ingest.

use serde::{Deserialize, Serialize};

/// Categories with an agreed meaning. `category` accepts any name matching
/// `^[A-Z][A-Z0-9_]{0,31}$`, so deployments can add their own; these are the ones dashboards,
/// alert rules and SIEM mappings can rely on:
///
/// | category | meaning |
/// | --- | --- |
/// | `LOGIN` | an authentication attempt |
/// | `LOGOUT` | a session ended |
/// | `CREATE` | a resource was created |
/// | `READ` | a resource was read |
/// | `UPDATE` | a resource was changed |
/// | `DELETE` | a resource was deleted |
/// | `EXPORT` | data left the system (download, report, bulk export) |
/// | `VIEW_PII` | personal data was displayed |
/// | `AUTHZ` | a permission or role changed, or an authorisation decision was made |
/// | `ADMIN` | an administrative operation |
/// | `CONFIG` | a configuration change |
pub const WELL_KNOWN_CATEGORIES: &[&str] = &[
    "LOGIN", "LOGOUT", "CREATE", "READ", "UPDATE", "DELETE", "EXPORT", "VIEW_PII", "AUTHZ",
    "ADMIN", "CONFIG",
];

/// How an audited operation ended. Written in records as its upper-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// The operation succeeded.
    Success,
    /// The operation was attempted and failed.
    Failure,
    /// The caller could not be authenticated.
    Unauthorized,
    /// The caller was authenticated but not allowed.
    Denied,
}

impl Outcome {
    /// Every outcome, in the order the schema lists them.
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Unauthorized,
        Outcome::Denied,
    ];

    /// The names of [`Outcome::ALL`], in the same order.
    pub const NAMES: [&'static str; 4] = [
        Outcome::Success.as_str(),
        Outcome::Failure.as_str(),
        Outcome::Unauthorized.as_str(),
        Outcome::Denied.as_str(),
    ];

    /// The name as it appears in events and records, such as `"SUCCESS"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Failure => "FAILURE",
            Outcome::Unauthorized => "UNAUTHORIZED",
            Outcome::Denied => "DENIED",
        }
    }

    /// The outcome with exactly this name (case-sensitive), if any.
    pub fn from_name(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// What kind of principal performed the action. Written in records as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    /// A human user.
    User,
    /// A program acting with its own credentials.
    Service,
    /// The system itself (scheduled jobs, retention, Tally's own operations).
    System,
}

impl ActorType {
    /// Every actor type, in the order the schema lists them.
    pub const ALL: [ActorType; 3] = [ActorType::User, ActorType::Service, ActorType::System];

    /// The names of [`ActorType::ALL`], in the same order.
    pub const NAMES: [&'static str; 3] = [
        ActorType::User.as_str(),
        ActorType::Service.as_str(),
        ActorType::System.as_str(),
    ];

    /// The name as it appears in events and records, such as `"user"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::Service => "service",
            ActorType::System => "system",
        }
    }

    /// The actor type with exactly this name (case-sensitive), if any.
    pub fn from_name(name: &str) -> Option<ActorType> {
        ActorType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Whether `s` is a valid tenant name: `^[a-z0-9][a-z0-9_-]{0,62}$`.
///
/// Tenant names become directory names and log origins, so the alphabet excludes anything a
/// file system or a C2SP checkpoint origin line could interpret (`/`, `.`, whitespace,
/// upper case that would collide on case-insensitive file systems).
///
/// ```
/// assert!(tally_event::is_valid_tenant("acme-prod_2"));
/// assert!(!tally_event::is_valid_tenant("-acme"));
/// assert!(!tally_event::is_valid_tenant("../etc"));
/// ```
pub fn is_valid_tenant(s: &str) -> bool {
    let b = s.as_bytes();
    match b.split_first() {
        Some((first, rest)) => {
            b.len() <= 63
                && matches!(first, b'a'..=b'z' | b'0'..=b'9')
                && rest
                    .iter()
                    .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        }
        None => false,
    }
}

/// The longest action name, in characters (all of which are ASCII).
pub(crate) const MAX_ACTION_LEN: usize = 128;

/// Whether `s` is a dotted action name such as `user.password.change`.
pub(crate) fn is_valid_action(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ACTION_LEN
        && s.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        })
}

/// The first action segment of events the server records about itself (`tally.events.export`,
/// `tally.keys.create`, …). Clients may not use it, so that a reader can trust that such an
/// event was written by the server (see [`reserved_for_server`]).
pub const SERVER_ACTION_NAMESPACE: &str = "tally";
/// The actor id form of the API key behind a server-recorded read (`api-key:<key id>`).
pub const KEY_ACTOR_PREFIX: &str = "api-key:";
/// The actor id of events the server originates itself (start-up decisions, for example).
pub const SERVER_ACTOR_ID: &str = "tally-server";

/// The rules `event` breaks by using names reserved for the server: an action in the
/// [`SERVER_ACTION_NAMESPACE`] (`tally.…`, in any case) or an actor id of the server's own
/// forms ([`KEY_ACTOR_PREFIX`]`…`, [`SERVER_ACTOR_ID`]). Empty for every event a client may
/// send. Ingest applies it to client submissions only; the server's own events use these
/// names on purpose.
///
/// ```
/// use tally_event::{reserved_for_server, ActorInput, EventInput};
///
/// let forged = EventInput {
///     action: Some("tally.events.export".into()),
///     actor: Some(ActorInput { id: Some("api-key:k_1".into()), ..Default::default() }),
///     ..Default::default()
/// };
/// let fields: Vec<_> = reserved_for_server(&forged).into_iter().map(|e| e.field).collect();
/// assert_eq!(fields, ["actor.id", "action"]);
/// assert!(reserved_for_server(&EventInput { action: Some("talley.login".into()), ..Default::default() }).is_empty());
/// ```
pub fn reserved_for_server(event: &crate::EventInput) -> Vec<crate::FieldError> {
    let mut errors = Vec::new();
    let actor = event.actor.as_ref().and_then(|a| a.id.as_deref());
    // Checked on every ingested event: compared in place, without a lowercased copy.
    if let Some(id) = actor.map(str::trim) {
        let key_form = id
            .get(..KEY_ACTOR_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(KEY_ACTOR_PREFIX));
        if key_form || id.eq_ignore_ascii_case(SERVER_ACTOR_ID) {
            errors.push(crate::FieldError {
                field: "actor.id".into(),
                rule: format!(
                    "{KEY_ACTOR_PREFIX}… and {SERVER_ACTOR_ID} are reserved for events the server records itself"
                ),
            });
        }
    }
    if let Some(action) = event.action.as_deref() {
        let first = action.split('.').next().unwrap_or_default();
        if first.eq_ignore_ascii_case(SERVER_ACTION_NAMESPACE) {
            errors.push(crate::FieldError {
                field: "action".into(),
                rule: format!(
                    "the {SERVER_ACTION_NAMESPACE}. namespace is reserved for events the server records itself; \
                     name your application's actions after it (for example billing.invoice.read)"
                ),
            });
        }
    }
    errors
}

/// Whether `s` matches `^[A-Z][A-Z0-9_]{0,31}$`.
pub(crate) fn is_valid_category(s: &str) -> bool {
    let b = s.as_bytes();
    match b.split_first() {
        Some((first, rest)) => {
            b.len() <= 32
                && first.is_ascii_uppercase()
                && rest
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_syntax() {
        for ok in ["a", "0", "acme", "acme-prod_2", &"a".repeat(63)] {
            assert!(is_valid_tenant(ok), "{ok:?}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Acme",
            "a.b",
            "a/b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_tenant(bad), "{bad:?}");
        }
    }

    #[test]
    fn action_syntax() {
        for ok in ["login", "user.password.change", "A-b_9.x", &"a".repeat(128)] {
            assert!(is_valid_action(ok), "{ok:?}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a/b", "é", &"a".repeat(129)] {
            assert!(!is_valid_action(bad), "{bad:?}");
        }
    }

    #[test]
    fn category_syntax() {
        for ok in WELL_KNOWN_CATEGORIES
            .iter()
            .copied()
            .chain(["X", "A9_", &"A".repeat(32)])
        {
            assert!(is_valid_category(ok), "{ok:?}");
        }
        for bad in ["", "login", "9A", "_A", "A-B", "A B", &"A".repeat(33)] {
            assert!(!is_valid_category(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_name(o.as_str()), Some(o));
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
        for t in ActorType::ALL {
            assert_eq!(ActorType::from_name(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        assert_eq!(Outcome::NAMES, Outcome::ALL.map(Outcome::as_str));
        assert_eq!(ActorType::NAMES, ActorType::ALL.map(ActorType::as_str));
        assert_eq!(Outcome::from_name("success"), None);
        assert_eq!(ActorType::from_name("User"), None);
    }
}
