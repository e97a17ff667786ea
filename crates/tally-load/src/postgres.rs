//! The PostgreSQL baseline: the audit log most guides recommend, measured with Tally's workload.
//!
//! Two designs ([`PgDesign`]), both a hash chain kept by the database itself:
//! - [`PgDesign::AdvisoryCopy`] (the default, the strongest honest version): the trigger
//!   takes a transaction-scoped advisory lock and reads the chain's head from the table's
//!   last row (one index probe, nothing updated), and batches arrive by `COPY`;
//! - [`PgDesign::ChainHeadRow`]: a `chain_head` row locked and updated once per inserted row,
//!   batches by multi-row `INSERT`, as the first version of the baseline did.
//!
//! [`setup_schema`] builds, in its own schema:
//! - `audit_log`, with the seeds' columns (event id, time, actor, IP, action, category,
//!   resource, outcome, request id), the whole event as `data jsonb`, and `prev_hash` /
//!   `entry_hash` forming a hash chain: `entry_hash = sha256(prev_hash || data::text)`;
//! - the investigation indexes `(actor_id, time)`, `(resource_type, resource_id, time)` and
//!   `(action, time)`;
//! - a `BEFORE INSERT` trigger that assigns `seq` and computes the hashes. Either design
//!   serialises inserters until their transaction commits (the chain has one head): with
//!   `chain_head`, one row holding the last sequence number and hash, locked and advanced for
//!   every row; with the advisory lock, the head is the row with the largest `seq`, and rows
//!   inserted earlier by the same `COPY` are visible to the trigger, so a batch chains within
//!   itself. That serialisation is the honest price of a hash chain kept by the database, and
//!   the main thing the benchmark measures;
//! - the role [`APP_ROLE`], which may only `INSERT` and `SELECT` on `audit_log` (no `UPDATE`,
//!   `DELETE` or `TRUNCATE`, and no access to `chain_head`), under which every insert runs.
//!
//! Commits are durable (`synchronous_commit` is left at the server's setting, `on` by default).
//! `seq` is assigned by the trigger rather than by a `bigserial` default: defaults are evaluated
//! before the lock is taken, so under concurrency sequence values would not follow chain order.
//!
//! The chain detects a changed or removed row, and with `chain_head` [`verify_pg_chain`]
//! compares the head row with the last entry to catch a cut-off tail; with the advisory design
//! a cut-off tail leaves a valid chain (nothing records where it ended). Neither can catch someone with superuser rights
//! rewriting the whole chain from a point onwards, head included: nothing outside the database
//! commits to it, which is what Tally's signed checkpoints add.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, NoTls, Statement};

use crate::driver::{drive, worker_rng, Claim, Plan, Worker, POOL_EVENTS};
use crate::generate::{fresh_id, Event, EventGenerator, ID_RANGE};
use crate::{error_chain, LoadError, LoadMode, LoadReport};

/// The role inserts run under; created (cluster-wide, `NOLOGIN`) if missing, never dropped.
pub const APP_ROLE: &str = "tally_bench_app";

/// How the baseline keeps its hash chain's head (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgDesign {
    /// Head read from the last row under a transaction-scoped advisory lock; batches by COPY.
    #[default]
    AdvisoryCopy,
    /// A `chain_head` row locked and updated per row; batches by multi-row INSERT.
    ChainHeadRow,
}

impl PgDesign {
    /// The name in reports.
    pub fn label(self) -> &'static str {
        match self {
            PgDesign::AdvisoryCopy => "postgres",
            PgDesign::ChainHeadRow => "postgres (chain_head row)",
        }
    }
}

