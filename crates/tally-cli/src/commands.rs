//! Thin clients of the API: `tally get`, `tally checkpoint`, `tally prove`, `tally keys`.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use clap::{Args, Subcommand};
use tally_tlog::checkpoint::Checkpoint;
use tally_tlog::note::NoteVerifier;
use tally_tlog::Hash;

use crate::client::ApiClient;
use crate::{ServerArgs, TenantArg};
use tally_server::auth::ApiKey;
use tally_server::wire::{ConsistencyProof, CreatedKey, InclusionProof};

/// Print one stored event exactly as it is hashed into the log.
///
/// Example: tally get 0192b7c4-5f0e-7cc4-a2a8-3d1f5a0e9b11
///          tally get 42 --tenant acme
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Event id (UUID) or leaf index.
    key: String,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tenant: TenantArg,
}

pub async fn get(args: GetArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let response = client
        .get(
            &format!("/v1/events/{}", args.key),
            &tenant_query(&args.tenant),
        )
        .await?;
    let index = response
        .headers()
        .get("tally-leaf-index")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    let body = response.bytes().await?;
    eprintln!("leaf index {index}");
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}

/// The log's public key: a verifier key string, or a file holding one.
#[derive(Debug, Clone, Args)]
pub struct KeyArg {
    /// Log public key (`name+id+base64`) or a file holding it, e.g. DATA_DIR/log.pub. Without it
    /// the key is fetched from the server, which proves nothing against a server that lies.
    #[arg(long, short = 'k', env = "TALLY_LOG_KEY", global = true)]
    pub key: Option<String>,
}

impl KeyArg {
    /// The verifier given on the command line, if any (no network).
    pub fn given(&self) -> Result<Option<NoteVerifier>> {
        let text = match &self.key {
            Some(k) if std::path::Path::new(k).exists() => {
                std::fs::read_to_string(k).with_context(|| format!("reading key file {k}"))?
            }
            Some(k) => k.clone(),
            None => return Ok(None),
        };
        parse_verifier(&text).map(Some)
    }

    /// Loads the verifier, from the argument or else from the server (with a warning).
    pub async fn load(&self, client: Option<&ApiClient>) -> Result<NoteVerifier> {
        if let Some(v) = self.given()? {
            return Ok(v);
        }
        let client = client.ok_or_else(|| anyhow!("pass the log's public key with --key"))?;
        eprintln!("warning: no --key given: using the key the server reports; pass --key to check against a key you trust");
        parse_verifier(&client.get_public("/v1/log-key").await?.text().await?)
    }
}

/// Parses a verifier key string, with a message that says what was expected.
pub fn parse_verifier(text: &str) -> Result<NoteVerifier> {
    NoteVerifier::parse_vkey(text.trim())
        .map_err(|e| anyhow!("not a log public key ({e}): expected name+keyid+base64"))
}

/// Fetch (and check) the latest signed checkpoint of a tenant's log.
///
/// Keep the saved file: `tally verify --since FILE` later proves the log only grew since.
/// With --witness (repeatable) and --witness-quorum K, the checkpoint must also carry valid
/// cosignatures (C2SP cosignature/v1) from K of those witnesses, or the command fails naming
/// the missing ones; --file checks a saved checkpoint the same way, offline.
///
/// Examples: tally checkpoint --key ./data/log.pub --out acme.checkpoint --tenant acme
///           tally checkpoint --key ./data/log.pub --witness "$(cat w1.pub)" --witness "$(cat w2.pub)" --witness-quorum 2
///           tally checkpoint --file acme.checkpoint --key ./data/log.pub --witness "$(cat w1.pub)"
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tenant: TenantArg,
    #[command(flatten)]
    key: KeyArg,
    /// Also save the checkpoint note to this file.
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    /// Check this saved checkpoint note instead of fetching one (offline; needs --key).
    #[arg(long, value_name = "FILE", conflicts_with = "out")]
    file: Option<PathBuf>,
    #[command(flatten)]
    witnesses: crate::witness::QuorumArgs,
}

