//! The embedded log end to end: append, read, prove, reopen, recover from crashes, and detect
//! tampering with the offline verifier.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use tally_store::frame::encode_frame;
use tally_store::{AppendError, DataDir, LogConfig};
use tally_tlog::{verify_consistency, verify_inclusion};

#[tokio::test]
async fn append_read_prove_reopen_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config()).unwrap();
    let a = append_n(&log, "acme", 1000, 37).await;
    let b = append_n(&log, "globex", 10, 3).await;
    assert_eq!(
        a,
        (0..1000).collect::<Vec<_>>(),
        "indexes are dense per tenant"
    );
    assert_eq!(b, (0..10).collect::<Vec<_>>());
    let acme = log.tenant("acme").unwrap();
    // Records come back byte-identical and hash to their leaves.
    let records = acme.records(0, 1000).unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(acme.record(i as u64).unwrap(), *r);
        assert_eq!(acme.leaf_hash(i as u64).unwrap(), tally_tlog::leaf_hash(r));
    }
    // Proofs against every size verify with the independent verifier functions.
    let mut tree = tally_tlog::MemoryTree::new();
    for r in &records {
        tree.push(tally_tlog::leaf_hash(r));
    }
    assert_eq!(acme.root_at(1000).unwrap(), tree.root());
    for (index, size) in [
        (0, 1),
        (0, 1000),
        (999, 1000),
        (255, 256),
        (256, 257),
        (511, 700),
        (3, 65),
    ] {
        let root = acme.root_at(size).unwrap();
        let proof = acme.inclusion_proof(index, size).unwrap();
        verify_inclusion(
            &tally_tlog::leaf_hash(&records[index as usize]),
            index,
            size,
            &proof,
            &root,
        )
        .unwrap();
    }
    for (s1, s2) in [
        (1, 1000),
        (256, 1000),
        (255, 257),
        (999, 1000),
        (500, 500),
        (7, 1000),
    ] {
        let proof = acme.consistency_proof(s1, s2).unwrap();
        verify_consistency(
            s1,
            s2,
            &proof,
            &acme.root_at(s1).unwrap(),
            &acme.root_at(s2).unwrap(),
        )
        .unwrap();
    }
    // Tiles: level 0 full tile = leaf hashes; entry bundle = records.
    let tile = acme.hash_tile(0, 1, 256).unwrap();
    let expected: Vec<u8> = (256..512)
        .flat_map(|i| tally_tlog::leaf_hash(&records[i]))
        .collect();
    assert_eq!(tile, expected);
    let bundle = acme.entry_bundle(3, 232).unwrap();
    let entries = tally_tlog::tile::decode_entry_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), 232);
    assert_eq!(entries[0], &records[768][..]);
    assert!(
        acme.hash_tile(0, 3, 256).is_err(),
        "a full tile beyond the tree is refused"
    );
    assert!(acme.record(1000).is_err());
    // Small segments: the log rolled over to several.
    assert!(
        DataDir::open_existing(tmp.path())
            .unwrap()
            .tenant("acme")
            .list_segments()
            .unwrap()
            .len()
            > 3
    );

    log.shutdown();
    let report = verify(tmp.path(), "acme").unwrap();
    assert_eq!(report.records, 1000);
    assert_eq!(
        report.latest.unwrap().0,
        1000,
        "shutdown signs a final checkpoint"
    );
    assert_eq!(report.unsigned_tail, 0);

    let log = open(tmp.path(), config()).unwrap();
    let acme = log.tenant("acme").unwrap();
    assert_eq!(acme.size(), 1000);
    assert_eq!(acme.records(0, 1000).unwrap(), records);
    assert_eq!(acme.root_at(1000).unwrap(), tree.root());
    let more = append_n(&log, "acme", 5, 5).await;
    assert_eq!(more, vec![1000, 1001, 1002, 1003, 1004]);
    log.shutdown();
    assert_eq!(verify(tmp.path(), "acme").unwrap().records, 1005);
}

