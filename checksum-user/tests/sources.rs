//! The source table of the one loaded object: slots handed out, reused only after every other
//! free one (events of a detached source may still be in the ring buffer and name its slot), a
//! clear error when the table is full, and counters that start from zero.

mod common;

use checksum_common::{Counters, Hook, SourceKey, source::MAX_SOURCES};
use checksum_user::testkit::frames::*;
use checksum_user::{
    kernel::loader::{LoadOptions, Loaded},
    kernel::testrun::FrameAuditor,
};
use common::require_root;

fn load() -> Option<Loaded> {
    if !require_root(module_path!()) {
        return None;
    }
    Some(Loaded::load(&LoadOptions::default()).expect("load the object"))
}

#[test]
fn freed_slots_are_reused_last() {
    let Some(mut loaded) = load() else { return };
    let a = SourceKey::new(0, 1000, Hook::TcIngress);
    let b = SourceKey::new(0, 1001, Hook::TcIngress);
    let first = loaded.add_source(a, 0).expect("add a");
    assert_ne!(first, 0, "slot 0 is the unattributed source's");
    loaded.remove_source(&a);
    let second = loaded.add_source(b, 0).expect("add b");
    assert_ne!(second, first, "a freed slot goes to the back of the queue");
    // The same key again replaces its source rather than taking a second slot.
    let again = loaded.add_source(b, 0).expect("add b again");
    loaded.remove_source(&b);
    assert_eq!(loaded.source_counters(&b), Counters::default());
    assert_ne!(again, 0);
}

#[test]
fn a_full_table_is_a_clear_error() {
    let Some(mut loaded) = load() else { return };
    for i in 1..MAX_SOURCES {
        loaded
            .add_source(SourceKey::new(0, i, Hook::Xdp), 0)
            .unwrap_or_else(|e| panic!("source {i}: {e:#}"));
    }
    let err = loaded
        .add_source(SourceKey::new(0, MAX_SOURCES, Hook::Xdp), 0)
        .expect_err("one more than the table holds");
    assert!(err.to_string().contains("the most one run can"), "{err:#}");
    // Removing one makes room again.
    loaded.remove_source(&SourceKey::new(0, 1, Hook::Xdp));
    loaded
        .add_source(SourceKey::new(0, MAX_SOURCES, Hook::Xdp), 0)
        .expect("room after a removal");
}

/// Frames of a device that is not a source are counted under the unattributed slot, never lost.
#[test]
fn frames_of_unknown_sources_are_counted_as_unattributed() {
    if !require_root(module_path!()) {
        return;
    }
    let mut auditor = FrameAuditor::new(false).expect("load");
    let frame = v4_frame(&[], UDP, segment(UDP, 64), &[]).bytes;
    auditor.audit(&frame).expect("run");
    let counted = auditor.counters();
    assert_eq!(counted.packets, 1);
    // The test-run sources are loopback's; with them gone the same frame is unattributed.
    auditor.forget_sources();
    auditor.audit(&frame).expect("run");
    assert_eq!(auditor.unattributed().packets, 1);
    assert_eq!(
        auditor.counters().packets,
        1,
        "only the unattributed frame is left"
    );
}
