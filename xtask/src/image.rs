//! `cargo xtask image`: the container image, FROM scratch: one static binary (the eBPF objects are
//! embedded by build.rs), no shell, labels after the OCI annotation keys. Built by a dockerd of
//! our own (Debian's docker.io, scripts/k8s/image.sh) inside a network namespace with only `lo`,
//! and saved as a docker archive for `docker load` on a node (the cluster test loads it).

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use checksum_testkit::netns::NetNs;

use crate::{
    sandbox::{kill_namespace_processes, remove_cgroups, remove_tree, require_root},
    workspace::{cargo, run, target_dir, workspace_root},
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn tag() -> String {
    format!("checksum-audit:{VERSION}")
}

/// The release binary linked statically (glibc's static libc: `+crt-static` on the gnu target),
/// so that it runs in an image with nothing else in it. The flag is set for the host target only,
/// never for the BPF target that build.rs compiles the programs for.
pub fn static_binary() -> Result<PathBuf> {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let flags_var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        triple.to_uppercase().replace('-', "_")
    );
    run(cargo()
        .args(["build", "--release", "--target", &triple])
        .args(["--package", "checksum-user", "--bin", "checksum-audit"])
        .env(flags_var, "-C target-feature=+crt-static"))?;
    Ok(target_dir().join(triple).join("release/checksum-audit"))
}

fn dockerfile(revision: &str) -> String {
    format!(
        "FROM scratch\n\
         COPY checksum-audit /checksum-audit\n\
         # Not root unless asked: loading programs needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON,\n\
         # which a container runtime gives uid 0 only (the chart sets runAsUser: 0 with them).\n\
         USER 65534:65534\n\
         LABEL org.opencontainers.image.title=\"checksum-audit\" \\\n      \
         org.opencontainers.image.description=\"Kernel-level checksum auditor (eBPF TC/XDP)\" \\\n      \
         org.opencontainers.image.version=\"{VERSION}\" \\\n      \
         org.opencontainers.image.revision=\"{revision}\" \\\n      \
         org.opencontainers.image.licenses=\"MIT OR GPL-2.0\"\n\
         ENTRYPOINT [\"/checksum-audit\"]\n"
    )
}

/// Builds the image and returns its docker archive, target/image/checksum-audit-VERSION.tar.
pub fn build() -> Result<PathBuf> {
    require_root("image")?;
    let binary = static_binary()?;
    let out_dir = target_dir().join("image");
    let context = out_dir.join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::copy(&binary, context.join("checksum-audit"))
        .with_context(|| format!("copying {}", binary.display()))?;
    let revision = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    std::fs::write(context.join("Dockerfile"), dockerfile(&revision))?;
    let archive = out_dir.join(format!("checksum-audit-{VERSION}.tar"));

    let ns = NetNs::new("image");
    let dir = PathBuf::from("/var/tmp").join(&ns.name);
    let status = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name))
        .args(["unshare", "--mount", "--propagation", "slave", "bash"])
        .arg(workspace_root().join("scripts/k8s/image.sh"))
        .arg(&dir)
        .arg(&context)
        .arg(tag())
        .arg(&archive)
        .status()
        .context("running scripts/k8s/image.sh")?;
    let left = kill_namespace_processes(&ns.name);
    drop(ns);
    remove_cgroups(&dir.file_name().expect("named").to_string_lossy());
    remove_tree(&dir);
    if !status.success() {
        bail!("scripts/k8s/image.sh failed: {status}");
    }
    if !left.is_empty() {
        bail!("image build left processes running (killed): {left:?}");
    }
    eprintln!(
        "xtask: image {} built: {} ({:.1} MiB)",
        tag(),
        archive.display(),
        f64::from(u32::try_from(std::fs::metadata(&archive)?.len() >> 10).unwrap_or(u32::MAX))
            / 1024.0
    );
    Ok(archive)
}
