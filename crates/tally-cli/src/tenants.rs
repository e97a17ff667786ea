//! `tally tenants`: list, describe, create, disable, enable and limit tenants over the API.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tally_server::tenants::{Quotas, TenantStatus};
use tally_server::wire::TenantInfo;

use crate::client::{check, ApiClient};
use crate::ServerArgs;

/// Manage tenants: each has its own Merkle log, keys, quotas and state.
///
/// Listing and describing needs a key with the read scope (you see the tenants in its
/// reach); creating, disabling, enabling and setting quotas needs an admin key of every
/// tenant (*). Every change is recorded in tenant tally-system's log (tally.tenants.*).
///
/// A disabled tenant refuses ingest (403 tenant_disabled) and stays readable, provable and
/// verifiable. Over a quota, ingest answers 429 with Retry-After.
///
/// Examples: tally tenants list
///           tally tenants create acme
///           tally tenants quotas acme --events-per-second 500 --max-stored-bytes 50GiB
///           tally tenants disable acme --reason "contract ended 2026-12-31"
///           tally tenants enable acme
///           tally tenants show acme
#[derive(Debug, Args)]
pub struct TenantsArgs {
    #[command(subcommand)]
    action: TenantsAction,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum TenantsAction {
    /// List the tenants in the key's reach: state, events, stored bytes, quotas.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Describe one tenant (JSON).
    Show {
        /// Tenant name.
        name: String,
    },
    /// Create a tenant (enabled, no quotas). Needed first on a server started with
    /// --unknown-tenants refuse.
    Create {
        /// Tenant name: 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or
        /// digit.
        name: String,
    },
    /// Refuse the tenant's ingest from now on (403 tenant_disabled); reads, proofs and
    /// verification keep working.
    Disable {
        /// Tenant name.
        name: String,
        /// Why: shown to clients whose events are refused, and recorded.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Take the tenant's events again.
    Enable {
        /// Tenant name.
        name: String,
    },
    /// Set the tenant's quotas; a quota left out is removed (no limit).
    Quotas {
        /// Tenant name.
        name: String,
        /// Sustained events per second (bursts of one second's worth).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        events_per_second: Option<u32>,
        /// Stored record bytes, e.g. 500MiB, 50GiB or 1000000.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_stored_bytes: Option<u64>,
    },
    /// Show or set which values of the tenant's events are personal data (sealed, masked for
    /// readers without read:pii, erasable). The schema's personal fields always are; add
    /// paths inside before, after and metadata. Applies to events received from then on.
    ///
    /// Examples: tally tenants policy acme
    ///           tally tenants policy acme --path after.email=value --path 'metadata.patient.*=metadata.patient.id'
    ///           tally tenants policy acme --clear
    Policy {
        /// Tenant name.
        name: String,
        /// PATH or PATH=SUBJECT (replaces the tenant's paths; repeat). SUBJECT is actor,
        /// resource, value, or the path of the value naming the subject.
        #[arg(long = "path", value_name = "PATH[=SUBJECT]")]
        paths: Vec<String>,
        /// Remove the tenant's own paths (the schema's stay).
        #[arg(long, conflicts_with = "paths")]
        clear: bool,
    },
    /// Show the tenant's data keys for encryption at rest (JSON), or start a new one with
    /// --rotate: records from then on are sealed under it, older ones keep theirs.
    ///
    /// Examples: tally tenants data-keys acme
    ///           tally tenants data-keys acme --rotate
    DataKeys {
        /// Tenant name.
        name: String,
        /// Start a new data key now (recorded in the tenant's log).
        #[arg(long)]
        rotate: bool,
    },
}

fn parse_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text
        .parse()
        .map_err(|e| format!("{e} (write a size such as 500MiB, 50GiB or 1000000)"))?;
    if size.as_u64() == 0 {
        return Err("must be at least 1 byte (leave it out for no limit)".into());
    }
    Ok(size.as_u64())
}

/// Runs `tally tenants …`.
pub async fn run(args: TenantsArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let url = args.server.url.clone();
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach {} (is `tally serve` running?)",
                args.server.url
            )
        })?;
        let info: TenantInfo = check(response).await?.json().await?;
        anyhow::Ok(info)
    };
    match args.action {
        TenantsAction::List { json } => {
            let tenants: Vec<TenantInfo> = client.get("/v1/tenants", &[]).await?.json().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                print!("{}", table(&tenants));
            }
        }
        TenantsAction::Show { name } => {
            let path = format!("/v1/tenants/{}", segment(&name));
            let info: TenantInfo = client.get(&path, &[]).await?.json().await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        TenantsAction::Create { name } => {
            let request = client
                .request(reqwest::Method::POST, "/v1/tenants")?
                .json(&serde_json::json!({ "name": name }));
            let info = send(request).await?;
            eprintln!("tenant {} created", info.tenant.name);
        }
        TenantsAction::Disable { name, reason } => {
            let mut body = serde_json::json!({});
            if let Some(reason) = reason {
                body["reason"] = reason.into();
            }
            let path = format!("/v1/tenants/{}/disable", segment(&name));
            let request = client.request(reqwest::Method::POST, &path)?.json(&body);
            let info = send(request).await?;
            eprintln!(
                "tenant {} disabled: its ingest is refused; it stays readable",
                info.tenant.name
            );
        }
        TenantsAction::Enable { name } => {
            let path = format!("/v1/tenants/{}/enable", segment(&name));
            let info = send(client.request(reqwest::Method::POST, &path)?).await?;
            eprintln!("tenant {} enabled", info.tenant.name);
        }
        TenantsAction::DataKeys { name, rotate } => {
            let path = format!("/v1/tenants/{}/data-keys", segment(&name));
            let response = if rotate {
                let request = client.request(reqwest::Method::POST, &format!("{path}/rotate"))?;
                check(
                    request.send().await.with_context(|| {
                        format!("cannot reach {url} (is `tally serve` running?)")
                    })?,
                )
                .await?
            } else {
                client.get(&path, &[]).await?
            };
            let keys: tally_server::wire::DataKeysInfo = response.json().await?;
            println!("{}", serde_json::to_string_pretty(&keys)?);
        }
        TenantsAction::Policy { name, paths, clear } => {
            let path = format!("/v1/tenants/{}/policy", segment(&name));
            let response =
                if paths.is_empty() && !clear {
                    client.get(&path, &[]).await?
                } else {
                    let personal_paths: Vec<serde_json::Value> = paths
                        .iter()
                        .map(|p| match p.split_once('=') {
                            Some((path, subject)) => {
                                serde_json::json!({"path": path, "subject": subject})
                            }
                            None => serde_json::json!({"path": p}),
                        })
                        .collect();
                    let request = client
                        .request(reqwest::Method::PUT, &path)?
                        .json(&serde_json::json!({ "personal_paths": personal_paths }));
                    check(request.send().await.with_context(|| {
                        format!("cannot reach {url} (is `tally serve` running?)")
                    })?)
                    .await?
                };
            let policy: tally_server::wire::PolicyInfo = response.json().await?;
            println!("{}", serde_json::to_string_pretty(&policy)?);
        }
        TenantsAction::Quotas {
            name,
            events_per_second,
            max_stored_bytes,
        } => {
            let quotas = Quotas {
                events_per_second,
                max_stored_bytes,
            };
            let path = format!("/v1/tenants/{}/quotas", segment(&name));
            let request = client.request(reqwest::Method::PUT, &path)?.json(&quotas);
            let info = send(request).await?;
            eprintln!(
                "tenant {}: quotas {}",
                info.tenant.name,
                describe_quotas(&info.tenant.quotas)
            );
        }
    }
    Ok(())
}