/// Options of a run against the PostgreSQL baseline.
#[derive(Debug, Clone)]
pub struct PgLoadOptions {
    /// libpq-style connection string or URL, e.g. `host=127.0.0.1 user=postgres dbname=test`.
    /// The user must be able to create schemas, create [`APP_ROLE`] and `SET ROLE` to it
    /// (a superuser can).
    pub dsn: String,
    /// One event per autocommitted INSERT, or a batch per multi-row INSERT.
    pub mode: LoadMode,
    /// Connections inserting at once, each from its own task.
    pub concurrency: usize,
    /// Length of the measured phase. Zero means no time limit (then `total_events` must be set).
    pub duration: Duration,
    /// Inserts made before measuring starts; not counted, but they are in the table.
    pub warmup: Duration,
    /// Stop the measured phase after exactly this many events were inserted.
    pub total_events: Option<u64>,
    /// Seed of the event generator (the same seed gives the same events as the HTTP run).
    pub seed: u64,
    /// Schema holding the baseline; dropped and recreated at the start of every run.
    /// Lowercase letters, digits and `_` only.
    pub schema: String,
    /// Do not draw a progress line on stderr.
    pub quiet: bool,
    /// How the chain's head is kept.
    pub design: PgDesign,
}

impl Default for PgLoadOptions {
    fn default() -> Self {
        Self {
            dsn: "host=127.0.0.1 user=postgres dbname=test".into(),
            mode: LoadMode::Batched { batch_size: 1000 },
            concurrency: 8,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            total_events: None,
            seed: 1,
            schema: "tally_bench".into(),
            quiet: false,
            design: PgDesign::default(),
        }
    }
}

/// Recreates the baseline schema (see the [module docs](self)) and runs the load against it.
///
/// Rows inserted during warm-up stay in the table, so the table holds at least
/// [`LoadReport::events`] rows afterwards; exactly that many when `warmup` is zero.
pub async fn run_postgres(opts: &PgLoadOptions) -> Result<LoadReport, LoadError> {
    run_postgres_with_pool(opts, POOL_EVENTS).await
}

async fn run_postgres_with_pool(
    opts: &PgLoadOptions,
    pool_cap: usize,
) -> Result<LoadReport, LoadError> {
    let plan = Plan::new(
        opts.design.label(),
        opts.mode,
        opts.concurrency,
        opts.duration,
        opts.warmup,
        opts.total_events,
        opts.quiet,
    )?;
    setup_schema(&opts.dsn, &opts.schema, opts.design).await?;

    let generator = EventGenerator::new(opts.seed);
    let (events, batch) = (plan.pool_events(pool_cap), plan.batch);
    let pool = tokio::task::spawn_blocking(move || build_pool(generator, events, batch))
        .await
        .map_err(|e| LoadError::Task(e.to_string()))?;
    let pool = Arc::new(pool);

    let table = format!("{}.audit_log", quote_schema(&opts.schema)?);
    let copy = opts.design == PgDesign::AdvisoryCopy && opts.mode != LoadMode::Single;
    let sql = match opts.mode {
        LoadMode::Single => format!("INSERT INTO {table} ({COLUMNS}) VALUES ({SINGLE_VALUES})"),
        LoadMode::Batched { .. } if copy => {
            format!("COPY {table} ({COLUMNS}) FROM STDIN WITH (FORMAT csv)")
        }
        LoadMode::Batched { .. } => format!("INSERT INTO {table} ({COLUMNS}) {BATCH_SELECT}"),
    };
    let mut workers = Vec::with_capacity(plan.concurrency);
    for i in 0..plan.concurrency {
        let client = connect(&opts.dsn).await?;
        client
            .batch_execute(&format!("SET ROLE {APP_ROLE}"))
            .await
            .map_err(pg(format!("switching to role {APP_ROLE}")))?;
        let insert = client
            .prepare(&sql)
            .await
            .map_err(pg("preparing the insert"))?;
        workers.push(PgWorker {
            client,
            insert,
            how: match opts.mode {
                LoadMode::Single => Insert::Single,
                LoadMode::Batched { .. } if copy => Insert::Copy,
                LoadMode::Batched { .. } => Insert::Unnest,
            },
            pool: Arc::clone(&pool),
            rng: worker_rng(opts.seed, i),
        });
    }
    drive(&plan, workers).await
}

