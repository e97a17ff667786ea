//! `tally witness` (run a C2SP tlog-witness) and the k-of-n witness policy of client
//! commands (`--witness VKEY --witness-quorum K`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use tally_tlog::CosignatureVerifier;
use tally_witness::{TrustedLog, Witness};

/// Run a witness: cosign checkpoints of the logs you name, never two inconsistent ones.
///
/// A witness (C2SP tlog-witness) keeps, for each log, the latest checkpoint it cosigned. A log
/// POSTs each new checkpoint to <URL>/add-checkpoint with a consistency proof from that one;
/// the witness checks the log's signature and the proof, stores the new checkpoint durably and
/// answers with a timestamped C2SP cosignature/v1 line. It refuses (422, or 409 for the same
/// size with another root) any checkpoint that does not extend what it cosigned, so a log
/// rewritten and re-signed with its own key cannot get its cosignature, and clients that
/// require cosignatures (tally verify --witness ... --witness-quorum K) refuse such a log.
///
/// Run it where the log's operator cannot change it: another machine, another administrator.
/// On first start it creates STATE_DIR with its Ed25519 key (witness.key, mode 0600) under
/// --name and prints its public key (also in STATE_DIR/witness.pub): give that key to the log
/// (tally serve --witness 'VKEY=URL') and to the log's clients (--witness VKEY).
///
/// Each --log is ORIGIN=VKEY: a checkpoint origin and the public key of the log that signs it
/// (for Tally, DATA_DIR/log.pub or GET /v1/log-key). ORIGIN ending in /* covers every origin
/// under that prefix, e.g. every tenant of a Tally server: --log 'tally.example/*=VKEY'.
///
/// Answers, as the spec says: 200 cosignature lines; 400 malformed request or old size above
/// the checkpoint's; 403 no valid signature by the log's key; 404 unknown origin; 409 with
/// Content-Type text/x.tlog.size and the witness's latest size when the request's old size is
/// not it; 409 for the same size with another root; 422 consistency proof that does not verify
/// (the request is kept under STATE_DIR/evidence/: it is signed proof of a fork).
///
/// Example: tally witness --state ./witness --name witness.example.com/w1 --log "tally.example/*=$(cat data/log.pub)" --listen 0.0.0.0:7780
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// State directory: the witness key and the latest cosigned checkpoint of each log. Keep it
    /// (and back it up): a witness that loses its state must not be restarted under the same key.
    #[arg(
        long,
        short = 's',
        env = "TALLY_WITNESS_STATE",
        default_value = "./witness"
    )]
    state: PathBuf,
    /// Address to listen on.
    #[arg(
        long,
        short = 'l',
        env = "TALLY_WITNESS_LISTEN",
        default_value = "127.0.0.1:7780"
    )]
    listen: SocketAddr,
    /// The witness's name (key name of its cosignatures), a schema-less URL such as
    /// witness.example.com/w1. Needed on first start only; fixed afterwards.
    #[arg(long)]
    name: Option<String>,
    /// A log to witness: ORIGIN=VKEY (repeatable; ORIGIN may end in /* for every tenant of a
    /// Tally server).
    #[arg(long = "log", value_name = "ORIGIN=VKEY", required = true)]
    logs: Vec<String>,
}

pub async fn run(args: WitnessArgs) -> Result<()> {
    let shutdown = crate::serve::ShutdownSignal::install()
        .context("installing the Ctrl-C/SIGTERM handlers")?;
    let logs = args
        .logs
        .iter()
        .map(|l| TrustedLog::parse(l))
        .collect::<Result<Vec<_>, _>>()?;
    let state = args.state.clone();
    let name = args.name.clone();
    let witness = tokio::task::spawn_blocking(move || Witness::open(&state, name.as_deref(), logs))
        .await
        .context("opening the witness state")?
        .with_context(|| format!("opening witness state {}", args.state.display()))?;
    let witness = Arc::new(witness);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (is something running there?)", args.listen))?;
    let addr = listener.local_addr()?;
    println!("Tally witness is listening on http://{addr}");
    println!("  state directory: {}", args.state.display());
    println!("  witness key:     {}", witness.verifier().to_vkey());
    for log in witness.logs() {
        println!("  witnessing:      {} ({})", log.origin, log.key.to_vkey());
    }
    println!(
        "  give the log:    tally serve --witness '{}=http://{addr}'",
        witness.verifier().to_vkey()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, tally_witness::router(witness))
        .with_graceful_shutdown(shutdown.received())
        .await
        .context("serving HTTP")?;
    Ok(())
}

/// Witnesses a checkpoint must carry cosignatures from.
#[derive(Debug, Clone, Args)]
pub struct QuorumArgs {
    /// A witness's cosignature/v1 public key (name+id+base64), or a file holding one
    /// (repeatable). The checkpoint must carry valid cosignatures from --witness-quorum of them.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned the checkpoint (default: all).
    #[arg(long, value_name = "K", requires = "witnesses")]
    pub witness_quorum: Option<usize>,
}

impl QuorumArgs {
    /// Whether any witness policy was given.
    pub fn is_set(&self) -> bool {
        !self.witnesses.is_empty()
    }

    fn keys(&self) -> Result<Vec<CosignatureVerifier>> {
        self.witnesses
            .iter()
            .map(|w| {
                let text = if std::path::Path::new(w).exists() {
                    std::fs::read_to_string(w).with_context(|| format!("reading {w}"))?
                } else {
                    w.clone()
                };
                CosignatureVerifier::parse_vkey(text.trim()).map_err(|e| {
                    anyhow!("--witness {w:?}: not a witness key ({e}); expected name+id+base64 as `tally witness` prints it")
                })
            })
            .collect()
    }

    /// Checks that `note` (whose log signature the caller checked) carries valid
    /// cosignatures from at least K of the witnesses; returns a one-line summary. Names the
    /// witnesses whose cosignature is missing when the quorum is not met.
    pub fn require(&self, note: &str) -> Result<Option<String>> {
        if !self.is_set() {
            return Ok(None);
        }
        let keys = self.keys()?;
        let quorum = self.witness_quorum.unwrap_or(keys.len());
        if quorum == 0 || quorum > keys.len() {
            bail!(
                "--witness-quorum {quorum} must be between 1 and the number of --witness keys ({})",
                keys.len()
            );
        }
        let checked = tally_tlog::verify_cosignatures(note, &keys)
            .map_err(|e| anyhow!("WITNESS CHECK FAILED: {e}"))?;
        let got = checked.verified.len();
        if got < quorum {
            bail!(
                "WITNESS CHECK FAILED: the checkpoint carries valid cosignatures from {got} of the \
                 {} witnesses, {quorum} required; missing: {}",
                keys.len(),
                checked
                    .missing
                    .iter()
                    .map(|v| v.split('+').next().unwrap_or(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Some(format!(
            "cosigned by {got} of {} witnesses (quorum {quorum}): {}",
            keys.len(),
            checked
                .verified
                .iter()
                .map(|v| format!("{} at {}", v.name, v.timestamp))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}
