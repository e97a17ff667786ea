//! `tally-bench` teaches its use, and the product binary no longer carries the benchmarks.

use std::process::Command;

#[test]
fn each_benchmark_has_help_with_examples() {
    for cmd in ["ingest", "search"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tally-bench"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help failed");
        assert!(
            text.contains("Example"),
            "{cmd} --help has no example:\n{text}"
        );
        assert!(text.contains("PostgreSQL"), "{cmd} --help:\n{text}");
    }
}
