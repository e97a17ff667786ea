//! `tally alerts` (list, show, acknowledge, resolve) and `tally rules` (check, list, set):
//! thin clients of the alert API, and an offline check of a rules file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::client::{check, ApiClient};
use crate::tenants::segment;
use crate::{ServerArgs, TenantArg};

/// Alerts raised by the rules, and their state (open, acknowledged, resolved).
///
/// Every alert is an event in the tenant's own log (tally.alert.raise), naming its rule, the
/// group it counted (actor.id, …) and the leaf indexes of the events that triggered it;
/// acknowledging or resolving one is recorded too. Needs a key with the read scope; personal
/// values are masked without read:pii.
///
/// Examples: tally alerts
///           tally alerts --state open --severity high,critical
///           tally alerts show 0193c0de-…
///           tally alerts ack 0193c0de-… --note "looking into it"
///           tally alerts resolve 0193c0de-… --note "password reset forced"
#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    action: Option<AlertsAction>,
    #[command(flatten)]
    list: ListArgs,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    tenant: TenantArg,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// open, acknowledged, resolved, a comma-separated list of them, or all.
    #[arg(long, default_value = "all")]
    state: String,
    /// low, medium, high, critical, a list of them, or all.
    #[arg(long, default_value = "all")]
    severity: String,
    /// Only this rule's alerts.
    #[arg(long)]
    rule: Option<String>,
    /// At most this many alerts (newest first).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum AlertsAction {
    /// One alert with its history and the events that triggered it (JSON).
    Show {
        /// The alert's id.
        id: String,
    },
    /// Acknowledge an alert: someone is looking at it.
    Ack {
        /// The alert's id.
        id: String,
        /// Why, for the record.
        #[arg(long)]
        note: Option<String>,
    },
    /// Resolve an alert: closed.
    Resolve {
        /// The alert's id.
        id: String,
        /// Why, for the record.
        #[arg(long)]
        note: Option<String>,
    },
}

