//! `cargo xtask fuzz-parsers --seconds N`: each `cargo fuzz` target in fuzz/ (the user-space code
//! that parses untrusted bytes) for N seconds, one worker at a time, from the committed seeds.
//! Installs cargo-fuzz for the pinned nightly if it is missing. Prints executions and coverage per
//! target and the path of every crash, and fails if there was one.
//!
//! New inputs go to target/fuzz-parsers/corpus/NAME (fuzz/corpus/NAME stays the committed seeds),
//! libFuzzer's output to target/fuzz-parsers/NAME.log, crashes to fuzz/artifacts/NAME/. A fixed
//! crash's minimized input belongs in fuzz/regressions/NAME/ (`tests/fuzz_corpus.rs` runs those).

use std::{
    fs,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::fuzzing::TARGETS;

use crate::workspace::workspace_root;

const EBPF_TOOLCHAIN: &str = include_str!("../../checksum-ebpf/TOOLCHAIN");
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// libFuzzer options for every run: an input that takes this long is a finding (a hang), and so
/// is a single allocation this large (the parsers bound theirs far below it).
const TIMEOUT_SECS: u32 = 10;
const MALLOC_LIMIT_MB: u32 = 256;

/// What one target's run printed.
#[derive(Debug, Default)]
struct Outcome {
    executions: Option<u64>,
    exec_per_sec: Option<u64>,
    /// libFuzzer's last `cov:` and `ft:` figures (edges and features covered).
    cov: Option<u64>,
    features: Option<u64>,
    corpus: Option<String>,
    crashes: Vec<String>,
}

pub fn run(seconds: u32, only: &[String]) -> Result<()> {
    for name in only {
        if !TARGETS.iter().any(|t| t.0 == name) {
            bail!("no fuzz target {name}; there are {}", names().join(", "));
        }
    }
    let selected: Vec<&str> = names()
        .into_iter()
        .filter(|n| only.is_empty() || only.iter().any(|o| o == n))
        .collect();
    install_cargo_fuzz()?;
    let root = workspace_root();
    let work = root.join("target/fuzz-parsers");
    crate::workspace::run(cargo_fuzz().arg("build"))?;
    let mut outcomes = Vec::new();
    for name in &selected {
        let corpus = work.join("corpus").join(name);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let log = work.join(format!("{name}.log"));
        eprintln!(
            "xtask: fuzzing {name} for {seconds} s (output: {})",
            log.display()
        );
        let status = cargo_fuzz()
            .args(["run", name])
            .arg(&corpus)
            .arg(root.join("fuzz/corpus").join(name))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={TIMEOUT_SECS}"))
            .arg(format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"))
            .arg("-print_final_stats=1")
            .current_dir(&root)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .status()
            .context("running cargo fuzz")?;
        let outcome = parse_log(&fs::read_to_string(&log)?);
        if !status.success() && outcome.crashes.is_empty() {
            bail!(
                "cargo fuzz run {name} failed ({status}); see {}",
                log.display()
            );
        }
        outcomes.push((*name, outcome));
    }
    println!(
        "\n{:<18} {:>12} {:>9} {:>6} {:>7} {:>14}  crashes",
        "target", "executions", "exec/s", "cov", "ft", "corpus"
    );
    let show = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    let mut crashes = 0;
    for (name, o) in &outcomes {
        println!(
            "{name:<18} {:>12} {:>9} {:>6} {:>7} {:>14}  {}",
            show(o.executions),
            show(o.exec_per_sec),
            show(o.cov),
            show(o.features),
            o.corpus.as_deref().unwrap_or("?"),
            o.crashes.len()
        );
        for path in &o.crashes {
            println!("  crash: {path}");
        }
        crashes += o.crashes.len();
    }
    if crashes > 0 {
        bail!(
            "{crashes} crashes; reproduce one with `cargo +{} fuzz run NAME PATH`, minimize it with \
             `cargo fuzz tmin NAME PATH`, fix it, and add the minimized input to fuzz/regressions/NAME/",
            EBPF_TOOLCHAIN.trim()
        );
    }
    Ok(())
}

fn names() -> Vec<&'static str> {
    TARGETS.iter().map(|t| t.0).collect()
}

/// `cargo fuzz` with the pinned nightly (libFuzzer needs `-Z sanitizer` and `-C passes`), run from
/// the workspace root, where it finds fuzz/.
fn cargo_fuzz() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", EBPF_TOOLCHAIN.trim(), "cargo", "fuzz"])
        // `cargo xtask` sets CARGO to the stable cargo; cargo-fuzz must build with the nightly.
        .env_remove("CARGO")
        .current_dir(workspace_root());
    cmd
}

fn install_cargo_fuzz() -> Result<()> {
    let installed = cargo_fuzz()
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return Ok(());
    }
    crate::workspace::run(
        Command::new("rustup")
            .args(["run", EBPF_TOOLCHAIN.trim(), "cargo", "install", "--locked"])
            .arg(format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"))
            .env_remove("CARGO"),
    )
}

/// Figures from libFuzzer's output: `stat::` lines (`-print_final_stats=1`), the last status line
/// (`#N ... cov: C ft: F corp: U/S ...`) and `Test unit written to PATH` for each crash.
fn parse_log(log: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in log.lines() {
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            o.executions = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            o.exec_per_sec = v.trim().parse().ok();
        } else if let Some((_, path)) = line.split_once("Test unit written to ") {
            o.crashes.push(path.trim().to_owned());
        } else if line.starts_with('#') && line.contains(" cov: ") {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                match w {
                    "cov:" => o.cov = words.next().and_then(|v| v.parse().ok()),
                    "ft:" => o.features = words.next().and_then(|v| v.parse().ok()),
                    "corp:" => o.corpus = words.next().map(str::to_owned),
                    _ => {}
                }
            }
        }
    }
    o
}
