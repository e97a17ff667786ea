//! Results of a load run and their side-by-side presentation.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// What one load run measured. Latencies are acknowledgement latencies of successful requests,
/// from just before the request is sent until its whole response has been read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Name of the workload, e.g. `tally batch=1000 c=16`.
    pub label: String,
    /// Events acknowledged during the measured phase (warm-up traffic is not counted).
    pub events: u64,
    /// Requests (or, for PostgreSQL, statements) acknowledged during the measured phase.
    pub requests: u64,
    /// Requests that failed during the measured phase: non-200 replies, transport errors,
    /// database errors, or short acknowledgements.
    pub errors: u64,
    /// Wall time of the measured phase, including the requests still in flight at its end.
    #[serde(rename = "elapsed_s", serialize_with = "seconds")]
    pub elapsed: Duration,
    /// `events / elapsed`.
    pub events_per_sec: f64,
    /// `requests / elapsed`.
    pub requests_per_sec: f64,
    /// Median acknowledgement latency, microseconds.
    pub p50_us: u64,
    /// 90th percentile acknowledgement latency, microseconds.
    pub p90_us: u64,
    /// 99th percentile acknowledgement latency, microseconds.
    pub p99_us: u64,
    /// Slowest acknowledgement, microseconds.
    pub max_us: u64,
    /// The first failure seen (status and response body, or the error), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl LoadReport {
    /// Column headings matching the [`Display`](fmt::Display) row.
    pub fn header() -> String {
        format!(
            "{:<34} {:>10} {:>11} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6}",
            "workload",
            "events",
            "events/s",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors"
        )
    }
}

/// One aligned table row; see [`LoadReport::header`].
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<34} {:>10} {:>11.0} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>6}",
            self.label,
            self.events,
            self.events_per_sec,
            self.requests_per_sec,
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us),
            self.errors
        )
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1_000.0)
}

/// `a / b`, or `None` when the baseline measured nothing to divide by.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}x"))
}

/// The comparison [`print_comparison`] prints: both rows, then ours divided by the baseline for
/// throughput (higher is better) and for p50 and p99 latency (lower is better).
pub fn comparison(ours: &LoadReport, baseline: &LoadReport) -> String {
    let throughput = ratio(ours.events_per_sec, baseline.events_per_sec);
    let p50 = ratio(ours.p50_us as f64, baseline.p50_us as f64);
    let p99 = ratio(ours.p99_us as f64, baseline.p99_us as f64);
    format!(
        "{}\n{ours}\n{baseline}\nours / baseline: throughput {} (higher is better), p50 latency {}, p99 latency {} (lower is better)\n",
        LoadReport::header(),
        fmt_ratio(throughput),
        fmt_ratio(p50),
        fmt_ratio(p99),
    )
}

/// Prints [`comparison`] of a Tally run against the PostgreSQL baseline to stdout.
pub fn print_comparison(ours: &LoadReport, baseline: &LoadReport) {
    print!("{}", comparison(ours, baseline));
}

/// A Markdown table of the runs, for BENCHMARKS.md.
pub fn markdown_table(rows: &[LoadReport]) -> String {
    let mut out = String::from(
        "| workload | events | events/s | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |\n",
            r.label.replace('|', "\\|"),
            r.events,
            r.events_per_sec,
            r.requests_per_sec,
            ms(r.p50_us),
            ms(r.p90_us),
            ms(r.p99_us),
            ms(r.max_us),
            r.errors
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(label: &str, eps: f64, p50: u64, p99: u64) -> LoadReport {
        LoadReport {
            label: label.into(),
            events: 1_000,
            requests: 10,
            errors: 0,
            elapsed: Duration::from_millis(1_500),
            events_per_sec: eps,
            requests_per_sec: eps / 100.0,
            p50_us: p50,
            p90_us: p99,
            p99_us: p99,
            max_us: p99 * 2,
            first_error: None,
        }
    }

    #[test]
    fn comparison_divides_ours_by_baseline() {
        let text = comparison(
            &report("tally", 100_000.0, 500, 2_000),
            &report("postgres", 4_000.0, 5_000, 20_000),
        );
        assert!(text.contains("throughput 25.00x"), "{text}");
        assert!(text.contains("p50 latency 0.10x"), "{text}");
        assert!(text.contains("p99 latency 0.10x"), "{text}");
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn comparison_with_an_empty_baseline_says_na() {
        let text = comparison(&report("tally", 1.0, 1, 1), &report("postgres", 0.0, 0, 0));
        assert!(text.contains("throughput n/a"), "{text}");
    }

    #[test]
    fn rows_align_with_header() {
        let row = report("postgres batch=100 c=4", 12_345.6, 1_234, 9_876).to_string();
        assert_eq!(row.len(), LoadReport::header().len(), "{row}");
        assert!(
            row.contains("12346") && row.contains("1.23") && row.contains("9.88"),
            "{row}"
        );
    }

    #[test]
    fn markdown_has_a_row_per_report_and_serializes_seconds() {
        let md = markdown_table(&[report("a|b", 1.0, 1, 1), report("c", 2.0, 2, 2)]);
        assert_eq!(md.lines().count(), 4);
        assert!(md.contains("| a\\|b |"));
        let json = serde_json::to_value(report("x", 1.0, 1, 1)).unwrap();
        assert_eq!(json["elapsed_s"], 1.5);
        assert!(json.get("first_error").is_none());
    }
}
