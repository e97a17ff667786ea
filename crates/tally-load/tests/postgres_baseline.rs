//! The PostgreSQL baseline against the real server: counts, hash chain, privileges, tampering.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 with trust auth and a database `test` (`scripts/test`
//! starts it), or a connection string in `TALLY_BENCH_PG_DSN`. Without one these tests fail:
//! a baseline that silently did not run would make BENCHMARKS.md claims unchecked.

use std::time::Duration;

use tally_load::postgres::{run_postgres, verify_pg_chain, PgDesign, PgLoadOptions, APP_ROLE};
use tally_load::{LoadError, LoadMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const EVENTS: u64 = 2_000;

fn dsn() -> String {
    std::env::var("TALLY_BENCH_PG_DSN")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

async fn connect() -> Client {
    let dsn = dsn();
    match tokio_postgres::connect(&dsn, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => panic!(
            "PostgreSQL is not reachable with {dsn:?}: {e}{}.\n\
             Start it (CI's .ci/run does so before the tests): `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`,\n\
             create the database if needed (`createdb -h 127.0.0.1 -U postgres test`), or point \
             TALLY_BENCH_PG_DSN at another server.",
            std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default()
        ),
    }
}

fn options(schema: &str, mode: LoadMode) -> PgLoadOptions {
    PgLoadOptions {
        dsn: dsn(),
        mode,
        concurrency: 4,
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        total_events: Some(EVENTS),
        seed: 11,
        schema: schema.into(),
        quiet: true,
        design: PgDesign::ChainHeadRow,
    }
}

async fn count(client: &Client, schema: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {schema}.audit_log"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Runs the baseline and checks that it stored exactly what it acknowledged, in a valid chain.
async fn run_and_check(schema: &str, mode: LoadMode) -> Client {
    run_design_and_check(schema, mode, PgDesign::ChainHeadRow).await
}

async fn run_design_and_check(schema: &str, mode: LoadMode, design: PgDesign) -> Client {
    let client = connect().await;
    let report = run_postgres(&PgLoadOptions {
        design,
        ..options(schema, mode)
    })
    .await
    .unwrap();
    println!("{}\n{report}", tally_load::LoadReport::header());
    assert_eq!(report.events, EVENTS);
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert!(report.p50_us > 0 && report.p50_us <= report.p99_us);
    assert_eq!(count(&client, schema).await, EVENTS as i64);
    assert_eq!(verify_pg_chain(&dsn(), schema).await.unwrap(), EVENTS);
    let distinct: i64 = client
        .query_one(&format!("SELECT count(DISTINCT data->>'id') FROM {schema}.audit_log WHERE data->>'id' = event_id::text"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        distinct, EVENTS as i64,
        "event_id must match the id inside data"
    );
    client
}

fn assert_broken_at(result: Result<u64, LoadError>, expected_seq: i64) {
    match result {
        Err(LoadError::ChainBroken { seq, reason }) => assert_eq!(seq, expected_seq, "{reason}"),
        other => panic!("tampering went unnoticed: {other:?}"),
    }
}

#[tokio::test]
async fn batched_baseline_is_complete_append_only_and_tamper_evident() {
    let schema = "tally_load_test_batched";
    let client = run_and_check(schema, LoadMode::Batched { batch_size: 100 }).await;

    // The application role may insert, but never change or remove history.
    client
        .batch_execute(&format!("SET ROLE {APP_ROLE}"))
        .await
        .unwrap();
    for sql in [
        format!("UPDATE {schema}.audit_log SET outcome = 'SUCCESS' WHERE seq = 5"),
        format!("DELETE FROM {schema}.audit_log WHERE seq = 5"),
        format!("TRUNCATE {schema}.audit_log"),
        format!("UPDATE {schema}.chain_head SET last_seq = 0"),
    ] {
        let err = client.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    // Forged chain columns in an insert are overwritten by the trigger.
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.audit_log (seq, event_id, time, actor_id, action, category, resource_type, \
             resource_id, outcome, data, prev_hash, entry_hash) VALUES (1, gen_random_uuid(), now(), 'mallory', \
             'user.login', 'LOGIN', 'USER', 'mallory', 'SUCCESS', '{{\"forged\": true}}', '\\x00', '\\x00')"
        ))
        .await
        .unwrap();
    client.batch_execute("RESET ROLE").await.unwrap();
    assert_eq!(verify_pg_chain(&dsn(), schema).await.unwrap(), EVENTS + 1);

    // A superuser can still edit a row, and the chain shows where.
    client
        .batch_execute(&format!(
            "UPDATE {schema}.audit_log SET data = jsonb_set(data, '{{outcome}}', '\"SUCCESS\"') \
             WHERE seq = 700 AND data->>'outcome' <> 'SUCCESS'; \
             UPDATE {schema}.audit_log SET data = jsonb_set(data, '{{outcome}}', '\"DENIED\"') \
             WHERE seq = 700 AND data->>'outcome' = 'SUCCESS'"
        ))
        .await
        .unwrap();
    assert_broken_at(verify_pg_chain(&dsn(), schema).await, 700);
}

#[tokio::test]
async fn single_insert_baseline_detects_removed_rows() {
    let schema = "tally_load_test_single";
    let client = run_and_check(schema, LoadMode::Single).await;

    // Removing the last entries leaves a valid-looking prefix; the chain head gives it away.
    client
        .batch_execute(&format!(
            "DELETE FROM {schema}.audit_log WHERE seq > {}",
            EVENTS - 3
        ))
        .await
        .unwrap();
    assert_broken_at(verify_pg_chain(&dsn(), schema).await, EVENTS as i64 - 2);

    // Removing a row in the middle breaks the sequence.
    client
        .batch_execute(&format!("DELETE FROM {schema}.audit_log WHERE seq = 42"))
        .await
        .unwrap();
    assert_broken_at(verify_pg_chain(&dsn(), schema).await, 42);
}

#[tokio::test]
async fn rehashing_a_tampered_row_breaks_the_next_link() {
    let schema = "tally_load_test_rehash";
    let client = connect().await;
    let mut opts = options(schema, LoadMode::Batched { batch_size: 50 });
    opts.total_events = Some(200);
    run_postgres(&opts).await.unwrap();
    // A careful attacker recomputes the altered row's own hash; the following row still points
    // at the old one.
    client
        .batch_execute(&format!(
            "UPDATE {schema}.audit_log SET data = data || '{{\"reason\": \"approved\"}}' WHERE seq = 10; \
             UPDATE {schema}.audit_log SET entry_hash = sha256(prev_hash || convert_to(data::text, 'UTF8')) WHERE seq = 10"
        ))
        .await
        .unwrap();
    assert_broken_at(verify_pg_chain(&dsn(), schema).await, 11);
    assert_eq!(count(&client, schema).await, 200);
}

#[tokio::test]
async fn bad_schema_names_are_refused_before_touching_the_database() {
    let opts = options("public; DROP TABLE x", LoadMode::Single);
    assert!(matches!(
        run_postgres(&opts).await,
        Err(LoadError::InvalidOptions(_))
    ));
}

/// The strongest honest version of the seeds' design: COPY batches, the chain's head read
/// from the last row under an advisory lock. Complete, append-only and tamper-evident like
/// the other, concurrent batches included; but a cut-off tail leaves a valid chain, since
/// nothing records where the chain ended (what Tally's signed checkpoints add).
#[tokio::test]
async fn copy_batches_under_an_advisory_lock_keep_one_valid_chain() {
    for (schema, mode) in [
        (
            "tally_load_test_copy",
            LoadMode::Batched { batch_size: 100 },
        ),
        ("tally_load_test_copy_single", LoadMode::Single),
    ] {
        let client = run_design_and_check(schema, mode, PgDesign::AdvisoryCopy).await;
        client
            .batch_execute(&format!("SET ROLE {APP_ROLE}"))
            .await
            .unwrap();
        for sql in [
            format!("UPDATE {schema}.audit_log SET outcome = 'SUCCESS' WHERE seq = 5"),
            format!("DELETE FROM {schema}.audit_log WHERE seq = 5"),
            format!("TRUNCATE {schema}.audit_log"),
        ] {
            let err = client.batch_execute(&sql).await.expect_err(&sql);
            assert_eq!(
                err.code(),
                Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                "{sql}: {err}"
            );
        }
        client.batch_execute("RESET ROLE").await.unwrap();
        // A superuser's edit shows where it was made.
        client
            .batch_execute(&format!(
                "UPDATE {schema}.audit_log SET data = data || '{{\"reason\": \"approved\"}}' WHERE seq = 300"
            ))
            .await
            .unwrap();
        assert_broken_at(verify_pg_chain(&dsn(), schema).await, 300);
        client
            .batch_execute(&format!("DELETE FROM {schema}.audit_log WHERE seq >= 300"))
            .await
            .unwrap();
        // Cutting the tail from there on leaves a chain nothing can tell from a whole one.
        assert_eq!(verify_pg_chain(&dsn(), schema).await.unwrap(), 299);
    }
}
