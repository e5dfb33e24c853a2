//! The forwarding decisions of tincan in switch mode (docs/architecture.md, "Forwarding"), without I/O:
//! the caller reads a frame, asks `from_tap` / `from_link` what to do, and does it.

use crate::mactable::{Learned, MacTable, Millis};
use crate::wire::ethernet::{ethertype, peek_header};

/// Where a frame read from the TAP goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapVerdict<P> {
    /// ARP: to the controller only.
    Punt,
    /// To every link, once each.
    Flood(FloodReason),
    /// To this one link.
    Unicast(P),
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodReason {
    Multicast,
    UnknownUnicast,
    /// ARP while the controller is not answering (degraded mode) or while ICC is off.
    Arp,
}

/// What to do with a frame that arrived on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkVerdict {
    /// Write it to the TAP, unchanged. Never to another link (split horizon).
    ToTap,
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Truncated,
    /// A frame from a link whose source MAC is a group address: no real host sends that.
    GroupSource,
}

/// Counters the switch keeps itself; the caller counts I/O.
#[derive(Debug, Default, Clone, Copy)]
pub struct SwitchCounters {
    pub mac_new: u64,
    pub mac_moved: u64,
    pub mac_refused: u64,
    pub unknown_unicast: u64,
    pub multicast: u64,
    pub arp_punted: u64,
    pub arp_flooded: u64,
}

#[derive(Debug)]
pub struct Switch<P> {
    pub macs: MacTable<P>,
    /// ARP goes to the controller (`"icc": true`) instead of being flooded.
    pub punt_arp: bool,
    pub counters: SwitchCounters,
}

impl<P: Copy + Eq> Switch<P> {
    pub fn new(capacity: usize, ttl: Millis) -> Self {
        Switch {
            macs: MacTable::new(capacity, ttl),
            punt_arp: false,
            counters: SwitchCounters::default(),
        }
    }

    /// A frame from the local bridge. `controller_alive` is false when the controller has been
    /// silent past its timeout: ARP is then flooded like any broadcast, so the segment keeps
    /// working without it.
    pub fn from_tap(&mut self, frame: &[u8], controller_alive: bool, now: Millis) -> TapVerdict<P> {
        let Ok((dst, src, etype)) = peek_header(frame) else {
            return TapVerdict::Drop(DropReason::Truncated);
        };
        // A source we had behind a link now speaks from our own bridge: it moved here (a
        // migrated VM). Forget the stale entry so frames for it stop crossing the overlay.
        if self.macs.forget(&src) {
            self.counters.mac_moved += 1;
        }
        if etype == ethertype::ARP {
            if self.punt_arp && controller_alive {
                self.counters.arp_punted += 1;
                return TapVerdict::Punt;
            }
            self.counters.arp_flooded += 1;
            if !dst.is_group() {
                if let Some(p) = self.macs.lookup(&dst, now) {
                    return TapVerdict::Unicast(p);
                }
            }
            return TapVerdict::Flood(FloodReason::Arp);
        }
        if dst.is_group() {
            self.counters.multicast += 1;
            return TapVerdict::Flood(FloodReason::Multicast);
        }
        match self.macs.lookup(&dst, now) {
            Some(p) => TapVerdict::Unicast(p),
            None => {
                self.counters.unknown_unicast += 1;
                TapVerdict::Flood(FloodReason::UnknownUnicast)
            }
        }
    }

