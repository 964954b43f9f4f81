use aya_build::{Package, Toolchain};

/// The nightly that compiles the eBPF crate (`-Z build-std=core`); scripts/bootstrap.sh builds
/// bpf-linker against its LLVM. Keep the two in step.
const EBPF_TOOLCHAIN: &str = "nightly-2026-10-29";

fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../checksum-ebpf");
    aya_build::build_ebpf(
        [Package {
            name: "checksum-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
