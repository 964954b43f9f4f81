//! The kernel's own checksum error counters of a network namespace (`InCsumErrors` of
//! /proc/net/snmp, netstat and snmp6): the number an on-call engineer already looks at, shown
//! beside what the audit found.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
};

/// `InCsumErrors` by protocol. `ip` is `IpExt` (IPv4 header checksums); `udp` and `icmp` add
/// their IPv6 counterparts; `tcp` counts both families already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CsumErrors {
    pub ip: u64,
    pub tcp: u64,
    pub udp: u64,
    pub icmp: u64,
}

impl CsumErrors {
    /// What changed since `earlier` (counters only grow; a wrap gives 0).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            ip: self.ip.saturating_sub(earlier.ip),
            tcp: self.tcp.saturating_sub(earlier.tcp),
            udp: self.udp.saturating_sub(earlier.udp),
            icmp: self.icmp.saturating_sub(earlier.icmp),
        }
    }

    pub fn total(&self) -> u64 {
        self.ip + self.tcp + self.udp + self.icmp
    }
}

/// The counter files of one namespace, opened from a thread inside it. An open /proc/net file
/// keeps answering for the namespace it was opened in (and keeps it alive: drop it when the
/// namespace goes away).
#[derive(Debug)]
pub struct SnmpFiles {
    snmp: File,
    netstat: File,
    /// Absent without IPv6.
    snmp6: Option<File>,
}

impl SnmpFiles {
    /// Opens the calling thread's namespace's files.
    pub fn open_here() -> io::Result<Self> {
        let open = |name: &str| File::open(format!("/proc/thread-self/net/{name}"));
        Ok(Self {
            snmp: open("snmp")?,
            netstat: open("netstat")?,
            snmp6: open("snmp6").ok(),
        })
    }

    pub fn read(&mut self) -> io::Result<CsumErrors> {
        let snmp = read_from_start(&mut self.snmp)?;
        let netstat = read_from_start(&mut self.netstat)?;
        let snmp6 = match &mut self.snmp6 {
            Some(f) => read_from_start(f)?,
            None => String::new(),
        };
        Ok(parse(&snmp, &netstat, &snmp6))
    }
}

fn read_from_start(f: &mut File) -> io::Result<String> {
    f.seek(SeekFrom::Start(0))?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

/// The counters from the files' text.
pub fn parse(snmp: &str, netstat: &str, snmp6: &str) -> CsumErrors {
    let v6 = |name: &str| {
        snmp6
            .lines()
            .find_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next() == Some(name)).then(|| parts.next()?.parse().ok())?
            })
            .unwrap_or(0)
    };
    CsumErrors {
        ip: table(netstat, "IpExt", "InCsumErrors"),
        tcp: table(snmp, "Tcp", "InCsumErrors"),
        udp: table(snmp, "Udp", "InCsumErrors") + v6("Udp6InCsumErrors"),
        icmp: table(snmp, "Icmp", "InCsumErrors") + v6("Icmp6InCsumErrors"),
    }
}

/// A counter of the two-line tables of /proc/net/snmp and netstat (`Tcp: names` then
/// `Tcp: values`); 0 when absent.
fn table(text: &str, prefix: &str, column: &str) -> u64 {
    let head = format!("{prefix}:");
    let mut rows = text
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(&head));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == column)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_their_tables() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 2 64\n\
                    Icmp: InMsgs InErrors InCsumErrors\nIcmp: 9 1 1\n\
                    Tcp: InSegs InErrs InCsumErrors\nTcp: 100 4 4\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
                    Udp: 7 0 3 7 0 0 3\n\
                    UdpLite: InDatagrams InCsumErrors\nUdpLite: 0 5\n";
        let netstat =
            "TcpExt: SyncookiesSent\nTcpExt: 0\nIpExt: InNoRoutes InCsumErrors\nIpExt: 0 2\n";
        let snmp6 = "Udp6InDatagrams \t 1\nUdp6InCsumErrors \t 6\nIcmp6InCsumErrors 0\n";
        let c = parse(snmp, netstat, snmp6);
        // UdpLite's column is not UDP's.
        assert_eq!(
            c,
            CsumErrors {
                ip: 2,
                tcp: 4,
                udp: 9,
                icmp: 1
            }
        );
        assert_eq!(c.total(), 16);
        let later = CsumErrors { tcp: 10, ..c };
        assert_eq!(
            later.since(&c),
            CsumErrors {
                tcp: 6,
                ..CsumErrors::default()
            }
        );
        // Absent tables and garbage read as zero.
        assert_eq!(parse("", "", ""), CsumErrors::default());
        assert_eq!(
            parse("Tcp: InCsumErrors\n", "", "junk"),
            CsumErrors::default()
        );
    }

    #[test]
    fn this_namespaces_files_read() {
        let mut files = SnmpFiles::open_here().expect("/proc/thread-self/net");
        let a = files.read().expect("read");
        let b = files.read().expect("read again from the start");
        assert!(b.tcp >= a.tcp);
    }
}
