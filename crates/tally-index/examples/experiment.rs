// Temporary: schema/indexing variants, time and size. Not part of the crate.
use std::time::Instant;
use tally_event::{parse_body, validate, BodyFormat, IngestContext, Record};
use tally_load::generate::EventGenerator;
use tantivy::indexer::IndexWriterOptions;
use tantivy::schema::*;
use tantivy::{Index, IndexSettings, IndexSortByField, TantivyDocument};
use time::macros::datetime;

fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            walk(x, out)
        }),
        _ => {}
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flags = args.get(1).cloned().unwrap_or_default();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let threads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut base = datetime!(2026-01-05 00:00 UTC);
    let mut g = EventGenerator::new(42)
        .with_tenant(Some("acme".into()))
        .with_base_time(base);
    let mut recs = Vec::new();
    for i in 0..n {
        if i % 1000 == 0 {
            base += time::Duration::minutes(1);
            g = g.with_base_time(base);
        }
        let j = g.next_json();
        let inp = parse_body(&j, BodyFormat::Json, 1).unwrap().pop().unwrap();
        let ctx = IngestContext {
            received_at: base,
            key_id: "k",
            default_tenant: None,
            max_future_skew: time::Duration::minutes(5),
        };
        recs.push(validate(inp, &ctx).unwrap().record);
    }
    let no_ids_text = flags.contains('i');
    let no_pos = flags.contains('p');
    let no_fast_ids = flags.contains('f');
    let no_sort = flags.contains('s');
    let no_text = flags.contains('t');
    let no_str_fast = flags.contains('F');
    let mut b = Schema::builder();
    let index = b.add_u64_field("index", NumericOptions::default().set_fast());
    let timef = b.add_i64_field("time", NumericOptions::default().set_fast());
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(if no_pos {
                    IndexRecordOption::Basic
                } else {
                    IndexRecordOption::WithFreqsAndPositions
                }),
        ),
    );
    let names = [
        "id",
        "actor_id",
        "actor_type",
        "session",
        "action",
        "category",
        "outcome",
        "rtype",
        "rid",
        "rname",
        "request",
        "trace",
        "corr",
        "key",
    ];
    let unique = ["id", "session", "request", "trace", "corr"];
    let fields: Vec<Field> = names
        .iter()
        .map(|nm| {
            let fast = !no_str_fast && !(no_fast_ids && unique.contains(nm));
            b.add_text_field(nm, if fast { STRING | FAST } else { STRING })
        })
        .collect();
    let ip = b.add_ip_addr_field("ip", IpAddrOptions::default().set_indexed().set_fast());
    let schema = b.build();
    let dir = if std::env::var("SHM").is_ok() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let mut settings = IndexSettings::default();
    if !no_sort {
        settings.sort_by_field = Some(IndexSortByField {
            field: "index".into(),
            order: tantivy::Order::Asc,
        });
    }
    let ix = Index::builder()
        .schema(schema)
        .settings(settings)
        .create_in_dir(dir.path())
        .unwrap();
    let mut w: tantivy::IndexWriter = ix
        .writer_with_options(
            IndexWriterOptions::builder()
                .num_worker_threads(threads)
                .memory_budget_per_thread((128 << 20) / threads)
                .num_merge_threads(1)
                .build(),
        )
        .unwrap();
    let t = Instant::now();
    let mut parse_t = std::time::Duration::ZERO;
    for (i, r) in recs.iter().enumerate() {
        let t0 = Instant::now();
        let rec = Record::parse(r).unwrap();
        let mut d = TantivyDocument::new();
        d.add_u64(index, i as u64);
        d.add_i64(timef, (rec.time.unix_timestamp_nanos() / 1_000_000) as i64);
        let id = rec.id.to_string();
        let res = rec.resource.as_ref();
        let vals: [Option<&str>; 14] = [
            Some(&id),
            Some(&rec.actor.id),
            rec.actor.kind.map(|k| k.as_str()),
            rec.actor.session_id.as_deref(),
            Some(&rec.action),
            rec.category.as_deref(),
            Some(rec.outcome.as_str()),
            res.map(|x| x.kind.as_str()),
            res.and_then(|x| x.id.as_deref()),
            res.and_then(|x| x.name.as_deref()),
            rec.request_id.as_deref(),
            rec.trace_id.as_deref(),
            rec.correlation_id.as_deref(),
            Some(&rec.key_id),
        ];
        for (k, v) in vals.iter().enumerate() {
            if let Some(v) = v {
                d.add_text(fields[k], v);
                if !no_text && !(no_ids_text && unique.contains(&names[k])) {
                    d.add_text(text, v);
                }
            }
        }
        if let Some(a) = rec.actor.ip {
            d.add_ip_addr(
                ip,
                match a {
                    std::net::IpAddr::V4(v) => v.to_ipv6_mapped(),
                    std::net::IpAddr::V6(v) => v,
                },
            );
            if !no_text {
                d.add_text(text, a.to_string());
            }
        }
        let mut out = Vec::new();
        for s in [rec.actor.user_agent.as_deref(), rec.reason.as_deref()]
            .into_iter()
            .flatten()
        {
            out.push(s.to_string());
        }
        for v in [rec.before.as_ref(), rec.after.as_ref()]
            .into_iter()
            .flatten()
        {
            walk(v, &mut out);
        }
        if let Some(m) = &rec.metadata {
            for (k, v) in m {
                out.push(k.clone());
                walk(v, &mut out);
            }
        }
        if !no_text {
            for s in out {
                d.add_text(text, s);
            }
        }
        parse_t += t0.elapsed();
        w.add_document(d).unwrap();
    }
    let adds = t.elapsed();
    w.commit().unwrap();
    let el = t.elapsed();
    println!("adds {adds:.2?} commit {:.2?}", el - adds);
    let reader = ix.reader().unwrap();
    let su = reader.searcher().space_usage().unwrap();
    println!("flags={flags:?} n={n} threads={threads}: {:.2?} = {:.0} ev/s (doc building {:.2?}); {:.1} bytes/event", el, n as f64 / el.as_secs_f64(), parse_t, su.total().get_bytes() as f64 / n as f64);
    if flags.contains('v') {
        for seg in su.segments() {
            println!(
                " postings {} positions {} termdict {} fast {} store {} fieldnorms {}",
                seg.postings().total().get_bytes(),
                seg.positions().total().get_bytes(),
                seg.termdict().total().get_bytes(),
                seg.fast_fields().total().get_bytes(),
                seg.store().total().get_bytes(),
                seg.fieldnorms().total().get_bytes()
            );
            for u in seg.termdict().fields() {
                println!("  termdict {} {}", u.field_name(), u.total().get_bytes());
            }
            for u in seg.postings().fields() {
                println!("  postings {} {}", u.field_name(), u.total().get_bytes());
            }
            for u in seg.fast_fields().fields() {
                println!("  fast {} {}", u.field_name(), u.total().get_bytes());
            }
        }
    }
}
