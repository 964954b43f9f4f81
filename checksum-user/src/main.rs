fn main() -> anyhow::Result<()> {
    let mut ebpf = aya::Ebpf::load(checksum_user::loader::EBPF_OBJECT)?;
    let prog: &mut aya::programs::Xdp = ebpf.program_mut("csum_audit_xdp").unwrap().try_into()?;
    prog.load()?;
    println!("loaded");
    Ok(())
}
