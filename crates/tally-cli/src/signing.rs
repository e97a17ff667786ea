//! Where the checkpoint signing key lives: the `tally serve` options that keep it outside the
//! data directory (a key file, or a command that signs), and `tally keygen`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tally_store::KeySource;

use crate::commands::KeyArg;

/// The options that name the log and choose its signing key: `tally serve`'s, and those of
/// the commands that work on a stopped server's data directory (they sign as it would).
#[derive(Debug, Args)]
#[command(next_help_heading = "Signing key (default: DATA_DIR/log.key, made on first start)")]
pub struct SigningArgs {
    /// Name of the log: the signing key's name and the prefix of every tenant's checkpoint
    /// origin (`<origin>/<tenant>`). Fixed at first start.
    #[arg(long, env = "TALLY_ORIGIN", default_value = "tally.localhost")]
    pub origin: String,
    /// Sign checkpoints with the key in FILE instead of DATA_DIR/log.key, so that whoever
    /// controls the data directory does not hold the key. FILE holds one line
    /// PRIVATE+KEY+<name>+<id>+<key> (make it with `tally keygen --out FILE --name ORIGIN`)
    /// and must be mode 0600. The data directory then needs no log.key: its log.pub records
    /// the public key, and any other key is refused.
    #[arg(
        long,
        value_name = "FILE",
        env = "TALLY_SIGNING_KEY",
        conflicts_with = "sign_command"
    )]
    pub signing_key: Option<PathBuf>,
    /// Sign checkpoints by running CMD (with /bin/sh -c), so that an HSM or a KMS holds the key.
    /// Tally writes the text to sign (a checkpoint body, under 1 KiB) on CMD's standard input
    /// and closes it; CMD prints the Ed25519 signature of exactly those bytes (pure Ed25519,
    /// RFC 8032) as 64 bytes in standard base64 on one line, and exits 0. Every signature is
    /// checked against --log-key before use. A failing, hung or lying command only delays
    /// checkpoints: events are still accepted, and the failure is logged, counted in /metrics
    /// (tally_log_checkpoint_sign_failures), shown in /healthz and retried.
    /// Example: --sign-command /etc/tally/sign.sh --log-key /etc/tally/log.pub
    #[arg(
        long,
        value_name = "CMD",
        env = "TALLY_SIGN_COMMAND",
        requires = "log_key"
    )]
    pub sign_command: Option<String>,
    /// The public key --sign-command signs for: name+id+base64 (as `tally keygen` prints it)
    /// or a file holding it. Its name must be the --origin.
    #[arg(long, value_name = "FILE|VKEY", requires = "sign_command")]
    pub log_key: Option<String>,
    /// Milliseconds --sign-command may run before it is killed, with whatever it started, and
    /// the signature is retried later.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub sign_timeout_ms: u64,
}

impl SigningArgs {
    /// The key source for [`tally_store::LogConfig::signing`].
    pub fn key_source(&self) -> Result<KeySource> {
        if let Some(path) = &self.signing_key {
            return Ok(KeySource::KeyFile(path.clone()));
        }
        let Some(command) = &self.sign_command else {
            return Ok(KeySource::DataDir);
        };
        let log_key = KeyArg {
            key: self.log_key.clone(),
        }
        .given()
        .context("--log-key")?
        .context("--sign-command needs --log-key: the public key of the key it signs with")?;
        Ok(KeySource::Command {
            command: command.clone(),
            log_key,
            timeout: Duration::from_millis(self.sign_timeout_ms),
        })
    }

    /// A line for the start banner saying who signs.
    pub fn describe(&self) -> String {
        if let Some(path) = &self.signing_key {
            format!("key file {}", path.display())
        } else if let Some(command) = &self.sign_command {
            format!("command `{command}`")
        } else {
            "DATA_DIR/log.key".to_string()
        }
    }
}

/// Make a signing key for a log, outside any data directory.
///
/// Writes the private key to FILE (mode 0600; an existing file is never overwritten) and
/// prints the public verifier key on standard output. Keep FILE away from the data directory
/// (another disk, a secrets store), give the public key to whoever verifies the log, and start
/// the server with `tally serve --signing-key FILE --origin NAME`. For a key held by an HSM or
/// a KMS, see `tally serve --sign-command`.
///
/// Example: tally keygen --out /etc/tally/log.key --name audit.example.com > log.pub
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The new private key file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The key's name: the log's origin (--origin of `tally serve`), a schema-less URL without
    /// spaces or '+'.
    #[arg(long, value_name = "ORIGIN", default_value = "tally.localhost")]
    name: String,
}

pub async fn keygen(args: KeygenArgs) -> Result<()> {
    let verifier = tally_store::signer::create_key_file(&args.out, &args.name)?;
    println!("{}", verifier.to_vkey());
    eprintln!(
        "private key written to {} (mode 0600); start the server with:\n  tally serve --signing-key {} --origin {}",
        args.out.display(),
        args.out.display(),
        args.name
    );
    Ok(())
}
