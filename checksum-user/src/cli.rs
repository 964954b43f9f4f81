//! Command line.

use std::{path::PathBuf, time::Duration};

use crate::kernel::attach::XdpAttachMode;
use checksum_common::encap::{DEFAULT_TUNNEL_PORTS, EncapKind, MAX_TUNNEL_PORTS, tunnel_port};
use clap::{
    ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum,
    parser::ValueSource,
};

/// Audits IPv4, TCP, UDP, ICMP and ICMPv6 checksums in the kernel and explains the mismatches.
///
/// Live: `checksum-audit --iface eth0 --iface veth1`. Offline: `checksum-audit replay FILE`.
#[derive(Debug, Parser)]
#[command(name = "checksum-audit", version, after_help = ENVIRONMENT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// More logging; -v also shows the kernel program's own log messages, and the verifier's
    /// whole log of a program the kernel refused.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The environment variables a live run reads, for `--help` and the man pages (docs/usage.md
/// has the same list). `CHECKSUM_AUDIT_BTF` is `kernel::btf::BTF_OVERRIDE`.
const ENVIRONMENT: &str = "\
Environment:
  CHECKSUM_AUDIT_BTF=FILE  Read the sk_buff checksum-state offsets and the kernel's checksum drop
                           reasons from FILE instead of /sys/kernel/btf/vmlinux (the programs are
                           still loaded against the kernel's own BTF)
  NODE_NAME                This node's name when --node-name is not given (the downward API's
                           spec.nodeName)
  KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT
                           (agent, without --kubeconfig) the API server, as in every pod
  RUST_LOG                 Log filter, in place of the one -v chooses";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Feed a pcap/pcapng file through the same kernel program with `BPF_PROG_TEST_RUN`.
    Replay(ReplayArgs),
    /// Run as a Kubernetes node agent: pods and Services named, Events posted, JSON lines.
    ///
    /// As a `DaemonSet` pod: audit as the live options say, name pods and Services from the API
    /// server (in-cluster service account, or --kubeconfig), post Kubernetes Events on pods that
    /// receive broken checksums, and log one JSON object per line on stdout (diagnoses, kernel
    /// drops, lifecycle).
    ///
    /// Example: `checksum-audit agent --iface 'veth*' --metrics-addr 0.0.0.0:9465` with
    /// `NODE_NAME` from the downward API.
    #[command(after_help = ENVIRONMENT)]
    Agent(Box<AgentArgs>),
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// Native (driver) XDP, falling back to generic where the driver refuses.
    Auto,
    Native,
    Generic,
}

impl From<XdpModeArg> for XdpAttachMode {
    fn from(arg: XdpModeArg) -> Self {
        match arg {
            XdpModeArg::Auto => Self::Auto,
            XdpModeArg::Native => Self::Native,
            XdpModeArg::Generic => Self::Generic,
        }
    }
}

/// Where to audit. The default, TC ingress and egress, sees both directions and never displaces
/// another program (TCX links share the hook); XDP sees frames earliest but only on ingress, and
/// an interface has a single XDP slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum HookArg {
    Xdp,
    TcIngress,
    TcEgress,
}

