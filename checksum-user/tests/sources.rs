//! The source table of the one loaded object: slots handed out, reused only after every other
//! free one (events of a detached source may still be in the ring buffer and name its slot), a
//! clear error when the table is full, and counters that start from zero.

mod common;

use checksum_common::{Counters, Hook, Kind, SourceKey, source::MAX_SOURCES};
use checksum_testkit::frames::*;
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

/// Counted sources (replay's capture interfaces) keep counters of their own although every test
/// run happens on loopback; the totals still add up, and routing back restores the test-run
/// source's counting.
#[test]
fn counted_sources_split_the_test_runs_counters() {
    if !require_root(module_path!()) {
        return;
    }
    let mut auditor = FrameAuditor::new(false).expect("load");
    let good = v4_frame(&[], UDP, segment(UDP, 64), &[]).bytes;
    let mut bad = v4_frame(&[], TCP, segment(TCP, 32), &[]);
    bad.corrupt_payload();
    let (a, b) = (
        auditor.add_counted_source().expect("a"),
        auditor.add_counted_source().expect("b"),
    );
    auditor.count_as(Some(a)).expect("route to a");
    auditor.audit(&good).expect("run");
    auditor.audit(&good).expect("run");
    auditor.count_as(Some(b)).expect("route to b");
    auditor.audit(&bad.bytes).expect("run");
    let (ca, cb) = (
        auditor.counted_source_counters(a),
        auditor.counted_source_counters(b),
    );
    assert_eq!((ca.packets, cb.packets), (2, 1));
    assert_eq!(ca.mismatch(Kind::Corrupt), 0, "{ca:?}");
    assert_eq!(cb.mismatch(Kind::Corrupt), 1, "{cb:?}");
    auditor.count_as(None).expect("route back");
    auditor.audit(&good).expect("run");
    assert_eq!(auditor.counted_source_counters(a).packets, 2);
    assert_eq!(auditor.counters().packets, 4, "every frame counted once");
    assert_eq!(auditor.unattributed().packets, 0);
}
