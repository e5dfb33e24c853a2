//! The MAC table of the overlay switch: which link a MAC address lives behind, per VLAN (a
//! [`Station`]: the same MAC in two VLANs is two stations, as in an 802.1Q bridge with
//! independent learning). Entries age out; a station seen behind another link is moved and
//! counted; the table has a fixed capacity so a peer spraying random source MACs cannot grow
//! it without bound.

use crate::wire::ethernet::MacAddr;
use std::collections::HashMap;

/// Time in milliseconds on the caller's monotonic clock.
pub use crate::id::Millis;

/// A MAC address within a VLAN: `vid` is the 802.1Q VLAN id of the frame's (outer) tag, 0 for
/// an untagged or priority-tagged frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Station {
    pub vid: u16,
    pub mac: MacAddr,
}

impl From<MacAddr> for Station {
    /// The untagged station.
    fn from(mac: MacAddr) -> Station {
        Station { vid: 0, mac }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry<P> {
    pub port: P,
    pub updated: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned<P> {
    New,
    Refreshed,
    Moved {
        from: P,
    },
    /// Not learned: the table is full of live entries, or the source is not a unicast MAC.
    Refused,
}

#[derive(Debug)]
pub struct MacTable<P> {
    entries: HashMap<Station, MacEntry<P>>,
    capacity: usize,
    ttl: Millis,
}

impl<P: Copy + Eq> MacTable<P> {
    pub fn new(capacity: usize, ttl: Millis) -> Self {
        MacTable {
            // Allocated once up front so learning never allocates on the forwarding path.
            entries: HashMap::with_capacity(capacity),
            capacity,
            ttl,
        }
    }

    pub fn ttl(&self) -> Millis {
        self.ttl
    }

    /// Records that `mac` was seen behind `port` at `now`.
    pub fn learn(&mut self, mac: impl Into<Station>, port: P, now: Millis) -> Learned<P> {
        let mac = mac.into();
        if mac.mac.is_group() || mac.mac.is_zero() {
            return Learned::Refused;
        }
        if let Some(e) = self.entries.get_mut(&mac) {
            let result = if e.port == port {
                Learned::Refreshed
            } else {
                Learned::Moved { from: e.port }
            };
            e.port = port;
            e.updated = now;
            return result;
        }
        if self.entries.len() >= self.capacity {
            self.expire(now);
            if self.entries.len() >= self.capacity {
                return Learned::Refused;
            }
        }
        self.entries.insert(mac, MacEntry { port, updated: now });
        Learned::New
    }

    /// The port for `mac`, if it was seen within the TTL.
    pub fn lookup(&self, mac: impl Into<Station>, now: Millis) -> Option<P> {
        self.entries
            .get(&mac.into())
            .filter(|e| now.saturating_sub(e.updated) < self.ttl)
            .map(|e| e.port)
    }

    /// The entry for `mac`, live or not yet expired.
    pub fn get(&self, mac: impl Into<Station>) -> Option<&MacEntry<P>> {
        self.entries.get(&mac.into())
    }

    /// Removes `mac`; true if it was there.
    pub fn forget(&mut self, mac: impl Into<Station>) -> bool {
        self.entries.remove(&mac.into()).is_some()
    }

    /// Drops entries older than the TTL; returns how many.
    pub fn expire(&mut self, now: Millis) -> usize {
        let before = self.entries.len();
        let ttl = self.ttl;
        self.entries
            .retain(|_, e| now.saturating_sub(e.updated) < ttl);
        before - self.entries.len()
    }

    /// Drops every entry behind `port` (the link went away); returns how many.
    pub fn remove_port(&mut self, port: P) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.port != port);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Station, &MacEntry<P>)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, n])
    }

    #[test]
    fn learns_and_finds() {
        let mut t = MacTable::new(16, 1000);
        assert_eq!(t.learn(mac(1), 7u32, 0), Learned::New);
        assert_eq!(t.lookup(mac(1), 10), Some(7));
        assert_eq!(t.lookup(mac(2), 10), None);
        assert_eq!(t.learn(mac(1), 7, 500), Learned::Refreshed);
        // Refreshed at 500, so still alive at 1400.
        assert_eq!(t.lookup(mac(1), 1400), Some(7));
    }

    #[test]
    fn ages_out() {
        let mut t = MacTable::new(16, 1000);
        t.learn(mac(1), 1u32, 0);
        t.learn(mac(2), 1u32, 800);
        assert_eq!(t.lookup(mac(1), 1000), None);
        assert_eq!(t.expire(1000), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(mac(2), 1000), Some(1));
    }

    #[test]
    fn moved_mac_is_relearned() {
        let mut t = MacTable::new(16, 1000);
        t.learn(mac(1), 1u32, 0);
        assert_eq!(t.learn(mac(1), 2, 10), Learned::Moved { from: 1 });
        assert_eq!(t.lookup(mac(1), 20), Some(2));
    }

    #[test]
    fn refuses_group_and_zero_sources() {
        let mut t = MacTable::new(16, 1000);
        assert_eq!(t.learn(MacAddr::BROADCAST, 1u32, 0), Learned::Refused);
        assert_eq!(
            t.learn(MacAddr([0x33, 0x33, 0, 0, 0, 1]), 1, 0),
            Learned::Refused
        );
        assert_eq!(t.learn(MacAddr::ZERO, 1, 0), Learned::Refused);
        assert!(t.is_empty());
    }

    #[test]
    fn capacity_is_bounded_and_expired_entries_make_room() {
        let mut t = MacTable::new(2, 1000);
        t.learn(mac(1), 1u32, 0);
        t.learn(mac(2), 1, 0);
        assert_eq!(t.learn(mac(3), 1, 10), Learned::Refused);
        assert_eq!(t.len(), 2);
        assert_eq!(t.learn(mac(3), 1, 1500), Learned::New);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn one_mac_in_two_vlans_is_two_stations() {
        let mut t = MacTable::new(16, 1000);
        let (v10, v20) = (
            Station {
                vid: 10,
                mac: mac(1),
            },
            Station {
                vid: 20,
                mac: mac(1),
            },
        );
        assert_eq!(t.learn(v10, 1u32, 0), Learned::New);
        assert_eq!(t.learn(v20, 2, 0), Learned::New);
        assert_eq!((t.lookup(v10, 1), t.lookup(v20, 1)), (Some(1), Some(2)));
        assert_eq!(t.lookup(mac(1), 1), None);
        assert!(t.forget(v10));
        assert_eq!(t.lookup(v20, 1), Some(2));
    }

    #[test]
    fn remove_port_forgets_its_macs() {
        let mut t = MacTable::new(16, 1000);
        t.learn(mac(1), 1u32, 0);
        t.learn(mac(2), 2, 0);
        t.learn(mac(3), 1, 0);
        assert_eq!(t.remove_port(1), 2);
        assert_eq!(t.lookup(mac(2), 1), Some(2));
        assert_eq!(t.lookup(mac(1), 1), None);
    }
}
