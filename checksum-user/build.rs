use aya_build::{Package, Toolchain};

/// The nightly that compiles the eBPF crate (`-Z build-std=core`). One file names it for this
/// build, scripts/bootstrap.sh (which builds bpf-linker against its LLVM) and xtask.
const EBPF_TOOLCHAIN: &str = include_str!("../checksum-ebpf/TOOLCHAIN");

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../checksum-ebpf/TOOLCHAIN");
    // `cargo fuzz` builds (`--cfg fuzzing`) drive the parsers only and never load a program: an empty
    // object spares them the eBPF build, which would otherwise run under the sanitizer's flags.
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
        std::fs::write(out_dir.join("checksum-ebpf"), [])?;
        return Ok(());
    }
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../checksum-ebpf");
    aya_build::build_ebpf(
        [Package {
            name: "checksum-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN.trim()),
    )
}
