//! The terminal view, checked the way a person sees it: the real binary in a tmux pane
//! (`capture-pane`), attached in a test namespace.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use checksum_testkit::{
    frames::*,
    netns::{VETH_A, VETH_B, VethPair, send_raw_frames},
};
use common::{auditor::BIN, require_root};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Self {
        let socket = format!("csa-view-{}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "60",
                "-s",
                "audit",
                command,
            ])
            .status()
            .expect("tmux (Debian package tmux) is needed for this test")
            .success();
        assert!(ok, "tmux new-session failed");
        Self { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "audit"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen contains `needle`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "no {needle:?} on screen after {timeout:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn packets_per_second(screen: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| l.contains("packets/s audited"))
        .map(str::to_owned)
}

#[test]
fn terminal_view_renders_and_updates() {
    if !require_root(module_path!()) {
        return;
    }
    let pair = VethPair::new("tty");
    let ready = std::env::temp_dir().join(format!("{}.ready", pair.b.name));
    let _ = std::fs::remove_file(&ready);
    let command = format!(
        "ip netns exec {} {BIN} --iface {VETH_B} --duration 6s --ready-file {}; sleep 60",
        pair.b.name,
        ready.display()
    );
    let tmux = Tmux::start(&command);
    let start = Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not ready:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first frame: header, hooks, an empty table.
    let first = tmux.wait_for("(no mismatches yet)", Duration::from_secs(3));
    assert!(first.contains("packets/s audited"), "{first}");
    assert!(
        first.contains("veth-b tc-ingress (tcx)") && first.contains("veth-b tc-egress (tcx)"),
        "{first}"
    );
    // Broken frames arrive: a row appears with its count and explanation, and the header moves.
    let mut frames = Vec::new();
    for i in 0..4 {
        let mut f = v4_frame(&[], TCP, segment(TCP, 100 + i), &[]);
        let c = f.checksum;
        f.set_field(c ^ 0x0f0f);
        frames.push(f.bytes);
    }
    pair.a.run(move || send_raw_frames(VETH_A, &frames));
    let updated = tmux.wait_for("10.9.0.1:40682 -> 10.9.0.2:8080", Duration::from_secs(3));
    let row = updated
        .lines()
        .find(|l| l.contains("tc-ingress") && l.contains("corrupt"))
        .unwrap_or_else(|| panic!("{updated}"));
    assert!(row.contains(" 4 "), "count 4 in {row:?}");
    assert!(
        updated.contains("The field fits no known signature"),
        "{updated}"
    );
    assert!(updated.contains("4 problems"), "{updated}");
    assert_ne!(packets_per_second(&first), None);
    // The end of --duration: the final summary under the last frame.
    let last = tmux.wait_for("final summary", Duration::from_secs(10));
    let _ = std::fs::remove_file(&ready);
    assert!(last.contains("mismatches: 4 real"), "{last}");
}
