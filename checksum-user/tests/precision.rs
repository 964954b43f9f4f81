//! Precision and recall of the diagnosis, through the kernel program (replay), over the corpus of
//! `checksum_testkit::corpus`: random single-packet corruptions over more than a thousand addresses beside
//! true rewrites of every signature. A rewrite is named only with evidence: every true rewrite
//! with evidence is named exactly, no random flow is ever called a rewrite, and every random
//! flow keeps its per-packet kind.

mod common;

use std::collections::{BTreeMap, HashMap};

use checksum_testkit::corpus::{self, Corpus, CorpusFlow, Truth};
use checksum_testkit::frames::{TCP, pcap_file};
use common::{
    replay::{json_lines, replay},
    require_root,
};
use serde_json::Value;

type FlowKey = (String, String, u64, u64, &'static str);

fn key(f: &CorpusFlow) -> FlowKey {
    (
        f.src.to_string(),
        f.dst.to_string(),
        u64::from(f.sport),
        u64::from(f.dport),
        if f.protocol == TCP { "tcp" } else { "udp" },
    )
}

fn diagnoses(stdout: &str) -> HashMap<FlowKey, Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|l| l["type"] == "diagnosis")
        .map(|d| {
            let layer = if d["layer"] == "tcp" { "tcp" } else { "udp" };
            let k = (
                d["src"].as_str().unwrap().to_owned(),
                d["dst"].as_str().unwrap().to_owned(),
                d["sport"].as_u64().unwrap(),
                d["dport"].as_u64().unwrap(),
                layer,
            );
            (k, d)
        })
        .collect()
}

/// The confusion table: rows are what the flows truly are, columns what was diagnosed, and for
/// rewrites whether the original was named right, wrong or not at all.
#[derive(Default)]
struct Confusion {
    cells: BTreeMap<(String, String), usize>,
}

impl Confusion {
    fn add(&mut self, truth: String, predicted: String) {
        *self.cells.entry((truth, predicted)).or_default() += 1;
    }

    fn print(&self, title: &str) {
        eprintln!("\n{title}");
        let mut rows: BTreeMap<&str, Vec<(&str, usize)>> = BTreeMap::new();
        for ((t, p), n) in &self.cells {
            rows.entry(t).or_default().push((p, *n));
        }
        for (t, cols) in rows {
            let cols: Vec<String> = cols.iter().map(|(p, n)| format!("{p}: {n}")).collect();
            eprintln!("  {t:<58} {}", cols.join(", "));
        }
    }
}

/// Replays the corpus with or without its candidates file and checks every flow.
fn check(corpus: &Corpus, pcap: &[u8], with_candidates: bool) -> Confusion {
    let candidates =
        std::env::temp_dir().join(format!("csa-precision-{}.json", std::process::id()));
    std::fs::write(&candidates, &corpus.candidates).unwrap();
    let path = candidates.to_str().unwrap().to_owned();
    let mut args = vec!["--format", "json"];
    if with_candidates {
        args.extend(["--nat-candidates", &path]);
    }
    let (stdout, stderr) = replay(pcap, &args);
    let _ = std::fs::remove_file(&candidates);
    let found = diagnoses(&stdout);
    let mut table = Confusion::default();
    let mut failures = Vec::new();
    for flow in &corpus.flows {
        let Some(d) = found.get(&key(flow)) else {
            failures.push(format!("no diagnosis for {flow:?}\n{stderr}"));
            continue;
        };
        let name = d["diagnosis"].as_str().unwrap();
        let named = d["likely_original"].as_str();
        match &flow.truth {
            Truth::Random { kind, packets } => {
                let row = format!(
                    "random {kind} ({} bad)",
                    if *packets == 1 { "1" } else { "3" }
                );
                table.add(row, format!("{name}{}", named.map_or("", |_| " NAMED")));
                if named.is_some() || name != *kind {
                    failures.push(format!("random {kind} flow diagnosed {d}"));
                }
            }
            Truth::Rewrite {
                signature,
                original,
                seen,
                candidate,
                ..
            } => {
                let evidence = match (*seen, *candidate && with_candidates) {
                    (true, true) => "seen+candidate",
                    (true, false) => "seen",
                    (false, true) => "candidate",
                    (false, false) => "no evidence",
                };
                let outcome = match named {
                    Some(n) if n == original => "named right",
                    Some(_) => "NAMED WRONG",
                    None => "not named",
                };
                table.add(
                    format!("{signature} [{evidence}]"),
                    format!("{name}, {outcome}"),
                );
                if evidence == "no evidence" {
                    // Precision: with over a thousand values in the run, nothing is named.
                    if named.is_some() {
                        failures.push(format!("named without evidence: {d}"));
                    }
                } else {
                    // Recall: every rewrite with evidence is named, with its signature.
                    let want_evidence = if *seen { "seen" } else { "candidate" };
                    if name != *signature
                        || named != Some(original)
                        || d["evidence"] != want_evidence
                    {
                        failures.push(format!(
                            "{signature} from {original} ({evidence}) diagnosed {d}"
                        ));
                    }
                }
            }
        }
    }
    table.print(&format!(
        "confusion table ({} candidates file): truth -> diagnosis",
        if with_candidates { "with" } else { "without" }
    ));
    assert!(
        failures.is_empty(),
        "{} of {} flows wrong:\n{}",
        failures.len(),
        corpus.flows.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    table
}

#[test]
fn every_rewrite_with_evidence_is_named_and_no_random_damage_is() {
    if !require_root(module_path!()) {
        return;
    }
    let corpus = corpus::build(1000, 6);
    let rewrites = corpus
        .flows
        .iter()
        .filter(|f| matches!(f.truth, Truth::Rewrite { .. }))
        .count();
    eprintln!(
        "corpus: {} frames, {} random corruptions over {} flows, {} distinct addresses, {rewrites} true rewrites",
        corpus.frames.len(),
        corpus.random_corruptions,
        corpus.flows.len() - rewrites,
        corpus.addresses
    );
    assert!(corpus.random_corruptions >= 2000 && corpus.addresses >= 1000);
    for sig in corpus::SIGNATURES {
        let n = corpus
            .flows
            .iter()
            .filter(|f| matches!(&f.truth, Truth::Rewrite { signature, .. } if *signature == sig))
            .count();
        assert!(n >= 20, "{sig}: {n}");
    }
    let refs: Vec<&[u8]> = corpus.frames.iter().map(Vec::as_slice).collect();
    let pcap = pcap_file(1, &refs);
    check(&corpus, &pcap, false);
    check(&corpus, &pcap, true);
}
