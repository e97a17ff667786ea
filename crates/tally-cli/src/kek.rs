//! Encryption at rest on the command line: where the key-encryption key comes from
//! ([`KekArgs`], shared by `tally serve`, `tally verify` and `tally reindex`), and `tally kek`
//! (make a KEK, replace one).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tally_store::{AtRest, DataDir, KekSource, Storage as _};

/// Where the key-encryption key of encryption at rest comes from (one of the three).
#[derive(Debug, Clone, Default, Args)]
pub struct KekArgs {
    /// A file holding the key-encryption key (64 hex digits or base64, mode 0600), from
    /// `tally kek generate`. Turns encryption at rest on: records and personal-data keys are
    /// stored encrypted under per-tenant data keys that this key wraps.
    #[arg(long, value_name = "FILE", env = "TALLY_KEK_FILE", group = "kek")]
    pub kek_file: Option<PathBuf>,
    /// The name of an environment variable holding the key-encryption key.
    #[arg(long, value_name = "VAR", group = "kek")]
    pub kek_env: Option<String>,
    /// A shell command printing the key-encryption key (a KMS or secrets-manager client), run
    /// once at start and killed after 30 s.
    #[arg(long, value_name = "COMMAND", group = "kek")]
    pub kek_command: Option<String>,
}

impl KekArgs {
    /// The source given, if any.
    pub fn source(&self) -> Option<KekSource> {
        if let Some(path) = &self.kek_file {
            Some(KekSource::File(path.clone()))
        } else if let Some(var) = &self.kek_env {
            Some(KekSource::Env(var.clone()))
        } else {
            self.kek_command.clone().map(KekSource::Command)
        }
    }

    /// Encryption at rest for `dir` with the KEK given (checked against every tenant's data
    /// keys), or `None` when no KEK was given.
    pub fn at_rest(&self, dir: &DataDir) -> Result<Option<Arc<AtRest>>> {
        let Some(source) = self.source() else {
            return Ok(None);
        };
        let at_rest = AtRest::new(dir, source.load()?, None);
        at_rest.check_all()?;
        Ok(Some(Arc::new(at_rest)))
    }
}

/// Make or replace the key-encryption key of encryption at rest.
///
/// With a key-encryption key (KEK) given to `tally serve` (--kek-file, --kek-env or
/// --kek-command), every record and every personal-data key is stored encrypted
/// (XChaCha20-Poly1305) under per-tenant data keys, which are stored only wrapped by the KEK.
/// The KEK itself is never written into the data directory: keep it apart from the data
/// directory's backups. `tally verify` checks the whole structure without it and every
/// record's content with it.
///
/// Examples: tally kek generate > /etc/tally/kek && chmod 600 /etc/tally/kek
///           tally serve --data ./data --kek-file /etc/tally/kek
///           tally kek rewrap --data ./data --kek-file old.kek --new-kek-file new.kek
#[derive(Debug, Args)]
pub struct KekCommand {
    #[command(subcommand)]
    action: KekAction,
}

#[derive(Debug, Subcommand)]
enum KekAction {
    /// Print a new random key-encryption key (64 hex digits) on standard output.
    Generate,
    /// Replace the key-encryption key: every tenant's data keys are rewrapped under the new
    /// one (records are not touched). The server must be stopped; afterwards start it with the
    /// new key only.
    Rewrap(RewrapArgs),
}

#[derive(Debug, Args)]
struct RewrapArgs {
    /// Data directory.
    #[arg(long, short = 'd', env = "TALLY_DATA", default_value = "./data")]
    data: PathBuf,
    /// The key-encryption key in use now.
    #[command(flatten)]
    old: KekArgs,
    /// A file holding the new key-encryption key.
    #[arg(long, value_name = "FILE", group = "new_kek")]
    new_kek_file: Option<PathBuf>,
    /// An environment variable holding the new key-encryption key.
    #[arg(long, value_name = "VAR", group = "new_kek")]
    new_kek_env: Option<String>,
    /// A command printing the new key-encryption key.
    #[arg(long, value_name = "COMMAND", group = "new_kek")]
    new_kek_command: Option<String>,
}

/// Runs `tally kek`.
pub async fn run(command: KekCommand) -> Result<()> {
    match command.action {
        KekAction::Generate => {
            println!("{}", tally_store::Kek::generate_text().as_str());
            Ok(())
        }
        KekAction::Rewrap(args) => tokio::task::spawn_blocking(move || rewrap(args)).await?,
    }
}

fn rewrap(args: RewrapArgs) -> Result<()> {
    let old = args.old.source().ok_or_else(|| {
        crate::UsageError(
            "say which key-encryption key is in use now with --kek-file, --kek-env or \
             --kek-command"
                .into(),
        )
    })?;
    let new = KekArgs {
        kek_file: args.new_kek_file,
        kek_env: args.new_kek_env,
        kek_command: args.new_kek_command,
    }
    .source()
    .ok_or_else(|| {
        crate::UsageError(
            "say which key-encryption key replaces it with --new-kek-file, --new-kek-env or \
             --new-kek-command"
                .into(),
        )
    })?;
    let dir = DataDir::open_existing(&args.data)
        .with_context(|| format!("opening {}", args.data.display()))?;
    // A running server holds its data keys in memory and would never see the new wrapping.
    let _lock = tally_store::PosixStorage
        .lock_writer(&dir.lock_path())
        .map_err(|_| {
            anyhow::anyhow!(
                "{} is in use by a running Tally server; stop it first",
                args.data.display()
            )
        })?;
    let (old, new) = (old.load()?, new.load()?);
    let tenants = tally_store::at_rest::rewrap(&dir, &old, &new)?;
    println!(
        "rewrapped the data keys of {tenants} tenant(s): key-encryption key {} replaced by {}; \
         start the server with the new key",
        old.fingerprint_hex(),
        new.fingerprint_hex()
    );
    Ok(())
}
