//! Tamper evidence, mutation by mutation: every class of change an attacker with access to the
//! data directory (and, for consistent rewrites, its signing key) can make is caught by the
//! verifier, naming the tenant and the first bad index; damage inside the signed history is
//! reported by a running log (start-up check, scrub); and the holes found in issue 7 stay shut.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use tally_store::frame::{encode_frame, LEAF_ENTRY};
use tally_store::verify::{verify_tenant, TrustedCheckpoint, VerifyFailure};
use tally_store::{DataDir, LogConfig, StoreError};
use tally_tlog::checkpoint::Checkpoint;
use tally_tlog::note::NoteSigner;
use tally_tlog::{Hash, MemoryTree};

/// Settings that make the checkpoint history deterministic: signed at creation (size 0) and
/// at every clean stop only.
fn rounds_config() -> LogConfig {
    LogConfig {
        checkpoint_interval: Duration::from_secs(3600),
        segment_bytes: 8 << 10,
        scrub_interval: None,
        ..LogConfig::default()
    }
}

/// Appends `per_round` events to each tenant per round, stopping the log after each round so
/// that a checkpoint is signed at every multiple of `per_round`.
async fn fixture(path: &Path, tenants: &[(&str, u64)], rounds: u64) {
    for _ in 0..rounds {
        let log = open(path, rounds_config()).unwrap();
        for (tenant, per_round) in tenants {
            append_n(&log, tenant, *per_round, 7).await;
        }
        log.shutdown();
    }
}

/// Every record of a tenant, in order, across its segments: (segment path, index, record).
fn all_frames(path: &Path, tenant: &str) -> Vec<(PathBuf, u64, Vec<u8>)> {
    let td = DataDir::open_existing(path).unwrap().tenant(tenant);
    let mut out = Vec::new();
    for start in td.list_segments().unwrap() {
        let seg = td.segment_path(start);
        for (i, r) in frames(&seg) {
            out.push((seg.clone(), i, r));
        }
    }
    out
}

fn segments(path: &Path, tenant: &str) -> Vec<(u64, PathBuf)> {
    let td = DataDir::open_existing(path).unwrap().tenant(tenant);
    td.list_segments()
        .unwrap()
        .into_iter()
        .map(|s| (s, td.segment_path(s)))
        .collect()
}

fn tenant_file(path: &Path, tenant: &str, name: &str) -> PathBuf {
    path.join("tenants").join(tenant).join(name)
}

/// The leaf index of the first record of segment `k`.
fn first_index_of_segment(path: &Path, tenant: &str, k: usize) -> u64 {
    let seg = &segments(path, tenant)[k].1;
    frames(seg)[0].0
}

