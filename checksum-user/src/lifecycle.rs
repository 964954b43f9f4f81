//! Attachments made and undone while running: interfaces and namespaces come and go under a node
//! agent, and each time it must attach or let go. Counted for the summaries and the metrics.

use std::fmt::Write as _;

use serde_json::{Value, json};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Programs attached since start (one per interface and hook).
    pub attached: u64,
    /// Programs detached because their interface was deleted.
    pub detached_interface_gone: u64,
    /// Programs detached because their network namespace was deleted.
    pub detached_namespace_gone: u64,
    /// Network namespaces (given with --netns) that were deleted while audited.
    pub namespaces_gone: u64,
}

impl Lifecycle {
    pub fn detached(&self) -> u64 {
        self.detached_interface_gone + self.detached_namespace_gone
    }

    /// The `attachments` object of a JSON summary; `active` are attached now, `unlisted` went
    /// away too long ago to be listed among the interfaces.
    pub fn json(&self, active: usize, unlisted: u64) -> Value {
        json!({
            "attached": self.attached,
            "active": active,
            "detached_interface_gone": self.detached_interface_gone,
            "detached_namespace_gone": self.detached_namespace_gone,
            "namespaces_gone": self.namespaces_gone,
            "gone_not_listed": unlisted,
        })
    }

    /// A summary line once something was detached under us (nothing to say otherwise).
    pub fn text(&self, active: usize, unlisted: u64) -> Option<String> {
        (self.detached() > 0 || self.namespaces_gone > 0).then(|| {
            let mut line = format!(
                "attachments: {} made, {active} active, {} detached because the interface was deleted, \
                 {} because the network namespace was deleted ({} namespaces)",
                self.attached,
                self.detached_interface_gone,
                self.detached_namespace_gone,
                self.namespaces_gone
            );
            if unlisted > 0 {
                let _ = write!(line, "; {unlisted} gone longer ago are not listed above");
            }
            line + "\n"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_until_something_is_detached() {
        let mut l = Lifecycle {
            attached: 4,
            ..Lifecycle::default()
        };
        assert_eq!(l.text(4, 0), None);
        l.detached_interface_gone = 2;
        let text = l.text(2, 0).unwrap();
        assert!(
            text.starts_with("attachments: 4 made, 2 active, 2 detached"),
            "{text}"
        );
        assert!(!text.contains("not listed"), "{text}");
        assert!(l.text(2, 5).unwrap().contains("5 gone longer ago"));
        assert_eq!(l.json(2, 0)["detached_interface_gone"], 2);
    }
}
