//! Rules run over history: when would they have fired? (`tally rules test`.)
//!
//! A fresh [`Engine`] is fed a tenant's records in leaf order, exactly as the consumer feeds
//! it, so a backtest raises what the running rules would have raised; nothing is appended
//! and nobody is notified.

use tally_consumers::index::RecordOpener;
use tally_consumers::ConsumerError;
use tally_query::NoTokens;
use tally_store::TenantRecords;

use crate::consumer::open_record;
use crate::engine::{Alert, Engine};
use crate::rule::Rule;

/// Records read at a time.
const CHUNK: u64 = 4096;

/// Runs `rules` over `tlog`'s records received at or after `since_ms` (Unix milliseconds),
/// calling `progress` with the number of records read after each chunk, and returns the
/// alerts they would have raised, in order.
pub fn backtest(
    rules: Vec<Rule>,
    tlog: &dyn TenantRecords,
    opener: &dyn RecordOpener,
    since_ms: i64,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Alert>, ConsumerError> {
    let mut engine = Engine::new(rules);
    let mut alerts = Vec::new();
    let size = tlog.size();
    let mut pos = 0;
    while pos < size {
        let count = (size - pos).min(CHUNK);
        let records = tlog
            .records(pos, count)
            .map_err(|e| format!("reading the log of {}: {e}", tlog.name()))?;
        for (i, stored) in records.iter().enumerate() {
            let leaf = pos + i as u64;
            let Some(record) = open_record(opener, tlog.name(), leaf, stored)? else {
                continue;
            };
            let received_ms = (record.received_at.unix_timestamp_nanos() / 1_000_000) as i64;
            if received_ms < since_ms {
                continue;
            }
            alerts.extend(engine.observe(tlog.name(), leaf, &record, &NoTokens));
        }
        pos += count;
        progress(count);
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{check_rules, RuleSpec, Severity};

    /// Records stored as they are (no sealed values).
    struct Plain;

    impl RecordOpener for Plain {
        fn open_for_index(
            &self,
            _tenant: &str,
            stored: &[u8],
        ) -> Result<tally_privacy::record::Opened, String> {
            Ok(tally_privacy::record::Opened {
                bytes: stored.to_vec(),
                sealed: Vec::new(),
                tokens: Vec::new(),
                erased: 0,
                unavailable: 0,
            })
        }
    }

    struct Memory(Vec<Vec<u8>>);

    impl TenantRecords for Memory {
        fn name(&self) -> &str {
            "acme"
        }
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn records(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, tally_store::ReadError> {
            Ok(self.0[start as usize..(start + count) as usize].to_vec())
        }
    }

    #[test]
    fn a_backtest_raises_what_the_rule_would_have_raised_since_the_given_time() {
        // A failed login every 10 s by one actor, from 2026-05-01T12:00:00Z.
        let t0 = 1_777_636_800i64;
        let records: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                let t = time::OffsetDateTime::from_unix_timestamp(t0 + i * 10)
                    .unwrap()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                serde_json::to_vec(&serde_json::json!({
                    "schema_version": 1, "id": uuid::Uuid::now_v7().to_string(),
                    "tenant": "acme", "time": t, "received_at": t, "key_id": "k",
                    "actor": {"id": "alice"}, "action": "auth.login", "outcome": "FAILURE",
                    "resource": {"type": "session", "id": "web"},
                }))
                .unwrap()
            })
            .collect();
        let rules = check_rules(vec![RuleSpec {
            id: "brute".into(),
            title: "t".into(),
            description: None,
            severity: Severity::High,
            matches: "outcome:FAILURE".into(),
            condition: Some("count >= 5 within 5m by actor".into()),
            then: None,
            when: None,
            enabled: true,
        }])
        .unwrap();
        let mut read = 0;
        let all = backtest(
            rules.clone(),
            &Memory(records.clone()),
            &Plain,
            0,
            &mut |n| read += n,
        )
        .unwrap();
        assert_eq!(read, 20);
        let leaves: Vec<Vec<u64>> = all.iter().map(|a| a.leaves.clone()).collect();
        assert_eq!(
            leaves,
            [
                vec![0, 1, 2, 3, 4],
                vec![5, 6, 7, 8, 9],
                vec![10, 11, 12, 13, 14],
                vec![15, 16, 17, 18, 19]
            ]
        );
        // From the 8th record's time on: records 7.. count, 7..11 fire first.
        let since = (t0 + 70) * 1000;
        let later = backtest(rules, &Memory(records), &Plain, since, &mut |_| {}).unwrap();
        assert_eq!(later[0].leaves, [7, 8, 9, 10, 11]);
        assert_eq!(later.len(), 2);
    }
}
