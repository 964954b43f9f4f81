//! `cargo xtask test|demo|bench|fuzz|fuzz-parsers|soak|image|cluster|dist`: what cargo alone cannot do. Run through
//! `./x`, which installs the pinned toolchains first (scripts/bootstrap.sh).
//!
//! Each layer uses only those below it, bottom up: `workspace` (paths, cargo, the release binary),
//! `sandbox` (root, namespaces, processes) and `flood`; `image`, built for the command of that name
//! and for the cluster test; the commands (`bench/`, `soak/`, `cluster/`, `demo`, `dist`, `fuzz`,
//! `fuzz_parsers`); `test`, the suite that runs them; and this file, the command line.
#![expect(
    clippy::cast_precision_loss,
    reason = "benchmark and soak statistics: counts and nanoseconds far below 2^52, shown as \
              rates and means"
)]

mod bench;
mod cluster;
mod demo;
mod dist;
mod flood;
mod fuzz;
mod fuzz_parsers;
mod image;
mod kernels;
mod sandbox;
mod soak;
mod test;
mod workspace;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// fmt, clippy and every test (unit, property, `BPF_PROG_TEST_RUN`, live, conformance), the kernel matrix, a
    /// one-minute soak and the cluster test.
    Test,
    /// The container image FROM scratch (a static binary, labels), built with a dockerd of our own
    /// and saved as target/image/checksum-audit-VERSION.tar for `docker load`.
    Image,
    /// Man pages and shell completions of checksum-audit, generated from its command line, in
    /// target/dist (man/man1/, completions/).
    Dist,
    /// The cluster test alone: a single-node Kubernetes in a network namespace of its own, the
    /// chart installed and rolled out, the agent's programs and metrics checked, all removed.
    Cluster,
    /// Namespaces, a veth pair, ordinary traffic and corrupted frames, audited live.
    Demo,
    /// The kernel matrix: `tests/kernel_suite.rs` on the host and in a QEMU guest of each Debian
    /// kernel of `scripts/kernels/matrix`; prints the features × kernels table, which must be the
    /// README's.
    Kernels {
        /// Put the table found into README.md instead of failing when it differs.
        #[arg(long)]
        write_readme: bool,
    },
    /// `BPF_PROG_TEST_RUN` cost per frame against a no-op XDP program, in one run.
    Bench {
        /// Test-run repetitions per measurement.
        #[arg(long, default_value_t = 400_000)]
        repeat: u32,
        /// Test-run the build for kernels before 5.18 (`legacy-kernels`, docs/kernels.md) instead,
        /// into bench/results-legacy-kernels.json.
        #[arg(long, conflicts_with_all = ["userspace", "live", "attach"])]
        legacy_kernels: bool,
        /// Measure the user-space path instead: events/s decoded and aggregated on one core, and
        /// resident memory with one flow and with a million distinct flows.
        #[arg(long)]
        userspace: bool,
        /// Drive a veth pair with `AF_PACKET` and compare what nothing, checksum-audit and
        /// `tcpdump -vvv` verify of it; then iperf3 TCP streams with nothing attached and with
        /// checksum-audit on both ends (`CSA_BENCH_BASELINE_BIN` adds another build), in one run.
        #[arg(long, conflicts_with = "userspace")]
        live: bool,
        /// Attaching at scale: for each of --sizes, that many veth pairs in a namespace of its
        /// own, audited at TC ingress and egress by the release binary. Seconds until ready and
        /// until a new interface is audited, user RSS and BPF kernel memory; bench/attach.json.
        /// Then the node agent with --pods pods against a real API server; bench/pods.json.
        #[arg(long, conflicts_with_all = ["userspace", "live"])]
        attach: bool,
        /// Interface counts to measure, comma-separated (with --attach).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10,100,500",
            requires = "attach",
            value_parser = clap::value_parser!(u32).range(1..)
        )]
        sizes: Vec<u32>,
        /// Seconds the auditor may take to be ready at one size before that is reported and the
        /// bench moves on (with --attach).
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 600,
            requires = "attach",
            value_parser = clap::value_parser!(u64).range(1..)
        )]
        max_wait: u64,
        /// Pods on the node of the agent case, after the sizes (with --attach): that many pod
        /// namespaces and Pod objects, the agent naming each one's veth; 0 skips it. Needs the
        /// control-plane binaries of scripts/k8s/build.sh.
        #[arg(
            long,
            default_value_t = 100,
            requires = "attach",
            value_parser = clap::value_parser!(u32).range(0..=10_000)
        )]
        pods: u32,
    },
    /// Differential test: generated and mutated frames through the kernel program, compared with
    /// the reference verifier; disagreements are printed with a replayable seed and saved as pcap.
    Fuzz {
        /// Frames to generate.
        #[arg(long, default_value_t = 1_000_000)]
        frames: u64,
        /// Run seed (decimal or 0x hex): the same seed generates the same frames. The default
        /// differs from the CI sample's (tests/differential.rs), so a run explores new frames.
        #[arg(long, default_value = "0x6469666620667a7a", value_parser = fuzz::parse_seed)]
        seed: u64,
        /// Check only the frame of this frame seed (as a disagreement report prints it).
        #[arg(long, value_parser = fuzz::parse_seed)]
        replay: Option<u64>,
    },
    /// The release binary under a sustained flood with veths created and deleted around it, for
    /// minutes: fails on RSS growth, death, errors or wrong attach/detach counts. Writes
    /// summary.json and rss.svg.
    Soak {
        #[arg(long, default_value_t = 10.0, value_parser = positive_minutes)]
        minutes: f64,
        /// Frames per second sent at the audited interface (half with a bad checksum).
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
        pps: u64,
        /// Output directory, relative to the workspace root.
        #[arg(long, default_value = "soak")]
        out: PathBuf,
    },
    /// Coverage-guided fuzzing (cargo-fuzz, installed if missing) of the user-space parsers of
    /// untrusted bytes: each target in fuzz/ for --seconds, printing executions and crashes.
    FuzzParsers {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Only this target (repeatable); all by default.
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Test => test::run_suite(),
        Cmd::Image => image::build().map(|_| ()),
        Cmd::Cluster => cluster::run(),
        Cmd::Dist => dist::run().map(|_| ()),
        Cmd::Demo => demo::run(),
        Cmd::Kernels { write_readme } => kernels::run_matrix(write_readme),
        Cmd::Bench {
            userspace: true, ..
        } => bench::userspace::run(),
        Cmd::Bench { live: true, .. } => bench::live::run(),
        Cmd::Bench {
            attach: true,
            sizes,
            max_wait,
            pods,
            ..
        } => bench::attach::run(&bench::attach::Options {
            sizes,
            max_wait: Duration::from_secs(max_wait),
            pods,
        }),
        Cmd::Bench {
            repeat,
            legacy_kernels,
            ..
        } => bench::testrun::run(repeat, legacy_kernels),
        Cmd::Fuzz {
            frames,
            seed,
            replay,
        } => fuzz::run(frames, seed, replay),
        Cmd::Soak { minutes, pps, out } => {
            soak::run::run(&soak::run::Options { minutes, pps, out })
        }
        Cmd::FuzzParsers { seconds, targets } => fuzz_parsers::run(seconds, &targets),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn positive_minutes(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 => Ok(m),
        _ => Err(format!(
            "'{s}' is not a positive number of minutes (e.g. 1, 0.5, 10)"
        )),
    }
}