#[tokio::test]
async fn retries_are_stored_once_and_conflicts_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config()).unwrap();
    let id = uuid::Uuid::new_v4();
    let first = log.append(vec![event("acme", Some(id), 1)]).await.unwrap();
    assert!(!first[0].duplicate);
    // Same id, same content: the original index, nothing stored.
    let again = log
        .append(vec![event("acme", Some(id), 1), event("acme", None, 2)])
        .await
        .unwrap();
    assert_eq!((again[0].index, again[0].duplicate), (0, true));
    assert_eq!((again[1].index, again[1].duplicate), (1, false));
    // Twice in one request.
    let id2 = uuid::Uuid::new_v4();
    let twice = log
        .append(vec![
            event("acme", Some(id2), 3),
            event("acme", Some(id2), 3),
        ])
        .await
        .unwrap();
    assert_eq!(twice[0].index, twice[1].index);
    assert!(twice[1].duplicate);
    // Same id, different content: refused, and nothing of the request is stored.
    let size = log.tenant("acme").unwrap().size();
    let err = log
        .append(vec![event("acme", None, 4), event("acme", Some(id), 99)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Conflict {
                position: 1,
                index: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(log.tenant("acme").unwrap().size(), size);
    // Many concurrent retries of one event: stored once.
    let id3 = uuid::Uuid::new_v4();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move {
                log.append(vec![event("acme", Some(id3), 5)]).await.unwrap()[0].index
            })
        })
        .collect();
    let mut indexes = Vec::new();
    for t in tasks {
        indexes.push(t.await.unwrap());
    }
    indexes.dedup();
    assert_eq!(indexes.len(), 1);
    assert_eq!(log.tenant("acme").unwrap().size(), size + 1);
    log.shutdown();
    // Ids survive a restart.
    let log = open(tmp.path(), config()).unwrap();
    let r = log.append(vec![event("acme", Some(id), 1)]).await.unwrap();
    assert_eq!((r[0].index, r[0].duplicate), (0, true));
    log.shutdown();
}

/// A crash at any instant after an acknowledgement: the files as they are then (what kill -9
/// leaves in the page cache), plus whatever a torn next write could have added. Recovery must
/// keep every acknowledged event, cut the rest, and leave a log that verifies.
#[tokio::test]
async fn recovery_keeps_every_acknowledged_event_after_torn_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    // No checkpoint after the one at start: acknowledged events are not yet signed, which is
    // the hardest case for recovery.
    let log = open(
        &live,
        LogConfig {
            checkpoint_interval: Duration::from_secs(3600),
            segment_bytes: 16 << 10,
            ..config()
        },
    )
    .unwrap();
    let mut acked = 0u64;
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..24u64 {
        let k = 1 + next() % 40;
        acked += append_n(&log, "acme", k, k).await.len() as u64;
        let snap = tmp.path().join(format!("snap{round}"));
        copy_dir(&live, &snap);
        // What a torn next write may leave: a partial frame, garbage, partial leaf entries.
        let mut frame = Vec::new();
        encode_frame(&mut frame, acked, b"{\"half\":\"written\"}");
        let cut = (next() as usize) % frame.len();
        match round % 4 {
            0 => append_bytes(&last_segment(&snap, "acme"), &frame[..cut]),
            1 => {
                append_bytes(
                    &last_segment(&snap, "acme"),
                    &vec![0u8; 1 + (next() % 5000) as usize],
                );
                // Power loss: unsynced pages of the leaves file past the last checkpoint (it is
                // synced only before checkpoints) never reached the disk.
                let signed = log
                    .tenant("acme")
                    .unwrap()
                    .checkpoint()
                    .map_or(0, |c| c.size) as usize;
                let leaves = snap.join("tenants/acme/leaves");
                let mut bytes = std::fs::read(&leaves).unwrap();
                let unsynced = bytes.len() - signed * 56;
                let from = signed * 56 + (next() as usize) % unsynced.max(1);
                let to = (from + 1 + (next() as usize) % 300).min(bytes.len());
                bytes[from..to].fill(0);
                std::fs::write(&leaves, bytes).unwrap();
            }
            2 => {
                append_bytes(&last_segment(&snap, "acme"), &frame[..cut]);
                append_bytes(
                    &snap.join("tenants/acme/leaves"),
                    &vec![7u8; 1 + (next() % 100) as usize],
                );
            }
            _ => {
                // Leaf entries of the last group lost (records durable, index not): re-derived.
                let leaves = snap.join("tenants/acme/leaves");
                let len = std::fs::metadata(&leaves).unwrap().len();
                let keep = len - (next() % (k * 56 + 1)).min(len);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&leaves)
                    .unwrap()
                    .set_len(keep)
                    .unwrap();
            }
        }
        let recovered = open(&snap, config()).unwrap();
        assert_eq!(
            recovered.tenant("acme").unwrap().size(),
            acked,
            "round {round}: every acknowledged event survives"
        );
        recovered.shutdown();
        let report = verify(&snap, "acme").unwrap_or_else(|f| panic!("round {round}: {f}"));
        assert_eq!(report.records, acked);
        std::fs::remove_dir_all(&snap).unwrap();
    }
    log.shutdown();
}

