//! `cargo xtask kernels`: the kernel matrix. The suite of checksum-user/tests/kernel_suite.rs runs
//! on the host and inside a QEMU guest of each Debian kernel in scripts/kernels/matrix (fetched
//! and booted by scripts/kernels/{fetch,boot}.sh), two guests at a time (each is one TCG thread,
//! and this machine has two cores). The features × kernels table it prints must be the one in
//! the README, between `MATRIX_BEGIN` and `MATRIX_END`: the README says what the suite proved,
//! and `--write-readme` puts a new table there.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::workspace::{cargo, run, target_dir, workspace_root};

const MATRIX_BEGIN: &str = "<!-- kernel-matrix:begin (cargo xtask kernels --write-readme) -->";
const MATRIX_END: &str = "<!-- kernel-matrix:end -->";
/// The suite's test, run alone.
const SUITE_TEST: &str = "every_feature_on_this_kernel";
/// Frames of the differential sample in a guest: test runs under TCG are slow.
const GUEST_FRAMES: &str = "10000";
/// Features in the table's order (the suite prints them in this order too).
const FEATURES: [&str; 7] = [
    "load",
    "test-run",
    "skb-state",
    "kernel-drops",
    "several-netns",
    "live-xdp",
    "live-tc",
];

/// One kernel's results: feature → (status, tag, detail).
type Results = BTreeMap<String, (String, String, String)>;

struct Column {
    name: String,
    release: String,
    results: Results,
    seconds: f64,
    passed: bool,
}

pub fn run_matrix(write_readme: bool) -> Result<()> {
    let root = workspace_root();
    run(Command::new("bash").arg(root.join("scripts/kernels/fetch.sh")))?;
    let (suite, binary) = build_suite()?;
    let series = matrix_series(&root)?;
    let out_dir = target_dir().join("kernels");
    std::fs::create_dir_all(&out_dir)?;

    let host = run_on_host(&suite)?;
    let guests: Mutex<Vec<Column>> = Mutex::new(Vec::new());
    let queue = Mutex::new(series.clone());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(s) = {
                    let mut q = queue.lock().expect("queue");
                    (!q.is_empty()).then(|| q.remove(0))
                } {
                    let column = run_in_guest(&s, &suite, &binary, &out_dir);
                    guests.lock().expect("guests").push(column);
                }
            });
        }
    });
    let mut columns = vec![host];
    let mut guests = guests.into_inner().expect("guests");
    guests.sort_by_key(|c| series.iter().position(|s| *s == c.name));
    columns.extend(guests);

    for c in &columns {
        eprintln!(
            "xtask: kernels: {} ({}): {} in {:.0} s",
            c.name,
            c.release,
            if c.passed { "passed" } else { "FAILED" },
            c.seconds
        );
        for f in FEATURES {
            if let Some((status, tag, detail)) = c.results.get(f) {
                eprintln!("  {f:<13} {status:<9} {tag:<15} {detail}");
            }
        }
    }
    let table = table(&columns);
    println!("{table}");
    std::fs::write(out_dir.join("table.md"), &table)?;
    let failed: Vec<&str> = columns
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "the kernel suite failed on {failed:?} (logs in {})",
            out_dir.display()
        );
    }
    let readme = root.join("README.md");
    let text = std::fs::read_to_string(&readme)?;
    let (before, current, after) = split_readme(&text)?;
    if current.trim() != table.trim() {
        if write_readme {
            std::fs::write(
                &readme,
                format!("{before}{MATRIX_BEGIN}\n{table}{MATRIX_END}{after}"),
            )?;
            eprintln!("xtask: kernels: README.md's table rewritten");
        } else {
            bail!(
                "README.md's kernel table is not what the matrix found; `cargo xtask kernels \
                 --write-readme` puts this one there:\n{table}"
            );
        }
    }
    Ok(())
}

/// Builds the suite's test binary and the binary it runs; returns both paths.
fn build_suite() -> Result<(PathBuf, PathBuf)> {
    let out = cargo()
        .args([
            "test",
            "-p",
            "checksum-user",
            "--test",
            "kernel_suite",
            "--no-run",
            "--message-format=json",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building the kernel suite failed");
    }
    let mut suite = None;
    let mut binary = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        else {
            continue;
        };
        match name {
            "kernel_suite" => suite = Some(PathBuf::from(exe)),
            "checksum-audit" => binary = Some(PathBuf::from(exe)),
            _ => {}
        }
    }
    Ok((
        suite.context("no kernel_suite executable in cargo's output")?,
        binary.context("no checksum-audit executable in cargo's output")?,
    ))
}

/// The series of scripts/kernels/matrix, in its order.
fn matrix_series(root: &Path) -> Result<Vec<String>> {
    Ok(
        std::fs::read_to_string(root.join("scripts/kernels/matrix"))?
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect(),
    )
}