pub async fn checkpoint(args: CheckpointArgs) -> Result<()> {
    let (note, verifier) = match &args.file {
        Some(file) => {
            let verifier = args
                .key
                .given()?
                .ok_or_else(|| anyhow!("--file needs the log's public key: pass --key"))?;
            let note = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            (note, verifier)
        }
        None => {
            let client = ApiClient::new(&args.server)?;
            let verifier = args.key.load(Some(&client)).await?;
            let note = client
                .get("/v1/checkpoint", &tenant_query(&args.tenant))
                .await?
                .text()
                .await?;
            (note, verifier)
        }
    };
    let cp = open_checkpoint(&note, &verifier)?;
    let witnessed = args.witnesses.require(&note)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &note).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("saved to {}", out.display());
    }
    print!("{note}");
    eprintln!("signature OK ({}); tree size {}", verifier.name(), cp.size);
    if let Some(summary) = witnessed {
        eprintln!("{summary}");
    }
    Ok(())
}

/// Checks a signed checkpoint note and parses its body.
pub fn open_checkpoint(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint> {
    let verified = tally_tlog::note::open(note, std::slice::from_ref(verifier)).map_err(|e| {
        anyhow!(
            "checkpoint signature does not verify with {}: {e}",
            verifier.to_vkey()
        )
    })?;
    Checkpoint::parse(&verified.text).map_err(|e| anyhow!("malformed checkpoint: {e}"))
}

/// Get proofs from a server and check them locally against the log's public key.
///
/// Examples: tally prove inclusion --id 0192b7c4-5f0e-7cc4-a2a8-3d1f5a0e9b11 --key data/log.pub
///           tally prove consistency --from 1000 --key data/log.pub
#[derive(Debug, Args)]
pub struct ProveArgs {
    #[command(subcommand)]
    kind: ProveKind,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tenant: TenantArg,
    #[command(flatten)]
    key: KeyArg,
}

#[derive(Debug, Subcommand)]
enum ProveKind {
    /// Prove that an event is in the log: fetches the record, its inclusion proof and the
    /// signed checkpoint, and checks all three locally.
    ///
    /// Example: tally prove inclusion --id 0192b7c4-5f0e-7cc4-a2a8-3d1f5a0e9b11
    Inclusion {
        /// Leaf index of the event.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        index: Option<u64>,
        /// Event id.
        #[arg(long)]
        id: Option<String>,
        /// Write an offline proof bundle (record, proof, checkpoint, key) to this JSON file.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Prove that the log's current tree extends an older tree size.
    ///
    /// Example: tally prove consistency --from 1000
    Consistency {
        /// The older tree size.
        #[arg(long)]
        from: u64,
    },
}

fn b64_hash(text: &str, what: &str) -> Result<Hash> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| anyhow!("{what} is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("{what} is not 32 bytes"))
}

fn hashes(proof: &[String]) -> Result<Vec<Hash>> {
    proof.iter().map(|h| b64_hash(h, "proof hash")).collect()
}

pub async fn prove(args: ProveArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let verifier = args.key.load(Some(&client)).await?;
    let mut query = tenant_query(&args.tenant);
    match args.kind {
        ProveKind::Inclusion { index, id, bundle } => {
            match (&index, &id) {
                (Some(i), _) => query.push(("index", i.to_string())),
                (None, Some(id)) => query.push(("id", id.clone())),
                _ => bail!("give --index or --id"),
            }
            let v: InclusionProof = client
                .get("/v1/proof/inclusion", &query)
                .await?
                .json()
                .await?;
            let index = v.index;
            let note = v
                .checkpoint
                .as_deref()
                .ok_or_else(|| anyhow!("server answer lacks the checkpoint"))?;
            let cp = open_checkpoint(note, &verifier)?;
            let proof = hashes(&v.proof)?;
            // The leaf form: the bytes hashed into the tree (personal values sealed).
            let mut query = tenant_query(&args.tenant);
            query.push(("form", "leaf".to_string()));
            let record = client
                .get(&format!("/v1/events/{index}"), &query)
                .await?
                .bytes()
                .await?;
            let leaf = tally_tlog::leaf_hash(&record);
            if leaf != b64_hash(&v.leaf_hash, "leaf_hash")? {
                bail!("the record served does not hash to the proven leaf: the server is inconsistent");
            }
            tally_tlog::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root)
                .map_err(|e| anyhow!("inclusion proof does NOT verify: {e}"))?;
            if let Some(path) = bundle {
                let b = serde_json::json!({
                    "format": "tally-inclusion-bundle-v1",
                    "tenant": v.tenant,
                    "index": index,
                    "record": String::from_utf8_lossy(&record),
                    "leaf_hash": v.leaf_hash,
                    "proof": v.proof,
                    "checkpoint": note,
                    "log_key": verifier.to_vkey(),
                });
                std::fs::write(&path, serde_json::to_vec_pretty(&b)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("proof bundle written to {}", path.display());
            }
            println!(
                "OK: leaf {index} is in the tree of size {} (origin {}), signed by {}",
                cp.size,
                cp.origin,
                verifier.name()
            );
        }
        ProveKind::Consistency { from } => {
            query.push(("from", from.to_string()));
            let v: ConsistencyProof = client
                .get("/v1/proof/consistency", &query)
                .await?
                .json()
                .await?;
            let note = v
                .checkpoint
                .as_deref()
                .ok_or_else(|| anyhow!("server answer lacks the checkpoint"))?;
            let cp = open_checkpoint(note, &verifier)?;
            let old_root = b64_hash(&v.from_root, "from_root")?;
            tally_tlog::verify_consistency(from, cp.size, &hashes(&v.proof)?, &old_root, &cp.root)
                .map_err(|e| anyhow!("consistency proof does NOT verify: {e}"))?;
            println!(
                "OK: the tree of size {} extends the tree of size {from} (root {})",
                cp.size,
                base64::engine::general_purpose::STANDARD.encode(old_root)
            );
        }
    }
    Ok(())
}

/// Manage API keys: over the API (needs an admin key), or on a stopped server's data
/// directory with --data.
///
/// Every creation and revocation is recorded in the log (`tally.keys.create`,
/// `tally.keys.revoke`): in the key's tenant's log, or in tenant tally-system's for a key of
/// every tenant (*). Revoked keys stay listed, marked. The last admin key of every tenant
/// cannot be revoked: create another first.
///
/// Locked out (no admin key left, or its token lost)? Stop the server and make a new one on
/// its data directory, with the signing options you start it with; the token is printed
/// once, and the creation is recorded in the log by tally-server:
///
///   tally keys create rescue --scope admin --tenant '*' --data ./data
///
/// Examples: tally keys create billing-service --scope ingest --tenant acme
///           tally keys create auditor --scope verify --tenant acme
///           tally keys list
///           tally keys rotate 2bd01cd568ae --overlap 24h
///           tally keys revoke 2bd01cd568ae
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key; its token is printed once.
    ///
    /// Example: tally keys create billing --scope ingest --tenant acme
    Create {
        /// A label for people: 1-128 characters, no control characters.
        name: String,
        /// What it may do; repeat for several. ingest: send events. read: read, search,
        /// stream (and verify). read:pii: read with personal data in the clear. export: bulk
        /// export. verify: checkpoints, hash tiles and proofs only (for auditors and
        /// witnesses). metrics: /metrics (tenant * only). admin: manage keys (and, on tenant
        /// *, tenants); implies all.
        #[arg(long = "scope", required = true,
              value_parser = ["ingest", "read", "read:pii", "export", "verify", "metrics", "admin"])]
        scopes: Vec<String>,
        /// Tenant the key is confined to, or * for all.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The key stops working this long from now (e.g. 90d, 12h); without it, it works
        /// until revoked.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Most requests per second the key may make (beyond: 429 with Retry-After).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit: Option<u32>,
        #[command(flatten)]
        target: KeysTarget,
    },
    /// List keys (without secrets), revoked ones marked with revoked_at.
    List {
        #[command(flatten)]
        target: KeysTarget,
    },
    /// Revoke a key at once (it stays listed, marked revoked).
    Revoke {
        /// Key id (from `tally keys list`).
        id: String,
        #[command(flatten)]
        target: KeysTarget,
    },
    /// Give a key a new secret, printed once; the key keeps its id, scopes and tenant. The
    /// old secret keeps working for --overlap, so clients can move without an outage.
    ///
    /// Example: tally keys rotate 2bd01cd568ae --overlap 24h
    Rotate {
        /// Key id (from `tally keys list`).
        id: String,
        /// How long the old secret keeps working beside the new one (e.g. 1h, 7d; at most
        /// 30d). Without it, the old secret stops at once.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        overlap: Option<std::time::Duration>,
        #[command(flatten)]
        target: KeysTarget,
    },
}