fn flip(path: &Path, at: usize, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

/// Rewrites record `index` of a tenant (new checksum), as an attacker with file access would.
fn edit_record(path: &Path, tenant: &str, index: u64, from: &str, to: &str) {
    for (seg, _, _) in all_frames(path, tenant)
        .into_iter()
        .filter(|(_, i, _)| *i == index)
    {
        let mut f = frames(&seg);
        let at = f.iter().position(|(i, _)| *i == index).unwrap();
        let edited = String::from_utf8(f[at].1.clone())
            .unwrap()
            .replacen(from, to, 1);
        assert_ne!(
            edited.as_bytes(),
            &f[at].1[..],
            "{from} not in record {index}"
        );
        f[at].1 = edited.into_bytes();
        write_frames(&seg, &f);
    }
}

/// Rebuilds the leaves file from the records, so that it agrees with whatever they hold now.
fn rebuild_leaves(path: &Path, tenant: &str) {
    let mut leaves = Vec::new();
    let mut offset = 0u64;
    for (_, _, r) in all_frames(path, tenant) {
        leaves.extend_from_slice(&tally_tlog::leaf_hash(&r));
        leaves.extend_from_slice(&offset.to_le_bytes());
        let id = tally_event::record_id(&r).unwrap();
        leaves.extend_from_slice(&id.as_u128().to_be_bytes());
        offset += 16 + r.len() as u64;
    }
    std::fs::write(tenant_file(path, tenant, "leaves"), leaves).unwrap();
}

fn checkpoint_notes(path: &Path, tenant: &str) -> Vec<String> {
    let bytes = std::fs::read(tenant_file(path, tenant, "checkpoints")).unwrap();
    let (notes, _, _) = tally_store::read_checkpoint_frames(&bytes);
    notes.into_iter().map(str::to_string).collect()
}

/// Removes every checkpoint note of a tenant that covers more than `size` records.
fn drop_checkpoints_above(path: &Path, tenant: &str, size: u64) {
    let mut notes = checkpoint_notes(path, tenant);
    let before = notes.len();
    notes.retain(|note| {
        let signed: u64 = note.lines().nth(1).unwrap().parse().unwrap();
        signed <= size
    });
    assert!(notes.len() < before, "no checkpoint above {size} to drop");
    write_checkpoint_notes(path, tenant, &notes);
}

fn write_checkpoint_notes(path: &Path, tenant: &str, notes: &[String]) {
    let mut out = Vec::new();
    for note in notes {
        out.extend_from_slice(&(note.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(note.as_bytes()).to_le_bytes());
        out.extend_from_slice(note.as_bytes());
    }
    std::fs::write(tenant_file(path, tenant, "checkpoints"), out).unwrap();
}

fn parse_note(note: &str) -> Checkpoint {
    let body = note.split("\n\n").next().unwrap();
    Checkpoint::parse(&format!("{body}\n")).unwrap()
}

/// A history rewritten and re-signed with the log's own key: leaves rebuilt, and every
/// checkpoint re-signed over the rewritten tree at its size. Locally consistent; only a
/// checkpoint held elsewhere can expose it.
fn resign(path: &Path, tenant: &str) {
    rebuild_leaves(path, tenant);
    let signer = NoteSigner::parse_skey(
        std::fs::read_to_string(path.join("log.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let hashes: Vec<Hash> = all_frames(path, tenant)
        .iter()
        .map(|(_, _, r)| tally_tlog::leaf_hash(r))
        .collect();
    let notes: Vec<String> = checkpoint_notes(path, tenant)
        .iter()
        .map(|note| {
            let mut cp = parse_note(note);
            let mut tree = MemoryTree::new();
            for h in &hashes[..cp.size as usize] {
                tree.push(*h);
            }
            cp.root = tree.root();
            signer.sign(&cp.to_body()).unwrap()
        })
        .collect();
    write_checkpoint_notes(path, tenant, &notes);
}

/// The newest signed checkpoint of a tenant, as a client would have saved it.
fn saved(path: &Path, tenant: &str, label: &str) -> TrustedCheckpoint {
    let cp = parse_note(checkpoint_notes(path, tenant).last().unwrap());
    TrustedCheckpoint {
        size: cp.size,
        root: cp.root,
        source: label.to_string(),
    }
}

fn verify_with(
    path: &Path,
    tenant: &str,
    trusted: &[TrustedCheckpoint],
) -> Result<tally_store::verify::TenantVerified, VerifyFailure> {
    let dir = DataDir::open_existing(path).unwrap();
    verify_tenant(&dir, tenant, &verifier(path), trusted, &mut |_| {})
}

#[tokio::test]
async fn issue_7_a_changed_event_id_in_the_leaves_file_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), &[("acme", 100)], 2).await;
    let real = tally_event::record_id(&all_frames(tmp.path(), "acme")[134].2).unwrap();
    // One byte of entry 134's event id.
    flip(
        &tenant_file(tmp.path(), "acme", "leaves"),
        134 * LEAF_ENTRY + 40 + 5,
        0x10,
    );
    let failure = verify(tmp.path(), "acme").expect_err("a changed id passed");
    assert_eq!(
        (failure.tenant.as_str(), failure.index),
        ("acme", Some(134))
    );
    assert!(failure.detail.contains(&real.to_string()), "{failure}");

    // A running server finds it too: the scrub compares every entry with its record.
    let log = open(tmp.path(), rounds_config()).unwrap();
    let damage = log.scrub_now();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(
        (damage[0].tenant.as_str(), damage[0].index),
        ("acme", Some(134))
    );
    let labels = vec![("tenant".to_string(), "acme".to_string())];
    assert_eq!(log.metrics().damaged.get_or_create(&labels).get(), 1);
    assert_eq!(log.metrics().damage_index.get_or_create(&labels).get(), 134);
    log.shutdown();
}

#[tokio::test]
async fn issue_7_deleting_the_checkpoints_file_does_not_hide_an_edit() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), &[("acme", 100)], 2).await;
    edit_record(tmp.path(), "acme", 40, "document.read", "document.edit");
    rebuild_leaves(tmp.path(), "acme");
    std::fs::remove_file(tenant_file(tmp.path(), "acme", "checkpoints")).unwrap();

    let failure = verify(tmp.path(), "acme").expect_err("verify passed");
    assert_eq!(failure.index, Some(0), "{failure}");
    assert!(failure.detail.contains("no signed checkpoint"), "{failure}");

    // The server refuses to sign over it, saying what to do, and touches nothing.
    let before = std::fs::read(tenant_file(tmp.path(), "acme", "leaves")).unwrap();
    let refused = open(tmp.path(), rounds_config())
        .err()
        .expect("server started");
    let message = refused.to_string();
    assert!(
        matches!(refused, StoreError::Corrupt { ref tenant, .. } if tenant == "acme"),
        "{message}"
    );
    assert!(
        message.contains("--accept-unsigned-history acme") && message.contains("tally verify"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(tenant_file(tmp.path(), "acme", "leaves")).unwrap(),
        before
    );
    assert!(
        !tenant_file(tmp.path(), "acme", "checkpoints").exists() || {
            checkpoint_notes(tmp.path(), "acme").is_empty()
        }
    );

    // The explicit override opens it and says so (the server records it in the log).
    let (log, report) = tally_store::Log::open(
        DataDir::open_existing(tmp.path()).unwrap(),
        LogConfig {
            accept_unsigned_history: vec!["acme".into()],
            ..rounds_config()
        },
    )
    .unwrap();
    let acme = report.tenants.iter().find(|(t, _)| t == "acme").unwrap();
    assert_eq!(acme.1.unsigned_history_accepted, Some(200));
    log.shutdown();
    verify(tmp.path(), "acme").expect("signed after the override");
}

