//! Detection rules: how they are written (a rules file in YAML or JSON, or the API's JSON) and
//! what they mean once checked.
//!
//! ```yaml
//! rules:
//!   - id: brute-force
//!     title: Repeated failed logins by one actor
//!     severity: high
//!     match: action:auth.login outcome:FAILURE
//!     condition: count > 5 within 5m by actor.id
//! ```
//!
//! `match` is a search in the query language (see `tally_query`); `condition` says when the
//! matching events raise an alert:
//!
//! ```text
//! condition = count | distinct | value | first_seen
//! count     = "count" cmp N "within" duration [ "by" fields ]
//! distinct  = "distinct" field cmp N "within" duration [ "by" fields ]
//! value     = "value" path cmp number          (path in metadata, before or after)
//! first_seen = "first_seen" field [ "after" duration ] [ "by" fields ]
//! cmp       = ">" | ">="
//! duration  = N ( "s" | "m" | "h" | "d" )      (1 s to 30 d)
//! fields    = field { "," field }              (exact-match fields: actor.id, ip, action, …)
//! ```
//!
//! Without a condition, every matching event raises an alert. `value metadata.rows > 10000`
//! raises one for each matching event whose number at that path is over the threshold (an
//! event without a number there raises none).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tally_event::fields::{self, FieldSpec};
use tally_query::Query;

/// The longest window a condition may count over: state is kept for that long.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// At most this many rules in one set.
pub const MAX_RULES: usize = 256;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Longest match, in characters (as a search's `q`).
pub const MAX_MATCH_CHARS: usize = 4096;

/// How serious an alert of the rule is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Worth a look soon.
    #[default]
    Medium,
    /// Someone should look now.
    High,
    /// Someone should be woken.
    Critical,
}

impl Severity {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A rule as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Names the rule in alerts, the API and the command line: 1 to 64 of `a-z`, `0-9`, `-`,
    /// `_`, `.`, starting with a letter or digit.
    pub id: String,
    /// One line for people.
    pub title: String,
    /// More for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How serious its alerts are (`medium` when not given).
    #[serde(default)]
    pub severity: Severity,
    /// Which events count: a search in the query language.
    #[serde(rename = "match")]
    pub matches: String,
    /// When the matching events raise an alert; every one when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Makes the rule a sequence: a search for the event that must follow the matching
    /// ones within the condition's window, in the same group. The condition's threshold
    /// arms the group; this event fires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    /// Counts only events received in (or, with `outside`, out of) these hours and days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<WhenSpec>,
    /// Whether the rule runs (`true` when not given).
    #[serde(default = "enabled", skip_serializing_if = "is_enabled")]
    pub enabled: bool,
}

/// Hours and days of the week, in a time zone, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    /// An IANA time zone (`Europe/Berlin`); UTC when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Days of the week: `mon-fri`, `sat,sun`, `mon,wed-fri`; every day when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<String>,
    /// Clock hours, `09:00-18:00` (the end excluded; `22:00-06:00` runs past midnight);
    /// the whole day when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// Count events received *outside* those days and hours (off-hours access).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside: bool,
}