/// A tenant name as one URL path segment: names are `[a-z0-9_-]`, so anything else is a
/// typo the server will name; encode it so that it cannot change the path.
pub(crate) fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn describe_quotas(q: &Quotas) -> String {
    let mut parts = Vec::new();
    if let Some(n) = q.events_per_second {
        parts.push(format!("{n} events/s"));
    }
    if let Some(b) = q.max_stored_bytes {
        parts.push(format!("{} stored", bytesize::ByteSize(b)));
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

fn table(tenants: &[TenantInfo]) -> String {
    let rows: Vec<[String; 5]> = tenants
        .iter()
        .map(|t| {
            [
                t.tenant.name.clone(),
                match t.tenant.status {
                    TenantStatus::Enabled => "enabled".to_string(),
                    TenantStatus::Disabled => "DISABLED".to_string(),
                },
                t.size.to_string(),
                bytesize::ByteSize(t.record_bytes).to_string(),
                describe_quotas(&t.tenant.quotas),
            ]
        })
        .collect();
    let header = ["TENANT", "STATUS", "EVENTS", "STORED", "QUOTAS"].map(str::to_string);
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_zero_is_refused() {
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn names_cannot_leave_their_path_segment() {
        assert_eq!(segment("acme-1_x"), "acme-1_x");
        assert_eq!(segment("../keys"), "%2E%2E%2Fkeys");
    }
}
