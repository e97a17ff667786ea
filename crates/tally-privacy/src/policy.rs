//! Which values of a record are personal, and whose they are.
//!
//! A [`Policy`] is a list of [`Rule`]s. The schema registry's personal fields
//! ([`tally_event::fields::FieldSpec::personal`]) are always rules (the defaults); a tenant adds
//! paths inside `before`, `after` and `metadata`, such as `after.email` or
//! `metadata.patient.*`. A rule's [`Pattern`] names one value by its member names from the top
//! of the record; `*` stands for any one member name. A matched value is sealed whole, whatever
//! its JSON type, and arrays are never entered: `after.emails` seals the whole list.
//!
//! Every personal value belongs to a **subject**, the person erasure is asked for by name
//! ([`SubjectRule`]): what the actor did (`actor.*`) belongs to the actor, `actor.id`; what
//! describes the resource (`resource.*`, and by default `before.*` and `after.*`, which are
//! snapshots of it) belongs to the resource, `resource.id` or else `resource.name`; `metadata`
//! paths belong to the actor unless the rule names another path (`metadata.patient.id`) or the
//! value itself (`value`: the value is the subject's identifier, such as an e-mail address).

use serde::{Deserialize, Serialize};

/// The member of `metadata` in which the server records the personal values of a read's
/// query (`metadata.query_values.<n>`): personal in every tenant's policy, each value its own
/// subject, so that erasing a person erases the searches for them too.
pub const QUERY_VALUES_MEMBER: &str = "query_values";
/// The member of `metadata` in which an alert records the values of the group it counted
/// (`metadata.alert_group.actor.id`): personal in every tenant's policy, each value its own
/// subject, so that erasing a person erases the alerts' record of them too.
pub const ALERT_GROUP_MEMBER: &str = "alert_group";

/// The roots a tenant's rules may start with: free-form members whose shape only the tenant
/// knows. The typed fields' rules are the registry's.
pub const TENANT_ROOTS: [&str; 3] = ["before", "after", "metadata"];
/// At most this many rules per tenant: each is matched against every member of every event.
pub const MAX_TENANT_RULES: usize = 64;
/// At most this many member names in a pattern.
pub const MAX_SEGMENTS: usize = 16;
/// At most this many characters in one member name of a pattern.
pub const MAX_SEGMENT_CHARS: usize = 128;

/// One member name of a [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Exactly this member name.
    Name(String),
    /// Any one member name (`*`).
    Any,
}

/// A path to a value from the top of a record: `after.email`, `metadata.patient.*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern(Vec<Segment>);

impl Pattern {
    /// Parses a dotted pattern; `what` names it in errors (`path`, `subject`).
    pub fn parse(text: &str, wildcards: bool) -> Result<Pattern, PolicyError> {
        let bad = |rule: String| PolicyError {
            path: text.to_string(),
            rule,
        };
        if text.is_empty() {
            return Err(bad("must not be empty".into()));
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            if part.is_empty() {
                return Err(bad(
                    "member names are separated by single dots and none is empty".into(),
                ));
            }
            if part.chars().count() > MAX_SEGMENT_CHARS {
                return Err(bad(format!(
                    "each member name is at most {MAX_SEGMENT_CHARS} characters"
                )));
            }
            if part.chars().any(char::is_control) {
                return Err(bad("must not contain control characters".into()));
            }
            if part == "*" {
                if !wildcards {
                    return Err(bad("names one value: no `*`".into()));
                }
                segments.push(Segment::Any);
            } else if part.contains('*') {
                return Err(bad(
                    "`*` stands for a whole member name (`metadata.*.email`), not part of one"
                        .into(),
                ));
            } else {
                segments.push(Segment::Name(part.to_string()));
            }
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(bad(format!("at most {MAX_SEGMENTS} member names")));
        }
        Ok(Pattern(segments))
    }

    /// The segments, first to last.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether the pattern names exactly this path.
    pub fn matches<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.0.len() == path.len() && self.prefix_matches(path)
    }

    /// Whether `path` is this pattern or lies on the way to it (every segment of `path`
    /// matches the pattern's segment at the same place).
    pub fn prefix_matches<S: AsRef<str>>(&self, path: &[S]) -> bool {
        path.len() <= self.0.len()
            && self.0.iter().zip(path).all(|(seg, name)| match seg {
                Segment::Any => true,
                Segment::Name(n) => n == name.as_ref(),
            })
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match seg {
                Segment::Any => f.write_str("*")?,
                Segment::Name(n) => f.write_str(n)?,
            }
        }
        Ok(())
    }
}