fn snapshot_files(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["tenants/acme/leaves", "tenants/acme/checkpoints"] {
        out.push((path.join(sub), std::fs::read(path.join(sub)).unwrap()));
    }
    let seg = last_segment(path, "acme");
    out.push((seg.clone(), std::fs::read(seg).unwrap()));
    out
}

#[tokio::test]
async fn verify_names_the_first_bad_index_for_every_kind_of_tampering() {
    type Tamper = fn(&Path);
    // (what, how, first bad index the verifier must name, whether start-up notices too: start-up
    // checks the tail and the tree against the last checkpoint, not every record — that is the
    // verifier's job).
    let cases: Vec<(&str, Tamper, Option<u64>, bool)> = vec![
        (
            "changed byte, checksum left alone",
            |p| {
                let seg = last_segment(p, "acme");
                let mut bytes = std::fs::read(&seg).unwrap();
                let at = bytes.len() / 2;
                bytes[at] ^= 1;
                std::fs::write(seg, bytes).unwrap();
            },
            None,
            false,
        ),
        (
            "changed record with a recomputed checksum",
            |p| {
                let seg = last_segment(p, "acme");
                let mut f = frames(&seg);
                f[40].1 = String::from_utf8(f[40].1.clone())
                    .unwrap()
                    .replace("document.read", "document.edit")
                    .into_bytes();
                write_frames(&seg, &f);
            },
            Some(40),
            false,
        ),
        (
            "record removed",
            |p| {
                let seg = last_segment(p, "acme");
                let mut f = frames(&seg);
                f.remove(17);
                write_frames(&seg, &f);
            },
            Some(17),
            true,
        ),
        (
            "record inserted",
            |p| {
                let seg = last_segment(p, "acme");
                let mut f = frames(&seg);
                let copy = f[5].clone();
                f.insert(9, copy);
                write_frames(&seg, &f);
            },
            Some(9),
            true,
        ),
        (
            "records reordered",
            |p| {
                let seg = last_segment(p, "acme");
                let mut f = frames(&seg);
                f.swap(30, 31);
                write_frames(&seg, &f);
            },
            Some(30),
            false,
        ),
        (
            "records reordered with renumbered frames",
            |p| {
                let seg = last_segment(p, "acme");
                let mut f = frames(&seg);
                let (a, b) = (f[30].1.clone(), f[31].1.clone());
                f[30].1 = b;
                f[31].1 = a;
                write_frames(&seg, &f);
            },
            Some(30),
            false,
        ),
        (
            "log truncated",
            |p| {
                let seg = last_segment(p, "acme");
                let mut f = frames(&seg);
                f.truncate(90);
                write_frames(&seg, &f);
            },
            Some(90),
            true,
        ),
        (
            "record changed and the leaves file rewritten to match",
            |p| {
                let seg = last_segment(p, "acme");
                let mut f = frames(&seg);
                f[64].1 = String::from_utf8(f[64].1.clone())
                    .unwrap()
                    .replace("user-", "usr-")
                    .into_bytes();
                write_frames(&seg, &f);
                // Rebuild the leaves file consistently, as a careful attacker would.
                let mut leaves = Vec::new();
                let mut offset = 0u64;
                for (i, r) in &f {
                    leaves.extend_from_slice(&tally_tlog::leaf_hash(r));
                    leaves.extend_from_slice(&offset.to_le_bytes());
                    let rec = tally_event::Record::parse(r).unwrap();
                    leaves.extend_from_slice(&rec.id.as_u128().to_be_bytes());
                    offset += 16 + r.len() as u64;
                    let _ = i;
                }
                std::fs::write(p.join("tenants/acme/leaves"), leaves).unwrap();
            },
            Some(64),
            true,
        ),
        (
            "checkpoint forged",
            |p| {
                let path = p.join("tenants/acme/checkpoints");
                let bytes = std::fs::read(&path).unwrap();
                let (notes, _, _) = tally_store::read_checkpoint_frames(&bytes);
                let mut out = Vec::new();
                for (k, note) in notes.iter().enumerate() {
                    let note = if k == notes.len() - 1 {
                        note.replacen("\n100\n", "\n99\n", 1)
                    } else {
                        note.to_string()
                    };
                    out.extend_from_slice(&(note.len() as u32).to_le_bytes());
                    out.extend_from_slice(&crc32c::crc32c(note.as_bytes()).to_le_bytes());
                    out.extend_from_slice(note.as_bytes());
                }
                std::fs::write(path, out).unwrap();
            },
            None,
            true,
        ),
    ];
    for (name, tamper, index, startup_refuses) in cases {
        let tmp = tempfile::tempdir().unwrap();
        signed_log(tmp.path(), 100).await;
        tamper(tmp.path());
        let failure = verify(tmp.path(), "acme").expect_err(name);
        if let Some(index) = index {
            assert!(
                failure.index.is_some_and(|i| i <= index),
                "{name}: {failure}"
            );
        }
        // The server refuses to start on a damaged signed log, and changes nothing on disk.
        let before = snapshot_files(tmp.path());
        let opened = open(tmp.path(), config());
        if startup_refuses {
            assert!(
                opened.is_err(),
                "{name}: the server started on a tampered log"
            );
        }
        if let Ok(log) = opened {
            log.shutdown();
        } else {
            assert_eq!(
                snapshot_files(tmp.path()),
                before,
                "{name}: recovery modified a damaged log"
            );
        }
    }
}

