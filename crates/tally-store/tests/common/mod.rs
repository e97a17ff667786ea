//! Helpers shared by the store's integration tests: events, a log with test settings, and the
//! file-level tools an attacker (or a crash) would use on a data directory.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use tally_event::{parse_body, validate, BodyFormat, IngestContext};
use tally_store::frame::{decode_frame, encode_frame, Decoded};
use tally_store::verify::verify_tenant;
use tally_store::{DataDir, Log, LogConfig, PreparedEvent, StoreError};
use tally_tlog::note::NoteVerifier;

pub fn event(tenant: &str, id: Option<uuid::Uuid>, n: u64) -> PreparedEvent {
    let id_field = id.map(|id| format!(r#""id":"{id}","#)).unwrap_or_default();
    let body = format!(
        r#"{{{id_field}"time":"2026-01-02T03:04:05.678Z","actor":{{"id":"user-{n}","ip":"203.0.113.{}"}},"action":"document.read","outcome":"SUCCESS","metadata":{{"n":{n}}}}}"#,
        n % 256
    );
    let input = parse_body(body.as_bytes(), BodyFormat::Json, 1)
        .unwrap()
        .pop()
        .unwrap();
    let ctx = IngestContext {
        received_at: time::macros::datetime!(2026-01-02 03:04:06 UTC),
        key_id: "test",
        default_tenant: Some(tenant),
        max_future_skew: time::Duration::hours(1),
    };
    PreparedEvent::new(validate(input, &ctx).unwrap())
}

pub fn config() -> LogConfig {
    LogConfig {
        checkpoint_interval: Duration::from_millis(20),
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

pub fn open(path: &Path, config: LogConfig) -> Result<Log, StoreError> {
    Log::open(DataDir::create_or_open(path)?, config).map(|(log, _)| log)
}

pub fn verifier(path: &Path) -> NoteVerifier {
    NoteVerifier::parse_vkey(
        std::fs::read_to_string(path.join("log.pub"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

pub fn verify(
    path: &Path,
    tenant: &str,
) -> Result<tally_store::verify::TenantVerified, tally_store::verify::VerifyFailure> {
    let dir = DataDir::open_existing(path).unwrap();
    verify_tenant(&dir, tenant, &verifier(path), &[], &mut |_| {})
}

pub async fn append_n(log: &Log, tenant: &str, count: u64, batch: u64) -> Vec<u64> {
    let mut indexes = Vec::new();
    let mut n = 0;
    while n < count {
        let k = batch.min(count - n);
        let events = (n..n + k)
            .map(|i| event(tenant, Some(uuid::Uuid::new_v4()), i))
            .collect();
        indexes.extend(
            log.append(events)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.index),
        );
        n += k;
    }
    indexes
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn last_segment(dir: &Path, tenant: &str) -> PathBuf {
    let td = DataDir::open_existing(dir).unwrap().tenant(tenant);
    td.segment_path(*td.list_segments().unwrap().last().unwrap())
}

pub fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Helpers to rewrite a segment frame by frame, as an attacker with file access would.
pub fn frames(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode_frame(&bytes[at..]) {
            Decoded::Frame { index, record, len } => {
                out.push((index, record.to_vec()));
                at += len;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

pub fn write_frames(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let mut out = Vec::new();
    for (i, r) in frames {
        encode_frame(&mut out, *i, r);
    }
    std::fs::write(path, out).unwrap();
}

pub async fn signed_log(path: &Path, n: u64) {
    let log = open(
        path,
        LogConfig {
            segment_bytes: 1 << 30,
            ..config()
        },
    )
    .unwrap();
    append_n(&log, "acme", n, 16).await;
    log.shutdown();
    assert!(verify(path, "acme").is_ok());
}
