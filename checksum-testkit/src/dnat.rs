//! The stale-DNAT lab of the demo and its test: a client reaches a "service address" through a
//! middle hop whose NAT rewrites it to the server's address without updating the TCP/UDP
//! checksum, while ordinary traffic to the server's own address flows beside it.
//!
//! ```text
//!  client (veth-c, 10.199.1.2) -- (veth-m0 10.199.1.1) middle (veth-m1 10.199.2.1) -- (veth-s, 10.199.2.2) server
//!                                  ^ faulty DNAT: 10.96.0.10 -> 10.199.2.2, L4 checksum left stale
//! ```
//!
//! The client sends with TX checksum offload (a partial checksum); veth-m1 has TX offload off, so
//! the stale partial checksum is completed in software on the way to the server, which drops the
//! packets: the field-report situation, reproduced inside namespaces this lab owns.

/// The hook `attach_stale_dnat` takes, for callers without aya of their own (xtask).
pub use aya::programs::tc::TcAttachType;
use aya::{
    Ebpf, EbpfLoader,
    programs::{LinkOrder, SchedClassifier, tc::TcAttach},
};

use super::netns::NetNs;

/// The fault injector object (checksum-testkit-ebpf), built by this crate's build.rs.
static FAULT_INJECTOR: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fault-injector"));

pub const SERVICE: [u8; 4] = [10, 96, 0, 10];
pub const SERVER: [u8; 4] = [10, 199, 2, 2];
/// The broken flows go to these ports of the service address; the good one to `GOOD_PORT`.
pub const SERVICE_TCP_PORT: u16 = 8080;
pub const SERVICE_UDP_PORT: u16 = 5353;
pub const GOOD_PORT: u16 = 8081;
pub const CLIENT_IF: &str = "veth-c";
pub const MIDDLE_IN: &str = "veth-m0";
pub const MIDDLE_OUT: &str = "veth-m1";
pub const SERVER_IF: &str = "veth-s";

/// What the faulty NAT does to the L4 checksum (the fault injector's `L4_UPDATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Update {
    /// No update: a stale checksum (or a stale pseudo-header sum, for a partial one).
    LeftAlone = 0,
    /// RFC 1624's update for a complete checksum, applied even to a partial one.
    AsIfComplete = 1,
}

/// Where the faulty NAT runs: on the middle hop's way in (the demo), or at the client's own
/// egress, in front of any auditor there (so the auditor sees the `CHECKSUM_PARTIAL` skb the NAT
/// left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    MiddleIngress,
    ClientEgress,
}

/// The faulty NAT of a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub place: Place,
    pub l4: L4Update,
    /// Also rewrite this destination port to that one.
    pub port: Option<(u16, u16)>,
}

impl Default for Fault {
    /// The demo's: a DNAT on the middle hop that leaves the checksum alone, ports unchanged.
    fn default() -> Self {
        Self {
            place: Place::MiddleIngress,
            l4: L4Update::LeftAlone,
            port: None,
        }
    }
}

pub struct DnatLab {
    pub client: NetNs,
    pub middle: NetNs,
    pub server: NetNs,
    /// Keeps the faulty DNAT attached while the lab lives.
    _injector: Injector,
}

