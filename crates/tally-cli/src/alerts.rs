//! `tally alerts` (list, show, acknowledge, resolve) and `tally rules` (check, list, set):
//! thin clients of the alert API, and an offline check of a rules file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tally_store::TenantRecords;

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

/// A group's values as `field=value …`.
fn group_text(group: &serde_json::Value) -> String {
    group
        .as_object()
        .map(|g| {
            g.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The alerts as a table: when, severity, state, rule, group, how many events.
fn table(alerts: &[serde_json::Value]) -> String {
    if alerts.is_empty() {
        return "no alerts\n".to_string();
    }
    let rows = alerts
        .iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            vec![
                text("raised_at"),
                text("severity"),
                text("state"),
                text("rule"),
                group_text(&a["group"]),
                a["count"].to_string(),
                text("id"),
            ]
        })
        .collect();
    render(
        &[
            "RAISED", "SEVERITY", "STATE", "RULE", "GROUP", "EVENTS", "ID",
        ],
        rows,
    )
}

/// Columns padded to their widest cell, two spaces apart.
fn render(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
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
/// `value PATH > X` (a number in metadata, before or after), or
/// `first_seen FIELD [after D] [by FIELD,…]`; `>=` means at least; D is 1s to 30d. `then:` makes
/// a count a sequence, `when:` limits a rule to hours and days in a time zone. Without a
/// condition every matching event raises an alert.
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
    /// Run a rule over history and say when it would have fired: reads the data directory
    /// read-only (a server may be running), appends nothing and notifies nobody.
    ///
    /// Examples: tally rules test brute-force --since 30d
    ///           tally rules test all --rules rules.yaml --since 2026-11-01T00:00:00Z -t acme
    Test(BacktestArgs),
}

/// `--since`: a duration ago or an RFC 3339 time, as Unix milliseconds.
fn since_ms(text: &str) -> Result<i64> {
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let ago = humantime::parse_duration(text).map_err(|e| {
        crate::UsageError(format!(
            "--since {text:?}: {e}; give a duration such as 30d or 12h, or an RFC 3339 time"
        ))
    })?;
    let since = time::Duration::try_from(ago)
        .ok()
        .and_then(|ago| time::OffsetDateTime::now_utc().checked_sub(ago))
        .ok_or_else(|| {
            crate::UsageError(format!(
                "--since {text:?} reaches before the year -9999; give a shorter duration"
            ))
        })?;
    Ok((since.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `tally rules test`'s arguments.
#[derive(Debug, Args)]
struct BacktestArgs {
    /// The rule's id, or `all`.
    rule: String,
    /// Events received since: a duration ago (30d, 12h) or an RFC 3339 time.
    #[arg(long, default_value = "30d")]
    since: String,
    /// Take the rules from this file (default: the rules in force in the data
    /// directory: those set with `tally rules set`, else the default pack).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Data directory.
    #[arg(long, short = 'd', env = "TALLY_DATA", default_value = "./data")]
    data: PathBuf,
    /// Only this tenant.
    #[arg(long, short = 't')]
    tenant: Option<String>,
    /// Print each alert's event as JSON Lines instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// The key-encryption key, if the server encrypts at rest.
    #[command(flatten)]
    kek: crate::kek::KekArgs,
}

fn backtest(args: BacktestArgs) -> Result<()> {
    let since = since_ms(&args.since)?;
    let reader = tally_store::LogReader::open(&args.data)
        .with_context(|| format!("opening {}", args.data.display()))?;
    let at_rest = args.kek.at_rest(reader.data_dir())?;
    let reader = reader.with_at_rest(at_rest.clone());
    let (_, mut rules) = tally_server::alerts::RuleBook::load(
        reader.data_dir(),
        &tally_server::alerts::AlertSettings {
            rules_file: args.rules.clone(),
        },
    )?;
    if args.rule != "all" {
        let ids: Vec<String> = rules.iter().map(|r| r.spec.id.clone()).collect();
        rules.retain(|r| r.spec.id == args.rule);
        if rules.is_empty() {
            anyhow::bail!(
                "no rule {} among the rules ({}); name one of them or `all`",
                args.rule,
                ids.join(", ")
            );
        }
    }
    // A rule switched off still runs when it is the one asked for.
    for rule in &mut rules {
        rule.spec.enabled = true;
    }
    let logs = crate::investigate::tenant_readers(&reader, args.tenant.as_deref())?;
    let total: u64 = logs.iter().map(|t| t.size()).sum();
    let bar = crate::investigate::events_bar(total, args.quiet);
    let registry =
        tally_server::tenants::TenantRegistry::open(reader.data_dir().tenant_registry_path())?;
    let privacy = tally_server::privacy::Privacy::new(
        reader.data_dir().clone(),
        std::sync::Arc::new(registry),
        at_rest,
    );
    let mut found = Vec::new();
    for tlog in &logs {
        bar.set_message(tlog.name().to_string());
        let alerts =
            tally_alerts::backtest::backtest(rules.clone(), tlog, &privacy, since, &mut |n| {
                bar.inc(n)
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        found.extend(alerts);
    }
    bar.finish_and_clear();
    if args.json {
        for alert in &found {
            println!("{}", alert.event());
        }
    } else {
        let rfc3339 = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let rows = found
            .iter()
            .map(|a| {
                vec![
                    rfc3339(a.last_at),
                    a.tenant.clone(),
                    a.rule.clone(),
                    a.severity.as_str().to_string(),
                    a.group
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    a.count.to_string(),
                    a.leaves
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        print!(
            "{}",
            render(
                &[
                    "WOULD FIRE AT",
                    "TENANT",
                    "RULE",
                    "SEVERITY",
                    "GROUP",
                    "EVENTS",
                    "LEAVES"
                ],
                rows
            )
        );
        eprintln!(
            "{} alert(s) would have been raised over {total} events of {} tenant(s); nothing was recorded or sent",
            found.len(),
            logs.len()
        );
    }
    Ok(())
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
        RulesAction::Test(args) => {
            tokio::task::spawn_blocking(move || backtest(args)).await??;
        }
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