/// Whose a personal value is: the identifier erasure is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectRule {
    /// The actor: the record's `actor.id`.
    Actor,
    /// The resource: the record's `resource.id`, or `resource.name` if it has no id; the actor
    /// if it has neither.
    Resource,
    /// The value itself identifies its subject (an e-mail address, an account name).
    Value,
    /// The value at another path of the same record (no wildcards), such as
    /// `metadata.patient.id`; the actor if the record has no value there.
    Path(Pattern),
}

impl SubjectRule {
    /// Parses `actor`, `resource`, `value` or a dotted path.
    pub fn parse(text: &str) -> Result<SubjectRule, PolicyError> {
        Ok(match text {
            "actor" => SubjectRule::Actor,
            "resource" => SubjectRule::Resource,
            "value" => SubjectRule::Value,
            path => SubjectRule::Path(Pattern::parse(path, false).map_err(|e| PolicyError {
                path: path.to_string(),
                rule: format!(
                    "a subject is `actor`, `resource`, `value` or the path of one value: {}",
                    e.rule
                ),
            })?),
        })
    }
}

impl std::fmt::Display for SubjectRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubjectRule::Actor => f.write_str("actor"),
            SubjectRule::Resource => f.write_str("resource"),
            SubjectRule::Value => f.write_str("value"),
            SubjectRule::Path(p) => write!(f, "{p}"),
        }
    }
}

/// One personal path and whose its values are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Which values.
    pub pattern: Pattern,
    /// Whose they are.
    pub subject: SubjectRule,
}

/// A tenant's rule as the API and the policy file write it:
/// `{"path": "after.email", "subject": "value"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Dotted path inside `before`, `after` or `metadata`; `*` for any one member name.
    pub path: String,
    /// `actor`, `resource`, `value` or the path of the value naming the subject. Defaults to
    /// `resource` for `before`/`after` and `actor` for `metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A rule that cannot be used: which path, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct PolicyError {
    /// The path (or subject) as given.
    pub path: String,
    /// What it must be.
    pub rule: String,
}

/// The personal paths in force for a tenant: the registry's defaults and the tenant's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
    tenant: Vec<RuleSpec>,
    /// The value nonce ([`crate::seal::value_nonce`]) of each rule naming one fixed path (no
    /// `*`): the same for every record, so it is hashed once rather than once per value.
    fixed_nonces: Vec<Option<[u8; 12]>>,
    /// The rules' patterns as a tree of member names.
    tree: Vec<Node>,
}

/// A place in the tree of the rules' patterns: the paths that lead here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Node {
    /// The node after each member name.
    named: Vec<(String, usize)>,
    /// The node after any member name (`*`).
    any: Option<usize>,
    /// The first rule whose pattern ends here.
    rule: Option<usize>,
}

/// Where a walk through a record stands in a [`Policy`]'s patterns: the nodes of its tree that
/// each level of the current path has reached. A walker steps member by member instead of
/// comparing the whole path with every rule.
#[derive(Debug, Default)]
pub(crate) struct Matching {
    /// The reached nodes of every level, one level after the other.
    nodes: Vec<usize>,
    /// Each level's range in `nodes`; level 0 is the root.
    levels: Vec<(usize, usize)>,
}

impl Matching {
    /// Steps to the member `name` at depth `depth` (1 for the record's own members) from the
    /// level of its parent, the last member stepped to at `depth - 1`; returns what the policy
    /// says of it.
    pub(crate) fn step(&mut self, policy: &Policy, depth: usize, name: &str) -> Matched {
        if self.levels.is_empty() {
            self.nodes.push(0);
            self.levels.push((0, 1));
        }
        self.levels.truncate(depth.max(1));
        let parent = if self.levels.len() == depth {
            self.levels[depth - 1]
        } else {
            (0, 0) // A member whose parent was not stepped to: nothing leads to it.
        };
        self.nodes
            .truncate(parent.1.max(self.levels.last().map_or(0, |l| l.1)));
        let start = self.nodes.len();
        for i in parent.0..parent.1 {
            let node = &policy.tree[self.nodes[i]];
            if let Some((_, next)) = node.named.iter().find(|(n, _)| n == name) {
                self.nodes.push(*next);
            }
            if let Some(next) = node.any {
                self.nodes.push(next);
            }
        }
        self.levels.push((start, self.nodes.len()));
        let reached = &self.nodes[start..];
        Matched {
            rule: reached.iter().filter_map(|&n| policy.tree[n].rule).min(),
            deeper: reached.iter().any(|&n| {
                let node = &policy.tree[n];
                !node.named.is_empty() || node.any.is_some()
            }),
        }
    }
}

