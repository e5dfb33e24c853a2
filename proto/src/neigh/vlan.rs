//! ARP replication inside 802.1Q VLANs: the controller keeps one [`super::NeighTable`] per
//! VLAN, so that a VLAN's addresses, claims, moves and conflicts never meet another's. A tagged
//! ARP frame is untagged before its table sees it, and what the table injects is tagged again;
//! ICC messages about a VLAN carry `"vlan"` beside their fields (`crate::icc`).

/// 802.1Q.
const TPID: u16 = 0x8100;
/// VLANs with a table of their own at most (beyond that, their ARP is not replicated).
pub const MAX_VLANS: usize = 64;

/// Whether `vid` names a VLAN (1-4094; 0 is untagged, 4095 reserved).
pub fn is_vlan(vid: u16) -> bool {
    (1..=4094).contains(&vid)
}

/// A frame with one 802.1Q tag of VLAN 1-4094: its VLAN and the frame without the tag (the
/// tag's priority bits are dropped). `None` for anything else.
pub fn untag(frame: &[u8]) -> Option<(u16, Vec<u8>)> {
    if frame.len() < 18 || u16::from_be_bytes([frame[12], frame[13]]) != TPID {
        return None;
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    if !is_vlan(vid) {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len() - 4);
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&frame[16..]);
    Some((vid, out))
}

/// `frame` with an 802.1Q tag of VLAN `vid` after its addresses (unchanged for VLAN 0).
pub fn tag(frame: &[u8], vid: u16) -> Vec<u8> {
    if vid == 0 || frame.len() < 12 {
        return frame.to_vec();
    }
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&TPID.to_be_bytes());
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_comes_off_and_goes_back_on() {
        let plain: Vec<u8> = (0..60u8).collect();
        let tagged = tag(&plain, 42);
        assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x00, 42]);
        assert_eq!(untag(&tagged), Some((42, plain.clone())));
        assert_eq!(tag(&plain, 0), plain);
        // Untagged, priority-tagged (VLAN 0), reserved and cut frames are not a VLAN's.
        assert_eq!(untag(&plain), None);
        assert_eq!(untag(&tag(&plain, 4095)), None);
        let mut prio = tag(&plain, 42);
        prio[15] = 0;
        assert_eq!(untag(&prio), None);
        assert_eq!(untag(&tagged[..17]), None);
    }
}