/// Drops `schema` if it exists and creates the baseline in it: table, indexes, the chain's
/// trigger (and `chain_head` for [`PgDesign::ChainHeadRow`]), and [`APP_ROLE`]'s privileges.
pub async fn setup_schema(dsn: &str, schema: &str, design: PgDesign) -> Result<(), LoadError> {
    let s = quote_schema(schema)?;
    let client = connect(dsn).await?;
    let chain = match design {
        PgDesign::AdvisoryCopy => ADVISORY_CHAIN_SQL,
        PgDesign::ChainHeadRow => CHAIN_HEAD_SQL,
    };
    let sql = format!("{SETUP_SQL}{chain}{GRANTS_SQL}");
    client
        .batch_execute(&sql.replace("{s}", &s).replace("{app}", APP_ROLE))
        .await
        .map_err(pg(format!("creating schema {s}")))
}

/// Recomputes the hash chain of the baseline in `schema` from its first row and returns the
/// number of rows checked.
///
/// Hashes are recomputed here, independently of the server's `sha256`. Fails with
/// [`LoadError::ChainBroken`] at the first row whose sequence number, `prev_hash` or
/// `entry_hash` is not what the rows before it imply, or if `chain_head` does not match the
/// last row (a removed tail).
pub async fn verify_pg_chain(dsn: &str, schema: &str) -> Result<u64, LoadError> {
    let s = quote_schema(schema)?;
    let mut client = connect(dsn).await?;
    // A repeatable-read snapshot, so rows inserted while verifying are either all seen
    // (head included) or not at all.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg("starting the verification transaction"))?;
    // Only the chain_head design records where the chain ends.
    let has_head: bool = tx
        .query_one(
            &format!(
                "SELECT to_regclass('{}.chain_head') IS NOT NULL",
                s.replace('"', "")
            ),
            &[],
        )
        .await
        .map_err(pg("looking for chain_head"))?
        .get(0);
    let head: Option<(i64, Vec<u8>)> = if has_head {
        let row = tx
            .query_one(
                &format!("SELECT last_seq, last_hash FROM {s}.chain_head"),
                &[],
            )
            .await
            .map_err(pg("reading chain_head"))?;
        Some((row.get(0), row.get(1)))
    } else {
        None
    };
    let stmt = tx
        .prepare(&format!(
            "SELECT seq, prev_hash, entry_hash, data::text FROM {s}.audit_log ORDER BY seq"
        ))
        .await
        .map_err(pg("preparing the chain scan"))?;
    // A portal streams the table in chunks instead of loading millions of rows at once.
    let portal = tx
        .bind(&stmt, &[])
        .await
        .map_err(pg("opening the chain scan"))?;
    let mut prev = vec![0u8; 32];
    let mut expected_seq = 1i64;
    loop {
        let rows = tx
            .query_portal(&portal, 10_000)
            .await
            .map_err(pg("scanning audit_log"))?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let seq: i64 = row.get(0);
            let prev_hash: &[u8] = row.get(1);
            let entry_hash: &[u8] = row.get(2);
            let data: &str = row.get(3);
            let broken = |reason: String| {
                Err(LoadError::ChainBroken {
                    seq: expected_seq,
                    reason,
                })
            };
            if seq != expected_seq {
                return broken(format!("found seq {seq}: rows are missing"));
            }
            if prev_hash != prev {
                return broken("prev_hash is not the previous entry_hash".into());
            }
            let recomputed: [u8; 32] = Sha256::new()
                .chain_update(&prev)
                .chain_update(data)
                .finalize()
                .into();
            if entry_hash != recomputed {
                return broken(format!(
                    "entry_hash {} does not match the row's data (recomputed {})",
                    hex::encode(entry_hash),
                    hex::encode(recomputed)
                ));
            }
            prev = recomputed.to_vec();
            expected_seq += 1;
        }
    }
    let checked = expected_seq - 1;
    if let Some((head_seq, head_hash)) = head.filter(|(seq, hash)| *seq != checked || *hash != prev)
    {
        return Err(LoadError::ChainBroken {
            seq: checked + 1,
            reason: format!(
                "chain_head says {head_seq} entries ending in {}, the table has {checked}",
                hex::encode(&head_hash)
            ),
        });
    }
    Ok(checked as u64)
}

const SETUP_SQL: &str = r#"
DROP SCHEMA IF EXISTS {s} CASCADE;
CREATE SCHEMA {s};
DO $$ BEGIN
    CREATE ROLE {app} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- it exists already, or a concurrent setup just created it