/// What a [`Policy`] says of one member, from [`Matching::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matched {
    /// The rule naming it (as [`Policy::rule_for`]), by position.
    pub rule: Option<usize>,
    /// Whether some rule names a value below it (as [`Policy::leads_below`]).
    pub deeper: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(default_rules(), Vec::new())
    }
}

fn default_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = tally_event::fields::FIELDS
        .iter()
        .filter(|f| f.personal)
        .map(|f| Rule {
            pattern: Pattern::parse(f.name, false).expect("registry names are dotted paths"),
            subject: if f.name.starts_with("actor.") {
                SubjectRule::Actor
            } else {
                SubjectRule::Resource
            },
        })
        .collect();
    rules.push(Rule {
        pattern: Pattern::parse(&format!("metadata.{QUERY_VALUES_MEMBER}.*"), true)
            .expect("a valid pattern"),
        subject: SubjectRule::Value,
    });
    rules.push(Rule {
        pattern: Pattern::parse(&format!("metadata.{ALERT_GROUP_MEMBER}.*"), true)
            .expect("a valid pattern"),
        subject: SubjectRule::Value,
    });
    rules
}

impl Policy {
    /// The defaults plus a tenant's rules, each checked; all broken rules are returned.
    pub fn with_tenant_rules(specs: &[RuleSpec]) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        if specs.len() > MAX_TENANT_RULES {
            errors.push(PolicyError {
                path: String::new(),
                rule: format!("at most {MAX_TENANT_RULES} paths per tenant"),
            });
        }
        let mut rules = default_rules();
        for spec in specs {
            match tenant_rule(spec) {
                Ok(rule) => {
                    if !rules.iter().any(|r| r.pattern == rule.pattern) {
                        rules.push(rule);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Policy::new(rules, specs.to_vec()))
    }

    fn new(rules: Vec<Rule>, tenant: Vec<RuleSpec>) -> Policy {
        let fixed_nonces = rules
            .iter()
            .map(|r| {
                let names: Option<Vec<&str>> = r
                    .pattern
                    .segments()
                    .iter()
                    .map(|s| match s {
                        Segment::Name(n) => Some(n.as_str()),
                        Segment::Any => None,
                    })
                    .collect();
                names.map(|n| crate::seal::value_nonce(&n))
            })
            .collect();
        let mut tree = vec![Node::default()];
        for (index, rule) in rules.iter().enumerate() {
            let mut at = 0;
            for seg in rule.pattern.segments() {
                let existing = match seg {
                    Segment::Name(n) => tree[at]
                        .named
                        .iter()
                        .find(|(m, _)| m == n)
                        .map(|(_, next)| *next),
                    Segment::Any => tree[at].any,
                };
                at = match existing {
                    Some(next) => next,
                    None => {
                        tree.push(Node::default());
                        let next = tree.len() - 1;
                        match seg {
                            Segment::Name(n) => tree[at].named.push((n.clone(), next)),
                            Segment::Any => tree[at].any = Some(next),
                        }
                        next
                    }
                };
            }
            tree[at].rule.get_or_insert(index);
        }
        Policy {
            rules,
            tenant,
            fixed_nonces,
            tree,
        }
    }

    /// Every rule in force, defaults first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The tenant's own rules as given.
    pub fn tenant_rules(&self) -> &[RuleSpec] {
        &self.tenant
    }

    /// The rule naming exactly this path, if any (the first, when patterns overlap).
    pub fn rule_for<S: AsRef<str>>(&self, path: &[S]) -> Option<&Rule> {
        self.rules.iter().find(|r| r.pattern.matches(path))
    }

    /// The nonce of the value at `path`, which rule `index` names.
    pub(crate) fn value_nonce<S: AsRef<str>>(&self, index: usize, path: &[S]) -> [u8; 12] {
        match self.fixed_nonces.get(index) {
            Some(Some(nonce)) => *nonce,
            _ => crate::seal::value_nonce(path),
        }
    }

    /// Whether some rule names a value below this path (so a walker must enter it).
    pub fn leads_below<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.rules
            .iter()
            .any(|r| r.pattern.segments().len() > path.len() && r.pattern.prefix_matches(path))
    }
}

fn tenant_rule(spec: &RuleSpec) -> Result<Rule, PolicyError> {
    let pattern = Pattern::parse(&spec.path, true)?;
    let root = match pattern.segments().first() {
        Some(Segment::Name(root)) if TENANT_ROOTS.contains(&root.as_str()) => root.clone(),
        _ => {
            return Err(PolicyError {
                path: spec.path.clone(),
                rule: "must start with before., after. or metadata. (the typed fields' personal \
                       paths are the schema's)"
                    .into(),
            })
        }
    };
    if pattern.segments().len() < 2 {
        return Err(PolicyError {
            path: spec.path.clone(),
            rule: "must name a member inside before, after or metadata".into(),
        });
    }
    let subject = match &spec.subject {
        Some(text) => SubjectRule::parse(text)?,
        None if root == "metadata" => SubjectRule::Actor,
        None => SubjectRule::Resource,
    };
    Ok(Rule { pattern, subject })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, subject: Option<&str>) -> RuleSpec {
        RuleSpec {
            path: path.into(),
            subject: subject.map(Into::into),
        }
    }

