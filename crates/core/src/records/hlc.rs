//! A hybrid logical clock for last-writer-wins preferences. A stamp is (wall ms,
//! counter, actor), compared in that order. A new local stamp is later than the
//! device's clock *and* every stamp it has seen (max(local, remote)), so a device
//! whose clock runs behind still writes "after" what it has already seen, and a
//! clock running ahead only drags the others' wall part forward, never backward.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hlc {
    pub wall: u64,
    pub counter: u32,
    pub actor: String,
}

impl Ord for Hlc {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.wall, self.counter, &self.actor).cmp(&(other.wall, other.counter, &other.actor))
    }
}

impl PartialOrd for Hlc {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hlc {
    /// The next local stamp: `now_ms` from the device clock, `seen` the latest stamp
    /// this device knows of (its own or pulled).
    pub(crate) fn tick(now_ms: u64, seen: Option<&Hlc>, actor: &str) -> Hlc {
        match seen {
            Some(s) if s.wall >= now_ms => Hlc {
                wall: s.wall,
                counter: s.counter.saturating_add(1),
                actor: actor.to_owned(),
            },
            _ => Hlc {
                wall: now_ms,
                counter: 0,
                actor: actor.to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_clock_still_writes_after_what_it_saw() {
        // The other device's clock is an hour ahead.
        let remote = Hlc::tick(10_000_000, None, "b");
        let local = Hlc::tick(10_000_000 - 3_600_000, Some(&remote), "a");
        assert!(local > remote);
        assert_eq!(local.wall, remote.wall);
        let again = Hlc::tick(0, Some(&local), "a");
        assert!(again > local);
    }

    #[test]
    fn the_clock_moves_on_with_real_time_and_ties_break_by_actor() {
        let seen = Hlc::tick(100, None, "a");
        let next = Hlc::tick(200, Some(&seen), "a");
        assert_eq!((next.wall, next.counter), (200, 0));
        let x = Hlc::tick(5, None, "a");
        let y = Hlc::tick(5, None, "b");
        assert!(y > x && x != y);
    }
}
