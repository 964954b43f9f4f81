fn main() -> anyhow::Result<()> {
    let mut l = checksum_user::loader::Loaded::load(&Default::default())?;
    let _ = l.counters()?;
    println!("loaded");
    Ok(())
}
