//! Who signs checkpoints: [`CheckpointSigner`] and its two implementations, [`KeySigner`] (an
//! Ed25519 key in memory, read from `DATA_DIR/log.key` or from a key file kept elsewhere) and
//! [`CommandSigner`] (an external command, so that an HSM or a KMS can hold the key).
//! [`KeySource`], a field of [`crate::LogConfig`], says which one a [`crate::Log`] uses.
//!
//! # The signing-command protocol
//!
//! Tally runs the command with `/bin/sh -c COMMAND`, in a process group of its own, writes the
//! note text to sign (a C2SP checkpoint body such as `tally.example/acme\n42\n<base64 root>\n`,
//! under 1 KiB) on its standard input and closes it. The command prints the Ed25519
//! signature (RFC 8032, pure Ed25519 over exactly those bytes, not a hash of them): the 64
//! bytes in standard base64 (RFC 4648, with padding), as one line; whitespace around it is
//! ignored. Exit status 0 means success; anything it prints on standard error goes into the
//! error report. A command still running after the timeout is killed with its whole process
//! group. For example, with an Ed25519 key in `key.der` (PKCS#8 DER) and OpenSSL 3:
//!
//! ```sh
//! #!/bin/sh
//! msg=$(mktemp) && trap 'rm -f "$msg"' EXIT
//! cat >"$msg"
//! openssl pkeyutl -sign -rawin -inkey key.der -keyform DER -in "$msg" | base64 -w0
//! ```
//!
//! # What the log adds around any signer
//!
//! Every note a signer returns is checked against the log's verifier key before it is used,
//! so a broken or hostile signer can delay checkpoints but never produce one that does not
//! verify. A failure is logged, counted (`tally_log_checkpoint_sign_failures`), shown by
//! [`crate::Log::signer_health`], and retried after a pause that doubles up to a minute; events
//! are still appended and acknowledged meanwhile, because checkpoints are signed on the
//! sequencer's checkpointer thread.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use parking_lot::Mutex;
use tally_tlog::note::{NoteSigner, NoteVerifier};

use crate::error::StoreError;
use crate::layout::{self, DataDir};
use crate::metrics::LogMetrics;

/// Why a signer could not sign this time. Always worth retrying later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

/// Signs the log's checkpoint notes. Called from the checkpointer thread only; a call may
/// block (up to the implementation's own timeout) without delaying any acknowledgement.
pub trait CheckpointSigner: Send + Sync + fmt::Debug {
    /// The key name written in every signature line: the log's base origin.
    fn name(&self) -> &str {
        self.verifier().name()
    }

    /// The public key that every note this signer returns must verify under.
    fn verifier(&self) -> &NoteVerifier;

    /// Signs note `text` (non-empty, ending in a newline) and returns the whole note: the
    /// text, a blank line and one signature line by [`CheckpointSigner::verifier`]'s key.
    fn sign(&self, text: &str) -> Result<String, SignError>;
}

/// An Ed25519 signing key held in memory.
#[derive(Debug)]
pub struct KeySigner {
    key: NoteSigner,
    verifier: NoteVerifier,
}

impl KeySigner {
    /// Signs with `key`.
    pub fn new(key: NoteSigner) -> Self {
        KeySigner {
            verifier: key.verifier(),
            key,
        }
    }
}

impl CheckpointSigner for KeySigner {
    fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    fn sign(&self, text: &str) -> Result<String, SignError> {
        self.key.sign(text).map_err(|e| SignError(e.to_string()))
    }
}

/// The most standard output read from a signing command: a base64 signature is 88 bytes.
const MAX_OUTPUT: u64 = 4096;

/// Signs by running a command that holds the key (see the module docs for the protocol), and
/// checks each signature it returns against the log's public key.
#[derive(Debug, Clone)]
pub struct CommandSigner {
    command: String,
    verifier: NoteVerifier,
    timeout: Duration,
}

impl CommandSigner {
    /// Runs `command` with `/bin/sh -c`, expecting signatures that verify under `verifier`,
    /// killing it after `timeout`.
    pub fn new(command: impl Into<String>, verifier: NoteVerifier, timeout: Duration) -> Self {
        CommandSigner {
            command: command.into(),
            verifier,
            timeout,
        }
    }

    fn error(&self, what: impl fmt::Display) -> SignError {
        SignError(format!("signing command `{}` {what}", self.command))
    }

    /// Runs the command on `input` and returns what it printed on standard output.
    fn run(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        crate::command::run(&self.command, input, self.timeout, MAX_OUTPUT)
            .map_err(|e| self.error(e))
    }
}

