//! Storm control: the frames a switch floods (broadcast, multicast, unknown unicast) are
//! rate-limited per class, so that a broadcast storm or a loop on one host's bridge cannot fill
//! every link of the overlay and starve the unicast traffic between the others. A token bucket
//! per class, refilled at the class's rate, holding one second's worth; frames beyond it are
//! dropped and counted. Unicast to a known place is never limited here.
//!
//! tincan keeps one [`StormControl`] for what its bridge floods into the overlay, and one per
//! peer for the broadcast and multicast that peer sends us (a peer that does not limit its own
//! floods is limited at every receiver).

use crate::id::Millis;
use crate::wire::ethernet::MacAddr;
use serde::{Deserialize, Serialize};

/// The kinds of flooded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodClass {
    Broadcast,
    Multicast,
    UnknownUnicast,
}

impl FloodClass {
    /// The class of a frame to `dst` that is flooded: broadcast, another group address, or a
    /// unicast address the switch does not know.
    pub fn of(dst: &MacAddr) -> FloodClass {
        if dst.is_broadcast() {
            FloodClass::Broadcast
        } else if dst.is_group() {
            FloodClass::Multicast
        } else {
            FloodClass::UnknownUnicast
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Frames per second each class may flood; 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormRates {
    pub broadcast_pps: u32,
    pub multicast_pps: u32,
    pub unknown_unicast_pps: u32,
}

impl Default for StormRates {
    /// Far above what ARP, neighbour discovery, DHCP and service discovery need on a segment
    /// of hundreds of hosts, far below what a storm sends (a loop runs at line rate).
    fn default() -> StormRates {
        StormRates {
            broadcast_pps: 1_000,
            multicast_pps: 2_000,
            unknown_unicast_pps: 5_000,
        }
    }
}

impl StormRates {
    fn of(&self, class: FloodClass) -> u32 {
        match class {
            FloodClass::Broadcast => self.broadcast_pps,
            FloodClass::Multicast => self.multicast_pps,
            FloodClass::UnknownUnicast => self.unknown_unicast_pps,
        }
    }
}

/// Flooded frames let through and dropped, per class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StormCounters {
    pub storm_passed_broadcast: u64,
    pub storm_passed_multicast: u64,
    pub storm_passed_unknown_unicast: u64,
    pub storm_drop_broadcast: u64,
    pub storm_drop_multicast: u64,
    pub storm_drop_unknown_unicast: u64,
}

impl StormCounters {
    fn count(&mut self, class: FloodClass, passed: bool) {
        let c = match (class, passed) {
            (FloodClass::Broadcast, true) => &mut self.storm_passed_broadcast,
            (FloodClass::Multicast, true) => &mut self.storm_passed_multicast,
            (FloodClass::UnknownUnicast, true) => &mut self.storm_passed_unknown_unicast,
            (FloodClass::Broadcast, false) => &mut self.storm_drop_broadcast,
            (FloodClass::Multicast, false) => &mut self.storm_drop_multicast,
            (FloodClass::UnknownUnicast, false) => &mut self.storm_drop_unknown_unicast,
        };
        *c += 1;
    }

    /// Frames of all classes dropped.
    pub fn dropped(&self) -> u64 {
        self.storm_drop_broadcast + self.storm_drop_multicast + self.storm_drop_unknown_unicast
    }
}

/// One token bucket per class.
#[derive(Debug, Clone)]
pub struct StormControl {
    rates: StormRates,
    /// Tokens (in thousandths of a frame, so that a millisecond's refill is exact) and when
    /// the bucket was last refilled.
    buckets: [(u64, Millis); 3],
    pub counters: StormCounters,
}

impl StormControl {
    /// Full buckets at `now`.
    pub fn new(rates: StormRates, now: Millis) -> StormControl {
        let full = |class| u64::from(rates.of(class)) * 1_000;
        StormControl {
            rates,
            buckets: [
                (full(FloodClass::Broadcast), now),
                (full(FloodClass::Multicast), now),
                (full(FloodClass::UnknownUnicast), now),
            ],
            counters: StormCounters::default(),
        }
    }

    pub fn rates(&self) -> StormRates {
        self.rates
    }

    /// New rates from now on (buckets start full).
    pub fn set_rates(&mut self, rates: StormRates, now: Millis) {
        let counters = self.counters;
        *self = StormControl::new(rates, now);
        self.counters = counters;
    }

    /// Whether a frame of `class` may be flooded at `now`; counted either way.
    pub fn allow(&mut self, class: FloodClass, now: Millis) -> bool {
        let rate = u64::from(self.rates.of(class));
        let passed = rate == 0 || {
            let (tokens, last) = &mut self.buckets[class.index()];
            // A rate of r frames per second is r thousandths of a frame per millisecond; the
            // bucket holds one second's worth.
            let refill = now.saturating_sub(*last).saturating_mul(rate);
            *tokens = tokens.saturating_add(refill).min(rate * 1_000);
            *last = now.max(*last);
            if *tokens >= 1_000 {
                *tokens -= 1_000;
                true
            } else {
                false
            }
        };
        self.counters.count(class, passed);
        passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classes_follow_the_destination() {
        assert_eq!(
            FloodClass::of(&mac("ff:ff:ff:ff:ff:ff")),
            FloodClass::Broadcast
        );
        assert_eq!(
            FloodClass::of(&mac("33:33:ff:00:00:01")),
            FloodClass::Multicast
        );
        assert_eq!(
            FloodClass::of(&mac("01:00:5e:00:00:fb")),
            FloodClass::Multicast
        );
        assert_eq!(
            FloodClass::of(&mac("02:00:00:00:00:01")),
            FloodClass::UnknownUnicast
        );
    }

    #[test]
    fn a_storm_gets_its_rate_after_a_burst_of_one_second() {
        let rates = StormRates {
            broadcast_pps: 100,
            multicast_pps: 0,
            unknown_unicast_pps: 10,
        };
        let mut s = StormControl::new(rates, 0);
        // 10 s of broadcast at 10,000 frames per second: the burst, then 100 per second.
        let mut passed = 0;
        for ms in 0..10_000 {
            for _ in 0..10 {
                passed += u64::from(s.allow(FloodClass::Broadcast, ms));
            }
        }
        assert!((1_000..=1_101).contains(&passed), "{passed}");
        assert_eq!(s.counters.storm_passed_broadcast, passed);
        assert_eq!(s.counters.storm_drop_broadcast, 100_000 - passed);
        // Another class has its own bucket; 0 is no limit.
        assert!(s.allow(FloodClass::UnknownUnicast, 10_000));
        for _ in 0..100_000 {
            assert!(s.allow(FloodClass::Multicast, 10_000));
        }
        assert_eq!(s.counters.storm_drop_multicast, 0);
    }

    #[test]
    fn traffic_under_the_rate_always_passes_and_time_going_back_is_harmless() {
        let mut s = StormControl::new(StormRates::default(), 5_000);
        for ms in (5_000..65_000).step_by(2) {
            assert!(s.allow(FloodClass::Broadcast, ms), "at {ms}");
        }
        assert!(s.allow(FloodClass::Broadcast, 1_000));
        assert_eq!(s.counters.dropped(), 0);
        s.set_rates(
            StormRates {
                broadcast_pps: 1,
                ..StormRates::default()
            },
            70_000,
        );
        assert!(s.allow(FloodClass::Broadcast, 70_000));
        assert!(!s.allow(FloodClass::Broadcast, 70_001));
        assert_eq!(s.counters.storm_drop_broadcast, 1);
        assert!(
            s.counters.storm_passed_broadcast > 30_000,
            "kept across set_rates"
        );
    }
}