impl HookArg {
    pub fn hook(self) -> checksum_common::Hook {
        match self {
            Self::Xdp => checksum_common::Hook::Xdp,
            Self::TcIngress => checksum_common::Hook::TcIngress,
            Self::TcEgress => checksum_common::Hook::TcEgress,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// Interface to audit (repeatable): a name, or a pattern such as 'veth*' or 'eth[0-3]'.
    /// Interfaces that match later are attached as they appear; those that vanish are detached.
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,
    /// Every interface except loopback (add --iface lo for loopback too).
    #[arg(long)]
    pub all_interfaces: bool,
    /// Audit inside this network namespace instead of the current one (repeatable): a name from
    /// `ip netns list`, a path such as /proc/PID/ns/net, or pid:PID (e.g. a pod's process).
    #[arg(long, value_name = "NAME|PATH|pid:PID")]
    pub netns: Vec<String>,
    /// Hook to audit at (repeatable).
    #[arg(long = "hook", value_enum, value_name = "HOOK", default_values_t = [HookArg::TcIngress, HookArg::TcEgress])]
    pub hooks: Vec<HookArg>,
    /// Stop after this long (e.g. 30s, 5m, 1h); runs until Ctrl-C or SIGTERM by default.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also list offload-pending mismatches one by one (they are always counted). They are normal
    /// on veth, tap and on the sending host, where the NIC or peer completes the checksum.
    #[arg(long)]
    pub show_offload: bool,
    /// How often to print a summary.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub interval: Duration,
    /// Size of the one ring buffer every audited interface shares, in bytes (a power of two, at
    /// least 4096; 1 MiB holds about 7,000 events between two reads). Events that do not fit are
    /// counted as lost, never silently dropped.
    #[arg(long, default_value_t = crate::kernel::loader::DEFAULT_RING_BYTES)]
    pub ring_buffer_size: u32,
    /// Send events for only the first N mismatches of each flow and kind, per interface and hook;
    /// the rest are counted (`events_sampled_out`) but not sent. Keeps one flooding flow from
    /// filling the ring buffer. 0 sends them all.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub events_per_flow: u32,
    /// Write the mismatching frames to this pcapng file (created 0600), one interface per audited
    /// interface and hook, each packet commented with layer, got/want, kind and diagnosis.
    #[arg(long, value_name = "FILE")]
    pub pcap_out: Option<PathBuf>,
    /// Bytes of each mismatching frame to capture (with --pcap-out; at most 16384).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub snaplen: u32,
    /// Stop writing to --pcap-out once the file would exceed this many bytes (later packets are
    /// counted as dropped).
    #[arg(long, value_name = "BYTES")]
    pub pcap_max_bytes: Option<u64>,
    /// Serve Prometheus metrics at <http://ADDR/metrics>. A bare port (9465 or :9465) binds to
    /// 127.0.0.1; give an address (0.0.0.0:9465) to expose them further.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Write this file once every program is attached (for scripts and tests).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Do not trace the kernel's own checksum drops. By default a `kfree_skb` tracepoint program
    /// reports every packet the kernel drops for a bad checksum, in every namespace: it confirms
    /// each problem, and finds drops on paths nothing audits.
    #[arg(long)]
    pub no_kernel_drops: bool,
    /// NAT candidates: `kubectl get svc -A -o json` output, or `ADDR`, `ADDR:PORT` lines with an
    /// optional label. A rewrite whose original is one of them is named with that evidence
    /// (and its Service); without evidence a rewrite is not named.
    #[arg(long, value_name = "FILE")]
    pub nat_candidates: Option<PathBuf>,
    #[command(flatten)]
    pub tunnels: TunnelArgs,
    /// Talk to the cluster of this kubeconfig, to name pods (flow ends whose address
    /// is a pod's on this node, as namespace/pod) and Services (their addresses and ports are
    /// NAT candidates, as with --nat-candidates). `agent` uses the pod's service account
    /// without it.
    #[arg(long, value_name = "FILE", help_heading = "Kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name, whose pods are followed; default: `NODE_NAME`, else the host
    /// name. A name that matches no node is an error (said once; the audit goes on).
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub node_name: Option<String>,
    /// (agent) Write each Event (one per receiving pod, flow and finding) at most
    /// this often; its count grows in between, and at most 10 writes a minute go out in all.
    #[arg(long, value_parser = parse_duration, default_value = "60s", help_heading = "Kubernetes")]
    pub event_interval: Duration,
    /// The options above that the command line gave, as `--name`: filled by `Cli::parse_args`
    /// from clap's value sources, since a value equal to the default may have been given too.
    #[arg(skip)]
    given: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// pcap or pcapng file.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print every verdict, not only mismatches.
    #[arg(long)]
    pub all: bool,
    /// NAT candidates: `kubectl get svc -A -o json` output, or `ADDR`, `ADDR:PORT` lines with an
    /// optional label. A rewrite whose original is one of them is named with that evidence
    /// (and its Service); without evidence a rewrite is not named.
    #[arg(long, value_name = "FILE")]
    pub nat_candidates: Option<PathBuf>,
    #[command(flatten)]
    pub tunnels: TunnelArgs,
}

/// UDP ports whose datagrams are tunnels, audited inside too (one level: nested tunnels, GRE
/// and IPIP are not followed).
#[derive(Debug, Clone, Default, Args)]
pub struct TunnelArgs {
    /// Another UDP port to audit as VXLAN, inner packet included (repeatable). 4789 and 8472
    /// (Linux's and flannel's default) always are, and 4790 as VXLAN-GPE.
    #[arg(long = "vxlan-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub vxlan_ports: Vec<u16>,
    /// Another UDP port to audit as Geneve, inner packet included (repeatable). 6081 always is.
    #[arg(long = "geneve-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub geneve_ports: Vec<u16>,
}

impl TunnelArgs {
    /// The programs' `TUNNEL_PORTS` table: the ports given first (so that one may take a default
    /// port for the other kind), then the defaults; an error past `MAX_TUNNEL_PORTS` in all.
    pub fn table(&self) -> Result<[u32; MAX_TUNNEL_PORTS], String> {
        let given = self
            .vxlan_ports
            .iter()
            .map(|p| (*p, EncapKind::Vxlan))
            .chain(self.geneve_ports.iter().map(|p| (*p, EncapKind::Geneve)));
        let defaults = DEFAULT_TUNNEL_PORTS.iter().filter(|e| **e != 0).map(|e| {
            let kind = EncapKind::from_u8(u8::try_from(e >> 16).unwrap_or(0));
            (
                u16::try_from(e & 0xffff).unwrap_or(0),
                kind.unwrap_or(EncapKind::None),
            )
        });
        let mut table = [0; MAX_TUNNEL_PORTS];
        let mut used = 0;
        for (port, kind) in given.chain(defaults) {
            if table[..used].iter().any(|e| e & 0xffff == u32::from(port)) {
                continue;
            }
            if used == MAX_TUNNEL_PORTS {
                return Err(format!(
                    "too many tunnel ports: at most {MAX_TUNNEL_PORTS} in all, the {} defaults (4789, 8472, 4790, 6081) included",
                    DEFAULT_TUNNEL_PORTS.iter().filter(|e| **e != 0).count()
                ));
            }
            table[used] = tunnel_port(port, kind);
            used += 1;
        }
        Ok(table)
    }
}

impl Cli {
    /// Parses the command line like `Parser::parse` (a usage error exits with code 2), and also
    /// records which live-only options were given (`LiveArgs::given`).
    pub fn parse_args() -> Self {
        Self::from_matches(&Self::command().get_matches())
            .unwrap_or_else(|e| e.format(&mut Self::command()).exit())
    }

    /// `parse_args` of the given arguments (the first is the program name), for tests.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::from_matches(&Self::command().try_get_matches_from(args)?)
    }

    fn from_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut cli = Self::from_arg_matches(matches)?;
        // Every argument `LiveArgs` declares, so that an option added later counts too.
        cli.live.given = LiveArgs::augment_args(clap::Command::new("live"))
            .get_arguments()
            .filter(|arg| {
                matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
            })
            .map(|arg| match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg.get_id().to_string(),
            })
            .collect();
        Ok(cli)
    }
}

