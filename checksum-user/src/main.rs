use std::process::ExitCode;

use checksum_user::{
    cli::{Cli, Command},
    live, replay,
};

fn main() -> ExitCode {
    // Not `Cli::parse()`: this also records which live-only options were given.
    let cli = Cli::parse_args();
    let filter = match cli.verbose {
        // kube's watcher logs each failed attempt; the agent says each episode once itself.
        0 => "warn,netlink_packet_route=error,kube_runtime=off,kube_client=off",
        // The verifier's full log of a refused program is a debug record of its own target.
        1 => {
            "info,checksum_ebpf=debug,checksum_user::kernel::refusal=debug,netlink_packet_route=error"
        }
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter)).init();

    let result = match &cli.command {
        Some(Command::Replay(args)) => {
            let given = cli.live.given();
            if !given.is_empty() {
                // `replay`'s own options (--format, --all) go after it.
                eprintln!(
                    "checksum-audit: error: live options ({}) do not apply to `replay`{}",
                    given.join(", "),
                    if given.iter().any(|o| o == "--format") {
                        "; for replay's output format, put --format after `replay`"
                    } else {
                        ""
                    }
                );
                return ExitCode::from(2);
            }
            replay::replay(args, cli.verbose > 0, &mut std::io::stdout().lock()).map(|_| ())
        }
        Some(Command::Agent(args)) => {
            let given = cli.live.given();
            if !given.is_empty() {
                eprintln!(
                    "checksum-audit: error: put the live options ({}) after `agent`",
                    given.join(", ")
                );
                return ExitCode::from(2);
            }
            run_live(&args.live, cli.verbose > 0, true)
        }
        None => run_live(&cli.live, cli.verbose > 0, false),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("checksum-audit: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A live run, as the CLI (`agent` false) or the node agent.
fn run_live(
    args: &checksum_user::cli::LiveArgs,
    kernel_log: bool,
    agent: bool,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(live::run(args, kernel_log, agent)))
}