/// Runs `tally alerts …`.
pub async fn alerts(args: AlertsArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let mut tenant: Vec<(&str, String)> = Vec::new();
    if let Some(t) = &args.tenant.tenant {
        tenant.push(("tenant", t.clone()));
    }
    match args.action {
        None => {
            let l = &args.list;
            let mut alerts: Vec<serde_json::Value> = Vec::new();
            let mut cursor: Option<String> = None;
            while alerts.len() < l.limit {
                let mut query = tenant.clone();
                query.push(("state", l.state.clone()));
                query.push(("severity", l.severity.clone()));
                query.push(("limit", (l.limit - alerts.len()).min(500).to_string()));
                if let Some(rule) = &l.rule {
                    query.push(("rule", rule.clone()));
                }
                if let Some(c) = &cursor {
                    query.push(("cursor", c.clone()));
                }
                let page: serde_json::Value =
                    client.get("/v1/alerts", &query).await?.json().await?;
                alerts.extend(page["alerts"].as_array().cloned().unwrap_or_default());
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            if l.json {
                println!("{}", serde_json::to_string_pretty(&alerts)?);
            } else {
                print!("{}", table(&alerts));
            }
        }
        Some(AlertsAction::Show { id }) => {
            let alert: serde_json::Value = client
                .get(&format!("/v1/alerts/{}", segment(&id)), &tenant)
                .await?
                .json()
                .await?;
            println!("{}", serde_json::to_string_pretty(&alert)?);
        }
        Some(AlertsAction::Ack { id, note }) => {
            change(&client, &args.server.url, &tenant, &id, "acknowledge", note).await?;
            eprintln!("alert {id} acknowledged");
        }
        Some(AlertsAction::Resolve { id, note }) => {
            change(&client, &args.server.url, &tenant, &id, "resolve", note).await?;
            eprintln!("alert {id} resolved");
        }
    }
    Ok(())
}

async fn change(
    client: &ApiClient,
    url: &str,
    tenant: &[(&str, String)],
    id: &str,
    verb: &str,
    note: Option<String>,
) -> Result<()> {
    let mut body = serde_json::json!({});
    if let Some(note) = note {
        body["note"] = note.into();
    }
    let request = client
        .request(
            reqwest::Method::POST,
            &format!("/v1/alerts/{}/{verb}", segment(id)),
        )?
        .query(tenant)
        .json(&body);
    check(
        request
            .send()
            .await
            .with_context(|| format!("cannot reach {url} (is `tally serve` running?)"))?,
    )
    .await?;
    Ok(())
}

/// The alerts as a table: when, severity, state, rule, group, how many events.
fn table(alerts: &[serde_json::Value]) -> String {
    if alerts.is_empty() {
        return "no alerts\n".to_string();
    }
    let rows: Vec<[String; 7]> = alerts
        .iter()
        .map(|a| {
            let group = a["group"]
                .as_object()
                .map(|g| {
                    g.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            [
                text("raised_at"),
                text("severity"),
                text("state"),
                text("rule"),
                group,
                a["count"].to_string(),
                text("id"),
            ]
        })
        .collect();
    let header = [
        "RAISED", "SEVERITY", "STATE", "RULE", "GROUP", "EVENTS", "ID",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// Alert rules: check a rules file, list the rules in force, replace them.
///
/// A rules file is YAML (or JSON) with `rules:` and a list of rules:
///
///   rules:
///     - id: brute-force
///       title: More than 5 failed logins by one actor within 5 minutes
///       severity: high                  # low, medium (default), high, critical
///       match: category:LOGIN outcome:FAILURE
///       condition: count > 5 within 5m by actor.id
///
/// `match` is a search (the syntax of `tally query`). `condition` is one of
/// `count > N within D [by FIELD,…]`, `distinct FIELD > N within D [by FIELD,…]` or
/// `value PATH > X` (a number in metadata, before or after); `>=` means at least; D is 1s to
/// 30d. Without a condition every matching event raises an alert.
///
/// A server runs the default rule pack (brute-force, bulk-export, admin-grant) until rules are set with `tally rules set`, or reads them from the file
/// given to `tally serve --rules` (then `set` is refused: change the file and restart).
///
/// Examples: tally rules check rules.yaml
///           tally rules list
///           tally rules set rules.yaml
#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    action: RulesAction,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum RulesAction {
    /// Check a rules file without a server: every broken rule is named with its field.
    Check {
        /// The rules file (YAML or JSON; - for standard input).
        file: PathBuf,
    },
    /// List the rules in force on the server and where they come from (needs read).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replace every rule on the server with a file's (needs an admin key of every tenant);
    /// recorded in tenant tally-system's log.
    Set {
        /// The rules file (YAML or JSON; - for standard input).
        file: PathBuf,
    },
}

fn read_rules(file: &PathBuf) -> Result<Vec<tally_alerts::Rule>> {
    let text = if crate::is_stdin(file) {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    tally_alerts::parse_rule_file(&text).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!(
            "{}: {} broken rule(s); nothing was changed:\n{}",
            file.display(),
            errors.len(),
            lines.join("\n")
        )
    })
}

/// Runs `tally rules …`.
pub async fn rules(args: RulesArgs) -> Result<()> {
    match args.action {
        RulesAction::Check { file } => {
            let rules = read_rules(&file)?;
            println!(
                "{}: {} rule(s), {} enabled; all valid",
                file.display(),
                rules.len(),
                rules.iter().filter(|r| r.spec.enabled).count()
            );
        }
        RulesAction::List { json } => {
            let client = ApiClient::new(&args.server)?;
            let body: serde_json::Value = client.get("/v1/rules", &[]).await?.json().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                println!("source: {}", body["source"].as_str().unwrap_or_default());
                for rule in body["rules"].as_array().into_iter().flatten() {
                    let text = |k: &str| rule[k].as_str().unwrap_or_default().to_string();
                    let enabled = if rule["enabled"] == false {
                        " (disabled)"
                    } else {
                        ""
                    };
                    println!(
                        "{}  [{}]{enabled}  {}\n    match: {}\n    condition: {}",
                        text("id"),
                        rule["severity"].as_str().unwrap_or("medium"),
                        text("title"),
                        text("match"),
                        rule["condition"].as_str().unwrap_or("every matching event"),
                    );
                }
            }
        }
        RulesAction::Set { file } => {
            let rules = read_rules(&file)?;
            let specs: Vec<_> = rules.into_iter().map(|r| r.spec).collect();
            let client = ApiClient::new(&args.server)?;
            let request = client
                .request(reqwest::Method::PUT, "/v1/rules")?
                .json(&tally_alerts::RuleFile { rules: specs });
            let response = check(request.send().await.with_context(|| {
                format!(
                    "cannot reach {} (is `tally serve` running?)",
                    args.server.url
                )
            })?)
            .await?;
            let body: serde_json::Value = response.json().await?;
            eprintln!(
                "{} rule(s) in force",
                body["rules"].as_array().map_or(0, Vec::len)
            );
        }
    }
    Ok(())
}