#[tokio::test]
async fn issue_7_a_new_tenant_is_signed_before_its_first_acknowledgement() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), rounds_config()).unwrap();
    append_n(&log, "fresh", 3, 3).await;
    // No checkpoint interval has passed: the size-0 checkpoint was made at creation.
    let notes = checkpoint_notes(tmp.path(), "fresh");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let cp = parse_note(&notes[0]);
    assert_eq!((cp.size, cp.root), (0, tally_tlog::empty_root()));
    assert!(cp.origin.ends_with("/fresh"));
    // A crash now (no stop) leaves records after a signed empty tree: recovery accepts that.
    let other = tempfile::tempdir().unwrap();
    let crashed = other.path().join("crashed");
    copy_dir(tmp.path(), &crashed);
    log.shutdown();
    let reopened = open(&crashed, rounds_config()).unwrap();
    assert_eq!(reopened.tenant("fresh").unwrap().size(), 3);
    reopened.shutdown();
    verify(&crashed, "fresh").unwrap();
}

#[tokio::test]
async fn issue_7_damage_inside_the_signed_range_is_reported_by_a_running_log() {
    type Damage = fn(&Path) -> u64;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "a middle segment deleted",
            |p| {
                let first = first_index_of_segment(p, "acme", 2);
                std::fs::remove_file(&segments(p, "acme")[2].1).unwrap();
                first
            },
            "start-up",
        ),
        (
            "a sealed segment cut short",
            |p| {
                let seg = &segments(p, "acme")[1].1;
                let last = frames(seg).last().unwrap().0;
                let len = std::fs::metadata(seg).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(seg)
                    .unwrap()
                    .set_len(len - 9)
                    .unwrap();
                last
            },
            "start-up",
        ),
        (
            "a byte flipped inside a sealed segment",
            |p| {
                // A record in the middle of a sealed segment: the start-up check reads only
                // the first and last record of each.
                let seg = &segments(p, "acme")[1].1;
                let f = frames(seg);
                let index = f[f.len() / 2].0;
                let (seg, at, _) = frame_offset(p, "acme", index);
                flip(&seg, at + 16 + 30, 0x01);
                index
            },
            "scrub",
        ),
    ];
    for (name, damage, found_by) in cases {
        let tmp = tempfile::tempdir().unwrap();
        fixture(tmp.path(), &[("acme", 100), ("beta", 10)], 2).await;
        assert!(segments(tmp.path(), "acme").len() > 3, "fixture too small");
        let index = damage(tmp.path());
        let (log, report) =
            tally_store::Log::open(DataDir::open_existing(tmp.path()).unwrap(), rounds_config())
                .unwrap_or_else(|e| panic!("{name}: the log did not open: {e}"));
        let at_start = report
            .tenants
            .iter()
            .find(|(t, _)| t == "acme")
            .unwrap()
            .1
            .damage
            .clone();
        let found = if found_by == "start-up" {
            at_start.unwrap_or_else(|| panic!("{name}: not found at start"))
        } else {
            assert_eq!(at_start, None, "{name}");
            log.scrub_now()
                .pop()
                .unwrap_or_else(|| panic!("{name}: not found by the scrub"))
        };
        assert_eq!(found.tenant, "acme", "{name}");
        assert_eq!(found.index, Some(index), "{name}: {found:?}");
        assert!(found.found_by.contains(found_by), "{name}: {found:?}");
        assert_eq!(log.damage(), vec![found.clone()], "{name}");
        // The other tenant is untouched, and the damaged one still takes events.
        assert!(log.tenant("beta").unwrap().damage().is_none());
        append_n(&log, "acme", 1, 1).await;
        log.shutdown();
        // The offline verifier agrees on the tenant and index.
        let failure = verify(tmp.path(), "acme").expect_err(name);
        assert_eq!(failure.index, Some(index), "{name}: {failure}");
    }
}