/// A checked [`WhenSpec`].
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: WhenSpec,
    tz: jiff::tz::TimeZone,
    /// Monday first.
    days: [bool; 7],
    /// Minutes after midnight: start included, end excluded.
    start: u16,
    end: u16,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Schedule {
    /// Checks a written schedule.
    pub fn new(spec: WhenSpec) -> Result<Schedule, String> {
        let tz = match &spec.time_zone {
            None => jiff::tz::TimeZone::UTC,
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|_| {
                format!("time_zone: `{name}` is not an IANA time zone (such as Europe/Berlin or America/New_York)")
            })?,
        };
        let days = match &spec.days {
            None => [true; 7],
            Some(text) => parse_days(text)?,
        };
        let (start, end) = match &spec.hours {
            None => (0, 24 * 60),
            Some(text) => parse_hours(text)?,
        };
        Ok(Schedule {
            spec,
            tz,
            days,
            start,
            end,
        })
    }

    /// Whether an event received at `ms` (Unix milliseconds) counts.
    pub fn admits(&self, ms: i64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
            return false;
        };
        let local = ts.to_zoned(self.tz.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let day = local.weekday().to_monday_zero_offset() as usize;
        let inside = if self.start <= self.end {
            self.days[day] && (self.start..self.end).contains(&minute)
        } else if minute >= self.start {
            // Past midnight: the evening belongs to the day it starts on, the early
            // morning to the day before.
            self.days[day]
        } else {
            minute < self.end && self.days[(day + 6) % 7]
        };
        inside != self.spec.outside
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let bad = || {
        format!("days: `{text}` is not a list of days such as `mon-fri` or `sat,sun` (mon, tue, wed, thu, fri, sat, sun)")
    };
    let day = |name: &str| {
        DAY_NAMES
            .iter()
            .position(|d| d.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(bad)
    };
    let mut days = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

fn parse_hours(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("hours: `{text}` is not a range of clock times such as `09:00-18:00`");
    let minute = |t: &str| -> Result<u16, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 24 || m > 59 || (h == 24 && m > 0) || t.trim().len() != 5 {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (start, end) = (minute(a)?, minute(b)?);
    if start == end {
        return Err(format!(
            "hours: `{text}` is empty: the start and the end are the same"
        ));
    }
    Ok((start, end))
}

fn enabled() -> bool {
    true
}

fn is_enabled(e: &bool) -> bool {
    *e
}

/// A rules file: `rules:` and a list of [`RuleSpec`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The rules, each id once.
    pub rules: Vec<RuleSpec>,
}

/// A rule that cannot be used: which rule, which of its fields, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{}{field}: {message}", if rule.is_empty() { String::new() } else { format!("rule `{rule}`, ") })]
pub struct RuleError {
    /// The rule's id as written.
    pub rule: String,
    /// `id`, `title`, `match` or `condition`.
    pub field: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
}

/// A field of the schema registry, compared by name.
#[derive(Clone, Copy)]
pub struct FieldRef(pub &'static FieldSpec);

impl PartialEq for FieldRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for FieldRef {}

impl std::fmt::Debug for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl std::ops::Deref for FieldRef {
    type Target = FieldSpec;
    fn deref(&self) -> &FieldSpec {
        self.0
    }
}

/// When a rule's matching events raise an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every matching event.
    Each,
    /// At least `min` matching events of one group within `within`.
    Count {
        /// Events needed (`count > 5` needs 6).
        min: u64,
        /// The sliding window.
        within: Duration,
        /// Fields whose values make the group; none: one group.
        by: Vec<FieldRef>,
    },
    /// Each matching event whose number at `path` (`metadata.rows`) is over `threshold`.
    Value {
        /// Member names from the top of the record; the first is `metadata`, `before` or
        /// `after`.
        path: Vec<String>,
        /// The number compared against.
        threshold: f64,
        /// `>=` rather than `>`.
        inclusive: bool,
    },
    /// A value of `field` the group has never had before (an actor touching a resource type
    /// for the first time). With `after`, only once the group is at least that old: its first
    /// `after` is learning what is usual.
    FirstSeen {
        /// The field whose new values count.
        field: FieldRef,
        /// How long a group learns before its new values raise alerts.
        after: Option<Duration>,
        /// Fields whose values make the group.
        by: Vec<FieldRef>,
    },
    /// At least `min` different values of `field` among one group's matching events within
    /// `within`.
    Distinct {
        /// The field counted.
        field: FieldRef,
        /// Different values needed.
        min: u64,
        /// The sliding window.
        within: Duration,
        /// Fields whose values make the group.
        by: Vec<FieldRef>,
    },
}

impl Condition {
    /// The fields whose values make a group.
    pub fn group_by(&self) -> &[FieldRef] {
        match self {
            Condition::Each | Condition::Value { .. } => &[],
            Condition::Count { by, .. }
            | Condition::Distinct { by, .. }
            | Condition::FirstSeen { by, .. } => by,
        }
    }
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// As written.
    pub spec: RuleSpec,
    /// Its `match`, parsed.
    pub query: Query,
    /// Its `condition`, parsed.
    pub condition: Condition,
    /// Its `then`, parsed: the event that fires an armed group.
    pub then: Option<Query>,
    /// Its `when`, checked.
    pub schedule: Option<Schedule>,
}

/// Whether `id` may name a rule.
pub fn is_valid_rule_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
}

impl Rule {
    /// Checks a rule as written.
    pub fn new(spec: RuleSpec) -> Result<Rule, RuleError> {
        let err = |field: &'static str, message: String| RuleError {
            rule: spec.id.clone(),
            field,
            message,
        };
        if !is_valid_rule_id(&spec.id) {
            return Err(err(
                "id",
                "1 to 64 characters of a-z, 0-9, `-`, `_` and `.`, starting with a letter or \
                 digit"
                    .into(),
            ));
        }
        if spec.title.trim().is_empty()
            || spec.title.chars().count() > MAX_TITLE_CHARS
            || spec.title.chars().any(char::is_control)
            || spec.title.starts_with("tally:")
        {
            return Err(err(
                "title",
                format!(
                    "1 to {MAX_TITLE_CHARS} characters, not only white space, no control \
                     characters, not starting with `tally:` (alerts carry it as their reason)"
                ),
            ));
        }
        if spec
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
        {
            return Err(err(
                "description",
                format!("at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if spec.matches.chars().count() > MAX_MATCH_CHARS {
            return Err(err(
                "match",
                format!("at most {MAX_MATCH_CHARS} characters"),
            ));
        }
        let query = tally_query::parse(&spec.matches)
            .map_err(|e| err("match", format!("{} (at column {})", e.message, e.column)))?;
        let condition = match spec.condition.as_deref() {
            None => Condition::Each,
            Some(text) => parse_condition(text).map_err(|m| err("condition", m))?,
        };
        let then =
            match spec.then.as_deref() {
                None => None,
                Some(text) => {
                    if !matches!(
                        condition,
                        Condition::Count { .. } | Condition::Distinct { .. }
                    ) {
                        return Err(err(
                            "then",
                            "a sequence needs a window to follow within: a `count` or `distinct` \
                         condition (`count >= 1 within 10m by actor.id`)"
                                .into(),
                        ));
                    }
                    if text.chars().count() > MAX_MATCH_CHARS {
                        return Err(err("then", format!("at most {MAX_MATCH_CHARS} characters")));
                    }
                    Some(tally_query::parse(text).map_err(|e| {
                        err("then", format!("{} (at column {})", e.message, e.column))
                    })?)
                }
            };
        let schedule = match spec.when.clone() {
            None => None,
            Some(when) => Some(Schedule::new(when).map_err(|m| err("when", m))?),
        };
        Ok(Rule {
            spec,
            query,
            condition,
            then,
            schedule,
        })
    }
}

/// Checks every rule of a set; all broken rules are returned, and a repeated id is one.
pub fn check_rules(specs: Vec<RuleSpec>) -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut errors = Vec::new();
    if specs.len() > MAX_RULES {
        errors.push(RuleError {
            rule: String::new(),
            field: "rules",
            message: format!("at most {MAX_RULES} rules"),
        });
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
    let mut seen = std::collections::HashSet::new();
    for spec in specs {
        if !seen.insert(spec.id.clone()) {
            errors.push(RuleError {
                rule: spec.id.clone(),
                field: "id",
                message: "another rule has this id".into(),
            });
            continue;
        }
        match Rule::new(spec) {
            Ok(rule) => rules.push(rule),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Reads a rules file (YAML, or JSON, which is YAML too) and checks every rule in it.
pub fn parse_rule_file(text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let file: RuleFile = serde_saphyr::from_str(text).map_err(|e| {
        vec![RuleError {
            rule: String::new(),
            field: "rules",
            message: format!(
                "not a rules file ({e}); expected `rules:` and a list of rules, each with id, \
                 title, match and optionally severity, condition, then, when, description, \
                 enabled"
            ),
        }]
    })?;
    check_rules(file.rules)
}

/// Parses a condition (see the [module documentation](self) for the grammar).
pub fn parse_condition(text: &str) -> Result<Condition, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut at = 0usize;
    let next = |at: &mut usize, what: &str| -> Result<&str, String> {
        let w = words
            .get(*at)
            .copied()
            .ok_or_else(|| format!("expected {what} after `{}`", words[..*at].join(" ")))?;
        *at += 1;
        Ok(w)
    };
    let kind = next(&mut at, "`count`, `distinct` or `value`")?;
    let distinct_field = match kind {
        "count" => None,
        "value" => return value_condition(&words[1..]),
        "distinct" => Some(FieldRef(field(next(
            &mut at,
            "the field to count the values of",
        )?)?)),
        "first_seen" => return first_seen_condition(&words[1..]),
        "sequence" | "then" | "absent" | "travel" => {
            return Err(format!(
                "`{kind}` conditions are not available yet: use `count`, `distinct`, `value` or \
                 `first_seen` (and `then:` for sequences)"
            ))
        }
        other => {
            return Err(format!(
                "a condition starts with `count`, `distinct` or `value`, not `{other}`"
            ))
        }
    };
    let cmp = next(&mut at, "`>` or `>=`")?;
    let n: u64 = next(&mut at, "a whole number")?
        .parse()
        .map_err(|_| "the threshold is a whole number, such as `count > 5`".to_string())?;
    let min = match cmp {
        ">" => n.checked_add(1).ok_or("the threshold is too large")?,
        ">=" => n.max(1),
        other => return Err(format!("expected `>` or `>=`, not `{other}`")),
    };
    let within_kw = next(&mut at, "`within`")?;
    if within_kw != "within" {
        return Err(format!(
            "expected `within` and a duration (`within 5m`), not `{within_kw}`"
        ));
    }
    let within = duration(next(&mut at, "a duration such as `5m`")?)?;
    let by = parse_by(&words[at..])?;
    Ok(match distinct_field {
        None => Condition::Count { min, within, by },
        Some(field) => Condition::Distinct {
            field,
            min,
            within,
            by,
        },
    })
}

/// `value PATH > N`, after `value`.
fn value_condition(words: &[&str]) -> Result<Condition, String> {
    let [path, cmp, n] = words else {
        return Err(
            "write `value`, a path, `>` or `>=` and a number, such as `value metadata.rows > 10000`"
                .into(),
        );
    };
    let path: Vec<String> = path.split('.').map(str::to_string).collect();
    if path.len() < 2
        || !matches!(path[0].as_str(), "metadata" | "before" | "after")
        || path.iter().any(String::is_empty)
    {
        return Err(format!(
            "`{}` is not a path to a number: it starts with metadata, before or after and names              members with single dots (`metadata.rows`)",
            path.join(".")
        ));
    }
    let inclusive = match *cmp {
        ">" => false,
        ">=" => true,
        other => return Err(format!("expected `>` or `>=`, not `{other}`")),
    };
    let threshold: f64 = n
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| format!("`{n}` is not a number"))?;
    Ok(Condition::Value {
        path,
        threshold,
        inclusive,
    })
}

/// `[by F,…]` at the end of a condition.
fn parse_by(words: &[&str]) -> Result<Vec<FieldRef>, String> {
    let mut by = Vec::new();
    if let Some(&kw) = words.first() {
        if kw != "by" {
            return Err(format!("expected `by` and fields, or the end, not `{kw}`"));
        }
        let list = words[1..].join("");
        if list.is_empty() {
            return Err("expected fields after `by`, such as `by actor.id`".into());
        }
        for name in list.split(',') {
            let f = field(name)?;
            if by.iter().any(|b: &FieldRef| b.name == f.name) {
                return Err(format!("`{}` is named twice after `by`", f.name));
            }
            by.push(FieldRef(f));
        }
    }
    Ok(by)
}

/// `first_seen FIELD [after D] [by F,…]`, after `first_seen`.
fn first_seen_condition(words: &[&str]) -> Result<Condition, String> {
    let name = words.first().ok_or(
        "write `first_seen`, the field whose new values count, and optionally `after 7d` and \
         `by actor.id`",
    )?;
    let field = FieldRef(field(name)?);
    let mut rest = &words[1..];
    let mut after = None;
    if rest.first() == Some(&"after") {
        let d = rest
            .get(1)
            .ok_or("expected a duration after `after`, such as `after 7d`")?;
        after = Some(duration(d)?);
        rest = &rest[2..];
    }
    Ok(Condition::FirstSeen {
        field,
        after,
        by: parse_by(rest)?,
    })
}

fn field(name: &str) -> Result<&'static FieldSpec, String> {
    fields::by_alias(name).ok_or_else(|| {
        let known: Vec<&str> = fields::FIELDS
            .iter()
            .filter(|f| f.exact)
            .map(|f| f.name)
            .collect();
        format!("unknown field `{name}`; one of: {}", known.join(", "))
    })
}

fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration: a whole number and s, m, h or d (`5m`)");
    let unit = text.chars().last().ok_or_else(bad)?;
    let n: u64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    let d = Duration::from_secs(secs);
    if d.is_zero() || d > MAX_WINDOW {
        return Err(format!("`{text}`: a window is 1s to 30d"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, matches: &str, condition: Option<&str>) -> RuleSpec {
        RuleSpec {
            id: id.into(),
            title: "t".into(),
            description: None,
            severity: Severity::High,
            matches: matches.into(),
            condition: condition.map(Into::into),
            then: None,
            when: None,
            enabled: true,
        }
    }

    #[test]
    fn schedules_and_sequences_are_checked() {
        let when = |days: Option<&str>, hours: Option<&str>, tz: Option<&str>| {
            let mut s = spec("w", "", None);
            s.when = Some(WhenSpec {
                time_zone: tz.map(Into::into),
                days: days.map(Into::into),
                hours: hours.map(Into::into),
                outside: false,
            });
            Rule::new(s)
        };
        assert!(when(Some("mon-fri"), Some("09:00-18:00"), Some("Europe/Berlin")).is_ok());
        assert!(when(Some("fri-mon"), Some("22:00-06:00"), None).is_ok());
        for (days, hours, tz, says) in [
            (Some("weekdays"), None, None, "not a list of days"),
            (None, Some("9-18"), None, "not a range of clock times"),
            (None, Some("09:00-09:00"), None, "is empty"),
            (None, Some("25:00-26:00"), None, "not a range"),
            (None, None, Some("Mars/Olympus"), "not an IANA time zone"),
        ] {
            let e = when(days, hours, tz).unwrap_err();
            assert_eq!(e.field, "when");
            assert!(e.message.contains(says), "{e}");
        }
        let mut s = spec("seq", "outcome:FAILURE", None);
        s.then = Some("outcome:SUCCESS".into());
        assert!(Rule::new(s.clone())
            .unwrap_err()
            .message
            .contains("needs a window"));
        s.condition = Some("count >= 1 within 5m by actor".into());
        assert!(Rule::new(s.clone()).is_ok());
        s.then = Some("acter:x".into());
        assert_eq!(Rule::new(s).unwrap_err().field, "then");
    }

    #[test]
    fn past_midnight_hours_belong_to_the_day_they_start_on() {
        let s = Schedule::new(WhenSpec {
            time_zone: None,
            days: Some("fri".into()),
            hours: Some("22:00-06:00".into()),
            outside: false,
        })
        .unwrap();
        // 2026-05-01 is a Friday.
        let at = |day: i64, h: i64| (1_777_593_600 + day * 86_400 + h * 3600) * 1000;
        assert!(s.admits(at(0, 23)), "Friday 23:00");
        assert!(s.admits(at(1, 5)), "Saturday 05:00, Friday's night");
        assert!(!s.admits(at(1, 23)), "Saturday 23:00");
        assert!(!s.admits(at(0, 5)), "Friday 05:00 is Thursday's night");
    }

    #[test]
    fn conditions_parse() {
        assert_eq!(
            parse_condition("count > 5 within 5m by actor.id").unwrap(),
            Condition::Count {
                min: 6,
                within: Duration::from_secs(300),
                by: vec![FieldRef(&fields::ACTOR_ID)],
            }
        );
        assert_eq!(
            parse_condition("count >= 1 within 1h").unwrap(),
            Condition::Count {
                min: 1,
                within: Duration::from_secs(3600),
                by: vec![],
            }
        );
        assert_eq!(
            parse_condition("distinct resource.id > 100 within 10m by actor, ip").unwrap(),
            Condition::Distinct {
                field: FieldRef(&fields::RESOURCE_ID),
                min: 101,
                within: Duration::from_secs(600),
                by: vec![FieldRef(&fields::ACTOR_ID), FieldRef(&fields::ACTOR_IP)],
            }
        );
    }

    #[test]
    fn titles_that_an_alert_could_not_carry_are_refused() {
        for bad in [
            "",
            "  ",
            "Brute\u{1}force",
            "tally:erased",
            &"x".repeat(201),
        ] {
            let mut s = spec("t", "", None);
            s.title = bad.to_string();
            assert_eq!(Rule::new(s).unwrap_err().field, "title", "{bad:?}");
        }
    }

    #[test]
    fn broken_conditions_say_what_to_write() {
        for (bad, says) in [
            ("", "expected `count`, `distinct` or `value`"),
            ("sum > 5 within 5m", "not `sum`"),
            ("value metadata.rows > inf", "not a number"),
            ("count < 5 within 5m", "expected `>` or `>=`"),
            ("count > five within 5m", "whole number"),
            ("count > 5 in 5m", "expected `within`"),
            ("count > 5 within 5", "not a duration"),
            ("count > 5 within 0s", "1s to 30d"),
            ("count > 5 within 31d", "1s to 30d"),
            ("count > 5 within 5m per actor", "expected `by`"),
            ("count > 5 within 5m by", "expected fields"),
            ("count > 5 within 5m by actr", "unknown field `actr`"),
            ("count > 5 within 5m by actor,actor.id", "named twice"),
            ("distinct > 5 within 5m", "unknown field `>`"),
            ("sequence a then b", "not available yet"),
            ("first_seen", "write `first_seen`"),
            ("first_seen resource.type after", "expected a duration"),
            ("first_seen resource.type after 7x", "not a duration"),
            ("first_seen resource.type per actor", "expected `by`"),
            (
                "value metadata.rows",
                "such as `value metadata.rows > 10000`",
            ),
            ("value actor.id > 5", "not a path to a number"),
            ("value metadata..x > 5", "not a path to a number"),
            ("value metadata.rows < 5", "expected `>` or `>=`"),
            ("value metadata.rows > many", "not a number"),
        ] {
            let err = parse_condition(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn rule_sets_report_every_broken_rule() {
        let errors = check_rules(vec![
            spec(
                "ok",
                "outcome:FAILURE",
                Some("count > 5 within 5m by actor"),
            ),
            spec("Bad Id", "outcome:FAILURE", None),
            spec("bad-match", "acter:alice", None),
            spec("ok", "outcome:SUCCESS", None),
            // A broken rule's id is still taken: its twin is named too.
            spec("bad-match", "outcome:FAILURE", None),
        ])
        .unwrap_err();
        let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.rule.as_str(), e.field)).collect();
        assert_eq!(
            got,
            [
                ("Bad Id", "id"),
                ("bad-match", "match"),
                ("ok", "id"),
                ("bad-match", "id")
            ]
        );
        assert!(errors[1].message.contains("did you mean `actor`"));
        assert_eq!(check_rules(vec![spec("a", "", None)]).unwrap().len(), 1);
    }

    #[test]
    fn rules_files_are_yaml_or_json() {
        let yaml = "rules:\n  - id: brute-force\n    title: Repeated failed logins\n    \
                    severity: high\n    match: action:auth.login outcome:FAILURE\n    \
                    condition: count > 5 within 5m by actor.id\n";
        let rules = parse_rule_file(yaml).unwrap();
        assert_eq!(rules[0].spec.severity, Severity::High);
        assert_eq!(
            rules[0].condition,
            parse_condition("count > 5 within 5m by actor.id").unwrap()
        );
        let json = r#"{"rules": [{"id": "grant", "title": "Admin granted", "match": "action:role.grant"}]}"#;
        assert_eq!(parse_rule_file(json).unwrap()[0].condition, Condition::Each);
        for (bad, says) in [
            ("rules: 5", "not a rules file"),
            (
                "rules:\n  - id: x\n    title: t\n    match: ''\n    colour: red\n",
                "colour",
            ),
            ("rules:\n  - id: x\n    title: t\n", "match"),
            (
                "rules:\n  - id: x\n    title: t\n    match: ''\n    severity: dire\n",
                "dire",
            ),
        ] {
            let errors = parse_rule_file(bad).unwrap_err();
            assert!(errors[0].message.contains(says), "{bad:?}: {errors:?}");
        }
    }
}
