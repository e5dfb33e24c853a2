//! The forwarding decisions of tincan in switch mode (docs/architecture.md, "Forwarding"), without I/O:
//! the caller reads a frame, asks `from_tap` / `from_link` what to do, and does it.
//!
//! A peer speaks only for the hosts behind it. A MAC address is bound to where it was first
//! seen, the local bridge or one link, and a frame from another link with that source is
//! dropped, not learned, while the binding is held. The migration rule: a MAC moves to another
//! link only once its binding has been silent for `hold` (the host stopped sending where it
//! was), or at once when the old link goes down or is trimmed, or when the controller releases
//! the binding (`release`: the host left our bridge, as the bridge's forwarding database says,
//! or the peer it was bound to withdrew it; docs/architecture.md, "Moves and conflicts"); a
//! MAC moves to our own bridge at once, since what the bridge says is first-hand. A time-based rule is the one a switch can
//! check by itself: a peer can make any claim, but it cannot make a host that still talks from
//! its real place go quiet. The price is that a host that migrates between two remote peers is
//! heard from its new place only once its old binding has been silent for `hold`.

use crate::mactable::{Learned, MacTable, Millis, Station};
use crate::wire::ethernet::{ethertype, peek_header, MacAddr};

/// How long a MAC stays bound to the local bridge, or to one link, after its last frame there:
/// meanwhile another link cannot claim it.
pub const CLAIM_HOLD: Millis = 60_000;
/// MACs of the local bridge remembered at most; beyond that, new ones are not protected until
/// old ones age out.
const LOCAL_MACS: usize = 1024;

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
    /// A frame from a link whose source MAC was seen on the local bridge within the hold.
    LocalSource,
    /// A frame from a link whose source MAC is bound to another link, used within the hold.
    HeldByOtherLink,
}

/// Counters the switch keeps itself; the caller counts I/O.
#[derive(Debug, Default, Clone, Copy)]
pub struct SwitchCounters {
    pub mac_new: u64,
    pub mac_moved: u64,
    pub mac_refused: u64,
    /// Frames from a link with the source MAC of a host on our bridge (dropped).
    pub refused_local_source: u64,
    /// Frames from a link with a source MAC bound to another link (dropped).
    pub refused_held_mac: u64,
    pub unknown_unicast: u64,
    pub multicast: u64,
    pub arp_punted: u64,
    pub arp_flooded: u64,
}

#[derive(Debug)]
pub struct Switch<P> {
    pub macs: MacTable<P>,
    /// Sources of frames read from the TAP: the hosts on our own bridge, for `hold`. Per MAC in
    /// any VLAN (as untagged stations), since the bridge may not be VLAN-aware.
    pub local: MacTable<()>,
    /// See [`CLAIM_HOLD`].
    pub hold: Millis,
    /// ARP goes to the controller (`"icc": true`) instead of being flooded.
    pub punt_arp: bool,
    pub counters: SwitchCounters,
}

impl<P: Copy + Eq> Switch<P> {
    pub fn new(capacity: usize, ttl: Millis) -> Self {
        Switch {
            macs: MacTable::new(capacity, ttl),
            local: MacTable::new(LOCAL_MACS.min(capacity), CLAIM_HOLD),
            hold: CLAIM_HOLD,
            punt_arp: false,
            counters: SwitchCounters::default(),
        }
    }

