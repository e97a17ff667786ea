//! The checkpoint signing key outside the data directory: a key file, any `CheckpointSigner`,
//! and the rules that keep a log on one key.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_event::{parse_body, validate, BodyFormat, IngestContext};
use tally_store::signer::{create_key_file, SignError};
use tally_store::verify::verify_tenant;
use tally_store::{
    CheckpointSigner, DataDir, KeySource, Log, LogConfig, PreparedEvent, StoreError,
};
use tally_tlog::note::{NoteSigner, NoteVerifier};

fn event(tenant: &str, n: u64) -> PreparedEvent {
    let body = format!(
        r#"{{"time":"2026-01-02T03:04:05.678Z","actor":{{"id":"user-{n}"}},"action":"document.read","outcome":"SUCCESS"}}"#
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

fn config(signing: KeySource) -> LogConfig {
    LogConfig {
        checkpoint_interval: Duration::from_millis(20),
        signing,
        ..LogConfig::default()
    }
}

fn open(path: &Path, signing: KeySource) -> Result<Log, StoreError> {
    Log::open(DataDir::create_or_open(path)?, config(signing)).map(|(log, _)| log)
}

async fn append(log: &Log, tenant: &str, count: u64) {
    let events = (0..count).map(|n| event(tenant, n)).collect();
    log.append(events).await.unwrap();
}

/// Waits until the tenant's latest checkpoint covers `size`.
fn wait_checkpoint(log: &Log, tenant: &str, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while log
        .tenant(tenant)
        .and_then(|t| t.checkpoint())
        .is_none_or(|c| c.size < size)
    {
        assert!(Instant::now() < deadline, "no checkpoint of size {size}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn log_pub(path: &Path) -> String {
    std::fs::read_to_string(path.join("log.pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn verifies(path: &Path, tenant: &str, key: &NoteVerifier) -> bool {
    let dir = DataDir::open_existing(path).unwrap();
    verify_tenant(&dir, tenant, key, &[], &mut |_| {}).is_ok()
}

fn error_of(result: Result<Log, StoreError>) -> String {
    match result {
        Ok(log) => {
            log.shutdown();
            panic!("the log opened");
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_key_file_outside_the_data_directory_signs_and_the_directory_holds_no_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key_file = tmp.path().join("log.key");
    let key = create_key_file(&key_file, "tally.localhost").unwrap();

    let log = open(&data, KeySource::KeyFile(key_file.clone())).unwrap();
    assert_eq!(*log.verifier(), key);
    append(&log, "acme", 10).await;
    wait_checkpoint(&log, "acme", 10);
    log.shutdown();
    assert!(
        !data.join("log.key").exists(),
        "no key in the data directory"
    );
    assert_eq!(
        log_pub(&data),
        key.to_vkey(),
        "log.pub records the public key"
    );
    assert!(verifies(&data, "acme", &key));

    // The same key again: fine.
    let log = open(&data, KeySource::KeyFile(key_file.clone())).unwrap();
    append(&log, "acme", 5).await;
    wait_checkpoint(&log, "acme", 15);
    log.shutdown();
    assert!(verifies(&data, "acme", &key));

    // Another key cannot take over this log.
    let other_file = tmp.path().join("other.key");
    create_key_file(&other_file, "tally.localhost").unwrap();
    let err = error_of(open(&data, KeySource::KeyFile(other_file)));
    assert!(
        err.contains("log.pub") && err.contains("cannot change keys"),
        "{err}"
    );

    // A key of another name: the origin must follow it.
    let named = tmp.path().join("named.key");
    create_key_file(&named, "audit.example").unwrap();
    let err = error_of(open(&data, KeySource::KeyFile(named)));
    assert!(err.contains("--origin \"audit.example\""), "{err}");

    // A key file others can read is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = error_of(open(&data, KeySource::KeyFile(key_file)));
    assert!(err.contains("chmod 600"), "{err}");
    assert_eq!(log_pub(&data), key.to_vkey());
}

#[tokio::test]
async fn issue_7_a_data_directory_without_its_key_never_gets_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();

    // Signed from outside: starting without the key must not make one.
    let data = tmp.path().join("outside");
    let key_file = tmp.path().join("log.key");
    let key = create_key_file(&key_file, "tally.localhost").unwrap();
    let log = open(&data, KeySource::KeyFile(key_file)).unwrap();
    append(&log, "acme", 3).await;
    wait_checkpoint(&log, "acme", 3);
    log.shutdown();
    let err = error_of(open(&data, KeySource::DataDir));
    assert!(
        err.contains("has no log.key") && err.contains("--signing-key"),
        "{err}"
    );
    assert!(!data.join("log.key").exists());
    assert_eq!(log_pub(&data), key.to_vkey(), "log.pub is never replaced");

    // A lost log.key, even with nothing signed yet, is not silently replaced.
    let data = tmp.path().join("lost");
    let log = open(&data, KeySource::DataDir).unwrap();
    let original = log.verifier().to_vkey();
    log.shutdown();
    std::fs::remove_file(data.join("log.key")).unwrap();
    error_of(open(&data, KeySource::DataDir));
    assert_eq!(log_pub(&data), original);
    assert!(!data.join("log.key").exists());

    // Both files lost but checkpoints remain: refused too.
    let data = tmp.path().join("both");
    let log = open(&data, KeySource::DataDir).unwrap();
    append(&log, "acme", 2).await;
    wait_checkpoint(&log, "acme", 2);
    log.shutdown();
    std::fs::remove_file(data.join("log.key")).unwrap();
    std::fs::remove_file(data.join("log.pub")).unwrap();
    let err = error_of(open(&data, KeySource::DataDir));
    assert!(err.contains("tenant acme has signed checkpoints"), "{err}");
    assert!(!data.join("log.key").exists());
}

#[tokio::test]
async fn a_data_directory_with_its_own_key_refuses_a_different_configured_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = open(&data, KeySource::DataDir).unwrap();
    let own = log.verifier().clone();
    append(&log, "acme", 3).await;
    wait_checkpoint(&log, "acme", 3);
    log.shutdown();

    let other = tmp.path().join("other.key");
    create_key_file(&other, "tally.localhost").unwrap();
    let err = error_of(open(&data, KeySource::KeyFile(other)));
    assert!(
        err.contains("log.key holds a different key") && err.contains("move it out"),
        "{err}"
    );

    // Moving the directory's own key out is the way to go.
    let moved = tmp.path().join("moved.key");
    std::fs::rename(data.join("log.key"), &moved).unwrap();
    let log = open(&data, KeySource::KeyFile(moved)).unwrap();
    append(&log, "acme", 3).await;
    wait_checkpoint(&log, "acme", 6);
    log.shutdown();
    assert!(verifies(&data, "acme", &own));
}

/// Fails, or returns a note by another key, until told to work.
#[derive(Debug)]
struct Flaky {
    key: NoteSigner,
    verifier: NoteVerifier,
    calls: AtomicU32,
    broken_calls: u32,
}

impl CheckpointSigner for Flaky {
    fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    fn sign(&self, text: &str) -> Result<String, SignError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call >= self.broken_calls {
            return self.key.sign(text).map_err(|e| SignError(e.to_string()));
        }
        if call.is_multiple_of(2) {
            Err(SignError("the HSM is unreachable".into()))
        } else {
            let forger = NoteSigner::from_seed(self.key.name(), [9; 32]).unwrap();
            Ok(forger.sign(text).unwrap())
        }
    }
}

#[tokio::test]
async fn issue_7_a_failing_signer_delays_checkpoints_but_never_acknowledgements() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = NoteSigner::from_seed("tally.localhost", [4; 32]).unwrap();
    let flaky = Arc::new(Flaky {
        verifier: key.verifier(),
        key,
        calls: AtomicU32::new(0),
        broken_calls: 4,
    });
    let log = open(&data, KeySource::Signer(flaky.clone())).unwrap();
    let started = Instant::now();
    append(&log, "acme", 20).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "acknowledged without waiting for a signature"
    );
    // The first attempts fail or lie: nothing is written, the failure is reported.
    let deadline = Instant::now() + Duration::from_secs(10);
    while flaky.calls.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(log.health().is_ok(), "the log keeps accepting events");
    append(&log, "acme", 5).await;

    // Retried with growing pauses until it works; the lying note never reached the file.
    wait_checkpoint(&log, "acme", 25);
    assert!(log.signer_health().is_ok());
    assert!(log.metrics().sign_failures.get() >= 4);
    assert_eq!(log.metrics().signer_failing.get(), 0);
    log.shutdown();
    assert!(verifies(&data, "acme", &flaky.verifier));
    assert!(flaky.calls.load(Ordering::SeqCst) >= 5);
}

#[tokio::test]
async fn signing_failures_show_in_health_while_they_last() {
    let tmp = tempfile::tempdir().unwrap();
    let key = NoteSigner::from_seed("tally.localhost", [4; 32]).unwrap();
    let broken = Arc::new(Flaky {
        verifier: key.verifier(),
        key,
        calls: AtomicU32::new(0),
        broken_calls: u32::MAX,
    });
    let log = open(&tmp.path().join("data"), KeySource::Signer(broken)).unwrap();
    append(&log, "acme", 3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let reason = loop {
        if let Err(trouble) = log.signer_health() {
            assert!(trouble.failures >= 1);
            break trouble.to_string();
        }
        assert!(Instant::now() < deadline, "the failure is never reported");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        reason.contains("the HSM is unreachable") || reason.contains("not the text signed once"),
        "{reason}"
    );
    assert!(log.tenant("acme").unwrap().checkpoint().is_none());
    assert!(log.health().is_ok());
    // Shutting down with an unsigned tail is fine: the next start signs it.
    log.shutdown();
}