    #[test]
    fn defaults_are_the_registry_personal_fields() {
        let policy = Policy::default();
        let names: Vec<String> = policy
            .rules()
            .iter()
            .map(|r| r.pattern.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "actor.id",
                "actor.ip",
                "actor.user_agent",
                "actor.session_id",
                "resource.id",
                "resource.name",
                "metadata.query_values.*",
                "metadata.alert_group.*"
            ]
        );
        assert_eq!(
            policy.rule_for(&["actor", "ip"]).unwrap().subject,
            SubjectRule::Actor
        );
        assert_eq!(
            policy.rule_for(&["resource", "name"]).unwrap().subject,
            SubjectRule::Resource
        );
        assert!(policy.rule_for(&["action"]).is_none());
        assert!(policy.leads_below(&["actor"]));
        assert!(!policy.leads_below(&["after"]));
    }

    #[test]
    fn tenant_rules_with_wildcards_and_subjects() {
        let policy = Policy::with_tenant_rules(&[
            spec("after.email", Some("value")),
            spec("metadata.patient.*", Some("metadata.patient.id")),
            spec("before.*.ssn", None),
        ])
        .unwrap();
        assert_eq!(
            policy.rule_for(&["after", "email"]).unwrap().subject,
            SubjectRule::Value
        );
        let r = policy.rule_for(&["metadata", "patient", "name"]).unwrap();
        assert_eq!(r.subject.to_string(), "metadata.patient.id");
        assert_eq!(
            policy
                .rule_for(&["before", "profile", "ssn"])
                .unwrap()
                .subject,
            SubjectRule::Resource
        );
        assert!(policy.leads_below(&["before", "anything"]));
        assert!(policy.leads_below(&["metadata"]));
        assert!(!policy.leads_below(&["metadata", "other"]));
        assert!(policy.rule_for(&["metadata", "patient"]).is_none());
        assert_eq!(policy.tenant_rules().len(), 3);
    }

    #[test]
    fn bad_rules_name_the_path_and_the_rule() {
        let errors = Policy::with_tenant_rules(&[
            spec("actor.email", None),
            spec("after", None),
            spec("after..x", None),
            spec("after.e*", None),
            spec("after.x", Some("metadata.*")),
            spec("metadata.ok", None),
        ])
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["actor.email", "after", "after..x", "after.e*", "metadata.*"]
        );
        assert!(errors[0].rule.contains("before., after. or metadata."));
        assert!(errors[4].rule.contains("no `*`"), "{}", errors[4].rule);
        let many: Vec<RuleSpec> = (0..65)
            .map(|i| spec(&format!("after.f{i}"), None))
            .collect();
        assert!(Policy::with_tenant_rules(&many).is_err());
    }

    proptest::proptest! {
        /// Stepping member by member through the tree says what comparing the whole path with
        /// every rule says, for any rules (overlapping, with wildcards) and any walk.
        #[test]
        fn stepping_agrees_with_the_rules(
            rules in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["before", "after", "metadata"]),
                    proptest::collection::vec(
                        proptest::sample::select(vec!["a", "b", "*"]), 1..4),
                ),
                0..8,
            ),
            walk in proptest::collection::vec(
                (1usize..6, proptest::sample::select(vec![
                    "before", "after", "metadata", "actor", "a", "b", "c",
                ])),
                1..40,
            ),
        ) {
            let specs: Vec<RuleSpec> = rules
                .iter()
                .map(|(root, rest)| spec(&format!("{root}.{}", rest.join(".")), None))
                .collect();
            let policy = Policy::with_tenant_rules(&specs).unwrap();
            let mut matching = Matching::default();
            let mut path: Vec<&str> = Vec::new();
            for (depth, name) in walk {
                // A walker only goes one level below the member it last visited.
                let depth = depth.min(path.len() + 1);
                path.truncate(depth - 1);
                path.push(name);
                let matched = matching.step(&policy, depth, name);
                let expected = policy.rules().iter().position(|r| r.pattern.matches(&path));
                proptest::prop_assert_eq!(matched.rule, expected, "{:?}", path);
                proptest::prop_assert_eq!(matched.deeper, policy.leads_below(&path), "{:?}", path);
            }
        }
    }
}
