//! Network namespaces and veth pairs owned by a test, removed on drop even when the test panics.
//! Tests never touch the host's own interfaces.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread that has joined the network namespace at `path` (`/run/netns/NAME`, or a
/// pod's `/proc/PID/ns/net`), without waiting.
pub fn spawn_in<T: Send + 'static>(
    path: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        let ns = File::open(&path).expect("open netns");
        // SAFETY: plain syscall on a descriptor we own (open across the call); no memory is
        // passed. It moves only this freshly spawned thread into the namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "csa-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full);
    }

    /// A command line prefix that runs a program inside the namespace.
    pub fn exec(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        c
    }

    /// Runs `f` on a thread that has joined this namespace; sockets it opens live there.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("netns thread panicked")
    }

    /// Like `run`, without waiting.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        spawn_in(format!("/run/netns/{}", self.name), f)
    }

    /// Programs on `iface`'s TCX hooks, as `ingress:name` / `egress:name`.
    pub fn tcx_programs(&self, iface: &str) -> Vec<String> {
        use aya::programs::{SchedClassifier, tc::TcAttachType};
        let ifindex = self.ifindex(iface);
        self.run(move || {
            let mut names = Vec::new();
            for (dir, t) in [
                ("ingress", TcAttachType::Ingress),
                ("egress", TcAttachType::Egress),
            ] {
                let (_, progs) = SchedClassifier::query_tcx(ifindex, t).expect("query tcx");
                names.extend(
                    progs
                        .iter()
                        .map(|p| format!("{dir}:{}", p.name_as_str().unwrap_or("?"))),
                );
            }
            names
        })
    }

    /// The XDP lines of `ip -d link show IFACE` ("" when no XDP program is attached).
    pub fn xdp_state(&self, iface: &str) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-d", "link", "show", iface])
            .output()
            .expect("ip link");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter(|l| l.contains("xdp"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn ifindex(&self, iface: &str) -> u32 {
        let iface = iface.to_owned();
        self.run(move || {
            let c = std::ffi::CString::new(iface).unwrap();
            // SAFETY: a valid NUL-terminated C string for the duration of the call.
            unsafe { libc::if_nametoindex(c.as_ptr()) }
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Quietly: a test may have deleted it already.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

pub const VETH_A: &str = "veth-a";
pub const VETH_B: &str = "veth-b";
pub const ADDR_A: &str = "10.199.0.1";
pub const ADDR_B: &str = "10.199.0.2";
pub const ADDR6_A: &str = "fd00:199::1";
pub const ADDR6_B: &str = "fd00:199::2";

/// Two namespaces joined by a veth pair: `a` holds `VETH_A` (`ADDR_A`), `b` holds `VETH_B` (`ADDR_B`).
pub struct VethPair {
    pub a: NetNs,
    pub b: NetNs,
}

impl VethPair {
    pub fn new(tag: &str) -> Self {
        let a = NetNs::new(&format!("{tag}a"));
        let b = NetNs::new(&format!("{tag}b"));
        a.ip(&[
            "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B, "netns", &b.name,
        ]);
        for (ns, dev, v4, v6) in [(&a, VETH_A, ADDR_A, ADDR6_A), (&b, VETH_B, ADDR_B, ADDR6_B)] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        Self { a, b }
    }
}

/// An `AF_PACKET` raw socket (the caller closes it) and the link-layer address that sends out of
/// `iface`; call it inside the interface's namespace. Panics when either is missing.
pub fn packet_socket(iface: &str) -> (i32, libc::sockaddr_ll) {
    let c = std::ffi::CString::new(iface).unwrap();
    // SAFETY: a valid NUL-terminated C string for the duration of the call.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(ifindex, 0, "no interface {iface}");
    // SAFETY: plain syscall; no memory is passed.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: sockaddr_ll is a plain C struct of integers; all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).expect("AF_PACKET is 17");
    addr.sll_ifindex = i32::try_from(ifindex).expect("ifindexes are positive i32s");
    addr.sll_halen = 6;
    (fd, addr)
}

/// Sends raw Ethernet frames out of `iface` with an `AF_PACKET` socket (call inside the namespace).
/// The kernel does not touch their checksums, so the peer sees exactly these bytes.
pub fn send_raw_frames(iface: &str, frames: &[Vec<u8>]) {
    let (fd, out_of_iface) = packet_socket(iface);
    for frame in frames {
        let mut addr = out_of_iface;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` and `addr` are live for the call, and the lengths passed are their sizes.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap(),
            )
        };
        assert_eq!(
            usize::try_from(n).ok(),
            Some(frame.len()),
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: closes the socket packet_socket opened for us; it is not used afterwards.
    unsafe { libc::close(fd) };
}

/// A real TCP connection from `a` to `b` (`ADDR_B:port`) carrying `bytes` bytes each way, plus UDP
/// datagrams and pings: the ordinary traffic an auditor must not call corrupt.
pub fn ordinary_traffic(pair: &VethPair, port: u16, bytes: usize) {
    ordinary_traffic_between(pair, (ADDR_A, ADDR_B), port, bytes);
}

/// `ordinary_traffic` between other addresses of the pair's namespaces (`a`'s, `b`'s): through a
/// tunnel device, say.
pub fn ordinary_traffic_between(
    pair: &VethPair,
    (addr_a, addr_b): (&'static str, &'static str),
    port: u16,
    bytes: usize,
) {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream, UdpSocket},
        sync::mpsc,
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = pair.b.spawn(move || {
        let listener = TcpListener::bind((addr_b, port)).expect("bind");
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = vec![0u8; bytes];
        conn.read_exact(&mut got).expect("server read");
        conn.write_all(&got).expect("server write");
        let udp = UdpSocket::bind((addr_b, port)).expect("udp bind");
        udp.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while n < 20 && udp.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    ready_rx.recv().expect("server ready");
    pair.a.run(move || {
        let mut conn = TcpStream::connect((addr_b, port)).expect("connect");
        let data: Vec<u8> = (0..bytes).map(|i| u8::try_from(i % 251).unwrap()).collect();
        conn.write_all(&data).expect("client write");
        let mut back = vec![0u8; bytes];
        conn.read_exact(&mut back).expect("client read");
        assert_eq!(back, data);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let udp = UdpSocket::bind((addr_a, 0)).expect("udp");
        for i in 0..20u8 {
            udp.send_to(&vec![i; 100 + usize::from(i) * 37], (addr_b, port))
                .expect("udp send");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let received = server.join().expect("server");
    assert!(received > 0, "no UDP datagram arrived");
    let ping = pair
        .a
        .exec()
        .args(["ping", "-c", "3", "-i", "0.1", "-W", "1", addr_b])
        .output()
        .expect("ping");
    assert!(
        ping.status.success(),
        "ping failed: {}",
        String::from_utf8_lossy(&ping.stderr)
    );
}