END $$;

CREATE TABLE {s}.audit_log (
    seq           bigint PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    time          timestamptz NOT NULL,
    actor_id      text NOT NULL,
    actor_ip      inet,
    action        text NOT NULL,
    category      text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text NOT NULL,
    outcome       text NOT NULL,
    request_id    text,
    data          jsonb NOT NULL,
    prev_hash     bytea NOT NULL,
    entry_hash    bytea NOT NULL
);
CREATE INDEX ON {s}.audit_log (actor_id, time);
CREATE INDEX ON {s}.audit_log (resource_type, resource_id, time);
CREATE INDEX ON {s}.audit_log (action, time);
"#;

/// The chain's head in a row of its own, locked and advanced for every inserted row.
const CHAIN_HEAD_SQL: &str = r#"
CREATE TABLE {s}.chain_head (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_seq  bigint NOT NULL,
    last_hash bytea NOT NULL
);
INSERT INTO {s}.chain_head VALUES (true, 0, decode(repeat('00', 32), 'hex'));

-- SECURITY DEFINER: the trigger may advance chain_head, the application role may not.
CREATE FUNCTION {s}.audit_log_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    head record;
BEGIN
    -- The row lock is held until commit: inserters queue here, one transaction at a time.
    SELECT last_seq, last_hash INTO head FROM {s}.chain_head WHERE one FOR UPDATE;
    NEW.seq := head.last_seq + 1;
    NEW.prev_hash := head.last_hash;
    NEW.entry_hash := sha256(head.last_hash || convert_to(NEW.data::text, 'UTF8'));
    UPDATE {s}.chain_head SET last_seq = NEW.seq, last_hash = NEW.entry_hash WHERE one;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON {s}.audit_log
    FOR EACH ROW EXECUTE FUNCTION {s}.audit_log_chain();
"#;

/// The chain's head read from the last row, under a transaction-scoped advisory lock: nothing
/// is updated per row. Rows an earlier row of the same statement inserted are visible here
/// (a BEFORE ROW trigger sees the effects of earlier rows of its command), so a COPY batch
/// chains within itself.
const ADVISORY_CHAIN_SQL: &str = r#"
CREATE FUNCTION {s}.audit_log_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    head record;
BEGIN
    -- Held until commit (re-taking it in the same transaction is free): one chain head.
    PERFORM pg_advisory_xact_lock(hashtext('{s}.audit_log'));
    SELECT seq, entry_hash INTO head FROM {s}.audit_log ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        NEW.seq := 1;
        NEW.prev_hash := decode(repeat('00', 32), 'hex');
    ELSE
        NEW.seq := head.seq + 1;
        NEW.prev_hash := head.entry_hash;
    END IF;
    NEW.entry_hash := sha256(NEW.prev_hash || convert_to(NEW.data::text, 'UTF8'));
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON {s}.audit_log
    FOR EACH ROW EXECUTE FUNCTION {s}.audit_log_chain();
"#;

const GRANTS_SQL: &str = r#"
REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC;
REVOKE ALL ON FUNCTION {s}.audit_log_chain() FROM PUBLIC;
GRANT USAGE ON SCHEMA {s} TO {app};
GRANT SELECT, INSERT ON {s}.audit_log TO {app};
REVOKE UPDATE, DELETE, TRUNCATE ON {s}.audit_log FROM {app};
"#;

const COLUMNS: &str =
    "event_id, time, actor_id, actor_ip, action, category, resource_type, resource_id, outcome, request_id, data";

/// Parameters travel as text and are cast by the server, so no driver type features are needed;
/// the casts cost PostgreSQL far less than the commit they are part of.
const SINGLE_VALUES: &str =
    "$1::text::uuid, $2::text::timestamptz, $3::text, $4::text::inet, $5::text, \
     $6::text, $7::text, $8::text, $9::text, $10::text, $11::text::jsonb";

/// One statement for a whole batch: eleven parallel arrays, one element per event.
const BATCH_SELECT: &str =
    "SELECT e::uuid, t::timestamptz, a, ip::inet, ac, c, rt, ri, o, r, d::jsonb \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) \
     AS u(e, t, a, ip, ac, c, rt, ri, o, r, d)";

