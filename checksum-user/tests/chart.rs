//! The Helm chart (deploy/helm/checksum-audit) and the plain manifest rendered from it
//! (deploy/checksum-audit.yaml): `helm lint`, the manifest equal to `helm template`, and
//! `kubernetes-validate --strict` of both (unknown fields and wrong types fail). helm and
//! kubernetes-validate live in /var/cache/checksum-audit (scripts/k8s/build.sh, run by bootstrap);
//! without them the tests skip, except with `CI=true`, where that is a failure.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

const CACHE: &str = "/var/cache/checksum-audit";
const RELEASE: &str = "checksum-audit";
const NAMESPACE: &str = "kube-system";
/// The first line of deploy/checksum-audit.yaml, before `helm template`'s output
/// (scripts/k8s/render.sh writes both).
const HEADER: &str =
    "# Rendered from deploy/helm/checksum-audit by scripts/k8s/render.sh: do not edit by hand.\n";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn chart() -> PathBuf {
    root().join("deploy/helm/checksum-audit")
}

/// The tool at `path`, or None (a skip) when it is not installed; in CI a missing tool fails.
fn tool(path: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !common::in_ci(),
        "{} is missing (scripts/k8s/build.sh installs it); CI=true forbids skipping",
        path.display()
    );
    eprintln!(
        "SKIPPED: {} is missing: run scripts/k8s/build.sh",
        path.display()
    );
    None
}

fn helm() -> Option<PathBuf> {
    tool(&format!("{CACHE}/tools/bin/helm"))
}

fn validator() -> Option<PathBuf> {
    tool(&format!("{CACHE}/venv/bin/kubernetes-validate"))
}

/// Runs `cmd`, returning stdout; panics with stderr on failure.
fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `helm template` of the chart with extra arguments (values files, --set).
fn render(helm: &Path, extra: &[&str]) -> String {
    output(
        Command::new(helm)
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--namespace", NAMESPACE])
            .args(extra),
    )
}

/// The value sets the tests render: defaults (agent mode), the cluster test's override, the plain
/// live auditor, and explicit interface patterns with XDP.
fn variants() -> Vec<(&'static str, Vec<String>)> {
    let ci = chart().join("ci/docker-20.10-values.yaml");
    let cluster = chart().join("ci/test-cluster-values.yaml");
    vec![
        ("defaults", vec![]),
        (
            "docker-20.10 override",
            vec!["--values".into(), ci.display().to_string()],
        ),
        (
            "cluster test",
            vec![
                "--values".into(),
                ci.display().to_string(),
                "--values".into(),
                cluster.display().to_string(),
            ],
        ),
        (
            "plain auditor",
            vec!["--set".into(), "agent.enabled=false".into()],
        ),
        (
            "patterns and xdp",
            vec![
                "--set".into(),
                "audit.interfaces={veth*,eth0},audit.hooks={xdp,tc-egress},audit.kernelDrops=false"
                    .into(),
            ],
        ),
    ]
}

#[test]
fn chart_lints_with_every_value_set() {
    let Some(helm) = helm() else { return };
    for (name, args) in variants() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = output(
            Command::new(&helm)
                .args(["lint", "--strict"])
                .arg(chart())
                .args(&args),
        );
        assert!(out.contains("0 chart(s) failed"), "{name}: {out}");
    }
}

#[test]
fn plain_manifest_is_the_rendered_chart() {
    let Some(helm) = helm() else { return };
    let rendered = format!("{HEADER}{}", render(&helm, &[]));
    let path = root().join("deploy/checksum-audit.yaml");
    let checked_in = std::fs::read_to_string(&path).expect("read deploy/checksum-audit.yaml");
    if rendered != checked_in {
        let first = rendered
            .lines()
            .zip(checked_in.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| rendered.lines().count().min(checked_in.lines().count()));
        panic!(
            "deploy/checksum-audit.yaml differs from `helm template` of the chart from line {}: \
             run scripts/k8s/render.sh\n  rendered:   {:?}\n  checked in: {:?}",
            first + 1,
            rendered.lines().nth(first),
            checked_in.lines().nth(first)
        );
    }
}

/// `kubernetes-validate --strict` of one file; returns (passed, output).
fn validate(validator: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(validator)
        .arg("--strict")
        .arg(file)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn manifests_validate_strictly() {
    let (Some(helm), Some(validator)) = (helm(), validator()) else {
        return;
    };
    let (ok, text) = validate(&validator, &root().join("deploy/checksum-audit.yaml"));
    assert!(ok, "deploy/checksum-audit.yaml: {text}");
    for kind in [
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "daemonset",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}/{RELEASE}")),
            "{kind} not validated: {text}"
        );
    }
    let dir = std::env::temp_dir().join(format!("csa-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, args) in variants() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let file = dir.join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&file, render(&helm, &args)).unwrap();
        let (ok, text) = validate(&validator, &file);
        assert!(ok, "{name}: {text}");
    }
    // The control: a field the schema does not know fails, so a pass above means something.
    let bad = dir.join("unknown-field.yaml");
    let manifest = std::fs::read_to_string(root().join("deploy/checksum-audit.yaml")).unwrap();
    std::fs::write(
        &bad,
        manifest.replacen(
            "hostNetwork: true",
            "hostNetwork: true\n      hostNetwrok: true",
            1,
        ),
    )
    .unwrap();
    let (ok, text) = validate(&validator, &bad);
    std::fs::remove_dir_all(&dir).ok();
    assert!(!ok, "an unknown field passed --strict: {text}");
}

/// The capability list of a rendered `DaemonSet`, as written under `add:`.
fn added_capabilities(manifest: &str) -> Vec<String> {
    let mut lines = manifest.lines().skip_while(|l| l.trim() != "add:").skip(1);
    let mut caps = Vec::new();
    while let Some(cap) = lines.next().and_then(|l| l.trim().strip_prefix("- ")) {
        caps.push(cap.to_owned());
    }
    caps
}

#[test]
fn production_values_are_least_privilege_and_the_override_swaps_only_bpf_and_perfmon() {
    let Some(helm) = helm() else { return };
    let defaults = render(&helm, &[]);
    assert_eq!(
        added_capabilities(&defaults),
        ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]
    );
    for needle in [
        "drop:\n              - ALL",
        "privileged: false",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "path: /sys/kernel/btf",
        "readOnly: true",
        "path: /healthz",
        "path: /readyz",
        "fieldPath: spec.nodeName",
        "prometheus.io/scrape: \"true\"",
        "- --metrics-addr=$(POD_IP):9465",
    ] {
        assert!(
            defaults.contains(needle),
            "{needle:?} missing from:\n{defaults}"
        );
    }
    // No other host path than the BTF directory.
    assert_eq!(defaults.matches("hostPath:").count(), 1, "{defaults}");
    let ci = chart().join("ci/docker-20.10-values.yaml");
    let overridden = render(&helm, &["--values", ci.to_str().unwrap()]);
    assert_eq!(
        added_capabilities(&overridden),
        ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]
    );
    // Everything else is as in production.
    let strip = |m: &str| {
        m.lines()
            .filter(|l| !matches!(l.trim(), "- BPF" | "- PERFMON"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&defaults), strip(&overridden));
    assert!(render(&helm, &[]).contains("args:\n            - agent\n"));
    assert!(!render(&helm, &["--set", "agent.enabled=false"]).contains("- agent\n"));
}