    /// A frame from the local bridge. `controller_alive` is false when the controller has been
    /// silent past its timeout: ARP is then flooded like any broadcast, so the segment keeps
    /// working without it.
    pub fn from_tap(&mut self, frame: &[u8], controller_alive: bool, now: Millis) -> TapVerdict<P> {
        let Ok((dst, src, etype)) = stations(frame) else {
            return TapVerdict::Drop(DropReason::Truncated);
        };
        // A source we had behind a link now speaks from our own bridge: it moved here (a
        // migrated VM). Forget the stale entry so frames for it stop crossing the overlay.
        if self.macs.forget(src) {
            self.counters.mac_moved += 1;
        }
        // Group and zero sources are refused by the table itself. Kept per MAC, whatever the
        // VLAN: a bridge that is not VLAN-aware learns a MAC on one port for all VLANs, so a
        // frame from a link with a local host's MAC in any VLAN would move that host.
        self.local.learn(src.mac, (), now);
        // ARP, untagged or with one 802.1Q tag (the controller keeps a table per VLAN).
        if etype == ethertype::ARP
            || (dst.vid != 0 && inner_ethertype(frame) == Some(ethertype::ARP))
        {
            if self.punt_arp && controller_alive {
                self.counters.arp_punted += 1;
                return TapVerdict::Punt;
            }
            self.counters.arp_flooded += 1;
            if !dst.mac.is_group() {
                if let Some(p) = self.macs.lookup(dst, now) {
                    return TapVerdict::Unicast(p);
                }
            }
            return TapVerdict::Flood(FloodReason::Arp);
        }
        if dst.mac.is_group() {
            self.counters.multicast += 1;
            return TapVerdict::Flood(FloodReason::Multicast);
        }
        match self.macs.lookup(dst, now) {
            Some(p) => TapVerdict::Unicast(p),
            None => {
                self.counters.unknown_unicast += 1;
                TapVerdict::Flood(FloodReason::UnknownUnicast)
            }
        }
    }

    /// A frame that arrived on link `port`: learn its source, then it goes to the TAP.
    pub fn from_link(&mut self, port: P, frame: &[u8], now: Millis) -> LinkVerdict {
        let Ok((_dst, src, _)) = stations(frame) else {
            return LinkVerdict::Drop(DropReason::Truncated);
        };
        if src.mac.is_group() {
            return LinkVerdict::Drop(DropReason::GroupSource);
        }
        if let Err(reason) = self.may_claim(src, port, now) {
            return LinkVerdict::Drop(reason);
        }
        match self.macs.learn(src, port, now) {
            Learned::New => self.counters.mac_new += 1,
            Learned::Moved { .. } => self.counters.mac_moved += 1,
            Learned::Refused => self.counters.mac_refused += 1,
            Learned::Refreshed => {}
        }
        LinkVerdict::ToTap
    }

    /// Binds `mac` to link `port` for the controller (`set_mac`): refused for a MAC on our own
    /// bridge, like a frame; the controller has already decided between peers.
    pub fn program(&mut self, mac: impl Into<Station>, port: P, now: Millis) -> Learned<P> {
        let mac = mac.into();
        if self.local.lookup(mac.mac, now).is_some() {
            self.counters.refused_local_source += 1;
            return Learned::Refused;
        }
        self.macs.learn(mac, port, now)
    }

    /// Drops a binding of `mac` at once, for the controller (`release_mac`): the local one
    /// (`port` none: the host left our bridge, so a link may now speak for it), or the one to
    /// link `port` (that peer withdrew it; a binding to another link stays). True if one went.
    pub fn release(&mut self, mac: impl Into<Station>, port: Option<P>) -> bool {
        let mac = mac.into();
        match port {
            None => self.local.forget(mac.mac),
            Some(p) if self.macs.get(mac).is_some_and(|e| e.port == p) => self.macs.forget(mac),
            Some(_) => false,
        }
    }

    /// Whether `mac` was seen on the local bridge within the hold.
    pub fn is_local(&self, mac: &MacAddr, now: Millis) -> bool {
        self.local.lookup(*mac, now).is_some()
    }

    /// Whether link `port` may speak for `mac` (see the module's migration rule).
    fn may_claim(&mut self, mac: Station, port: P, now: Millis) -> Result<(), DropReason> {
        if self.local.lookup(mac.mac, now).is_some() {
            self.counters.refused_local_source += 1;
            return Err(DropReason::LocalSource);
        }
        if let Some(e) = self.macs.get(mac) {
            if e.port != port && now.saturating_sub(e.updated) < self.hold {
                self.counters.refused_held_mac += 1;
                return Err(DropReason::HeldByOtherLink);
            }
        }
        Ok(())
    }