/// One pre-generated row: the projected columns plus the whole event as JSON.
#[derive(Debug)]
struct Row {
    id: String,
    time: String,
    actor_id: String,
    actor_ip: String,
    action: &'static str,
    category: &'static str,
    resource_type: &'static str,
    resource_id: String,
    outcome: &'static str,
    request_id: String,
    data: String,
}

impl Row {
    fn new(event: Event) -> Self {
        let data = String::from_utf8(event.to_json()).expect("serde_json writes UTF-8");
        Self {
            id: event.id.to_string(),
            time: event.time,
            actor_id: event.actor.id,
            actor_ip: event.actor.ip,
            action: event.action,
            category: event.category,
            resource_type: event.resource.kind,
            resource_id: event.resource.id,
            outcome: event.outcome,
            request_id: event.request_id,
            data,
        }
    }
}

fn build_pool(mut generator: EventGenerator, events: usize, batch: usize) -> Vec<Vec<Row>> {
    (0..events / batch)
        .map(|_| {
            (0..batch)
                .map(|_| Row::new(generator.next_event()))
                .collect()
        })
        .collect()
}

/// How a worker sends its rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Insert {
    /// One autocommitted INSERT per event.
    Single,
    /// One INSERT … SELECT FROM unnest(…) per batch.
    Unnest,
    /// One COPY … FROM STDIN (CSV) per batch.
    Copy,
}

/// Appends `field` to a CSV line, always quoted: an empty string stays an empty string (not
/// NULL), and commas, quotes and newlines inside JSON are safe.
fn push_csv_field(line: &mut Vec<u8>, field: &str, last: bool) {
    line.push(b'"');
    for b in field.bytes() {
        if b == b'"' {
            line.push(b'"');
        }
        line.push(b);
    }
    line.push(b'"');
    line.push(if last { b'\n' } else { b',' });
}

struct PgWorker {
    client: Client,
    insert: Statement,
    how: Insert,
    pool: Arc<Vec<Vec<Row>>>,
    rng: StdRng,
}

impl Worker for PgWorker {
    async fn send(&mut self, claim: Claim) -> Result<(), String> {
        let (slot, reused) = claim.slot(self.pool.len());
        let rows = &self.pool[slot][..claim.events];
        // A reused row needs a new event id (the column is unique), in `event_id` and in `data`.
        let renewed: Vec<(String, String)> = if reused {
            rows.iter()
                .map(|row| {
                    let id = fresh_id(&mut self.rng);
                    let id = std::str::from_utf8(&id)
                        .expect("hex and hyphens")
                        .to_string();
                    let mut data = row.data.clone();
                    data.replace_range(ID_RANGE, &id);
                    (id, data)
                })
                .collect()
        } else {
            Vec::new()
        };
        let (ids, data): (Vec<&str>, Vec<&str>) = if reused {
            renewed
                .iter()
                .map(|(id, d)| (id.as_str(), d.as_str()))
                .unzip()
        } else {
            rows.iter()
                .map(|r| (r.id.as_str(), r.data.as_str()))
                .unzip()
        };
        let inserted = if self.how == Insert::Copy {
            let mut body = Vec::with_capacity(rows.len() * 700);
            for (i, r) in rows.iter().enumerate() {
                for field in [
                    ids[i],
                    &r.time,
                    &r.actor_id,
                    &r.actor_ip,
                    r.action,
                    r.category,
                    r.resource_type,
                    &r.resource_id,
                    r.outcome,
                    &r.request_id,
                ] {
                    push_csv_field(&mut body, field, false);
                }
                push_csv_field(&mut body, data[i], true);
            }
            copy_rows(&self.client, &self.insert, body).await
        } else if self.how == Insert::Single {
            let r = &rows[0];
            self.client
                .execute(
                    &self.insert,
                    &[
                        &ids[0],
                        &r.time,
                        &r.actor_id,
                        &r.actor_ip,
                        &r.action,
                        &r.category,
                        &r.resource_type,
                        &r.resource_id,
                        &r.outcome,
                        &r.request_id,
                        &data[0],
                    ],
                )
                .await
        } else {
            let column = |f: fn(&Row) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
            self.client
                .execute(
                    &self.insert,
                    &[
                        &ids,
                        &column(|r| &r.time),
                        &column(|r| &r.actor_id),
                        &column(|r| &r.actor_ip),
                        &column(|r| r.action),
                        &column(|r| r.category),
                        &column(|r| r.resource_type),
                        &column(|r| &r.resource_id),
                        &column(|r| r.outcome),
                        &column(|r| &r.request_id),
                        &data,
                    ],
                )
                .await
        };
        match inserted {
            Ok(n) if n == claim.events as u64 => Ok(()),
            Ok(n) => Err(format!("inserted {n} of {} rows", claim.events)),
            Err(e) => Err(format!("insert failed: {}", error_chain(&e))),
        }
    }
}

