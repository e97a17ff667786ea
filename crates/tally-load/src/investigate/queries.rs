//! The investigation queries of the seeds, each written twice: in Tally's query language and
//! as the equivalent PostgreSQL `WHERE` clause over the baseline table.

use time::{Date, Month, OffsetDateTime, Time};

use super::dataset::Manifest;

/// A PostgreSQL parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum PgParam {
    /// A `text` value.
    Text(String),
    /// A `timestamptz` value.
    Time(OffsetDateTime),
}

/// One investigation query.
#[derive(Debug, Clone)]
pub struct InvestigationQuery {
    /// Short name for tables, e.g. `actor-30d-popular`.
    pub name: &'static str,
    /// What an investigator asks, with the picked parameter.
    pub question: String,
    /// Whether this is a full-text query (its target is 200 ms, not 20 ms).
    pub full_text: bool,
    /// The `q` parameter of `GET /v1/events`.
    pub tally: String,
    /// The `WHERE` condition over the baseline table, with `$1`, `$2`, … placeholders.
    pub pg_where: String,
    /// The values of the placeholders.
    pub pg_params: Vec<PgParam>,
}

/// Instants relative to the data set's "now", the way the seeds phrase them.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The data set's "now".
    pub now: OffsetDateTime,
    /// 30 days before now.
    pub days_30: OffsetDateTime,
    /// One hour before now.
    pub hour_1: OffsetDateTime,
    /// Midnight UTC of the first day of now's calendar quarter.
    pub quarter: OffsetDateTime,
}

impl Bounds {
    /// The bounds for a data set whose "now" is `now_ms` (Unix milliseconds).
    pub fn new(now_ms: i64) -> Self {
        let now = OffsetDateTime::from_unix_timestamp_nanos(now_ms as i128 * 1_000_000)
            .expect("a data set's now is a valid time");
        let first_month = (u8::from(now.month()) - 1) / 3 * 3 + 1;
        let quarter_day = Date::from_calendar_date(
            now.year(),
            Month::try_from(first_month).expect("1, 4, 7 or 10"),
            1,
        )
        .expect("the first of a month exists");
        Bounds {
            now,
            days_30: now - time::Duration::days(30),
            hour_1: now - time::Duration::hours(1),
            quarter: quarter_day.with_time(Time::MIDNIGHT).assume_utc(),
        }
    }
}

/// `2026-11-22T10:00:00.000Z`, as the query language takes absolute instants.
pub fn rfc3339_ms(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).expect("a UTC time formats")
}

/// Every query the benchmark runs, with parameters from the manifest.
///
/// Time bounds are absolute instants computed from the data set's "now" (what `after:30d`
/// resolves to when the data is fresh), so a rerun on a reused directory selects the same
/// events. "Failed" logins are every outcome but SUCCESS. The seeds' `action IN [DELETE,
/// EXPORT]` is the `category` field in Tally's schema.
pub fn investigation_queries(manifest: &Manifest) -> Vec<InvestigationQuery> {
    let b = Bounds::new(manifest.now_ms);
    let p = &manifest.params;
    let t = |x: OffsetDateTime| rfc3339_ms(x);
    let text = |s: &str| PgParam::Text(s.to_string());
    let mut queries = Vec::new();
    for (name, who, picked) in [
        (
            "actor-30d-popular",
            "the most active person",
            &p.actor_popular,
        ),
        (
            "actor-30d-typical",
            "a typical (median) person",
            &p.actor_typical,
        ),
    ] {
        queries.push(InvestigationQuery {
            name,
            question: format!(
                "all actions by {} ({who}) in the last 30 days",
                picked.value
            ),
            full_text: false,
            tally: format!("actor:{} after:{}", picked.value, t(b.days_30)),
            pg_where: "actor_id = $1 AND time >= $2".into(),
            pg_params: vec![text(&picked.value), PgParam::Time(b.days_30)],
        });
    }
    for (name, which, picked) in [
        (
            "record-popular",
            "the most accessed document",
            &p.document_popular,
        ),
        ("record-typical", "a median document", &p.document_typical),
    ] {
        queries.push(InvestigationQuery {
            name,
            question: format!("all access to DOCUMENT {} ({which})", picked.value),
            full_text: false,
            tally: format!("resource.type:DOCUMENT resource:{}", picked.value),
            pg_where: "resource_type = $1 AND resource_id = $2".into(),
            pg_params: vec![text("DOCUMENT"), text(&picked.value)],
        });
    }
    queries.push(InvestigationQuery {
        name: "failed-logins-1h",
        question: "all failed login attempts in the last hour".into(),
        full_text: false,
        tally: format!("action:user.login -outcome:SUCCESS after:{}", t(b.hour_1)),
        pg_where: "action = $1 AND outcome <> 'SUCCESS' AND time >= $2".into(),
        pg_params: vec![text("user.login"), PgParam::Time(b.hour_1)],
    });
    queries.push(InvestigationQuery {
        name: "grants-quarter",
        question: format!(
            "all admin privilege grants this quarter (role.grant since {})",
            b.quarter.date()
        ),
        full_text: false,
        tally: format!("action:role.grant after:{}", t(b.quarter)),
        pg_where: "action = $1 AND time >= $2".into(),
        pg_params: vec![text("role.grant"), PgParam::Time(b.quarter)],
    });
    queries.push(InvestigationQuery {
        name: "actor-delete-export-30d",
        question: format!(
            "actor_id={} AND action IN [DELETE, EXPORT] AND time > now-30d (the person with the most)",
            p.actor_suspect.value
        ),
        full_text: false,
        tally: format!(
            "actor:{} category:DELETE,EXPORT after:{}",
            p.actor_suspect.value,
            t(b.days_30)
        ),
        pg_where: "actor_id = $1 AND category IN ('DELETE', 'EXPORT') AND time >= $2".into(),
        pg_params: vec![text(&p.actor_suspect.value), PgParam::Time(b.days_30)],
    });
    queries.push(InvestigationQuery {
        name: "text-word",
        question: "full text: the word `refunded` (a value inside after snapshots)".into(),
        full_text: true,
        tally: "refunded".into(),
        pg_where: "to_tsvector('simple', data) @@ plainto_tsquery('simple', $1)".into(),
        pg_params: vec![text("refunded")],
    });
    queries.push(InvestigationQuery {
        name: "text-phrase",
        question: format!(
            "full text: the phrase \"{}\" (an e-mail address in metadata and snapshots)",
            p.email.value
        ),
        full_text: true,
        tally: format!("\"{}\"", p.email.value),
        pg_where: "to_tsvector('simple', data) @@ phraseto_tsquery('simple', $1)".into(),
        pg_params: vec![text(&p.email.value)],
    });
    queries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_starts_on_the_first_of_its_first_month() {
        let now = time::macros::datetime!(2026-11-23 01:20 UTC);
        let b = Bounds::new((now.unix_timestamp_nanos() / 1_000_000) as i64);
        assert_eq!(b.quarter, time::macros::datetime!(2026-10-01 0:00 UTC));
        assert_eq!(rfc3339_ms(b.hour_1), "2026-11-23T00:20:00.000Z");
        let march = time::macros::datetime!(2026-03-31 23:59 UTC);
        let b = Bounds::new((march.unix_timestamp_nanos() / 1_000_000) as i64);
        assert_eq!(b.quarter, time::macros::datetime!(2026-01-01 0:00 UTC));
    }
}