/// The verifier hashes big batches on several threads; a change deep inside one is still
/// named at its exact index.
#[tokio::test]
async fn verify_names_a_changed_record_inside_a_large_batch() {
    let tmp = tempfile::tempdir().unwrap();
    signed_log(tmp.path(), 5000).await;
    let seg = last_segment(tmp.path(), "acme");
    let mut f = frames(&seg);
    f[4321].1 = String::from_utf8(f[4321].1.clone())
        .unwrap()
        .replace("document.read", "document.wipe")
        .into_bytes();
    write_frames(&seg, &f);
    let failure = verify(tmp.path(), "acme").unwrap_err();
    assert_eq!(failure.index, Some(4321), "{failure}");
}

/// One writer per data directory: a second open is refused while the first holds the writer's
/// lock (through the storage driver), and succeeds once it has shut down.
#[tokio::test]
async fn a_second_writer_is_refused_until_the_first_shuts_down() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), config()).unwrap();
    append_n(&log, "acme", 3, 3).await;
    match open(tmp.path(), config()) {
        Err(tally_store::StoreError::Locked(dir)) => assert_eq!(dir, tmp.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second writer opened the directory"),
    }
    log.shutdown();
    let log = open(tmp.path(), config()).unwrap();
    assert_eq!(log.tenant("acme").unwrap().size(), 3);
    log.shutdown();
}

/// Issue 9 (fix first): under the usual umask (022) the data directory was 0755 and every
/// record file 0644, world-readable. What the log writes is its owner's only, whatever the
/// umask. (The id index's tables are written by its engine, under the umask: `tally` sets it
/// to 077, and the data directory above them is closed to others either way.)
#[tokio::test]
async fn every_file_and_directory_the_log_creates_is_its_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let log = open(&root, config()).unwrap();
    append_n(&log, "acme", 300, 7).await;
    log.shutdown();
    // Reopened, to include what recovery and the tree state write.
    let log = open(&root, config()).unwrap();
    append_n(&log, "acme", 10, 3).await;
    log.shutdown();
    let mut stack = vec![root.clone()];
    let mut checked = 0;
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            if path.file_name() != Some(std::ffi::OsStr::new("ids")) {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            }
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        checked += 1;
    }
    assert!(
        checked > 8,
        "segments, leaves, checkpoints, keys and directories: {checked}"
    );
}
