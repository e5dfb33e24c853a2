//! TCP MSS clamping (tinc's `ClampMSS`): a SYN that crosses the overlay gets an MSS option no
//! larger than what fits the TAP's MTU, so that two hosts whose bridges have ports with a
//! larger MTU (a jumbo-frame VM) agree on segments the overlay carries, instead of sending
//! full-size segments that the bridge drops in silence at the TAP.

use super::headers::{be16, parse_tcp, put16, TcpFrame, TCP_MIN_HLEN, TCP_SYN};
use super::Csum;

/// TCP option kinds.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
/// IPv4 and TCP headers without options; IPv6 and TCP.
const V4_HEADERS: u16 = 40;
const V6_HEADERS: u16 = 60;

/// The largest MSS an IPv4 or IPv6 peer may announce through a TAP of MTU `mtu`.
pub fn mss_for_mtu(mtu: u16, ipv6: bool) -> u16 {
    mtu.saturating_sub(if ipv6 { V6_HEADERS } else { V4_HEADERS })
}

/// Lowers the MSS option of `frame` to what fits `mtu` if `frame` is a TCP SYN (or SYN-ACK)
/// whose MSS is larger; returns whether it changed. The TCP checksum follows: updated
/// incrementally (RFC 1624) when it is complete (`Csum::Done`); left alone when the kernel
/// finishes it later (`Csum::Partial`: the field holds only the pseudo-header sum, which the
/// option is not part of). Anything that is not a well-formed SYN is left as it is.
pub fn clamp_mss(frame: &mut [u8], csum: Csum, mtu: u16) -> bool {
    let Ok(t) = parse_tcp(frame) else {
        return false;
    };
    if frame[t.l4 + 13] & TCP_SYN == 0 {
        return false;
    }
    let Some(at) = mss_option(frame, &t) else {
        return false;
    };
    let max = mss_for_mtu(mtu, t.ipv6);
    let old = be16(frame, at);
    if old <= max {
        return false;
    }
    put16(frame, at, max);
    if csum == Csum::Done {
        let field = t.l4 + 16;
        let sum = be16(frame, field);
        put16(frame, field, incremental(sum, old, max));
    }
    true
}

