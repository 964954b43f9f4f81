//! Aggregates mismatches by interface, hook, layer, flow and kind, with a bound on memory: when a
//! new key would exceed `max_keys`, the least recently seen rows make room (a tenth of the table
//! at a time, so eviction costs O(log n) per new key amortized). Evicted rows are counted, with
//! their mismatches, so totals still add up.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use checksum_common::{Hook, Kind, Layer, Status, event::IpSummed};

use crate::{
    analysis::severity::Severity,
    model::{Flow, Verdict},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Where it was seen: an attachment (interface and hook) in live mode, 0 for a replay.
    pub source: u32,
    pub hook: Hook,
    pub layer: Layer,
    pub flow: Flow,
    pub kind: Kind,
}

impl Key {
    /// The row a verdict seen at `source` belongs to.
    pub fn of(source: u32, v: &Verdict) -> Self {
        Self {
            source,
            hook: v.hook,
            layer: v.layer,
            flow: v.flow,
            kind: v.kind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The latest got/want pair seen.
    pub got: u16,
    pub want: u16,
    /// Judged when the row's first mismatch was taken in, from where it was seen.
    pub severity: Severity,
    /// The skb's checksum state of the row's first mismatch (`None` without one: XDP, replay).
    pub state: Option<IpSummed>,
    /// The tunnel and level of the row's first mismatch, as the metrics label it
    /// (`Tunnel::label`).
    pub encap: &'static str,
}

/// A row and when it was last updated, in `Aggregator::seq` ticks (kernel timestamps are not
/// ordered across CPUs, and a replay's may be anything).
#[derive(Debug)]
struct Slot {
    entry: Entry,
    seen: u64,
}

/// What eviction has removed from the table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub rows: u64,
    /// The mismatches those rows had counted (still in the kernel counters).
    pub mismatches: u64,
}

#[derive(Debug)]
pub struct Aggregator {
    entries: HashMap<Key, Slot, RandomState>,
    max_keys: usize,
    seq: u64,
    pub evicted: Evicted,
}

pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl Default for Aggregator {
    fn default() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }
}