impl CheckpointSigner for CommandSigner {
    fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    fn sign(&self, text: &str) -> Result<String, SignError> {
        let out = self.run(text.as_bytes())?;
        let printed = std::str::from_utf8(&out)
            .map_err(|_| {
                self.error("printed bytes that are not text; it must print the signature in base64")
            })?
            .trim();
        if printed.is_empty() {
            return Err(self
                .error("printed nothing; it must print the 64-byte Ed25519 signature in base64"));
        }
        let signature = STANDARD.decode(printed).map_err(|_| {
            self.error(format_args!(
                "printed {:?}, which is not base64; it must print the 64-byte Ed25519 signature in base64",
                crate::command::quote(printed)
            ))
        })?;
        if signature.len() != 64 {
            return Err(self.error(format_args!(
                "printed {} bytes in base64; an Ed25519 signature is 64 bytes",
                signature.len()
            )));
        }
        self.verifier
            .note_from_signature(text, &signature)
            .map_err(|_| {
                self.error(format_args!(
                    "returned a signature that does not verify under the log key {}; does it sign \
                     with the matching private key, over exactly the bytes of its standard input?",
                    self.verifier.to_vkey()
                ))
            })
    }
}

/// Where a log's checkpoint signing key lives, chosen at start.
// Made once per start, so the size of the verifier key inline does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default)]
pub enum KeySource {
    /// `DATA_DIR/log.key`, generated (mode 0600, its public half in `log.pub`) on first start.
    #[default]
    DataDir,
    /// A key file outside the data directory (`PRIVATE+KEY+…`, mode 0600, as written by
    /// [`create_key_file`]); the data directory needs no `log.key`.
    KeyFile(PathBuf),
    /// A command that signs (see the module docs), whose signatures must verify under
    /// `log_key`; it is killed after `timeout`.
    Command {
        /// The shell command.
        command: String,
        /// The public key of the key the command signs with.
        log_key: NoteVerifier,
        /// How long one signature may take.
        timeout: Duration,
    },
    /// Any other signer, e.g. one embedding Tally brings.
    Signer(Arc<dyn CheckpointSigner>),
}