impl LiveArgs {
    /// The live-only options given on the command line, as `--name`, in declaration order (they
    /// make no sense with `replay`). Any given counts, even with its default value. Empty unless
    /// parsed by `Cli::parse_args`.
    pub fn given(&self) -> &[String] {
        &self.given
    }
}

/// The longest duration accepted (100 years): `Instant::now()` plus it cannot overflow, as adding
/// far longer ones (`--interval`) would.
pub const MAX_DURATION: Duration = Duration::from_hours(100 * 365 * 24);

/// Parses `500ms`, `30s`, `5m`, `1h` or a bare number of seconds, up to `MAX_DURATION`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration '{s}': expected e.g. 30s, 5m, 500ms"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit '{unit}' in '{s}': use ms, s, m or h"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration '{s}' must be positive"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("duration '{s}' is longer than 100 years"));
    }
    match Duration::from_secs_f64(secs) {
        // tokio's interval panics on a zero period.
        d if d.is_zero() => Err(format!("duration '{s}' is shorter than a nanosecond")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("3153600000"), Ok(MAX_DURATION));
        // Found by the cli_specs fuzz target: more seconds than a Duration holds panicked in
        // Duration::from_secs_f64. Shorter ones, still beyond any Instant, are refused too.
        assert!(parse_duration("99659965996565659965").is_err());
        assert!(parse_duration("9999999999999999999s").is_err());
        assert!(parse_duration("3153600001").is_err());
        // Found by the cli_specs fuzz target: positive, but zero once a Duration (`--interval` of
        // zero panics in tokio::time::interval).
        assert!(parse_duration(".00000000006").is_err());
        assert_eq!(parse_duration("0.000000001"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn every_live_option_given_counts_even_with_its_default_value() {
        let given = |args: &[&str]| {
            let cli = Cli::try_parse_args(["checksum-audit"].iter().chain(args)).unwrap();
            cli.live.given().to_vec()
        };
        let set = given(&["replay", "f.pcap"]);
        assert!(set.is_empty(), "{set:?}");
        let set = given(&["replay", "--format", "json", "f.pcap"]);
        assert!(set.is_empty(), "{set:?}");
        assert_eq!(given(&["--netns", "x", "replay", "f"]), ["--netns"]);
        assert_eq!(
            given(&[
                "--hook",
                "tc-ingress",
                "--hook",
                "tc-egress",
                "-v",
                "replay",
                "f"
            ]),
            ["--hook"]
        );
        assert_eq!(
            given(&[
                "--snaplen",
                "256",
                "--all-interfaces",
                "--format",
                "text",
                "replay",
                "f"
            ]),
            ["--all-interfaces", "--format", "--snaplen"]
        );
        // Every live option, each given once (values valid for each).
        let mut all = Vec::new();
        for arg in LiveArgs::augment_args(clap::Command::new("live")).get_arguments() {
            let long = format!("--{}", arg.get_long().expect("every live option is long"));
            all.push(long.clone());
            let value = match arg.get_id().as_str() {
                "all_interfaces" | "show_offload" | "no_kernel_drops" => None,
                "hooks" => Some("xdp"),
                "duration" | "interval" => Some("1s"),
                "xdp_mode" => Some("auto"),
                "format" => Some("text"),
                _ => Some("1"),
            };
            let mut args = vec![long];
            args.extend(value.map(str::to_owned));
            args.extend(["replay".to_owned(), "f".to_owned()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(given(&args), [args[0]], "{args:?}");
        }
        assert!(
            all.len() >= 16 && all.contains(&"--netns".into()),
            "{all:?}"
        );
    }

    #[test]
    fn cli_shape() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
