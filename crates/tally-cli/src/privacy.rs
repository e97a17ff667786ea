//! `tally erase` and `tally holds`: erasure of people's personal data, and the legal holds
//! that block it, over the API (an admin key of the tenant).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tally_server::wire::{ErasureResult, HoldsInfo};

use crate::client::{check, ApiClient};
use crate::ServerArgs;

/// Erase people's personal data from a tenant, keeping every record, proof and checkpoint.
///
/// Each subject's key is destroyed: every personal value sealed under it, in every record,
/// reads `tally:erased` from then on, the search index forgets it, and no file of the data
/// directory keeps it. Records, leaf hashes, proofs, checkpoints and `tally verify` are
/// unchanged. A subject is the identifier the values belong to: an actor id, a resource id,
/// or a value itself for the tenant's paths with subject `value` (an e-mail address).
/// Refused while a legal hold covers the tenant or a subject (see `tally holds`). The
/// erasure is recorded in the tenant's log with who, why and how many records, never whom.
///
/// Example: tally erase --tenant acme --subject alice --subject alice@example.com \
///            --reason "erasure request 2026-0042"
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// A subject to erase (repeat for several, up to 100).
    #[arg(long = "subject", required = true, value_name = "ID")]
    subjects: Vec<String>,
    /// Why (a request reference): recorded with the erasure.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Place or release legal holds, which block erasure.
///
/// A hold on the tenant blocks every erasure in it; a hold on a subject blocks that subject's.
/// Holds are recorded in tenant tally-system's log; the registry names a held subject by a
/// keyed hash, never by name.
///
/// Examples: tally holds place --tenant acme --subject alice --reason "matter 2026-17"
///           tally holds release --tenant acme --subject alice
///           tally holds place --tenant acme --reason "litigation hold"
#[derive(Debug, Args)]
pub struct HoldsArgs {
    #[command(subcommand)]
    action: HoldsAction,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum HoldsAction {
    /// Place a hold.
    Place {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The subject held; without it, the whole tenant.
        #[arg(long)]
        subject: Option<String>,
        /// Why (a case or matter reference).
        #[arg(long)]
        reason: String,
    },
    /// Release a hold.
    Release {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The subject; without it, the tenant's own hold.
        #[arg(long)]
        subject: Option<String>,
    },
}

/// Runs `tally erase`.
pub async fn erase(args: EraseArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let path = format!(
        "/v1/tenants/{}/erasures",
        crate::tenants::segment(&args.tenant)
    );
    let request = client
        .request(reqwest::Method::POST, &path)?
        .json(&serde_json::json!({"subjects": args.subjects, "reason": args.reason}));
    let response = request.send().await.with_context(|| {
        format!(
            "cannot reach {} (is `tally serve` running?)",
            args.server.url
        )
    })?;
    let done: ErasureResult = check(response).await?.json().await?;
    eprintln!(
        "erased {} subject(s) ({} had nothing in tenant {}); {} record(s) now show their values as erased",
        done.erased_subjects, done.unknown_subjects, args.tenant, done.records
    );
    if done.search_index_pending > 0 {
        eprintln!(
            "warning: the search index could not forget {} of them yet; the server retries until \
             it does (its log says why)",
            done.search_index_pending
        );
    }
    Ok(())
}

/// Runs `tally holds …`.
pub async fn holds(args: HoldsArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let (tenant, path, body) = match &args.action {
        HoldsAction::Place {
            tenant,
            subject,
            reason,
        } => (
            tenant,
            "holds",
            serde_json::json!({"subject": subject, "reason": reason}),
        ),
        HoldsAction::Release { tenant, subject } => (
            tenant,
            "holds/release",
            serde_json::json!({"subject": subject}),
        ),
    };
    let path = format!("/v1/tenants/{}/{path}", crate::tenants::segment(tenant));
    let response = client
        .request(reqwest::Method::POST, &path)?
        .json(&body)
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach {} (is `tally serve` running?)",
                args.server.url
            )
        })?;
    let holds: HoldsInfo = check(response).await?.json().await?;
    eprintln!(
        "tenant {tenant}: {}, {} subject(s) held",
        match &holds.legal_hold {
            Some(h) => format!("held since {} ({})", h.since, h.reason),
            None => "no hold on the tenant".into(),
        },
        holds.subject_holds
    );
    Ok(())
}
