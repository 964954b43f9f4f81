//! Every committed fuzz input through the body of its `cargo fuzz` target, on stable and without
//! libFuzzer or root: fuzz/corpus/NAME (the seeds a fuzz run starts from) and fuzz/regressions/NAME
//! (minimized inputs of crashes fixed since, so they stay fixed). The bodies are
//! `checksum_testkit::fuzzing::NAME`, the very functions the fuzz targets call.

use std::{
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
};

use checksum_testkit::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Files in `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a fuzz input directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus and regression input of `name`; fails naming each input that panicked.
fn run(name: &str) {
    let body = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is not in checksum_testkit::fuzzing::TARGETS"))
        .1;
    let corpus = inputs(&fuzz_dir().join("corpus").join(name));
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seeds");
    let regressions = inputs(&fuzz_dir().join("regressions").join(name));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = fs::read(path).expect("reading a fuzz input");
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| body(&data))) {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| {
                    e.downcast_ref::<&str>()
                        .map(std::string::ToString::to_string)
                })
                .unwrap_or_default();
            failed.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of {name} fail:\n{}",
        failed.len(),
        corpus.len() + regressions.len(),
        failed.join("\n")
    );
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        /// The list above, `fuzzing::TARGETS`, `fuzz/fuzz_targets` and the `[[bin]]`s of
        /// fuzz/Cargo.toml name the same targets, so none is fuzzed without being tested here.
        #[test]
        fn every_target_is_here_and_in_the_fuzz_crate() {
            let mut here = vec![$(stringify!($name)),*];
            here.sort();
            let mut listed: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
            listed.sort();
            assert_eq!(here, listed, "checksum_testkit::fuzzing::TARGETS");
            let mut files: Vec<String> = inputs(&fuzz_dir().join("fuzz_targets"))
                .iter()
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect();
            files.sort();
            assert_eq!(here, files, "fuzz/fuzz_targets");
            let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
            for name in here {
                assert!(
                    manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
                    "fuzz/Cargo.toml has no [[bin]] for {name}"
                );
            }
        }
    };
}

targets!(
    capture_file,
    ring_record,
    verdict_stream,
    pcapng_round_trip,
    cli_specs,
    netlink_datagram,
);