/// Where the MSS value (2 bytes) is among the options of the TCP header `t` of `frame`.
fn mss_option(frame: &[u8], t: &TcpFrame) -> Option<usize> {
    let mut i = t.l4 + TCP_MIN_HLEN;
    while i < t.payload {
        match frame[i] {
            OPT_END => return None,
            OPT_NOP => i += 1,
            kind => {
                let len = usize::from(*frame.get(i + 1)?);
                if len < 2 || i + len > t.payload {
                    return None;
                }
                if kind == OPT_MSS {
                    return (len == 4).then_some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

/// The checksum `sum` after a 16-bit word of the summed data changed from `old` to `new`
/// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
fn incremental(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::finish_checksum;

    /// An Ethernet frame with IPv4 (or IPv6) and a TCP header with `flags` and `options`,
    /// its checksum complete.
    fn tcp_frame(ipv6: bool, flags: u8, options: &[u8], vlan: bool) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        }
        let tcp_len = 20 + options.len();
        if ipv6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&[0xfd; 16]);
            f.extend_from_slice(&[0xfe; 16]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 3, 11, 10, 0, 3, 21]);
        }
        let l4 = f.len();
        f.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0]);
        f.push(((tcp_len / 4) as u8) << 4);
        f.extend_from_slice(&[flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(options);
        if !ipv6 {
            let l3 = l4 - 20;
            super::super::csum::set_ipv4_checksum(&mut f[l3..l4]);
        }
        // Complete the TCP checksum as a sender's kernel would.
        let t = parse_tcp(&f).unwrap();
        let pseudo = super::super::headers::tcp_pseudo_sum(&f, &t, tcp_len);
        put16(&mut f, l4 + 16, pseudo);
        finish_checksum(
            &mut f,
            Csum::Partial {
                start: l4 as u16,
                offset: 16,
            },
        )
        .unwrap();
        f
    }

    /// Whether the TCP checksum of `f` verifies.
    fn verifies(f: &[u8]) -> bool {
        let t = parse_tcp(f).unwrap();
        let pseudo = super::super::headers::tcp_pseudo_sum(f, &t, t.end - t.l4);
        let sum = u32::from(crate::offload::ones_sum(&f[t.l4..t.end])) + u32::from(pseudo);
        let folded = (sum & 0xffff) + (sum >> 16);
        folded as u16 == 0xffff
    }

    const SYN_OPTS: [u8; 12] = [2, 4, 0x23, 0x18, 1, 3, 3, 7, 4, 2, 1, 1]; // MSS 8984, wscale, SACK ok

    #[test]
    fn a_jumbo_syn_is_clamped_and_its_checksum_still_verifies() {
        for (ipv6, vlan) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut f = tcp_frame(ipv6, TCP_SYN, &SYN_OPTS, vlan);
            assert!(verifies(&f));
            assert!(clamp_mss(&mut f, Csum::Done, 1500), "v6 {ipv6} vlan {vlan}");
            let t = parse_tcp(&f).unwrap();
            let mss = be16(&f, t.l4 + 22);
            assert_eq!(mss, if ipv6 { 1440 } else { 1460 });
            assert!(verifies(&f), "v6 {ipv6} vlan {vlan}: checksum broken");
            // SYN-ACK too; and a second pass changes nothing.
            assert!(!clamp_mss(&mut f, Csum::Done, 1500));
            let mut sa = tcp_frame(ipv6, TCP_SYN | 0x10, &SYN_OPTS, vlan);
            assert!(clamp_mss(&mut sa, Csum::Done, 1400));
            assert!(verifies(&sa));
        }
    }

    #[test]
    fn what_is_not_a_large_syn_is_left_alone() {
        let small = [2, 4, 0x05, 0xb4, 1, 1, 1, 1]; // MSS 1460
        for (flags, opts) in [
            (TCP_SYN, &small[..]),
            (0x10, &SYN_OPTS[..]), // an ACK with an MSS option: not a SYN
            (TCP_SYN, &[1, 1, 1, 1][..]), // no MSS option
            (TCP_SYN, &[2, 3, 0x23, 0][..]), // MSS option of a wrong length
            (TCP_SYN, &[0, 2, 4, 0x23][..]), // end of options before it
            (TCP_SYN, &[8, 40, 0, 0][..]), // an option running past the header
        ] {
            let mut f = tcp_frame(false, flags, opts, false);
            let before = f.clone();
            assert!(!clamp_mss(&mut f, Csum::Done, 1500), "{flags:#x} {opts:?}");
            assert_eq!(f, before);
        }
        let mut junk = vec![0u8; 60];
        assert!(!clamp_mss(&mut junk, Csum::Done, 1500));
    }

    #[test]
    fn a_partial_checksum_is_left_to_the_kernel() {
        let mut f = tcp_frame(false, TCP_SYN, &SYN_OPTS, false);
        let t = parse_tcp(&f).unwrap();
        let pseudo = super::super::headers::tcp_pseudo_sum(&f, &t, t.end - t.l4);
        put16(&mut f, t.l4 + 16, pseudo);
        let partial = Csum::Partial {
            start: t.l4 as u16,
            offset: 16,
        };
        assert!(clamp_mss(&mut f, partial, 1500));
        assert_eq!(
            be16(&f, t.l4 + 16),
            pseudo,
            "the pseudo-header sum was touched"
        );
        finish_checksum(&mut f, partial).unwrap();
        assert!(verifies(&f));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..200 {
            let mut f: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            if len > 14 {
                f[12] = 0x08;
                f[13] = 0x00;
            }
            let _ = clamp_mss(&mut f, Csum::Done, 1500);
        }
    }
}
