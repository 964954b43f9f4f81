//! docs/usage.md against the binary's own `--help`: every option a command lists is a row of the
//! options table for that command, every row is an option of the commands it names, and every
//! `--option` the page names anywhere exists. So an option added, removed or moved between
//! commands cannot go undocumented, and the page cannot keep one that is gone. No root needed:
//! `--help` loads nothing.
//!
//! The page names no other tool's long options (it would fail here): those belong on pages
//! about those tools' use (privileges.md, kubernetes.md, bench/README.md).

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

const USAGE: &str = include_str!("../../docs/usage.md");

/// `live` is the binary without a subcommand, as the table's commands column calls it.
const LIVE: &str = "live";

fn help(command: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_checksum-audit"));
    if command != LIVE {
        cmd.arg(command);
    }
    let out = cmd
        .arg("--help")
        .output()
        .expect("run checksum-audit --help");
    assert!(out.status.success(), "{command} --help: {out:?}");
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

/// The subcommands under `Commands:` in the top-level help, without clap's own `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The options a help text lists: lines that start, indented as clap indents an option (not as
/// it indents a description or a possible value), with `-x, --name` or `--name`.
fn listed(help: &str) -> BTreeSet<String> {
    let mut options = BTreeSet::new();
    for line in help.lines() {
        let text = line.trim_start();
        if line.len() - text.len() >= 8 || !text.starts_with('-') {
            continue;
        }
        for token in text.split_whitespace() {
            if !token.starts_with('-') {
                break;
            }
            // `-i,` and `--verbose...` as clap prints them.
            options.insert(token.trim_end_matches([',', '.']).to_string());
        }
    }
    options
}

/// The options table's rows: each option in the first cell (`-i`, `--iface IF`), with the
/// commands of the second (`live, agent`).
fn documented(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut rows = BTreeMap::new();
    for line in page.lines().filter(|l| l.starts_with("| `-")) {
        // `\|` inside a cell (`NAME\|PATH`) is not a column.
        let line = line.replace("\\|", "/");
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let commands: BTreeSet<String> = cells[2].split(',').map(|c| c.trim().into()).collect();
        for span in cells[1].split('`').skip(1).step_by(2) {
            let option = span.split_whitespace().next().unwrap_or_default();
            let previous = rows.insert(option.to_string(), commands.clone());
            assert!(previous.is_none(), "{option} has two rows in docs/usage.md");
        }
    }
    rows
}

/// Every `--name` the text names, wherever it stands.
fn long_options_named(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut named = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let starts = !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !starts || !bytes.get(i + 2).is_some_and(u8::is_ascii_lowercase) {
            continue;
        }
        let end = text[i + 2..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .map_or(text.len(), |n| i + 2 + n);
        named.insert(text[i..end].trim_end_matches('-').to_string());
    }
    named
}

#[test]
fn usage_documents_every_option_of_help_and_no_other() {
    let top = help(LIVE);
    let mut commands = vec![LIVE.to_string()];
    commands.extend(subcommands(&top));
    assert!(
        commands.iter().any(|c| c == "replay") && commands.iter().any(|c| c == "agent"),
        "subcommands not found in --help: {commands:?}"
    );
    let listed: BTreeMap<String, BTreeSet<String>> = commands
        .iter()
        .map(|c| (c.clone(), listed(&help(c))))
        .collect();
    // The parsing found options at all, short and long.
    assert!(
        listed[LIVE].contains("-i") && listed[LIVE].contains("--iface"),
        "{listed:?}"
    );
    assert!(listed["replay"].contains("--all"), "{listed:?}");

    let rows = documented(USAGE);
    let mut wrong = Vec::new();
    for (command, options) in &listed {
        for option in options {
            if !rows.get(option).is_some_and(|cs| cs.contains(command)) {
                wrong.push(format!(
                    "{command} --help lists {option}, which no row of docs/usage.md's options \
                     table gives for `{command}`"
                ));
            }
        }
    }
    for (option, cs) in &rows {
        for command in cs {
            if !listed.get(command).is_some_and(|o| o.contains(option)) {
                wrong.push(format!(
                    "docs/usage.md gives {option} to `{command}`, whose --help lacks it"
                ));
            }
        }
    }
    let every: BTreeSet<&String> = listed.values().flatten().collect();
    for option in long_options_named(USAGE) {
        if !every.contains(&option) {
            wrong.push(format!(
                "docs/usage.md names {option}, which no --help lists"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn help_names_the_environment_variables() {
    let top = help(LIVE);
    for var in ["CHECKSUM_AUDIT_BTF", "NODE_NAME", "RUST_LOG"] {
        assert!(top.contains(var), "--help does not mention {var}:\n{top}");
        assert!(USAGE.contains(var), "docs/usage.md does not mention {var}");
    }
}

#[test]
fn the_parsers_read_what_they_should() {
    assert_eq!(
        listed(
            "Options:\n  -i, --iface <IF>\n          Interface\n          - not: an option\n\
             \x20     --all\n  -v, --verbose...\n"
        ),
        ["--all", "--iface", "--verbose", "-i", "-v"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        long_options_named("`--a-b X`, --c. not x--d, ---, |---|, --9 or --E; (--ready-file)"),
        ["--a-b", "--c", "--ready-file"].map(String::from).into()
    );
    let rows =
        documented("| `-i`, `--iface IF` | live, agent | x |\n| `--netns A\\|B` | live | y |\n");
    assert_eq!(rows["-i"], ["agent", "live"].map(String::from).into());
    assert_eq!(rows["--netns"], [LIVE].map(String::from).into());
}
