//! What the benchmark examples share: their command line (`--mode`, `--scale`, `--out`
//! and their own options), the backends a mode names, and the Markdown report (one row
//! per measure, one column per mode).
#![allow(dead_code)]

/// Benchmarks run on the allocator the `flowfleet` binary runs on (see `src/main.rs`),
/// so that they measure what production does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context};
use flowfleet_host::testing::Backend;

/// The command line, as `--name value` pairs.
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Args {
        Args(std::env::args().skip(1).collect())
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
    }

    /// A number option, at least 1 (default `default`).
    pub fn number(&self, name: &str, default: usize) -> anyhow::Result<usize> {
        Ok(self
            .get(name)
            .map(|s| s.parse())
            .transpose()
            .with_context(|| format!("{name} takes a number"))?
            .unwrap_or(default)
            .max(1))
    }

    /// The backends `--mode` (embedded, distributed or both, the default) names.
    pub fn backends(&self) -> anyhow::Result<Vec<Backend>> {
        let mode = self.get("--mode").unwrap_or_else(|| "both".into());
        let mut backends = Vec::new();
        if mode != "distributed" {
            backends.push(Backend::Embedded);
        }
        if mode != "embedded" {
            match Backend::all()
                .into_iter()
                .find(|b| matches!(b, Backend::Distributed { .. }))
            {
                Some(b) => backends.push(b),
                None => bail!("the distributed mode needs FLOWFLEET_TEST_DATABASE_URL, _AMQP_URL and _REDIS_URL (scripts/bench starts them)"),
            }
        }
        Ok(backends)
    }
}

/// One column: a mode's name and its (measure, value) rows, in the same order for all.
pub type Column = (&'static str, Vec<(String, String)>);

/// Prints the report as a Markdown table and writes it to `--out`, if given.
pub fn report(args: &Args, columns: &[Column]) -> anyhow::Result<()> {
    let mut report = String::from("| measure |");
    for (name, _) in columns {
        report.push_str(&format!(" {name} |"));
    }
    report.push_str("\n|---|");
    for _ in columns {
        report.push_str("---:|");
    }
    report.push('\n');
    if let Some((_, first)) = columns.first() {
        for (i, (label, _)) in first.iter().enumerate() {
            report.push_str(&format!("| {label} |"));
            for (_, rows) in columns {
                report.push_str(&format!(" {} |", rows[i].1));
            }
            report.push('\n');
        }
    }
    println!("{report}");
    if let Some(out) = args.get("--out") {
        std::fs::write(&out, &report).with_context(|| format!("writing {out}"))?;
    }
    Ok(())
}
