//! The PostgreSQL side: the same events, read back from Tally's log, loaded with `COPY` into a
//! table shaped like the baseline's `audit_log` (see [`crate::postgres`]), then indexed and
//! queried.
//!
//! The table has the baseline's columns, hash chain included, so its size per event is the
//! baseline's. The chain is computed here, over each record as loaded, rather than by the
//! baseline's trigger: a row trigger would make the bulk load measure the chain rather than
//! loading (the ingest benchmark measures that), and the investigation queries never read it.
//! Indexes are created after the load, as anyone bulk-loading would: `(actor_id, time)`,
//! `(resource_type, resource_id, time)`, `(action, time)` as in the baseline, plus a GIN index
//! over `to_tsvector('simple', data)` (every string value of the event, like Tally's text
//! field) so that full-text queries have an index too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tally_store::TenantLog;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::queries::{InvestigationQuery, PgParam};
use super::{InvestigateError, Observer};

/// Records per `COPY` message and progress step.
const COPY_CHUNK: u64 = 8192;

/// How the load went.
#[derive(Debug, Clone)]
pub struct PgLoadStats {
    /// Rows in the table.
    pub rows: u64,
    /// `COPY` of every row (no index yet).
    pub copy: Duration,
    /// Build time of each index, in creation order: `(name, time)`.
    pub indexes: Vec<(String, Duration)>,
    /// `ANALYZE`.
    pub analyze: Duration,
    /// Bytes of the table (heap and TOAST).
    pub table_bytes: u64,
    /// Bytes of the three B-tree indexes.
    pub btree_bytes: u64,
    /// Bytes of the GIN full-text index.
    pub gin_bytes: u64,
}

impl PgLoadStats {
    /// Load, index and analyze together.
    pub fn total(&self) -> Duration {
        self.copy + self.indexes.iter().map(|(_, d)| *d).sum::<Duration>() + self.analyze
    }
}

/// A connection to the loaded table, with each query prepared once.
pub struct PgSide {
    client: Client,
    table: String,
}

pub(crate) async fn connect(dsn: &str) -> Result<Client, InvestigateError> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls)
        .await
        .map_err(pg(format!("connecting with {dsn:?}")))?;
    tokio::spawn(connection);
    Ok(client)
}

fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> InvestigateError {
    let context = context.into();
    move |error| InvestigateError::Postgres {
        context,
        message: crate::error_chain(&error),
    }
}

/// The table name, after checking the schema is a plain identifier (it is spliced into SQL).
fn table(schema: &str) -> Result<String, InvestigateError> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(InvestigateError::Options(format!(
            "schema {schema:?} must be 1-63 lowercase letters, digits or '_'"
        )));
    }
    Ok(format!("\"{schema}\".audit_log"))
}

const CREATE: &str = r#"
DROP SCHEMA IF EXISTS {s} CASCADE;
CREATE SCHEMA {s};
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
"#;

/// The indexes, created after the load in this order. `seq` and `event_id` (primary key and
/// unique constraint) are built during the load, as in the baseline.
const INDEXES: [(&str, &str); 4] = [
    (
        "(actor_id, time)",
        "CREATE INDEX audit_log_actor ON {t} (actor_id, time)",
    ),
    (
        "(resource_type, resource_id, time)",
        "CREATE INDEX audit_log_resource ON {t} (resource_type, resource_id, time)",
    ),
    (
        "(action, time)",
        "CREATE INDEX audit_log_action ON {t} (action, time)",
    ),
    (
        "GIN to_tsvector('simple', data)",
        "CREATE INDEX audit_log_text ON {t} USING gin (to_tsvector('simple', data))",
    ),
];