impl Aggregator {
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            entries: HashMap::default(),
            max_keys: max_keys.max(1),
            seq: 0,
            evicted: Evicted::default(),
        }
    }

    /// Adds a mismatch seen at `source`, of `severity` there; returns true when it opened a new
    /// row. Other verdicts are ignored.
    pub fn add(&mut self, source: u32, v: &Verdict, severity: Severity) -> bool {
        if v.status != Status::Bad {
            return false;
        }
        let key = Key::of(source, v);
        self.seq += 1;
        if let Some(slot) = self.entries.get_mut(&key) {
            let e = &mut slot.entry;
            e.count += 1;
            e.first_ns = e.first_ns.min(v.timestamp_ns);
            e.last_ns = e.last_ns.max(v.timestamp_ns);
            e.got = v.got;
            e.want = v.want;
            slot.seen = self.seq;
            return false;
        }
        if self.entries.len() >= self.max_keys {
            self.evict_oldest();
        }
        let entry = Entry {
            count: 1,
            first_ns: v.timestamp_ns,
            last_ns: v.timestamp_ns,
            got: v.got,
            want: v.want,
            severity,
            state: v.skb.map(|skb| skb.ip_summed),
            encap: crate::model::Tunnel::label(v.encap.as_ref()),
        };
        let seen = self.seq;
        self.entries.insert(key, Slot { entry, seen });
        true
    }

    /// Removes the least recently seen tenth of the table (at least one row).
    fn evict_oldest(&mut self) {
        let n = (self.max_keys / 10).max(1);
        let mut seen: Vec<u64> = self.entries.values().map(|s| s.seen).collect();
        let (_, &mut cutoff, _) = seen.select_nth_unstable(n - 1);
        // `seen` values are unique, so exactly n rows are at or below the cutoff.
        let evicted = &mut self.evicted;
        self.entries.retain(|_, slot| {
            let keep = slot.seen > cutoff;
            if !keep {
                evicted.rows += 1;
                evicted.mismatches += slot.entry.count;
            }
            keep
        });
    }

    /// Rows, most frequent first (ties by key for a stable order).
    pub fn rows(&self) -> Vec<(Key, Entry)> {
        let mut rows: Vec<_> = self.entries.iter().map(|(k, s)| (*k, s.entry)).collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        rows
    }

    /// How many mismatches `key` has had so far.
    pub fn count(&self, key: &Key) -> u64 {
        self.entries.get(key).map_or(0, |s| s.entry.count)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use checksum_common::event::Direction;

    use super::*;

    /// A bad TCP verdict of flow 10.0.0.1:`sport` -> 10.0.0.2:80 (also for analysis tests).
    pub(crate) fn verdict(sport: u16, kind: Kind, ts: u64) -> Verdict {
        Verdict {
            timestamp_ns: ts,
            slot: 0,
            ifindex: 3,
            hook: Hook::Xdp,
            direction: Direction::Ingress,
            layer: Layer::Tcp,
            status: Status::Bad,
            kind,
            flow: Flow {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                ports: Some((sport, 80)),
                protocol: 6,
            },
            got: 1,
            want: 2,
            pseudo: 0,
            l4_len: 20,
            ip_id: 0,
            tcp_seq: 0,
            tcp_ack: 0,
            flow_label: 0,
            tracked: false,
            skb: None,
            encap: None,
        }
    }

    #[test]
    fn groups_by_flow_and_kind() {
        let mut a = Aggregator::default();
        assert!(a.add(3, &verdict(1, Kind::Corrupt, 10), Severity::Problem));
        assert!(!a.add(3, &verdict(1, Kind::Corrupt, 5), Severity::Problem));
        assert!(a.add(3, &verdict(1, Kind::Zero, 7), Severity::Problem));
        let rows = a.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.count, 2);
        assert_eq!((rows[0].1.first_ns, rows[0].1.last_ns), (5, 10));
    }

    #[test]
    fn ignores_verdicts_that_are_not_mismatches() {
        let mut a = Aggregator::default();
        let mut v = verdict(1, Kind::Match, 1);
        v.status = Status::Ok;
        assert!(!a.add(3, &v, Severity::Problem));
        assert!(a.is_empty());
    }

    #[test]
    fn memory_is_bounded_and_evictions_counted() {
        let mut a = Aggregator::with_max_keys(2);
        for port in 0..5 {
            a.add(3, &verdict(port, Kind::Corrupt, 1), Severity::Problem);
        }
        assert_eq!(a.len(), 2);
        assert_eq!(
            a.evicted,
            Evicted {
                rows: 3,
                mismatches: 3
            }
        );
        let total: u64 = a.rows().iter().map(|r| r.1.count).sum();
        assert_eq!(
            total + a.evicted.mismatches,
            5,
            "nothing lost without being counted"
        );
    }

    #[test]
    fn the_least_recently_seen_rows_are_evicted() {
        let mut a = Aggregator::with_max_keys(20);
        for port in 0..20 {
            a.add(3, &verdict(port, Kind::Corrupt, 1), Severity::Problem);
        }
        // Port 0 is the oldest row but keeps being seen; ports 1 and 2 are the stalest.
        a.add(3, &verdict(0, Kind::Corrupt, 2), Severity::Problem);
        a.add(3, &verdict(100, Kind::Corrupt, 3), Severity::Problem);
        let ports: Vec<u16> = a.rows().iter().map(|r| r.0.flow.ports.unwrap().0).collect();
        assert!(ports.contains(&0) && ports.contains(&100), "{ports:?}");
        assert!(!ports.contains(&1) && !ports.contains(&2), "{ports:?}");
        assert_eq!(
            a.evicted,
            Evicted {
                rows: 2,
                mismatches: 2
            }
        );
        assert_eq!(a.count(&Key::of(3, &verdict(0, Kind::Corrupt, 0))), 2);
    }
}
