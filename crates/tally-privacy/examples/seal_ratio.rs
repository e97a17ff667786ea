//! Sealing's cost as a ratio of what ingest already spends per event, measured so that a noisy
//! machine does not decide the answer: 1000 realistic events are parsed, validated and encoded,
//! then the same events sealed, alternately, many times; each alternation gives one ratio, and
//! the median ratio is printed with the median times.
//!
//! `cargo run --release -p tally-privacy --example seal_ratio -- 400`

use tally_event::{parse_body, validate, BodyFormat, IngestContext};
use tally_privacy::keystore::SubjectKeys;
use tally_privacy::policy::Policy;
use tally_privacy::record;
use time::macros::datetime;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("the number of alternations"))
        .unwrap_or(400)
        .max(1);
    let ctx = IngestContext {
        received_at: datetime!(2026-05-01 12:00 UTC),
        key_id: "key-1",
        default_tenant: Some("acme"),
        max_future_skew: time::Duration::days(3650),
    };
    let mut gen = tally_eventgen::EventGenerator::new(7);
    let bodies: Vec<Vec<u8>> = (0..1000).map(|_| gen.next_json()).collect();
    let parse = |body: &[u8]| {
        let input = parse_body(body, BodyFormat::Json, 1)
            .unwrap()
            .pop()
            .unwrap();
        validate(input, &ctx).unwrap().record
    };
    let v1: Vec<Vec<u8>> = bodies.iter().map(|b| parse(b)).collect();
    let dir = tempfile::tempdir().unwrap();
    let keys = SubjectKeys::open(&dir.path().join("subject-keys")).unwrap();
    let policy = Policy::default();
    for r in &v1 {
        keys.ensure(&record::subjects(r, &policy).unwrap()).unwrap();
    }
    let (mut parsing, mut sealing, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0usize;
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        for body in &bodies {
            bytes += parse(body).len();
        }
        let p = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for r in &v1 {
            // As the server does: one walk, each subject's key looked up once.
            let plan = record::plan_record(r, &policy).unwrap();
            let subjects = plan.subjects();
            let found = keys.ensure_keys(&subjects).unwrap();
            let key_of = |s: &str| {
                let i = subjects.iter().position(|x| x == s)?;
                Some(found[i].clone())
            };
            bytes += plan.seal_with(&key_of).unwrap().len();
        }
        let s = t.elapsed().as_secs_f64();
        parsing.push(p);
        sealing.push(s);
        ratios.push(s / p);
    }
    std::hint::black_box(bytes);
    println!(
        "per event (median of {rounds}): parse + validate + encode {:.2} µs, seal {:.2} µs; \
         seal / parse median ratio {:.2}",
        median(parsing) * 1000.0,
        median(sealing) * 1000.0,
        median(ratios)
    );
}
