//! The witness over real HTTP: every answer of the C2SP tlog-witness spec, forks re-signed
//! with the log's own key, and state that survives a restart.

use std::path::Path;
use std::sync::Arc;

use tally_tlog::witness::{AddCheckpointRequest, CONFLICT_CONTENT_TYPE};
use tally_tlog::{
    consistency_proof, leaf_hash, Checkpoint, CosignatureVerifier, Hash, MemoryTree, NoteSigner,
};
use tally_witness::{Refusal, TrustedLog, Witness, WitnessError};

const ORIGIN: &str = "example.com/log";

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, [11; 32]).unwrap()
}

fn tree(leaves: u64, fork_at: Option<u64>) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..leaves {
        let data = if Some(i) == fork_at {
            format!("forged {i}")
        } else {
            format!("entry {i}")
        };
        t.push(leaf_hash(data.as_bytes()));
    }
    t
}

fn note(signer: &NoteSigner, origin: &str, size: u64, root: Hash) -> String {
    let cp = Checkpoint {
        origin: origin.into(),
        size,
        root,
        extensions: vec![],
    };
    signer.sign(&cp.to_body()).unwrap()
}

fn request(t: &MemoryTree, old: u64, size: u64) -> String {
    let proof = if old == 0 || old == size {
        vec![]
    } else {
        consistency_proof(old, size, t).unwrap()
    };
    AddCheckpointRequest {
        old_size: old,
        proof,
        checkpoint: note(
            &log_signer(),
            ORIGIN,
            size,
            tally_tlog::root_hash(size, t).unwrap(),
        ),
    }
    .to_body()
}

fn open(dir: &Path) -> Witness {
    let logs = vec![
        TrustedLog::parse(&format!("{ORIGIN}={}", log_signer().verifier().to_vkey())).unwrap(),
    ];
    Witness::open(dir, Some("witness.example/w1"), logs).unwrap()
}

struct Running {
    url: String,
    verifier: CosignatureVerifier,
    http: reqwest::Client,
}

async fn start(dir: &Path) -> Running {
    let witness = Arc::new(open(dir));
    let verifier = witness.verifier();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, tally_witness::router(witness))
            .await
            .unwrap()
    });
    Running {
        url,
        verifier,
        http: reqwest::Client::new(),
    }
}

impl Running {
    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String, String) {
        let r = self
            .http
            .post(format!("{}/add-checkpoint", self.url))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ct, r.text().await.unwrap())
    }
}

fn text_of(body: &str) -> &str {
    let note = &body[body.find("\n\n").unwrap() + 2..];
    &note[..note.rfind("\n\n").unwrap() + 1]
}

#[tokio::test]
async fn cosigns_then_teaches_the_old_size_with_409() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(dir.path()).await;
    let t = tree(20, None);

    let body = request(&t, 0, 5);
    let (status, _, lines) = w.post(body.clone()).await;
    assert_eq!(status, 200, "{lines}");
    assert!(lines.starts_with("— witness.example/w1 ") && lines.ends_with('\n'));
    let stamp = w.verifier.verify_line(text_of(&body), &lines).unwrap();
    assert!(stamp > 1_700_000_000);

    // A client that does not know what the witness cosigned learns it from the 409.
    let (status, ct, size) = w.post(request(&t, 0, 12)).await;
    assert_eq!(
        (status, ct.as_str(), size.as_str()),
        (409, CONFLICT_CONTENT_TYPE, "5\n")
    );
    let (status, _, _) = w.post(request(&t, 3, 12)).await;
    assert_eq!(status, 409);
    let (status, _, lines) = w.post(request(&t, 5, 12)).await;
    assert_eq!(status, 200, "{lines}");

    // The same checkpoint again: cosigned again, the state unchanged.
    let (status, _, _) = w.post(request(&t, 12, 12)).await;
    assert_eq!(status, 200);
    let (_, _, size) = w.post(request(&t, 0, 20)).await;
    assert_eq!(size, "12\n");
}

#[tokio::test]
async fn issue_7_witness_refuses_a_fork_resigned_with_the_log_key() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(dir.path()).await;
    let honest = tree(16, None);
    let forked = tree(16, Some(3));
    assert_eq!(w.post(request(&honest, 0, 8)).await.0, 200);

    // A rewritten history, re-signed with the same key, extending "from 8" with its own proof.
    let (status, _, message) = w.post(request(&forked, 8, 16)).await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("not consistent"), "{message}");
    // The rewritten tree at the size already cosigned: same size, another root.
    let (status, ct, message) = w.post(request(&forked, 8, 8)).await;
    assert_eq!(status, 409, "{message}");
    assert_ne!(ct, CONFLICT_CONTENT_TYPE);
    assert!(message.contains("forked"), "{message}");
    // Both requests are kept: signed evidence of the fork.
    let evidence = std::fs::read_dir(dir.path().join("evidence"))
        .unwrap()
        .count();
    assert_eq!(evidence, 2);
    // The honest log goes on.
    assert_eq!(w.post(request(&honest, 8, 16)).await.0, 200);
    assert_eq!(w.post(request(&forked, 16, 16)).await.0, 409);
}

