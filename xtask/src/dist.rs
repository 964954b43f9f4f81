//! `cargo xtask dist`: what a package ships besides the binary, generated from the command line
//! itself (`checksum_user::cli::Cli`) so that it never disagrees with `--help`: man pages
//! (`clap_mangen`) and shell completions (`clap_complete`), in target/dist.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::workspace::target_dir;

pub fn run() -> Result<PathBuf> {
    let dist = target_dir().join("dist");
    let man = dist.join("man/man1");
    let completions = dist.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let command = checksum_user::cli::Cli::command();
    // checksum-audit.1, and checksum-audit-replay.1 for each subcommand.
    clap_mangen::generate_to(command.clone(), &man).context("writing the man pages")?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        clap_complete::generate_to(shell, &mut command.clone(), "checksum-audit", &completions)
            .with_context(|| format!("writing the {shell} completion"))?;
    }
    for dir in [&man, &completions] {
        for entry in std::fs::read_dir(dir)? {
            eprintln!("xtask: wrote {}", entry?.path().display());
        }
    }
    Ok(dist)
}
