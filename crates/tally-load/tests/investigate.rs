//! The investigation benchmark end to end at a tiny size, against the real PostgreSQL: every
//! query must give the same first page (same event ids, same order) and the same number of
//! matches from Tally's HTTP API as from PostgreSQL — `run` fails otherwise — and the picked
//! parameters must select something. No timing is asserted.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 with trust auth and a database `test`, or a connection
//! string in `TALLY_BENCH_PG_DSN` (see `tests/postgres_baseline.rs`).

use std::time::Duration;

use tally_load::investigate::{run, InvestigateOptions, LagOptions, Silent};

fn dsn() -> String {
    std::env::var("TALLY_BENCH_PG_DSN")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

fn options(data: &std::path::Path) -> InvestigateOptions {
    InvestigateOptions {
        data: data.to_path_buf(),
        events: 2_000,
        // Six hours, so that "the last hour" holds a sixth of the events.
        span: Duration::from_secs(6 * 3600),
        seed: 5,
        tenant: "bench".into(),
        postgres: Some(dsn()),
        pg_schema: "tally_investigate_test".into(),
        pg_copy_streams: 1,
        reuse_postgres: false,
        reuse_index: false,
        runs: 3,
        warmup: 1,
        lag: None,
        quiet: true,
    }
}

// `run` moves the rebuild onto the runtime's blocking path, which needs worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_and_postgres_agree_on_every_query() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut opts = options(&data);
    opts.lag = Some(LagOptions {
        rate: 5_000.0,
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        batch_size: 100,
        concurrency: 2,
        commit_interval: Duration::from_millis(50),
        seed: 5,
    });
    let report = run(&opts, &Silent)
        .await
        .unwrap_or_else(|e| panic!("{e}\n(is PostgreSQL running? see tests/postgres_baseline.rs)"));

    assert_eq!(report.fill.as_ref().map(|f| f.events), Some(2_000));
    let rebuild = report.rebuild.as_ref().expect("rebuilt");
    assert_eq!(rebuild.events, 2_000);
    assert!(rebuild.bytes_settled > 0);
    let pg = report.pg_load.as_ref().expect("loaded");
    assert_eq!(pg.rows, 2_000);
    assert!(pg.table_bytes > 0 && pg.btree_bytes > 0 && pg.gin_bytes > 0);

    assert_eq!(report.queries.len(), 9);
    for q in &report.queries {
        // `run` already compared ids and counts with PostgreSQL; here: each query finds events,
        // and the first page is full when there are enough.
        assert!(
            q.matches > 0,
            "{}: no matches for {}",
            q.query.name,
            q.query.tally
        );
        assert_eq!(q.page_rows as u64, q.matches.min(50), "{}", q.query.name);
        assert!(q.postgres.is_some() && q.pg_plan.is_some());
        assert!(q.tally_http.p50 <= q.tally_http.p99 && q.tally_http.p99 <= q.tally_http.max);
    }
    let p = &report.manifest.params;
    assert!(p.actor_popular.events >= p.actor_typical.events);
    assert!(p.document_popular.events >= p.document_typical.events);
    assert!(p.actor_suspect.events > 0);

    let lag = report.lag.as_ref().expect("measured");
    assert!(lag.ingest.events > 0 && lag.ingest.errors == 0);
    assert!(lag.samples > 0);
    let text = report.to_text();
    assert!(text.contains("actor-30d-popular") && text.contains("index lag"));
    assert_eq!(report.to_markdown().lines().count(), 2 + 9);

    // A rerun on the same directory skips the fill, and with the reuse flags the rebuild and
    // the load; the audit events of the first run's searches do not disturb the comparison.
    let mut again = options(&data);
    again.reuse_index = true;
    again.reuse_postgres = true;
    let second = run(&again, &Silent).await.unwrap();
    assert!(second.fill.is_none() && second.rebuild.is_none() && second.pg_load.is_none());
    assert_eq!(second.manifest, report.manifest);
    for (a, b) in report.queries.iter().zip(&second.queries) {
        assert_eq!(a.matches, b.matches, "{}", a.query.name);
    }

    // Another seed on the same directory is refused rather than mixed in.
    let mut other = options(&data);
    other.seed = 6;
    let refused = run(&other, &Silent).await.unwrap_err();
    assert!(
        refused.to_string().contains("use another --data"),
        "{refused}"
    );
}