/// Recreates `schema`, copies the first `events` records of `tlog` into it over `streams`
/// connections at once, builds the indexes and analyzes.
pub async fn load(
    dsn: &str,
    schema: &str,
    tlog: Arc<TenantLog>,
    events: u64,
    streams: usize,
    observer: &dyn Observer,
) -> Result<PgLoadStats, InvestigateError> {
    let t = table(schema)?;
    let s = format!("\"{schema}\"");
    let client = connect(dsn).await?;
    client
        .batch_execute(&CREATE.replace("{s}", &s))
        .await
        .map_err(pg(format!("creating {t}")))?;

    observer.start("postgres copy", Some(events));
    let started = Instant::now();
    let streams = streams.max(1) as u64;
    let per_stream = events.div_ceil(streams);
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let (from, to) = (i * per_stream, ((i + 1) * per_stream).min(events));
        if from >= to {
            continue;
        }
        let (dsn, t, tlog, progress) = (
            dsn.to_string(),
            t.clone(),
            tlog.clone(),
            progress_tx.clone(),
        );
        tasks.spawn(async move { copy_range(&dsn, &t, tlog, from, to, progress).await });
    }
    drop(progress_tx);
    while let Some(n) = progress_rx.recv().await {
        observer.advance(n);
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| InvestigateError::Task(e.to_string()))??;
    }
    let copy = started.elapsed();
    observer.finish();

    // More sort memory than the default 64 MB makes the index builds external-sort less;
    // what a DBA would set for a bulk build.
    client
        .batch_execute("SET maintenance_work_mem = '1GB'")
        .await
        .map_err(pg("setting maintenance_work_mem"))?;
    let mut indexes = Vec::new();
    for (name, sql) in INDEXES {
        observer.start(&format!("postgres index {name}"), None);
        let started = Instant::now();
        client
            .batch_execute(&sql.replace("{t}", &t))
            .await
            .map_err(pg(format!("creating index {name}")))?;
        indexes.push((name.to_string(), started.elapsed()));
        observer.finish();
    }
    observer.start("postgres analyze", None);
    let started = Instant::now();
    client
        .batch_execute(&format!("ANALYZE {t}"))
        .await
        .map_err(pg("analyzing"))?;
    let analyze = started.elapsed();
    observer.finish();
    let (rows, table_bytes, btree_bytes, gin_bytes) = sizes(&client, schema).await?;
    Ok(PgLoadStats {
        rows,
        copy,
        indexes,
        analyze,
        table_bytes,
        btree_bytes,
        gin_bytes,
    })
}

/// Row count, table bytes, bytes of the B-tree indexes (the constraint indexes included) and
/// bytes of the GIN index.
pub(crate) async fn sizes(
    client: &Client,
    schema: &str,
) -> Result<(u64, u64, u64, u64), InvestigateError> {
    let t = table(schema)?;
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {t}), pg_table_size('{t}'), \
                 pg_indexes_size('{t}') - pg_relation_size('\"{schema}\".audit_log_text'), \
                 pg_relation_size('\"{schema}\".audit_log_text')"
            ),
            &[],
        )
        .await
        .map_err(pg("measuring the table"))?;
    let get = |i: usize| row.get::<_, i64>(i) as u64;
    Ok((get(0), get(1), get(2), get(3)))
}

/// The columns the table needs from a record; the rest of it goes into `data` as is.
#[derive(Deserialize)]
struct Columns<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    actor: ActorColumns<'a>,
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    category: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    resource: Option<ResourceColumns<'a>>,
    #[serde(borrow)]
    outcome: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    request_id: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ActorColumns<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    ip: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ResourceColumns<'a> {
    #[serde(borrow, rename = "type")]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

async fn copy_range(
    dsn: &str,
    t: &str,
    tlog: Arc<TenantLog>,
    from: u64,
    to: u64,
    progress: tokio::sync::mpsc::UnboundedSender<u64>,
) -> Result<(), InvestigateError> {
    let client = connect(dsn).await?;
    let sink = client
        .copy_in::<_, Bytes>(&format!(
            "COPY {t} (seq, event_id, time, actor_id, actor_ip, action, category, \
             resource_type, resource_id, outcome, request_id, data, prev_hash, entry_hash) \
             FROM STDIN"
        ))
        .await
        .map_err(pg("starting COPY"))?;
    futures_util::pin_mut!(sink);
    // Encoding runs on a blocking thread, one chunk ahead of the connection.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(Bytes, u64), InvestigateError>>(2);
    let encoder = tokio::task::spawn_blocking(move || {
        let mut prev = [0u8; 32];
        let mut pos = from;
        while pos < to {
            let count = (to - pos).min(COPY_CHUNK);
            let chunk = tlog
                .records(pos, count)
                .map_err(|e| InvestigateError::Data(format!("reading record {pos}: {e}")))
                .and_then(|records| encode_rows(pos, &records, &mut prev));
            let failed = chunk.is_err();
            if tx.blocking_send(chunk.map(|b| (b, count))).is_err() || failed {
                return;
            }
            pos += count;
        }
    });
    while let Some(chunk) = rx.recv().await {
        let (bytes, count) = chunk?;
        sink.send(bytes).await.map_err(pg("sending COPY data"))?;
        let _ = progress.send(count);
    }
    encoder
        .await
        .map_err(|e| InvestigateError::Task(e.to_string()))?;
    sink.finish().await.map_err(pg("finishing COPY"))?;
    Ok(())
}