    /// Ages out MAC entries and local bindings; returns how many MAC entries went.
    pub fn expire(&mut self, now: Millis) -> usize {
        self.local.expire(now);
        self.macs.expire(now)
    }
}

/// The frame's destination and source as stations of the VLAN of its outer 802.1Q or 802.1ad
/// tag (0 when untagged), and its outer EtherType. A tag cut short is a truncated frame.
fn stations(frame: &[u8]) -> Result<(Station, Station, u16), ()> {
    let (dst, src, etype) = peek_header(frame).map_err(|_| ())?;
    let vid = match etype {
        ethertype::VLAN | QINQ => {
            let tci = frame.get(14..16).ok_or(())?;
            u16::from_be_bytes([tci[0], tci[1]]) & 0x0fff
        }
        _ => 0,
    };
    let at = |mac| Station { vid, mac };
    Ok((at(dst), at(src), etype))
}

/// The EtherType after one 802.1Q tag.
fn inner_ethertype(frame: &[u8]) -> Option<u16> {
    let b = frame.get(16..18)?;
    (frame[12..14] == ethertype::VLAN.to_be_bytes()).then(|| u16::from_be_bytes([b[0], b[1]]))
}

/// 802.1ad (the outer tag of QinQ).
const QINQ: u16 = 0x88a8;

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
    fn link_frames_learn_and_moves_after_the_hold_are_counted() {
        let mut s: Switch<u32> = Switch::new(64, 300_000);
        s.from_link(1, &frame(BCAST, B, ethertype::ARP), 0);
        // Link 1 has been silent from B for the whole hold: B moved behind link 2.
        assert_eq!(
            s.from_link(2, &frame(BCAST, B, ethertype::ARP), CLAIM_HOLD),
            LinkVerdict::ToTap
        );
        assert_eq!(s.counters.mac_new, 1);
        assert_eq!(s.counters.mac_moved, 1);
        assert_eq!(s.macs.lookup(MacAddr(B), CLAIM_HOLD + 1), Some(2));
    }

    #[test]
    fn a_frame_from_a_link_with_the_source_of_a_local_host_is_dropped_not_learned() {
        let mut s: Switch<u32> = Switch::new(64, 300_000);
        // A speaks on our bridge.
        s.from_tap(&frame(BCAST, A, ethertype::IPV4), true, 0);
        // A peer sends a frame claiming to be A: it never reaches the bridge, which would
        // otherwise move A onto the TAP.
        assert_eq!(
            s.from_link(1, &frame(BCAST, A, ethertype::ARP), 10),
            LinkVerdict::Drop(DropReason::LocalSource)
        );
        assert_eq!(s.macs.lookup(MacAddr(A), 11), None);
        assert_eq!(s.counters.refused_local_source, 1);
        // A keeps talking locally: still refused long after the first frame.
        s.from_tap(&frame(B, A, ethertype::IPV4), true, 50_000);
        assert_eq!(
            s.from_link(1, &frame(BCAST, A, ethertype::ARP), 100_000),
            LinkVerdict::Drop(DropReason::LocalSource)
        );
        // A left our bridge (silent here for the hold): it may now live behind a link.
        assert_eq!(
            s.from_link(1, &frame(BCAST, A, ethertype::ARP), 50_000 + CLAIM_HOLD),
            LinkVerdict::ToTap
        );
        assert_eq!(s.macs.lookup(MacAddr(A), 50_000 + CLAIM_HOLD), Some(1));
    }

    #[test]
    fn a_mac_bound_to_one_link_is_not_taken_by_another_while_it_is_used() {
        let mut s: Switch<u32> = Switch::new(64, 300_000);
        s.from_link(1, &frame(BCAST, B, ethertype::ARP), 0);
        assert_eq!(
            s.from_link(2, &frame(A, B, ethertype::IPV4), 1),
            LinkVerdict::Drop(DropReason::HeldByOtherLink)
        );
        // The owner keeps using it; the other link keeps being refused.
        s.from_link(1, &frame(A, B, ethertype::IPV4), 40_000);
        assert_eq!(
            s.from_link(2, &frame(A, B, ethertype::IPV4), 70_000),
            LinkVerdict::Drop(DropReason::HeldByOtherLink)
        );
        assert_eq!(s.macs.lookup(MacAddr(B), 70_001), Some(1));
        assert_eq!(s.counters.refused_held_mac, 2);
        assert_eq!(s.counters.mac_moved, 0);
        // Unicast to B still goes to its owner.
        assert_eq!(
            s.from_tap(&frame(B, A, ethertype::IPV4), true, 70_002),
            TapVerdict::Unicast(1)
        );
    }

    #[test]
    fn a_link_that_went_down_releases_its_macs_at_once() {
        let mut s: Switch<u32> = Switch::new(64, 300_000);
        s.from_link(1, &frame(BCAST, B, ethertype::ARP), 0);
        assert_eq!(s.macs.remove_port(1), 1);
        assert_eq!(
            s.from_link(2, &frame(BCAST, B, ethertype::ARP), 1),
            LinkVerdict::ToTap
        );
        assert_eq!(s.macs.lookup(MacAddr(B), 2), Some(2));
    }

    #[test]
    fn the_controller_cannot_program_a_local_mac_behind_a_link() {
        let mut s: Switch<u32> = Switch::new(64, 300_000);
        s.from_tap(&frame(BCAST, A, ethertype::ARP), false, 0);
        assert_eq!(s.program(MacAddr(A), 1, 5), Learned::Refused);
        assert_eq!(s.macs.lookup(MacAddr(A), 6), None);
        assert_eq!(s.program(MacAddr(B), 1, 5), Learned::New);
        assert!(s.is_local(&MacAddr(A), 6) && !s.is_local(&MacAddr(B), 6));
    }

    #[test]
    fn a_released_mac_may_be_claimed_by_a_link_at_once() {
        let mut s: Switch<u32> = Switch::new(64, 300_000);
        s.from_tap(&frame(BCAST, A, ethertype::ARP), true, 0);
        s.from_link(1, &frame(BCAST, B, ethertype::ARP), 0);
        // A left our bridge (the controller checked): link 2 may speak for it now.
        assert!(s.release(MacAddr(A), None));
        assert_eq!(
            s.from_link(2, &frame(BCAST, A, ethertype::ARP), 10),
            LinkVerdict::ToTap
        );
        assert_eq!(s.macs.lookup(MacAddr(A), 11), Some(2));
        // Link 2 cannot release link 1's binding; link 1 can.
        assert!(!s.release(MacAddr(B), Some(2)));
        assert_eq!(s.macs.lookup(MacAddr(B), 11), Some(1));
        assert!(s.release(MacAddr(B), Some(1)));
        assert_eq!(
            s.from_link(2, &frame(BCAST, B, ethertype::ARP), 12),
            LinkVerdict::ToTap
        );
        assert_eq!(s.macs.lookup(MacAddr(B), 13), Some(2));
    }

    fn tagged(dst: [u8; 6], src: [u8; 6], vid: u16, etype: u16) -> Vec<u8> {
        let mut f = frame(dst, src, ethertype::VLAN);
        f.splice(14..14, [(vid >> 8) as u8, vid as u8]);
        f.splice(16..16, etype.to_be_bytes());
        f
    }

    #[test]
    fn one_mac_in_two_vlans_behind_two_links_is_learned_per_vlan() {
        let mut s: Switch<u32> = Switch::new(64, 300_000);
        // A trunk host with one MAC in VLAN 10 behind link 1 and in VLAN 20 behind link 2.
        for (vid, link) in [(10, 1), (20, 2)] {
            assert_eq!(
                s.from_link(link, &tagged(BCAST, B, vid, ethertype::IPV4), 0),
                LinkVerdict::ToTap
            );
        }
        assert_eq!(s.counters.refused_held_mac, 0);
        for (vid, link) in [(10, 1), (20, 2)] {
            assert_eq!(
                s.from_tap(&tagged(B, A, vid, ethertype::IPV4), true, 1),
                TapVerdict::Unicast(link)
            );
        }
        // Untagged, B is unknown; priority-tagged (VLAN 0) frames are untagged ones.
        assert_eq!(
            s.from_tap(&frame(B, A, ethertype::IPV4), true, 2),
            TapVerdict::Flood(FloodReason::UnknownUnicast)
        );
        s.from_link(3, &tagged(BCAST, B, 0, ethertype::IPV4), 3);
        assert_eq!(
            s.from_tap(&frame(B, A, ethertype::IPV4), true, 4),
            TapVerdict::Unicast(3)
        );
        // Within one VLAN the hold still applies.
        assert_eq!(
            s.from_link(2, &tagged(BCAST, B, 10, ethertype::IPV4), 5),
            LinkVerdict::Drop(DropReason::HeldByOtherLink)
        );
        // A tagged ARP goes to the controller like an untagged one (not priority-tagged).
        s.punt_arp = true;
        assert_eq!(
            s.from_tap(&tagged(BCAST, A, 10, ethertype::ARP), true, 6),
            TapVerdict::Punt
        );
        assert_eq!(
            s.from_tap(&tagged(BCAST, A, 0, ethertype::ARP), true, 6),
            TapVerdict::Flood(FloodReason::Multicast)
        );
        // A cut tag is a truncated frame.
        assert_eq!(
            s.from_link(1, &tagged(BCAST, B, 10, ethertype::IPV4)[..15], 7),
            LinkVerdict::Drop(DropReason::Truncated)
        );
    }

    #[test]
    fn a_local_mac_is_refused_from_links_in_every_vlan() {
        let mut s: Switch<u32> = Switch::new(64, 300_000);
        // A on our bridge in VLAN 10: a bridge that is not VLAN-aware would move it onto the
        // TAP for a frame with its MAC in any VLAN.
        s.from_tap(&tagged(BCAST, A, 10, ethertype::IPV4), true, 0);
        for vid in [10, 20] {
            assert_eq!(
                s.from_link(1, &tagged(BCAST, A, vid, ethertype::IPV4), 1),
                LinkVerdict::Drop(DropReason::LocalSource)
            );
        }
        assert_eq!(
            s.from_link(1, &frame(BCAST, A, ethertype::IPV4), 1),
            LinkVerdict::Drop(DropReason::LocalSource)
        );
        assert!(s.is_local(&MacAddr(A), 2));
        // Nor may the controller program it behind a link in another VLAN.
        let in_20 = Station {
            vid: 20,
            mac: MacAddr(A),
        };
        assert_eq!(s.program(in_20, 1, 3), Learned::Refused);
        assert_eq!(s.macs.lookup(in_20, 4), None);
    }

    #[test]
    fn the_table_of_local_macs_is_bounded_and_ages() {
        let mut s: Switch<u32> = Switch::new(4, 300_000);
        for n in 0..10u8 {
            s.from_tap(&frame(BCAST, [2, 0, 0, 0, 1, n], ethertype::ARP), true, 0);
        }
        assert_eq!(s.local.len(), 4);
        s.expire(CLAIM_HOLD);
        assert!(s.local.is_empty());
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
        assert_eq!(s.macs.lookup(MacAddr(B), 2), None);
        assert_eq!(s.counters.mac_moved, 1);
    }
}