    /// A frame that arrived on link `port`: learn its source, then it goes to the TAP.
    pub fn from_link(&mut self, port: P, frame: &[u8], now: Millis) -> LinkVerdict {
        let Ok((_dst, src, _)) = peek_header(frame) else {
            return LinkVerdict::Drop(DropReason::Truncated);
        };
        if src.is_group() {
            return LinkVerdict::Drop(DropReason::GroupSource);
        }
        match self.macs.learn(src, port, now) {
            Learned::New => self.counters.mac_new += 1,
            Learned::Moved { .. } => self.counters.mac_moved += 1,
            Learned::Refused => self.counters.mac_refused += 1,
            Learned::Refreshed => {}
        }
        LinkVerdict::ToTap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6], etype: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&etype.to_be_bytes());
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const BCAST: [u8; 6] = [0xff; 6];

    #[test]
    fn arp_is_punted_while_the_controller_lives_and_flooded_otherwise() {
        let mut s: Switch<u32> = Switch::new(64, 10_000);
        s.punt_arp = true;
        let arp = frame(BCAST, A, ethertype::ARP);
        assert_eq!(s.from_tap(&arp, true, 0), TapVerdict::Punt);
        assert_eq!(
            s.from_tap(&arp, false, 0),
            TapVerdict::Flood(FloodReason::Arp)
        );
        s.punt_arp = false;
        assert_eq!(
            s.from_tap(&arp, true, 0),
            TapVerdict::Flood(FloodReason::Arp)
        );
        assert_eq!(s.counters.arp_punted, 1);
        assert_eq!(s.counters.arp_flooded, 2);
    }

    #[test]
    fn multicast_including_ipv6_nd_is_flooded() {
        let mut s: Switch<u32> = Switch::new(64, 10_000);
        for dst in [
            BCAST,
            [0x01, 0, 0x5e, 0, 0, 1],
            [0x33, 0x33, 0xff, 0, 0, 0x15],
        ] {
            assert_eq!(
                s.from_tap(&frame(dst, A, ethertype::IPV6), true, 0),
                TapVerdict::Flood(FloodReason::Multicast)
            );
        }
    }

    #[test]
    fn unicast_goes_to_the_learned_link_else_floods() {
        let mut s: Switch<u32> = Switch::new(64, 10_000);
        let to_b = frame(B, A, ethertype::IPV4);
        assert_eq!(
            s.from_tap(&to_b, true, 0),
            TapVerdict::Flood(FloodReason::UnknownUnicast)
        );
        assert_eq!(
            s.from_link(3, &frame(A, B, ethertype::IPV4), 5),
            LinkVerdict::ToTap
        );
        assert_eq!(s.from_tap(&to_b, true, 6), TapVerdict::Unicast(3));
        // Aged out: flooded again.
        assert_eq!(
            s.from_tap(&to_b, true, 10_006),
            TapVerdict::Flood(FloodReason::UnknownUnicast)
        );
        assert_eq!(s.counters.unknown_unicast, 2);
    }

    #[test]
    fn link_frames_learn_and_moves_are_counted() {
        let mut s: Switch<u32> = Switch::new(64, 10_000);
        s.from_link(1, &frame(BCAST, B, ethertype::ARP), 0);
        s.from_link(2, &frame(BCAST, B, ethertype::ARP), 1);
        assert_eq!(s.counters.mac_new, 1);
        assert_eq!(s.counters.mac_moved, 1);
        assert_eq!(
            s.macs.lookup(&crate::wire::ethernet::MacAddr(B), 2),
            Some(2)
        );
    }

    #[test]
    fn bad_frames_are_dropped_not_learned() {
        let mut s: Switch<u32> = Switch::new(64, 10_000);
        assert_eq!(
            s.from_link(1, &[0u8; 13], 0),
            LinkVerdict::Drop(DropReason::Truncated)
        );
        assert_eq!(
            s.from_link(1, &frame(A, BCAST, ethertype::IPV4), 0),
            LinkVerdict::Drop(DropReason::GroupSource)
        );
        assert_eq!(
            s.from_tap(&[0u8; 3], true, 0),
            TapVerdict::Drop(DropReason::Truncated)
        );
        assert!(s.macs.is_empty());
    }

    #[test]
    fn a_mac_that_moves_to_our_bridge_is_forgotten() {
        let mut s: Switch<u32> = Switch::new(64, 10_000);
        s.from_link(1, &frame(BCAST, B, ethertype::ARP), 0);
        s.from_tap(&frame(A, B, ethertype::IPV4), true, 1);
        assert_eq!(s.macs.lookup(&crate::wire::ethernet::MacAddr(B), 2), None);
        assert_eq!(s.counters.mac_moved, 1);
    }
}