#[tokio::test]
async fn issue_7_messages_name_the_narrowest_range_evidence_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    fixture(&base, &[("acme", 100)], 3).await;
    let at_100 = {
        let notes = checkpoint_notes(&base, "acme");
        let cp = parse_note(&notes[1]);
        assert_eq!(cp.size, 100);
        TrustedCheckpoint {
            size: cp.size,
            root: cp.root,
            source: "the anchored checkpoint at 100".into(),
        }
    };
    let at_300 = saved(&base, "acme", "the saved checkpoint");
    assert_eq!(at_300.size, 300);

    // An edit with checksum and leaf entry fixed: bounded by the stored checkpoints around it.
    let edited = tmp.path().join("edited");
    copy_dir(&base, &edited);
    edit_record(&edited, "acme", 250, "document.read", "document.edit");
    rebuild_leaves(&edited, "acme");
    let failure = verify(&edited, "acme").unwrap_err();
    assert_eq!(failure.index, Some(200), "{failure}");
    assert!(failure.detail.contains("[200, 300)"), "{failure}");

    // The same edit re-signed with the log's key: the stored checkpoints agree with it, so
    // only checkpoints held elsewhere bound it; the message says it was re-signed and never
    // names an empty range like [300, 300).
    resign(&edited, "acme");
    verify(&edited, "acme").expect("a consistent rewrite passes without outside evidence");
    let failure = verify_with(&edited, "acme", std::slice::from_ref(&at_300)).unwrap_err();
    assert_eq!(failure.index, Some(0), "{failure}");
    assert!(failure.detail.contains("re-signed"), "{failure}");
    assert!(failure.detail.contains("[0, 300)"), "{failure}");
    assert!(!failure.detail.contains("[300, 300)"), "{failure}");
    let failure = verify_with(&edited, "acme", &[at_100, at_300]).unwrap_err();
    assert_eq!(failure.index, Some(100), "{failure}");
    assert!(failure.detail.contains("[100, 300)"), "{failure}");
}

