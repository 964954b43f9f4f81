//! The network namespaces to audit in, as the command line names them (`NAME`, a path,
//! `pid:PID`), and joining one.

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::PathBuf,
};

use anyhow::{Context as _, Result, bail};

/// A network namespace to audit in: the current one, or one named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// How the user named it (`NAME`, `PATH` or `pid:PID`); empty for the current namespace.
    pub label: String,
    pub path: Option<PathBuf>,
}

impl Namespace {
    pub fn current() -> Self {
        Self {
            label: String::new(),
            path: None,
        }
    }

    /// `NAME` (under /run/netns), a path, or `pid:PID`.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Self::path_of(spec)?;
        match File::open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "network namespace '{spec}' not found ({} does not exist); list named ones with `ip netns list`",
                path.display()
            ),
            Err(e) => bail!(
                "cannot open network namespace '{spec}' ({}): {e}",
                path.display()
            ),
        }
        Ok(Self {
            label: spec.to_owned(),
            path: Some(path),
        })
    }

    /// The namespace file `spec` names, without opening it.
    pub fn path_of(spec: &str) -> Result<PathBuf> {
        Ok(if let Some(pid) = spec.strip_prefix("pid:") {
            let pid: u32 = pid
                .parse()
                .with_context(|| format!("--netns {spec}: pid:PID needs a number"))?;
            PathBuf::from(format!("/proc/{pid}/ns/net"))
        } else if spec.contains('/') {
            PathBuf::from(spec)
        } else {
            PathBuf::from(format!("/run/netns/{spec}"))
        })
    }

    /// How an interface in this namespace is shown: `ns/eth0`, or `eth0` in the current one.
    pub fn display(&self, iface: &str) -> String {
        if self.label.is_empty() {
            iface.to_owned()
        } else {
            format!("{}/{iface}", self.label)
        }
    }

    /// Moves the calling thread into this namespace; returns its identity (none for the current
    /// namespace, which cannot be deleted under us).
    pub(crate) fn enter(&self) -> Result<Option<NsIdentity>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let file = File::open(path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        let meta = file.metadata()?;
        // SAFETY: a valid namespace fd; CLONE_NEWNET only affects this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "joining network namespace {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Some((meta.dev(), meta.ino())))
    }

    /// Whether the name we were given still refers to the namespace we joined: after
    /// `ip netns del` /run/netns/NAME is gone, after the process of `pid:PID` exits so is
    /// /proc/PID/ns/net (or it is another namespace, if the pid was reused).
    pub(crate) fn still_named(&self, id: NsIdentity) -> bool {
        self.path
            .as_ref()
            .is_none_or(|path| std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id))
    }
}

/// A network namespace's identity: the nsfs device and inode of its file.
pub(crate) type NsIdentity = (u64, u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        let own = format!("pid:{}", std::process::id());
        assert!(Namespace::parse(&own).is_ok());
        assert!(Namespace::parse("pid:abc").is_err());
        let err = Namespace::parse("definitely-not-a-netns")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ip netns list"), "{err}");
        assert_eq!(
            Namespace::parse(&own).unwrap().display("eth0"),
            format!("{own}/eth0")
        );
        assert_eq!(Namespace::current().display("eth0"), "eth0");
    }
}
