use which::which;

fn main() {
    // Rebuild the programs when bpf-linker changes: it is not a cargo dependency, so cargo would
    // not notice a new linker otherwise.
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
    // bpf-linker does the code generation. By default LLVM splits every load it cannot prove
    // aligned into single bytes: a 14-byte Ethernet header becomes 14 loads, shifts and ors.
    // Packet data is rarely 4-aligned (the IP header sits at offset 14), and on the kernels we
    // target the verifier accepts misaligned packet and map-value access, so let LLVM emit one
    // wide load instead. Stack accesses must stay aligned; LLVM aligns its stack slots.
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
    // bpf-linker makes every function but the programs static, and the verifier re-checks a static
    // function on every path that calls it. These stay global: verified once (dispatch.rs, skb.rs).
    let mut globals = String::from(
        "csa_sum_large_xdp,csa_sum_large_tc,csa_source_slot_xdp,csa_source_slot_tc,csa_skb_state,csa_audit_level_xdp,csa_audit_level_tc,csa_emit_xdp,csa_emit_tc",
    );
    // The build for kernels before 5.17 sums each chunk in a global function (sum.rs, `Chunks`).
    if std::env::var_os("CARGO_FEATURE_LEGACY_KERNELS").is_some() {
        globals.push_str(",csa_sum_chunk_xdp,csa_sum_chunk_tc");
    }
    println!("cargo:rustc-link-arg=--export={globals}");
}
