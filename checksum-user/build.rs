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
        std::fs::create_dir_all(out_dir.join("legacy-kernels"))?;
        std::fs::write(out_dir.join("legacy-kernels/checksum-ebpf"), [])?;
        return Ok(());
    }
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../checksum-ebpf");
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let toolchain = || Toolchain::Custom(EBPF_TOOLCHAIN.trim());
    aya_build::build_ebpf(
        [Package {
            name: "checksum-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        toolchain(),
    )?;
    // The same crate again for kernels before 5.18 (its feature `legacy-kernels`). aya-build
    // names its output and target directory after the package, so the second build gets an
    // OUT_DIR of its own.
    let legacy_dir = out_dir.join("legacy-kernels");
    std::fs::create_dir_all(&legacy_dir)?;
    // SAFETY: build scripts are single-threaded; OUT_DIR is restored right after.
    unsafe { std::env::set_var("OUT_DIR", &legacy_dir) };
    let built = aya_build::build_ebpf(
        [Package {
            name: "checksum-ebpf",
            root_dir: ebpf_dir,
            features: &["legacy-kernels"],
            ..Default::default()
        }],
        toolchain(),
    );
    // SAFETY: as above.
    unsafe { std::env::set_var("OUT_DIR", &out_dir) };
    built
}
