//! The two builds of the eBPF object (checksum-ebpf, built twice by build.rs) and which one the
//! running kernel gets. Both audit alike; they differ only in mechanisms old kernels lack:
//!
//! - `Current`: chunks of long ranges summed from a `bpf_loop` callback (Linux 5.17), XDP programs
//!   that see the fragments of multi-buffer frames (5.18: `xdp.frags`, `bpf_xdp_load_bytes`).
//! - `Legacy` (feature `legacy-kernels`): a plain bounded loop, which the verifier walks once per
//!   chunk, and XDP programs for linear frames, the only frames such kernels have.
//!
//! A program that names a helper the kernel lacks is refused as a whole (5.10 answers EINVAL,
//! without a verifier log, to the fragments flag alone), so the choice is made before loading,
//! from what the kernel says it has: its BTF lists the helpers it knows in `enum bpf_func_id`.
//! That holds for backports too (RHEL 9's 5.14 has `bpf_loop`), where a version number would not.

use std::path::Path;

use crate::kernel::btf::{Btf, VMLINUX};

/// The object built with `bpf_loop` and XDP fragments.
static CURRENT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/checksum-ebpf"));
/// The object built with the feature `legacy-kernels`.
static LEGACY: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/legacy-kernels/checksum-ebpf"));

/// The helpers the current object calls that came last: `bpf_loop` in 5.17 and
/// `bpf_xdp_load_bytes` (with XDP fragments) in 5.18.
const CURRENT_NEEDS: [&str; 2] = ["BPF_FUNC_loop", "BPF_FUNC_xdp_load_bytes"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Current,
    Legacy,
}

impl Object {
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Self::Current => CURRENT,
            Self::Legacy => LEGACY,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Legacy => "legacy-kernels",
        }
    }

    /// The object for the running kernel. A BTF that cannot be read gets `Current`: loading then
    /// fails with the kernel's own reason (and a kernel without BTF is refused before this).
    pub fn for_running_kernel() -> Self {
        match Btf::from_file(Path::new(VMLINUX)) {
            Ok(btf) => Self::for_kernel(&btf),
            Err(e) => {
                log::debug!("choosing the eBPF object: {e:#}; taking the current one");
                Self::Current
            }
        }
    }

    /// `Current` when the kernel knows every helper in `CURRENT_NEEDS`, else `Legacy`.
    pub fn for_kernel(btf: &Btf) -> Self {
        let Some(helpers) = btf.enum_values("bpf_func_id") else {
            return Self::Current;
        };
        let knows = |name: &str| helpers.iter().any(|(n, _)| n == name);
        if CURRENT_NEEDS.iter().all(|name| knows(name)) {
            Self::Current
        } else {
            Self::Legacy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_kernel_gets_the_current_object() {
        // Linux 6.18 on these machines; on a kernel before 5.18 this is expected to fail.
        if !Path::new(VMLINUX).exists() {
            assert!(std::env::var_os("CI").is_none(), "no kernel BTF in CI");
            return;
        }
        assert_eq!(Object::for_running_kernel(), Object::Current);
    }

    #[test]
    fn both_objects_are_built_and_differ() {
        assert!(CURRENT.starts_with(b"\x7fELF"), "current object");
        assert!(LEGACY.starts_with(b"\x7fELF"), "legacy object");
        assert_ne!(CURRENT, LEGACY);
    }
}
