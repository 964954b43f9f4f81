//! Builds the test kit's own eBPF object, the fault injector (checksum-testkit-ebpf), with the
//! nightly that builds the auditor's programs. The auditor's build (checksum-user) never builds it.
use aya_build::{Package, Toolchain};

const EBPF_TOOLCHAIN: &str = include_str!("../checksum-ebpf/TOOLCHAIN");

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../checksum-ebpf/TOOLCHAIN");
    // `cargo fuzz` builds (`--cfg fuzzing`) never load a program: an empty object spares them the
    // eBPF build, which would otherwise run under the sanitizer's flags.
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
        std::fs::write(out_dir.join("fault-injector"), [])?;
        return Ok(());
    }
    aya_build::build_ebpf(
        [Package {
            name: "checksum-testkit-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../checksum-testkit-ebpf"),
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN.trim()),
    )
}