/// Reads a signing key file kept outside the data directory. Refuses a file that other users
/// could read or write, since whoever holds the key can re-sign a rewritten history.
pub fn read_key_file(path: &Path) -> Result<NoteSigner, StoreError> {
    let key_error = |what: String| StoreError::Key(format!("{}: {what}", path.display()));
    let mut file = File::open(path).map_err(|e| key_error(format!("cannot open it: {e}")))?;
    let mode = file
        .metadata()
        .map_err(|e| StoreError::io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(key_error(format!(
            "other users may read or change this signing key (mode {:o}); run `chmod 600 {}` \
             and keep it owned by the user that runs Tally",
            mode & 0o777,
            path.display()
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| key_error(format!("cannot read it: {e}")))?;
    // The message never quotes the file: it may hold a key.
    NoteSigner::parse_skey(text.trim()).map_err(|e| {
        key_error(format!(
            "not a signing key ({e}); expected one line PRIVATE+KEY+<name>+<id>+<key>, \
             as written by `tally keygen`"
        ))
    })
}

/// Creates a new signing key named `name` in a new file at `path` (mode 0600, durable on
/// return) and returns its public key. Never overwrites an existing file.
pub fn create_key_file(path: &Path, name: &str) -> Result<NoteVerifier, StoreError> {
    let key = NoteSigner::generate(name).map_err(|e| {
        StoreError::Key(format!(
            "cannot make a key named {name:?}: {e} (a name is the log's origin, e.g. \
             audit.example.com, without spaces or '+')"
        ))
    })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                StoreError::Key(format!(
                    "{} exists already; choose another path (an existing key is never overwritten)",
                    path.display()
                ))
            } else {
                StoreError::io(path, e)
            }
        })?;
    file.write_all(format!("{}\n", key.to_skey()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(path, e))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    layout::sync_dir(parent)?;
    Ok(key.verifier())
}

/// The signer `source` names, checked against the data directory, and whether a new key was
/// generated (first start with [`KeySource::DataDir`]).
pub(crate) fn open_signer(
    dir: &DataDir,
    source: &KeySource,
    origin: &str,
) -> Result<(Arc<dyn CheckpointSigner>, bool), StoreError> {
    let (signer, what): (Arc<dyn CheckpointSigner>, String) = match source {
        KeySource::DataDir => {
            let (key, created) = load_or_create_in_dir(dir, origin)?;
            return Ok((Arc::new(KeySigner::new(key)), created));
        }
        KeySource::KeyFile(path) => (
            Arc::new(KeySigner::new(read_key_file(path)?)),
            format!("the key in {}", path.display()),
        ),
        KeySource::Command {
            command,
            log_key,
            timeout,
        } => (
            Arc::new(CommandSigner::new(
                command.clone(),
                log_key.clone(),
                *timeout,
            )),
            format!("the signing command's key {}", log_key.to_vkey()),
        ),
        KeySource::Signer(signer) => (
            signer.clone(),
            format!("the configured key {}", signer.verifier().to_vkey()),
        ),
    };
    check_name(signer.verifier(), origin, &what)?;
    let key_path = dir.signing_key_path();
    if let Some(in_dir) = read_dir_key(&key_path)? {
        if in_dir.verifier() != *signer.verifier() {
            return Err(StoreError::Key(format!(
                "{} holds a different key ({}) from {what}; the checkpoints here were signed by \
                 the key in the data directory, and a log cannot change keys. Start without \
                 --signing-key/--sign-command to keep using it, or move it out of the data \
                 directory and pass it with --signing-key",
                key_path.display(),
                in_dir.verifier().to_vkey()
            )));
        }
        tracing::warn!(
            "{} is a copy of {what}: delete it so that the key lives only outside the data directory",
            key_path.display()
        );
    }
    check_recorded_verifier(dir, signer.verifier(), &what)?;
    Ok((signer, false))
}

/// Writes `log.pub` when it is missing (first start, or a directory that has only ever been
/// signed from outside), so that `tally verify` and a later start know the key.
pub(crate) fn record_verifier(dir: &DataDir, verifier: &NoteVerifier) -> Result<(), StoreError> {
    let path = dir.verifier_key_path();
    if path.exists() {
        return Ok(());
    }
    layout::write_file_durably(&path, format!("{}\n", verifier.to_vkey()).as_bytes())
}

fn check_name(verifier: &NoteVerifier, origin: &str, what: &str) -> Result<(), StoreError> {
    if verifier.name() == origin {
        return Ok(());
    }
    Err(StoreError::Key(format!(
        "{what} is named {:?} but the server was started with origin {origin:?}; start it with \
         --origin {:?} (the key name is the log's origin)",
        verifier.name(),
        verifier.name()
    )))
}

fn read_dir_key(path: &Path) -> Result<Option<NoteSigner>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => NoteSigner::parse_skey(text.trim())
            .map(Some)
            .map_err(|e| StoreError::Key(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Refuses a key other than the one `log.pub` records: the stored checkpoints were signed by
/// that one, and switching silently would leave a history no key verifies end to end.
fn check_recorded_verifier(
    dir: &DataDir,
    verifier: &NoteVerifier,
    what: &str,
) -> Result<(), StoreError> {
    let path = dir.verifier_key_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let recorded = NoteVerifier::parse_vkey(text.trim())
        .map_err(|e| StoreError::Key(format!("{}: {e}", path.display())))?;
    if recorded == *verifier {
        return Ok(());
    }
    Err(StoreError::Key(format!(
        "this data directory's checkpoints are signed by the key recorded in {} ({}), not by \
         {what}; a log cannot change keys. Start it with the key matching {}",
        path.display(),
        recorded.to_vkey(),
        path.display()
    )))
}

/// `DATA_DIR/log.key`: loaded, or created (0600, with `log.pub`) on first start.
fn load_or_create_in_dir(dir: &DataDir, origin: &str) -> Result<(NoteSigner, bool), StoreError> {
    let path = dir.signing_key_path();
    if let Some(key) = read_dir_key(&path)? {
        check_name(&key.verifier(), origin, &format!("{}", path.display()))?;
        check_recorded_verifier(dir, &key.verifier(), &format!("{}", path.display()))?;
        return Ok((key, false));
    }
    // No key here. A new one is right only for a new log: any trace of an earlier key means
    // the key lives elsewhere (or was lost), and a new key would not verify what it signed.
    let pub_path = dir.verifier_key_path();
    if pub_path.exists() {
        return Err(StoreError::Key(format!(
            "{} has no log.key: its checkpoints are signed by the key recorded in {}, kept \
             outside the data directory. Start with --signing-key FILE, or with --sign-command \
             CMD --log-key {}",
            dir.root().display(),
            pub_path.display(),
            pub_path.display()
        )));
    }
    for tenant in dir.list_tenants()? {
        let checkpoints = dir.tenant(&tenant).checkpoints_path();
        if std::fs::metadata(&checkpoints).is_ok_and(|m| m.len() > 0) {
            return Err(StoreError::Key(format!(
                "{} has neither log.key nor log.pub, but tenant {tenant} has signed checkpoints: \
                 restore log.key and log.pub from a backup, or start with the key that signed \
                 them (--signing-key FILE, or --sign-command CMD --log-key KEY)",
                dir.root().display()
            )));
        }
    }
    let key = NoteSigner::generate(origin)
        .map_err(|e| StoreError::Key(format!("cannot make a key named {origin:?}: {e}")))?;
    layout::write_file_durably(&path, format!("{}\n", key.to_skey()).as_bytes())?;
    layout::write_file_durably(
        &pub_path,
        format!("{}\n", key.verifier().to_vkey()).as_bytes(),
    )?;
    Ok((key, true))
}

/// The longest pause between two attempts while signing fails.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// The log's signer together with what the log adds around any [`CheckpointSigner`]: each
/// note is checked against the verifier key before use, and failures are counted, logged,
/// reported by [`Signer::health`] and retried after a pause that doubles from the
/// checkpoint interval up to [`MAX_RETRY_PAUSE`].
pub(crate) struct Signer {
    signer: Arc<dyn CheckpointSigner>,
    verifier: NoteVerifier,
    first_pause: Duration,
    metrics: LogMetrics,
    failing: Mutex<Failing>,
}

#[derive(Default)]
struct Failing {
    /// Failed attempts in a row.
    count: u32,
    /// The last failure, while failing.
    error: Option<String>,
    /// No attempt before this instant.
    retry_at: Option<Instant>,
}

impl Signer {
    pub(crate) fn new(
        signer: Arc<dyn CheckpointSigner>,
        first_pause: Duration,
        metrics: LogMetrics,
    ) -> Self {
        Signer {
            verifier: signer.verifier().clone(),
            signer,
            first_pause,
            metrics,
            failing: Mutex::new(Failing::default()),
        }
    }

    /// Signs note `text`, or fails with [`StoreError::Signer`] (retryable) without calling
    /// the signer while the pause after a failure lasts.
    pub(crate) fn sign(&self, text: &str) -> Result<String, StoreError> {
        {
            let failing = self.failing.lock();
            if let (Some(error), Some(at)) = (&failing.error, failing.retry_at) {
                if Instant::now() < at {
                    return Err(StoreError::Signer(error.clone()));
                }
            }
        }
        let result = self
            .signer
            .sign(text)
            .and_then(|note| self.check(text, note));
        let mut failing = self.failing.lock();
        match result {
            Ok(note) => {
                if failing.error.take().is_some() {
                    tracing::info!(
                        "checkpoint signing works again after {} failed attempts",
                        failing.count
                    );
                    self.metrics.signer_failing.set(0);
                }
                failing.count = 0;
                failing.retry_at = None;
                Ok(note)
            }
            Err(SignError(error)) => {
                failing.count = failing.count.saturating_add(1);
                let pause = self
                    .first_pause
                    .saturating_mul(1 << (failing.count - 1).min(16))
                    .min(MAX_RETRY_PAUSE);
                failing.retry_at = Some(Instant::now() + pause);
                tracing::error!(
                    attempt = failing.count,
                    "cannot sign checkpoints: {error}; events are still accepted, and signing \
                     is retried in {} ms",
                    pause.as_millis()
                );
                self.metrics.sign_failures.inc();
                self.metrics.signer_failing.set(1);
                failing.error = Some(error.clone());
                Err(StoreError::Signer(error))
            }
        }
    }

    /// Accepts only the text, a blank line and one signature line that verifies.
    fn check(&self, text: &str, note: String) -> Result<String, SignError> {
        let one_signature = note
            .strip_prefix(text)
            .and_then(|rest| rest.strip_prefix('\n'))
            .is_some_and(|sigs| sigs.lines().count() == 1);
        let verifies = tally_tlog::note::open(&note, std::slice::from_ref(&self.verifier))
            .is_ok_and(|v| v.text == text);
        if one_signature && verifies {
            Ok(note)
        } else {
            Err(SignError(format!(
                "the signer returned a note that is not the text signed once by the log key {}; \
                 it was not used",
                self.verifier.to_vkey()
            )))
        }
    }

    /// `Err` with the last error while signing fails.
    pub(crate) fn health(&self) -> Result<(), crate::error::SigningTrouble> {
        let failing = self.failing.lock();
        match &failing.error {
            None => Ok(()),
            Some(error) => Err(crate::error::SigningTrouble {
                failures: u64::from(failing.count),
                error: error.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> NoteSigner {
        NoteSigner::from_seed("tally.test", [5; 32]).unwrap()
    }

    const TEXT: &str = "tally.test/acme\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    fn command(cmd: &str) -> CommandSigner {
        CommandSigner::new(cmd, key().verifier(), Duration::from_secs(5))
    }

    /// The base64 signature the command must print for `TEXT`.
    fn good_signature() -> String {
        let note = key().sign(TEXT).unwrap();
        let blob = STANDARD
            .decode(note.rsplit(' ').next().unwrap().trim_end())
            .unwrap();
        STANDARD.encode(&blob[4..])
    }

    #[test]
    fn a_command_printing_the_right_signature_signs() {
        let good = good_signature();
        // The input is checked too: the command signs only what it is given.
        let script = format!(
            "[ \"$(cat)\" = \"$(printf 'tally.test/acme\\n3\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')\" ] && echo '  {good}  '"
        );
        let note = command(&script).sign(TEXT).unwrap();
        assert_eq!(note, key().sign(TEXT).unwrap());
    }

    #[test]
    fn a_broken_command_never_yields_a_note() {
        let good = good_signature();
        let zeros = STANDARD.encode([0u8; 64]);
        let short = STANDARD.encode([1u8; 32]);
        for (cmd, expect) in [
            ("echo garbage!", "not base64"),
            ("true", "printed nothing"),
            (&format!("echo {zeros}") as &str, "does not verify"),
            (&format!("echo {short}"), "32 bytes"),
            (
                &format!("echo {good}; echo >&2 'hsm offline'; exit 3"),
                "hsm offline",
            ),
            ("exit 1", "failed"),
            ("head -c 100000 /dev/zero", "more than 4096 bytes"),
            ("printf '\\377\\376'", "not text"),
            ("/nonexistent/signer", "failed"),
        ] {
            let err = command(cmd).sign(TEXT).unwrap_err().0;
            assert!(err.contains(expect), "{cmd}: {err}");
        }
    }

    #[test]
    fn a_hung_command_is_killed_with_what_it_started() {
        let signer = CommandSigner::new(
            "sleep 30 & sleep 30",
            key().verifier(),
            Duration::from_millis(300),
        );
        let started = Instant::now();
        let err = signer.sign(TEXT).unwrap_err().0;
        assert!(err.contains("did not finish within 300 ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));

        // The command exits but leaves a process holding its output.
        let signer = CommandSigner::new(
            "sleep 30 & exit 0",
            key().verifier(),
            Duration::from_millis(300),
        );
        let started = Instant::now();
        let err = signer.sign(TEXT).unwrap_err().0;
        assert!(err.contains("holding its standard output open"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[derive(Debug)]
    struct Lying(NoteVerifier);

    impl CheckpointSigner for Lying {
        fn verifier(&self) -> &NoteVerifier {
            &self.0
        }
        fn sign(&self, text: &str) -> Result<String, SignError> {
            // A valid note, but by another key.
            Ok(NoteSigner::from_seed("tally.test", [6; 32])
                .unwrap()
                .sign(text)
                .unwrap())
        }
    }

    #[test]
    fn failures_pause_and_are_reported_until_signing_works() {
        let metrics = LogMetrics::default();
        let signer = Signer::new(
            Arc::new(Lying(key().verifier())),
            Duration::from_millis(200),
            metrics.clone(),
        );
        assert!(signer.health().is_ok());
        let err = signer.sign(TEXT).unwrap_err().to_string();
        assert!(
            err.contains("not the text signed once by the log key"),
            "{err}"
        );
        let trouble = signer.health().unwrap_err();
        assert_eq!(trouble.failures, 1);
        assert!(trouble.to_string().contains("1 times"), "{trouble}");
        // Within the pause the signer is not asked again.
        assert!(signer.sign(TEXT).is_err());
        assert_eq!(metrics.sign_failures.get(), 1);
        assert_eq!(metrics.signer_failing.get(), 1);

        let good = Signer::new(
            Arc::new(KeySigner::new(key())),
            Duration::from_millis(200),
            metrics.clone(),
        );
        assert_eq!(good.sign(TEXT).unwrap(), key().sign(TEXT).unwrap());
        assert!(good.health().is_ok());
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let verifier = create_key_file(&path, "audit.example").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_key_file(&path).unwrap().verifier(), verifier);
        let err = create_key_file(&path, "audit.example").unwrap_err();
        assert!(err.to_string().contains("exists already"), "{err}");
        assert!(create_key_file(&dir.path().join("x"), "bad name").is_err());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");

        let other = dir.path().join("other.key");
        std::fs::write(&other, "not a key\n").unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = read_key_file(&other).unwrap_err().to_string();
        assert!(err.contains("tally keygen"), "{err}");
    }
}