fn ethtool(ns: &NetNs, args: &[&str]) {
    let out = ns
        .exec()
        .arg("ethtool")
        .args(args)
        .output()
        .expect("ethtool");
    assert!(
        out.status.success(),
        "ethtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl DnatLab {
    pub fn new(tag: &str) -> Self {
        Self::with_fault(tag, Fault::default())
    }

    pub fn with_fault(tag: &str, fault: Fault) -> Self {
        let client = NetNs::new(&format!("{tag}c"));
        let middle = NetNs::new(&format!("{tag}m"));
        let server = NetNs::new(&format!("{tag}s"));
        client.ip(&[
            "link",
            "add",
            CLIENT_IF,
            "type",
            "veth",
            "peer",
            "name",
            MIDDLE_IN,
            "netns",
            &middle.name,
        ]);
        middle.ip(&[
            "link",
            "add",
            MIDDLE_OUT,
            "type",
            "veth",
            "peer",
            "name",
            SERVER_IF,
            "netns",
            &server.name,
        ]);
        for (ns, dev, addr) in [
            (&client, CLIENT_IF, "10.199.1.2/24"),
            (&middle, MIDDLE_IN, "10.199.1.1/24"),
            (&middle, MIDDLE_OUT, "10.199.2.1/24"),
            (&server, SERVER_IF, "10.199.2.2/24"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        client.ip(&["route", "add", "default", "via", "10.199.1.1"]);
        server.ip(&["route", "add", "default", "via", "10.199.2.1"]);
        let out = middle
            .exec()
            .args(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .output()
            .expect("sysctl");
        assert!(
            out.status.success(),
            "ip_forward: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Software completion of the (stale) partial checksum on the way to the server.
        ethtool(&middle, &["-K", MIDDLE_OUT, "tx", "off"]);
        let (ns, iface, attach_type) = match fault.place {
            Place::MiddleIngress => (&middle, MIDDLE_IN, TcAttachType::Ingress),
            Place::ClientEgress => (&client, CLIENT_IF, TcAttachType::Egress),
        };
        let injector = attach_stale_dnat(
            ns,
            iface,
            attach_type,
            StaleDnat {
                from: SERVICE,
                to: SERVER,
                port: fault.port,
                l4: fault.l4,
                first: true,
            },
        );
        Self {
            client,
            middle,
            server,
            _injector: injector,
        }
    }

    /// Traffic to the service address (broken by the NAT: nothing gets through) and to the
    /// server's own address (fine). Returns whether the service answered, which it must not.
    pub fn traffic(&self) -> bool {
        use std::{
            io::{Read, Write},
            net::{TcpListener, TcpStream, UdpSocket},
            time::Duration,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = self.server.spawn(move || {
            let tcp = TcpListener::bind(("0.0.0.0", GOOD_PORT)).expect("bind");
            let udp = UdpSocket::bind(("0.0.0.0", SERVICE_UDP_PORT)).expect("udp bind");
            ready_tx.send(()).unwrap();
            // One ordinary connection to the server's own address.
            let (mut conn, _) = tcp.accept().expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).expect("read");
            conn.write_all(&buf[..n]).expect("echo");
            udp.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut received = 0;
            while udp.recv(&mut buf).is_ok() {
                received += 1;
            }
            received
        });
        ready_rx.recv().unwrap();
        let service_answered = self.client.run(move || {
            // The good flow: straight to the server.
            let mut conn =
                TcpStream::connect(("10.199.2.2", GOOD_PORT)).expect("connect to the server");
            conn.write_all(b"hello server").unwrap();
            let mut echo = [0u8; 12];
            conn.read_exact(&mut echo).expect("echo");
            // The broken flow: datagrams of different sizes to the service address...
            let udp = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
            for i in 0..8usize {
                udp.send_to(
                    &vec![b'q'; 40 + 13 * i],
                    (std::net::Ipv4Addr::from(SERVICE), SERVICE_UDP_PORT),
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            // ...and a TCP connection that cannot be established: its SYNs (sent at 0, 1 and 3 s,
            // their timestamps differ) are dropped.
            TcpStream::connect_timeout(
                &(std::net::Ipv4Addr::from(SERVICE), SERVICE_TCP_PORT).into(),
                Duration::from_millis(3500),
            )
            .is_ok()
        });
        let received = server.join().expect("server");
        let ping = self
            .client
            .exec()
            .args(["ping", "-c", "3", "-i", "0.1", "-W", "1", "10.199.2.2"])
            .output()
            .expect("ping");
        assert!(
            ping.status.success(),
            "the good path must work: {}",
            String::from_utf8_lossy(&ping.stderr)
        );
        service_answered || received > 0
    }
}

/// A faulty DNAT to attach anywhere: destination `from` (and port `port.0`) rewritten to `to`
/// (and `port.1`), the L4 checksum treated as `l4` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleDnat {
    pub from: [u8; 4],
    pub to: [u8; 4],
    pub port: Option<(u16, u16)>,
    pub l4: L4Update,
    /// First in the TCX chain (auditors at this hook see the packet as the NAT left it), or last
    /// (they see it as it came, and the rewrite shows at the next hop).
    pub first: bool,
}

/// An attached fault injector: detached when dropped.
pub struct Injector {
    _ebpf: Ebpf,
}

/// Loads the fault injector in `ns` and attaches it at `iface`'s TC hook.
pub fn attach_stale_dnat(
    ns: &NetNs,
    iface: &str,
    attach_type: TcAttachType,
    nat: StaleDnat,
) -> Injector {
    let ifindex = ns.ifindex(iface);
    let (from_port, to_port) = nat.port.unwrap_or((0, 0));
    ns.run(move || {
        let mut ebpf = EbpfLoader::new()
            .override_global("FROM_ADDR", &u32::from_ne_bytes(nat.from), true)
            .override_global("TO_ADDR", &u32::from_ne_bytes(nat.to), true)
            .override_global("FROM_PORT", &from_port.to_be(), true)
            .override_global("TO_PORT", &to_port.to_be(), true)
            .override_global("L4_UPDATE", &(nat.l4 as u8), true)
            .load(FAULT_INJECTOR)
            .expect("load the fault injector");
        let prog: &mut SchedClassifier =
            ebpf.program_mut("stale_dnat").unwrap().try_into().unwrap();
        prog.load().expect("verify the fault injector");
        let order = if nat.first {
            LinkOrder::first()
        } else {
            LinkOrder::last()
        };
        prog.attach(ifindex, TcAttach::Tcx { attach_type, order })
            .expect("attach the fault injector");
        Injector { _ebpf: ebpf }
    })
}

/// The command prefix that joins the lab's three namespaces in one auditor.
pub fn netns_args(lab: &DnatLab) -> Vec<String> {
    [&lab.client, &lab.middle, &lab.server]
        .iter()
        .flat_map(|ns| ["--netns".to_owned(), ns.name.clone()])
        .collect()
}