/// Where the keys are: a running server (its API), or a stopped server's data directory.
#[derive(Debug, Args)]
struct KeysTarget {
    #[command(flatten)]
    server: ServerArgs,
    /// Work on this data directory of a STOPPED server instead of over the API: the way back
    /// in when no admin key is left. Refused while a server runs on it. Give the signing
    /// options the server starts with (--origin, --signing-key or --sign-command): the change
    /// is recorded in the log, which signs a new checkpoint.
    #[arg(long, short = 'd', value_name = "DIR", help_heading = "Offline")]
    data: Option<PathBuf>,
    #[command(flatten)]
    signing: crate::signing::SigningArgs,
}

pub async fn keys(args: KeysArgs) -> Result<()> {
    let target = match &args.action {
        KeysAction::Create { target, .. }
        | KeysAction::List { target }
        | KeysAction::Revoke { target, .. }
        | KeysAction::Rotate { target, .. } => target,
    };
    if let Some(data) = &target.data {
        return keys_offline(data, &target.signing, &args.action).await;
    }
    let client = ApiClient::new(&target.server)?;
    match &args.action {
        KeysAction::Create {
            name,
            scopes,
            tenant,
            expires_in,
            rate_limit,
            ..
        } => {
            let mut body = serde_json::json!({"name": name, "scopes": scopes, "tenant": tenant});
            if let Some(n) = rate_limit {
                body["requests_per_second"] = (*n).into();
            }
            if let Some(at) = expiry(*expires_in)? {
                body["expires_at"] = serde_json::json!(at
                    .format(&time::format_description::well_known::Rfc3339)
                    .context("formatting the expiry")?);
            }
            let response = client
                .request(reqwest::Method::POST, "/v1/keys")?
                .json(&body)
                .send()
                .await?;
            let created: CreatedKey = crate::client::check(response).await?.json().await?;
            print_created(&created.key, &created.token);
        }
        KeysAction::List { .. } => {
            let keys: Vec<ApiKey> = client.get("/v1/keys", &[]).await?.json().await?;
            println!("{}", serde_json::to_string_pretty(&keys)?);
        }
        KeysAction::Revoke { id, .. } => {
            let response = client
                .request(reqwest::Method::DELETE, &format!("/v1/keys/{id}"))?
                .send()
                .await?;
            crate::client::check(response).await?;
            println!("key {id} revoked");
        }
        KeysAction::Rotate { id, overlap, .. } => {
            let body = serde_json::json!({
                "overlap_seconds": overlap.unwrap_or_default().as_secs(),
            });
            let response = client
                .request(reqwest::Method::POST, &format!("/v1/keys/{id}/rotate"))?
                .json(&body)
                .send()
                .await?;
            let rotated: CreatedKey = crate::client::check(response).await?.json().await?;
            print_rotated(&rotated.key, &rotated.token);
        }
    }
    Ok(())
}