fn run_on_host(suite: &Path) -> Result<Column> {
    let started = Instant::now();
    let out = Command::new(suite)
        .args(["--exact", SUITE_TEST, "--nocapture", "--test-threads", "1"])
        .env("CI", "true")
        .current_dir(workspace_root().join("checksum-user"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut column = parse("host", &text, started.elapsed().as_secs_f64());
    column.passed &= out.status.success();
    if !out.status.success() {
        eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(column)
}

fn run_in_guest(series: &str, suite: &Path, binary: &Path, out_dir: &Path) -> Column {
    let started = Instant::now();
    let root = workspace_root();
    let script = out_dir.join(format!("{series}.suite.sh"));
    let log = out_dir.join(format!("{series}.log"));
    // The suite's paths are the build's (CARGO_MANIFEST_DIR/../docs/...): the directory must exist
    // for `..` to resolve; boot.sh copies each file to its own path.
    let body = format!(
        "mkdir -p {dir}\ncd {dir}\nexport CI=true CSA_READY_TIMEOUT_S=900 CSA_SUITE_FRAMES={GUEST_FRAMES} RUST_BACKTRACE=1\n\
         {suite} --exact {SUITE_TEST} --nocapture --test-threads 1\n",
        dir = root.join("checksum-user").display(),
        suite = suite.display(),
    );
    let result = std::fs::write(&script, body)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            let tc = which("tc")?;
            let schema = root.join("docs/output.schema.json");
            let log_file = std::fs::File::create(&log)?;
            let status = Command::new("bash")
                .arg(root.join("scripts/kernels/boot.sh"))
                .arg(series)
                .arg(&script)
                .args([suite, binary, &tc, &schema])
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .status()?;
            Ok(status.success())
        });
    let text = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .replace('\r', "");
    let mut column = parse(series, &text, started.elapsed().as_secs_f64());
    match result {
        Ok(ok) => column.passed &= ok,
        Err(e) => {
            eprintln!("xtask: kernels: {series}: {e:#}");
            column.passed = false;
        }
    }
    if !column.passed {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!(
            "xtask: kernels: {series} failed; the end of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    column
}

fn which(program: &str) -> Result<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if path.is_empty() {
        bail!("{program} not found (scripts/bootstrap.sh installs it)");
    }
    Ok(std::fs::canonicalize(path)?)
}

/// The suite's lines in `text`; passed when every feature of `FEATURES` is there and none failed.
fn parse(name: &str, text: &str, seconds: f64) -> Column {
    let mut results = Results::new();
    let mut release = String::from("?");
    for line in text.lines() {
        // The test harness may print its "test NAME ... " before the suite's first line.
        if let Some((_, r)) = line.split_once("CSA-KERNEL-RELEASE ") {
            r.trim().clone_into(&mut release);
        }
        let Some((_, rest)) = line.split_once("CSA-FEATURE ") else {
            continue;
        };
        let mut parts = rest.splitn(4, ' ');
        let (Some(feature), Some(status), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let detail = parts.next().unwrap_or("").to_owned();
        results.insert(feature.into(), (status.into(), tag.into(), detail));
    }
    let passed = FEATURES
        .iter()
        .all(|f| results.get(*f).is_some_and(|(s, _, _)| s != "failed"));
    Column {
        name: name.into(),
        release,
        results,
        seconds,
        passed,
    }
}

/// The markdown table: a row per feature, a column per kernel, `status (tag)` in each cell.
fn table(columns: &[Column]) -> String {
    use std::fmt::Write as _;
    let mut t = String::from("| feature |");
    for c in columns {
        if c.name == "host" {
            let _ = write!(t, " host ({}) |", major_minor(&c.release));
        } else {
            let _ = write!(t, " {} |", c.name);
        }
    }
    t.push_str("\n|---|");
    t.push_str(&"---|".repeat(columns.len()));
    t.push('\n');
    for f in FEATURES {
        let _ = write!(t, "| {f} |");
        for c in columns {
            match c.results.get(f) {
                Some((status, tag, _)) => {
                    let _ = write!(t, " {status} ({tag}) |");
                }
                None => t.push_str(" missing |"),
            }
        }
        t.push('\n');
    }
    t
}

/// "6.18" of "6.18.44-fc-v1272": the table stays the same across the host's patch levels, which
/// differ between machines (the guests' columns are named by their series).
fn major_minor(release: &str) -> String {
    release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// README.md around its matrix table: what comes before the begin marker, the table, and what
/// follows the end marker.
fn split_readme(text: &str) -> Result<(&str, &str, &str)> {
    let begin = text
        .find(MATRIX_BEGIN)
        .context("README.md has no kernel-matrix begin marker")?;
    let end = text
        .find(MATRIX_END)
        .context("README.md has no kernel-matrix end marker")?;
    let inner = &text[begin + MATRIX_BEGIN.len()..end];
    Ok((&text[..begin], inner, &text[end + MATRIX_END.len()..]))
}