#[tokio::test]
async fn issue_7_a_torn_tail_is_a_warning_not_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    fixture(&base, &[("acme", 50)], 2).await;
    let torn = tmp.path().join("torn");
    copy_dir(&base, &torn);

    // A partial frame after the last record, and a partial checkpoint frame: a crash.
    let mut frame = Vec::new();
    encode_frame(&mut frame, 100, b"{\"half\":\"written\"}");
    append_bytes(&last_segment(&torn, "acme"), &frame[..frame.len() - 7]);
    append_bytes(&tenant_file(&torn, "acme", "checkpoints"), &[40, 0, 0]);
    let report = verify(&torn, "acme").expect("a torn tail is not damage");
    assert_eq!(report.records, 100);
    assert_eq!(report.torn_writes.len(), 2, "{report:?}");
    assert!(report
        .torn_writes
        .iter()
        .any(|t| t.after_records == 100 && t.bytes == frame.len() as u64 - 7));
    // A whole last frame whose bytes never reached the disk (zeros): also torn.
    let zeros = tmp.path().join("zeros");
    copy_dir(&base, &zeros);
    let mut zero_frame = frame.clone();
    zero_frame[16..].fill(0);
    append_bytes(&last_segment(&zeros, "acme"), &zero_frame);
    assert_eq!(verify(&zeros, "acme").unwrap().torn_writes.len(), 1);

    // The same cut inside the signed history is damage.
    let seg = last_segment(&base, "acme");
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let failure = verify(&base, "acme").unwrap_err();
    assert_eq!(failure.index, Some(99), "{failure}");
}

/// One mutation of a copy of the fixture: what it did, the tenant and first bad index the
/// verifier must name (`None`: no index can be named), and whether only checkpoints held
/// outside the directory can expose it (a consistent rewrite).
struct Mutation {
    name: String,
    tenant: &'static str,
    index: Option<u64>,
    needs_outside_evidence: bool,
    apply: Box<dyn Fn(&Path)>,
}

fn mutation(
    name: impl Into<String>,
    tenant: &'static str,
    index: Option<u64>,
    apply: impl Fn(&Path) + 'static,
) -> Mutation {
    Mutation {
        name: name.into(),
        tenant,
        index,
        needs_outside_evidence: false,
        apply: Box::new(apply),
    }
}

/// Byte offset of the frame of record `index` inside its segment.
fn frame_offset(path: &Path, tenant: &str, index: u64) -> (PathBuf, usize, usize) {
    let all = all_frames(path, tenant);
    let (seg, _, _) = &all[index as usize];
    let mut at = 0usize;
    for (i, r) in frames(seg) {
        if i == index {
            return (seg.clone(), at, r.len());
        }
        at += 16 + r.len();
    }
    unreachable!()
}