/// Rows in `COPY … FROM STDIN` text format: tab-separated, `\N` for NULL, backslash escapes.
fn encode_rows(
    first: u64,
    records: &[Vec<u8>],
    prev: &mut [u8; 32],
) -> Result<Bytes, InvestigateError> {
    let mut out = BytesMut::with_capacity(records.len() * 900);
    for (i, record) in records.iter().enumerate() {
        let index = first + i as u64;
        let c: Columns<'_> = serde_json::from_slice(record)
            .map_err(|e| InvestigateError::Data(format!("record {index}: {e}")))?;
        let entry: [u8; 32] = Sha256::new()
            .chain_update(&prev[..])
            .chain_update(record)
            .finalize()
            .into();
        let resource = c.resource.as_ref();
        let fields: [Option<&str>; 11] = [
            Some(&c.id),
            Some(&c.time),
            Some(&c.actor.id),
            c.actor.ip.as_deref(),
            Some(&c.action),
            Some(c.category.as_deref().unwrap_or("")),
            Some(resource.map_or("", |r| &r.kind)),
            Some(resource.and_then(|r| r.id.as_deref()).unwrap_or("")),
            Some(&c.outcome),
            c.request_id.as_deref(),
            Some(std::str::from_utf8(record).map_err(|e| {
                InvestigateError::Data(format!("record {index} is not UTF-8: {e}"))
            })?),
        ];
        out.put_slice((index + 1).to_string().as_bytes());
        for field in fields {
            out.put_u8(b'\t');
            match field {
                None => out.put_slice(b"\\N"),
                Some(text) => escape_into(&mut out, text),
            }
        }
        for hash in [&prev[..], &entry[..]] {
            out.put_slice(b"\t\\\\x");
            out.put_slice(hex::encode(hash).as_bytes());
        }
        out.put_u8(b'\n');
        *prev = entry;
    }
    Ok(out.freeze())
}

/// COPY text escaping: backslash, tab, newline and carriage return are written as escapes.
fn escape_into(out: &mut BytesMut, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.put_slice(b"\\\\"),
            b'\t' => out.put_slice(b"\\t"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            _ => out.put_u8(b),
        }
    }
}

/// One prepared query: its first page, and a count of every match.
pub struct PgQuery {
    page: Statement,
    count: Statement,
    params: Vec<PgParam>,
}

impl PgSide {
    /// Connects to the loaded table of `schema`.
    pub async fn open(dsn: &str, schema: &str) -> Result<PgSide, InvestigateError> {
        Ok(PgSide {
            client: connect(dsn).await?,
            table: table(schema)?,
        })
    }

    /// Prepares the first page (`ORDER BY time DESC LIMIT 50`, the rows' id and record) and
    /// the count of `query`.
    pub async fn prepare(
        &self,
        query: &InvestigationQuery,
        limit: usize,
    ) -> Result<PgQuery, InvestigateError> {
        let t = &self.table;
        let w = &query.pg_where;
        let page = self
            .client
            .prepare(&format!(
                "SELECT event_id::text, data::text FROM {t} WHERE {w} ORDER BY time DESC LIMIT {limit}"
            ))
            .await
            .map_err(pg(format!("preparing {}", query.name)))?;
        let count = self
            .client
            .prepare(&format!("SELECT count(*) FROM {t} WHERE {w}"))
            .await
            .map_err(pg(format!("preparing the count of {}", query.name)))?;
        Ok(PgQuery {
            page,
            count,
            params: query.pg_params.clone(),
        })
    }

    /// Runs the first page and returns the event ids, newest first.
    pub async fn first_page(&self, q: &PgQuery) -> Result<Vec<String>, InvestigateError> {
        let params = sql_params(&q.params);
        let rows = self
            .client
            .query(&q.page, &params)
            .await
            .map_err(pg("running a query"))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    /// Counts every match.
    pub async fn count(&self, q: &PgQuery) -> Result<u64, InvestigateError> {
        let params = sql_params(&q.params);
        let row = self
            .client
            .query_one(&q.count, &params)
            .await
            .map_err(pg("counting"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// The plan PostgreSQL chose for the first page, for the report.
    pub async fn explain(&self, query: &InvestigationQuery) -> Result<String, InvestigateError> {
        let sql = format!(
            "EXPLAIN SELECT event_id::text, data::text FROM {} WHERE {} ORDER BY time DESC LIMIT 50",
            self.table, query.pg_where
        );
        let params = sql_params(&query.pg_params);
        let rows = self
            .client
            .query(&sql, &params)
            .await
            .map_err(pg("explaining"))?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

fn sql_params(params: &[PgParam]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            PgParam::Text(s) => s as &(dyn ToSql + Sync),
            PgParam::Time(t) => t as &(dyn ToSql + Sync),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_copy_would_misread() {
        let mut out = BytesMut::new();
        escape_into(&mut out, "a\\b\tc\nd\re\"f");
        assert_eq!(&out[..], b"a\\\\b\\tc\\nd\\re\"f");
    }
}