fn print_rotated(key: &ApiKey, token: &str) {
    println!("{token}");
    match &key.previous_secret_expires_at {
        Some(at) => eprintln!(
            "key {} rotated; the token above is shown only once; the old one works until {at}",
            key.id
        ),
        None => eprintln!(
            "key {} rotated; the token above is shown only once; the old one no longer works",
            key.id
        ),
    }
}

/// The time `--expires-in` from now.
fn expiry(expires_in: Option<std::time::Duration>) -> Result<Option<time::OffsetDateTime>> {
    expires_in
        .map(|d| {
            let d = time::Duration::try_from(d).context("--expires-in is too long")?;
            time::OffsetDateTime::now_utc()
                .checked_add(d)
                .context("--expires-in is too long")
        })
        .transpose()
}

fn print_created(key: &ApiKey, token: &str) {
    println!("{token}");
    eprintln!("key {} created; the token above is shown only once", key.id);
}

/// `tally keys … --data DIR`: opens the stopped server's log (taking its lock, so a running
/// server refuses this) and makes the change as the server would, recorded in the log.
async fn keys_offline(
    data: &std::path::Path,
    signing: &crate::signing::SigningArgs,
    action: &KeysAction,
) -> Result<()> {
    use tally_server::app::{AdminKey, App, AppSettings};
    use tally_server::audit::Actor;
    use tally_server::auth::{Revocation, Rotation, Scope};

    tally_store::DataDir::open_existing(data).with_context(|| {
        format!(
            "{} is not a Tally data directory (give the --data of `tally serve`)",
            data.display()
        )
    })?;
    let settings = AppSettings {
        log: tally_store::LogConfig {
            origin: signing.origin.clone(),
            signing: signing.key_source()?,
            ..tally_store::LogConfig::default()
        },
        index: None,
        admin: AdminKey::None,
        ..AppSettings::new(data)
    };
    let app = App::start(settings).await.map_err(|e| {
        let locked = matches!(
            e.source.downcast_ref::<tally_store::StoreError>(),
            Some(tally_store::StoreError::Locked(_))
        );
        if locked {
            anyhow!(
                "{e}\n--data works on a stopped server only; with the server running, use the API instead \
                 (tally keys … --url URL --token ADMIN_TOKEN)"
            )
        } else {
            anyhow::Error::new(e)
        }
    })?;
    let (log, keys) = (app.log().clone(), app.keys().clone());
    let result: Result<()> = async {
        match action {
            KeysAction::Create {
                name,
                scopes,
                tenant,
                expires_in,
                rate_limit,
                ..
            } => {
                // The names the API takes, parsed the API's way.
                let scopes = scopes
                    .iter()
                    .map(|s| serde_json::from_value::<Scope>(serde_json::json!(s)))
                    .collect::<Result<Vec<_>, _>>()
                    .context("--scope")?;
                let name = tally_server::admin::check_new_key(name, &scopes, tenant)
                    .map_err(|e| anyhow!("{}: {}", e.field, e.rule))?;
                let (key, token) = tally_server::admin::create_key(
                    &log,
                    &keys,
                    Actor::Server,
                    "offline",
                    tally_server::admin::NewKey {
                        name,
                        scopes,
                        tenant,
                        expires_at: expiry(*expires_in)?,
                        requests_per_second: *rate_limit,
                    },
                )
                .await?;
                print_created(&key, &token);
            }
            KeysAction::List { .. } => {
                println!("{}", serde_json::to_string_pretty(&keys.list())?);
            }
            KeysAction::Revoke { id, .. } => {
                match tally_server::admin::revoke_key(&log, &keys, Actor::Server, "offline", id)
                    .await?
                {
                    Revocation::Revoked(_) => println!("key {id} revoked"),
                    Revocation::NotFound => {
                        bail!("no API key with id {id} (see tally keys list --data …)")
                    }
                    Revocation::AlreadyRevoked(at) => bail!("key {id} was revoked at {at}"),
                    Revocation::LastGlobalAdmin => bail!(
                        "key {id} is the last admin key of every tenant; create another first \
                         (tally keys create NAME --scope admin --tenant '*' --data …)"
                    ),
                }
            }
            KeysAction::Rotate { id, overlap, .. } => {
                let overlap = overlap.unwrap_or_default();
                if overlap > tally_server::admin::MAX_ROTATION_OVERLAP {
                    bail!("--overlap must be at most 30d");
                }
                match tally_server::admin::rotate_key(
                    &log,
                    &keys,
                    Actor::Server,
                    "offline",
                    id,
                    overlap,
                )
                .await?
                {
                    Rotation::Rotated(key, token) => print_rotated(&key, &token),
                    Rotation::NotFound => {
                        bail!("no API key with id {id} (see tally keys list --data …)")
                    }
                    Rotation::Revoked(at) => bail!("key {id} was revoked at {at}; make a new key"),
                    Rotation::Expired(at) => bail!("key {id} expired at {at}; make a new key"),
                }
            }
        }
        Ok(())
    }
    .await;
    app.stop().await;
    result
}

/// `tenant=` query parameter, when given.
pub fn tenant_query(tenant: &TenantArg) -> Vec<(&'static str, String)> {
    tenant
        .tenant
        .iter()
        .map(|t| ("tenant", t.clone()))
        .collect()
}