#[tokio::test]
async fn every_class_of_mutation_is_caught_naming_tenant_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    fixture(&base, &[("acme", 120), ("beta", 40)], 3).await;
    let segs = segments(&base, "acme").len();
    assert!(segs >= 6, "the fixture needs several segments ({segs})");
    let n = 360u64;
    let k2 = first_index_of_segment(&base, "acme", 2);
    let k3 = first_index_of_segment(&base, "acme", 3);
    let last_first = first_index_of_segment(&base, "acme", segs - 1);

    let mut cases: Vec<Mutation> = Vec::new();
    // Byte flips in record bytes, spread over every segment.
    for index in [0u64, 1, 57, k2, k3 - 1, 211, 300, n - 1] {
        cases.push(mutation(
            format!("record byte of {index}"),
            "acme",
            Some(index),
            move |p| {
                let (seg, at, len) = frame_offset(p, "acme", index);
                flip(&seg, at + 16 + len / 2, 0x20);
            },
        ));
    }
    // Frame headers: length, checksum, index.
    for (field, offset) in [("length", 1usize), ("checksum", 5), ("index", 8)] {
        for index in [3u64, k3] {
            cases.push(mutation(
                format!("frame {field} of {index}"),
                "acme",
                Some(index),
                move |p| {
                    let (seg, at, _) = frame_offset(p, "acme", index);
                    flip(&seg, at + offset, 0x02);
                },
            ));
        }
    }
    // Leaf entries: hash, offset, event id.
    for (field, offset) in [("hash", 3usize), ("offset", 33), ("id", 47)] {
        for index in [0u64, 130, n - 1] {
            cases.push(mutation(
                format!("leaf {field} of {index}"),
                "acme",
                Some(index),
                move |p| {
                    flip(
                        &tenant_file(p, "acme", "leaves"),
                        index as usize * LEAF_ENTRY + offset,
                        0x40,
                    )
                },
            ));
        }
    }
    // Checkpoints: the body (origin, size, root) and the signature of each stored one.
    for (k, what) in [
        (1usize, "size"),
        (2, "root"),
        (3, "signature"),
        (0, "origin"),
    ] {
        cases.push(mutation(
            format!("checkpoint #{} {what}", k + 1),
            "acme",
            None,
            move |p| {
                let mut notes = checkpoint_notes(p, "acme");
                let note = &mut notes[k];
                let at = match what {
                    "origin" => 2,
                    "size" => note.find('\n').unwrap() + 1,
                    "root" => note.find('\n').unwrap() + 6,
                    _ => note.len() - 10,
                };
                let mut bytes = note.clone().into_bytes();
                bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
                *note = String::from_utf8(bytes).unwrap();
                write_checkpoint_notes(p, "acme", &notes);
            },
        ));
    }
    cases.push(mutation("checkpoints file byte", "beta", None, |p| {
        flip(&tenant_file(p, "beta", "checkpoints"), 3, 0x01)
    }));
    // Frames deleted, swapped, duplicated, truncated.
    cases.push(mutation("frame deleted", "acme", Some(k2 + 3), move |p| {
        let (seg, _, _) = frame_offset(p, "acme", k2 + 3);
        let mut f = frames(&seg);
        f.retain(|(i, _)| *i != k2 + 3);
        write_frames(&seg, &f);
    }));
    cases.push(mutation("frames swapped", "acme", Some(k2 + 1), move |p| {
        let (seg, _, _) = frame_offset(p, "acme", k2 + 1);
        let mut f = frames(&seg);
        let at = f.iter().position(|(i, _)| *i == k2 + 1).unwrap();
        f.swap(at, at + 1);
        write_frames(&seg, &f);
    }));
    cases.push(mutation(
        "frame duplicated",
        "acme",
        Some(k2 + 2),
        move |p| {
            let (seg, _, _) = frame_offset(p, "acme", k2 + 1);
            let mut f = frames(&seg);
            let at = f.iter().position(|(i, _)| *i == k2 + 1).unwrap();
            let copy = f[at].clone();
            f.insert(at + 1, copy);
            write_frames(&seg, &f);
        },
    ));
    cases.push(mutation(
        "frame truncated",
        "acme",
        Some(k3 - 1),
        move |p| {
            let seg = &segments(p, "acme")[2].1;
            let len = std::fs::metadata(seg).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(seg)
                .unwrap()
                .set_len(len - 3)
                .unwrap();
        },
    ));
    // Segments deleted, swapped, duplicated, truncated.
    cases.push(mutation("segment deleted", "acme", Some(k2), |p| {
        std::fs::remove_file(&segments(p, "acme")[2].1).unwrap();
    }));
    cases.push(mutation("segments swapped", "acme", Some(k2), |p| {
        let s = segments(p, "acme");
        let (a, b) = (
            std::fs::read(&s[2].1).unwrap(),
            std::fs::read(&s[3].1).unwrap(),
        );
        std::fs::write(&s[2].1, b).unwrap();
        std::fs::write(&s[3].1, a).unwrap();
    }));
    cases.push(mutation(
        "segment duplicated at the end",
        "acme",
        Some(n),
        |p| {
            let td = DataDir::open_existing(p).unwrap().tenant("acme");
            let s = segments(p, "acme");
            let end = s.last().unwrap().0 + std::fs::metadata(&s.last().unwrap().1).unwrap().len();
            std::fs::copy(&s[1].1, td.segment_path(end)).unwrap();
        },
    ));
    cases.push(mutation(
        "last segment emptied",
        "acme",
        Some(last_first),
        |p| {
            std::fs::write(&segments(p, "acme").last().unwrap().1, b"").unwrap();
        },
    ));
    // Consistent rewrites that only outside evidence exposes.
    let mut removed = mutation("newest checkpoint removed", "acme", Some(0), |p| {
        // Every checkpoint of the last round goes: besides the one signed at stop, the
        // checkpointer may have signed one mid-round (its first tick races the appends).
        drop_checkpoints_above(p, "acme", 240);
        // The records it covered are then only an unsigned tail: cut them too.
        edit_record(p, "acme", 250, "document.read", "document.gone");
        rebuild_leaves(p, "acme");
    });
    removed.needs_outside_evidence = true;
    cases.push(removed);
    let mut rollback = mutation("rolled back to 240", "acme", Some(240), move |p| {
        drop_checkpoints_above(p, "acme", 240);
        for (start, seg) in segments(p, "acme") {
            let mut f = frames(&seg);
            f.retain(|(i, _)| *i < 240);
            if f.is_empty() && start > 0 {
                std::fs::remove_file(&seg).unwrap();
            } else {
                write_frames(&seg, &f);
            }
        }
        rebuild_leaves(p, "acme");
    });
    rollback.needs_outside_evidence = true;
    cases.push(rollback);
    let mut fork = mutation("fork re-signed with the log's key", "acme", Some(0), |p| {
        edit_record(p, "acme", 5, "document.read", "document.fork");
        resign(p, "acme");
    });
    fork.needs_outside_evidence = true;
    cases.push(fork);

    let outside = [saved(&base, "acme", "the saved checkpoint")];
    let beta_outside = [saved(&base, "beta", "the saved checkpoint")];
    for case in &cases {
        let copy = tmp.path().join("copy");
        copy_dir(&base, &copy);
        (case.apply)(&copy);
        let trusted: &[TrustedCheckpoint] = if case.tenant == "acme" {
            &outside
        } else {
            &beta_outside
        };
        let local = verify_with(&copy, case.tenant, &[]);
        if case.needs_outside_evidence {
            assert!(
                local.is_ok(),
                "{}: a consistent rewrite fails locally: {local:?}",
                case.name
            );
        } else {
            let failure = local.expect_err(&case.name);
            assert_eq!(failure.tenant, case.tenant, "{}", case.name);
            if case.index.is_some() {
                assert_eq!(failure.index, case.index, "{}: {failure}", case.name);
            }
        }
        let failure = verify_with(&copy, case.tenant, trusted).expect_err(&case.name);
        assert_eq!(failure.tenant, case.tenant, "{}", case.name);
        if case.index.is_some() {
            assert_eq!(failure.index, case.index, "{}: {failure}", case.name);
        }
        // The other tenant is not blamed.
        let other = if case.tenant == "acme" {
            "beta"
        } else {
            "acme"
        };
        verify_with(&copy, other, &[]).unwrap_or_else(|f| panic!("{}: {f}", case.name));
        std::fs::remove_dir_all(&copy).unwrap();
    }
    assert!(cases.len() >= 35, "{} mutations", cases.len());
}

