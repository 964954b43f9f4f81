//! The workspace xtask works on: its paths, and cargo run in it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// The workspace: the directory above xtask's own.
///
/// # Panics
///
/// Not in a build of this repository, where xtask's directory always has a parent.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs a command in the workspace root, echoing it, and fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", format!("{cmd:?}").replace('"', ""));
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The cargo running xtask (`CARGO`), else the one on the PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds the release binary (what a node runs) and returns its path.
pub fn release_binary() -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "checksum-user",
        "--bin",
        "checksum-audit",
    ]))?;
    Ok(target_dir().join("release/checksum-audit"))
}

/// Where cargo builds: `CARGO_TARGET_DIR` when set (relative to the workspace root, where `run`
/// runs cargo), otherwise target/ in the workspace.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