/// Sends one COPY batch and returns the number of rows stored (committed: COPY outside a
/// transaction block commits by itself).
async fn copy_rows(
    client: &Client,
    statement: &Statement,
    body: Vec<u8>,
) -> Result<u64, tokio_postgres::Error> {
    use futures_util::SinkExt;
    let sink = client.copy_in::<_, bytes::Bytes>(statement).await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(body)).await?;
    sink.as_mut().finish().await
}

async fn connect(dsn: &str) -> Result<Client, LoadError> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls)
        .await
        .map_err(pg(format!("connecting with {dsn:?}")))?;
    // The connection future performs the I/O; it ends (and its error surfaces on the client's
    // next call) when the client is dropped or the server goes away.
    tokio::spawn(connection);
    Ok(client)
}

/// The schema name double-quoted for SQL, after checking it is a plain identifier: it is
/// spliced into DDL, so anything else is refused rather than escaped.
fn quote_schema(schema: &str) -> Result<String, LoadError> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(format!("\"{schema}\""))
    } else {
        Err(LoadError::InvalidOptions(format!(
            "schema {schema:?} must be 1-63 lowercase letters, digits or '_', not starting with a digit"
        )))
    }
}

fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
    let context = context.into();
    move |error| LoadError::Postgres { context, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reused rows get fresh ids in both `event_id` and `data`, and warm-up rows are stored but
    /// not reported. Needs the PostgreSQL of `tests/postgres_baseline.rs`.
    #[tokio::test]
    async fn reused_rows_get_fresh_ids_and_warmup_is_stored_but_not_counted() {
        let dsn = std::env::var("TALLY_BENCH_PG_DSN")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
        let schema = "tally_load_unit_reuse";
        let opts = PgLoadOptions {
            dsn: dsn.clone(),
            mode: LoadMode::Batched { batch_size: 10 },
            concurrency: 2,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(200),
            total_events: None,
            seed: 3,
            schema: schema.into(),
            quiet: true,
            design: PgDesign::AdvisoryCopy,
        };
        let report = match run_postgres_with_pool(&opts, 50).await {
            Err(e @ LoadError::Postgres { .. }) => {
                panic!("{e}\nIs PostgreSQL running? See tests/postgres_baseline.rs.")
            }
            other => other.unwrap(),
        };
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert!(
            report.events > 50,
            "the pool of 50 events must have been reused"
        );
        let client = connect(&dsn).await.unwrap();
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), count(DISTINCT event_id), \
                     count(*) FILTER (WHERE data->>'id' = event_id::text) FROM {schema}.audit_log"
                ),
                &[],
            )
            .await
            .unwrap();
        let (rows, distinct, consistent): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert!(rows as u64 > report.events, "warm-up rows are in the table");
        assert_eq!((distinct, consistent), (rows, rows));
        assert_eq!(verify_pg_chain(&dsn, schema).await.unwrap(), rows as u64);
    }

    #[test]
    fn schema_names_are_checked() {
        assert_eq!(quote_schema("tally_bench_2").unwrap(), "\"tally_bench_2\"");
        for bad in ["", "2fast", "Tally", "a;drop", "a\"b", &"x".repeat(64)] {
            assert!(quote_schema(bad).is_err(), "{bad:?} accepted");
        }
    }
}