#[tokio::test]
async fn issue_7_a_second_copy_names_the_exact_first_leaf_of_a_resigned_rewrite() {
    use tally_store::compare::{compare_leaves, LeafHashes, Relation};
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    fixture(&base, &[("acme", 100)], 3).await;
    let rewritten = tmp.path().join("rewritten");
    copy_dir(&base, &rewritten);
    edit_record(&rewritten, "acme", 257, "document.read", "document.edit");
    resign(&rewritten, "acme");
    // Each copy verifies on its own; a saved checkpoint only bounds the edit to a range.
    verify(&base, "acme").unwrap();
    verify(&rewritten, "acme").unwrap();
    let ranged = verify_with(&rewritten, "acme", &[saved(&base, "acme", "the backup")]);
    assert!(ranged.unwrap_err().detail.contains("[0, 300)"));
    // The leaves of the second copy name the exact record.
    let leaves = |p: &Path| LeafHashes::open(&DataDir::open_existing(p).unwrap(), "acme").unwrap();
    assert_eq!(
        compare_leaves(leaves(&base), leaves(&rewritten)).unwrap(),
        Relation::DivergeAt(257)
    );
    assert_eq!(
        compare_leaves(leaves(&base), leaves(&base)).unwrap(),
        Relation::Consistent {
            first_len: 300,
            second_len: 300
        }
    );
}