#[tokio::test]
async fn malformed_and_refused_requests_get_the_spec_codes_never_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(dir.path()).await;
    let t = tree(10, None);
    assert_eq!(w.post(request(&t, 0, 4)).await.0, 200);
    let good = request(&t, 4, 10);
    let note_part = &good[good.find("\n\n").unwrap() + 2..];
    let proof_part = &good[..good.find("\n\n").unwrap() + 1];
    let stranger = NoteSigner::from_seed(ORIGIN, [12; 32]).unwrap();
    let root = tally_tlog::root_hash(10, &t).unwrap();
    let hash_line = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("empty body", vec![], 400),
        ("not UTF-8", b"old 4\n\xff\n\n".to_vec(), 400),
        ("no old line", note_part.as_bytes().to_vec(), 400),
        ("leading zero", format!("old 04\n\n{note_part}").into(), 400),
        (
            "bad proof line",
            format!("old 4\nnot-base64\n\n{note_part}").into(),
            400,
        ),
        (
            "64 proof lines",
            format!("old 4\n{}\n{note_part}", hash_line.repeat(64)).into(),
            400,
        ),
        ("no blank line", b"old 4\n".to_vec(), 400),
        (
            "note without signature",
            format!("{proof_part}\n{}", text_of(&good)).into(),
            400,
        ),
        (
            "old size above the checkpoint's",
            request(&t, 4, 8).replacen("old 4", "old 11", 1).into(),
            400,
        ),
        (
            "unknown origin",
            format!(
                "old 0\n\n{}",
                note(&log_signer(), "example.com/other", 10, root)
            )
            .into(),
            404,
        ),
        (
            "signed by an untrusted key",
            format!("{proof_part}\n{}", note(&stranger, ORIGIN, 10, root)).into(),
            403,
        ),
        (
            "signature that does not verify",
            good.replacen("\n10\n", "\n11\n", 1).into(),
            403,
        ),
        ("stale old size", request(&t, 0, 10).into(), 409),
        (
            "proof that does not verify",
            format!("old 4\n{}\n{note_part}", hash_line.repeat(3)).into(),
            422,
        ),
        (
            "a proof and a stale old size 0",
            request(&t, 0, 10)
                .replacen("old 0\n", &format!("old 0\n{hash_line}"), 1)
                .into(),
            409,
        ),
    ];
    for (what, body, want) in cases {
        let (status, _, message) = w.post(body).await;
        assert_eq!(status, want, "{what}: {message}");
        assert!(!message.is_empty(), "{what}: no message");
    }
    // Too large, wrong method, wrong path.
    assert_eq!(w.post(vec![b'a'; 1 << 20]).await.0, 413);
    let r = w
        .http
        .get(format!("{}/add-checkpoint", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = w
        .http
        .post(format!("{}/other", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // None of that changed the state.
    assert_eq!(w.post(good).await.0, 200);
}

#[test]
fn state_survives_a_restart_and_the_key_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let t = tree(9, None);
    let first = open(dir.path());
    let vkey = first.verifier().to_vkey();
    assert!(first
        .add_checkpoint(request(&t, 0, 7).as_bytes(), 1)
        .is_ok());
    // One process per state directory.
    assert!(matches!(
        Witness::open(dir.path(), None, vec![]),
        Err(WitnessError::Locked(_))
    ));
    drop(first);

    let again = open(dir.path());
    assert_eq!(again.verifier().to_vkey(), vkey);
    assert_eq!(
        again.add_checkpoint(request(&t, 0, 9).as_bytes(), 2),
        Err(Refusal::StaleOldSize { latest: 7 })
    );
    assert_eq!(again.latest(ORIGIN).unwrap().unwrap().size, 7);
    assert!(again
        .add_checkpoint(request(&t, 7, 9).as_bytes(), 3)
        .is_ok());
    drop(again);

    let mode = std::fs::metadata(dir.path().join("witness.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("witness.pub")).unwrap(),
        format!("{vkey}\n")
    );
    // The name is fixed by the key.
    let err = Witness::open(dir.path(), Some("witness.example/other"), vec![]).unwrap_err();
    assert!(err.to_string().contains("keeps its name"), "{err}");
    let fresh = tempfile::tempdir().unwrap();
    let err = Witness::open(fresh.path(), None, vec![]).unwrap_err();
    assert!(err.to_string().contains("--name"), "{err}");
}
