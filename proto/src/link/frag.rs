//! Link fragments: an inner message (`[inner type][inner meta][payload]`) too large for one link
//! datagram is cut into equal-size pieces, each sealed as its own data message (inner type
//! [`MessageType::Fragment`], layout in [`crate::wire::link`]), and put back together here.
//!
//! Reassembly state is bounded: at most [`MAX_PENDING`] messages in progress per link and
//! [`LINK_BUDGET`] bytes per link, a byte budget shared by every link (the table's
//! [`FragBudget`]), and an age limit ([`REASSEMBLY_TIMEOUT`]). A fragment that repeats one
//! already held, contradicts the message's total or count, or belongs to a message just
//! completed is refused. Every refusal is counted.
//!
//! [`MessageType::Fragment`]: crate::wire::link::MessageType::Fragment

use crate::id::Millis;
use crate::wire::link::{FragHeader, MAX_INNER_LEN};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Messages in progress per link; a new one beyond this evicts the oldest.
pub const MAX_PENDING: usize = 4;
/// Bytes in progress per link (a 64 KiB ICC message and a few frames).
pub const LINK_BUDGET: usize = 128 * 1024;
/// Bytes in progress over all links together.
pub const TOTAL_BUDGET: usize = 4 * 1024 * 1024;
/// A message not complete this long after its first fragment is dropped.
pub const REASSEMBLY_TIMEOUT: Millis = 2_000;
/// Ids of completed messages remembered per link, so a late duplicate fragment does not start
/// a message that can never complete.
const RECENT: usize = 8;

/// Fragment counters, per link and (summed by the table) in total.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FragCounters {
    /// Fragments sent.
    pub frag_tx: u64,
    /// Authentic fragments received.
    pub frag_rx: u64,
    /// Messages put back together from fragments.
    pub frag_reassembled: u64,
    /// Messages dropped incomplete after [`REASSEMBLY_TIMEOUT`].
    pub frag_drop_expired: u64,
    /// Fragments refused: malformed header, wrong length, duplicate, inconsistent total.
    pub frag_drop_invalid: u64,
    /// Messages dropped for the per-link or total budget (or the per-link count).
    pub frag_drop_budget: u64,
}

impl FragCounters {
    /// Adds what `after` counted since `before` (the same link's counters).
    pub fn add_since(&mut self, before: &FragCounters, after: &FragCounters) {
        self.frag_tx += after.frag_tx - before.frag_tx;
        self.frag_rx += after.frag_rx - before.frag_rx;
        self.frag_reassembled += after.frag_reassembled - before.frag_reassembled;
        self.frag_drop_expired += after.frag_drop_expired - before.frag_drop_expired;
        self.frag_drop_invalid += after.frag_drop_invalid - before.frag_drop_invalid;
        self.frag_drop_budget += after.frag_drop_budget - before.frag_drop_budget;
    }
}

/// Why a fragment was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragDrop {
    Invalid,
    OverBudget,
}

/// The bytes in progress over every link: shared by the table and each link's
/// [`Reassembly`], which gives its bytes back when it is dropped (a trimmed link).
#[derive(Debug, Clone, Default)]
pub struct FragBudget(Arc<AtomicUsize>);

impl FragBudget {
    pub fn used(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        let used = self.used();
        if used + n > TOTAL_BUDGET {
            return false;
        }
        self.0.store(used + n, Ordering::Relaxed);
        true
    }

    fn give(&self, n: usize) {
        self.0.fetch_sub(n.min(self.used()), Ordering::Relaxed);
    }
}

/// How an inner message of `len` bytes is cut for pieces of at most `max_piece` bytes:
/// `(count, size)`, every piece `size` bytes but the last, which is shorter or equal. None if
/// it needs more than 255 pieces or is larger than [`MAX_INNER_LEN`].
pub fn plan(len: usize, max_piece: usize) -> Option<(usize, usize)> {
    if len == 0 || max_piece == 0 || len > MAX_INNER_LEN {
        return None;
    }
    let count = len.div_ceil(max_piece);
    let size = len.div_ceil(count);
    // The count the receiver derives the size from (see `FragHeader::piece`).
    let count = len.div_ceil(size);
    (count <= u8::MAX as usize).then_some((count, size))
}

struct Pending {
    id: u32,
    total: u32,
    count: u8,
    got: [u64; 4],
    received: usize,
    started: Millis,
    buf: Vec<u8>,
}

/// One link's messages in progress.
pub struct Reassembly {
    pending: Vec<Pending>,
    /// Buffers of completed or dropped messages, reused.
    spare: Vec<Vec<u8>>,
    recent: [Option<u32>; RECENT],
    next_recent: usize,
    bytes: usize,
    budget: FragBudget,
    pub counters: FragCounters,
}

impl Reassembly {
    pub fn new(budget: FragBudget) -> Reassembly {
        Reassembly {
            pending: Vec::new(),
            spare: Vec::new(),
            recent: [None; RECENT],
            next_recent: 0,
            bytes: 0,
            budget,
            counters: FragCounters::default(),
        }
    }

    /// Bytes this link holds in messages in progress.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages in progress.
    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    fn release(&mut self, i: usize) {
        let p = self.pending.swap_remove(i);
        self.bytes -= p.total as usize;
        self.budget.give(p.total as usize);
        if self.spare.len() < MAX_PENDING {
            self.spare.push(p.buf);
        }
    }

    /// When the oldest message in progress reaches its age limit.
    pub fn next_expiry(&self) -> Option<Millis> {
        let oldest = self.pending.iter().map(|p| p.started).min()?;
        Some(oldest + REASSEMBLY_TIMEOUT)
    }

    /// Drops messages older than [`REASSEMBLY_TIMEOUT`] (counted).
    pub fn expire(&mut self, now: Millis) {
        let mut i = 0;
        while i < self.pending.len() {
            if now.saturating_sub(self.pending[i].started) >= REASSEMBLY_TIMEOUT {
                self.release(i);
                self.counters.frag_drop_expired += 1;
            } else {
                i += 1;
            }
        }
    }

    /// Forgets every message in progress (the link went down or started over); not counted
    /// as drops.
    pub fn clear(&mut self) {
        while !self.pending.is_empty() {
            self.release(0);
        }
    }

    fn oldest(&self) -> Option<usize> {
        (0..self.pending.len()).min_by_key(|&i| self.pending[i].started)
    }

    /// Makes room for a new message of `total` bytes: evicts the oldest while this link is at
    /// its count or byte limit, then takes the bytes from the shared budget.
    fn admit(&mut self, total: usize) -> Result<(), FragDrop> {
        while self.pending.len() >= MAX_PENDING || self.bytes + total > LINK_BUDGET {
            let Some(i) = self.oldest() else { break };
            self.release(i);
            self.counters.frag_drop_budget += 1;
        }
        if self.bytes + total > LINK_BUDGET || !self.budget.take(total) {
            self.counters.frag_drop_budget += 1;
            return Err(FragDrop::OverBudget);
        }
        self.bytes += total;
        Ok(())
    }

    /// Takes one authentic fragment. Returns the number of the completed message, for
    /// [`take`](Self::take), once its last piece is in.
    pub fn add(
        &mut self,
        now: Millis,
        h: &FragHeader,
        piece: &[u8],
    ) -> Result<Option<usize>, FragDrop> {
        self.counters.frag_rx += 1;
        self.expire(now);
        let invalid = |s: &mut Self| {
            s.counters.frag_drop_invalid += 1;
            Err(FragDrop::Invalid)
        };
        let Some(range) = h.piece() else {
            return invalid(self);
        };
        if range.len() != piece.len() || self.recent.contains(&Some(h.id)) {
            return invalid(self);
        }
        let i = match self.pending.iter().position(|p| p.id == h.id) {
            Some(i) => i,
            None => {
                let total = h.total as usize;
                self.admit(total)?;
                let mut buf = self.spare.pop().unwrap_or_default();
                buf.clear();
                buf.resize(total, 0);
                self.pending.push(Pending {
                    id: h.id,
                    total: h.total,
                    count: h.count,
                    got: [0; 4],
                    received: 0,
                    started: now,
                    buf,
                });
                self.pending.len() - 1
            }
        };
        let p = &mut self.pending[i];
        let (word, bit) = (h.index as usize / 64, 1u64 << (h.index % 64));
        if p.total != h.total || p.count != h.count || p.got[word] & bit != 0 {
            return invalid(self);
        }
        p.got[word] |= bit;
        p.received += 1;
        p.buf[range].copy_from_slice(piece);
        if p.received < p.count as usize {
            return Ok(None);
        }
        Ok(Some(i))
    }

    /// Copies completed message `i` (from [`add`](Self::add)) to `out`; returns its length,
    /// or None (counted invalid) when `out` cannot hold it.
    pub fn take(&mut self, i: usize, out: &mut [u8]) -> Option<usize> {
        let p = self.pending.get(i)?;
        let n = p.buf.len();
        let id = p.id;
        let fits = out.len() >= n;
        if fits {
            out[..n].copy_from_slice(&p.buf);
            self.counters.frag_reassembled += 1;
        } else {
            self.counters.frag_drop_invalid += 1;
        }
        self.recent[self.next_recent] = Some(id);
        self.next_recent = (self.next_recent + 1) % RECENT;
        self.release(i);
        fits.then_some(n)
    }
}

impl Drop for Reassembly {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: u32, total: usize, index: usize, count: usize) -> FragHeader {
        FragHeader {
            id,
            total: total as u32,
            index: index as u8,
            count: count as u8,
        }
    }

    #[test]
    fn plan_cuts_equal_pieces_the_receiver_agrees_with() {
        for len in 1..3_000 {
            for max in [1usize, 7, 100, 1_000, 1_427] {
                let Some((count, size)) = plan(len, max) else {
                    assert!(len.div_ceil(max) > 255, "{len} {max}");
                    continue;
                };
                assert!(size <= max && count * size >= len && (count - 1) * size < len);
                if count >= 2 {
                    let h = header(1, len, count - 1, count);
                    assert_eq!(h.piece(), Some((count - 1) * size..len), "{len} {max}");
                }
            }
        }
        assert_eq!(plan(0, 10), None);
        assert_eq!(plan(MAX_INNER_LEN + 1, 65_000), None);
    }

    #[test]
    fn bounds_hold_and_budget_comes_back() {
        let budget = FragBudget::default();
        let mut r = Reassembly::new(budget.clone());
        // More messages than the link may hold at once: the oldest are evicted.
        for id in 0..10u32 {
            let h = header(id, 30_000, 0, 2);
            assert_eq!(r.add(u64::from(id), &h, &[0; 15_000]), Ok(None));
            assert!(r.in_progress() <= MAX_PENDING && r.bytes() <= LINK_BUDGET);
            assert_eq!(budget.used(), r.bytes());
        }
        assert!(r.counters.frag_drop_budget >= 6);
        r.expire(10 + REASSEMBLY_TIMEOUT);
        assert_eq!((r.in_progress(), budget.used()), (0, 0));
        let h = header(99, 1_000, 0, 2);
        r.add(20_000, &h, &[1; 500]).unwrap();
        assert_eq!(budget.used(), 1_000);
        drop(r);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn links_together_stay_within_the_total_budget() {
        let budget = FragBudget::default();
        let mut links: Vec<Reassembly> = (0..64).map(|_| Reassembly::new(budget.clone())).collect();
        let mut refused = 0;
        for (n, r) in links.iter_mut().enumerate() {
            for id in 0..MAX_PENDING as u32 {
                let h = header(id, 32_000, 1, 2);
                if r.add(n as u64, &h, &[0; 16_000]) == Err(FragDrop::OverBudget) {
                    refused += 1;
                }
            }
        }
        assert!(budget.used() <= TOTAL_BUDGET && budget.used() > TOTAL_BUDGET - 32_000);
        assert_eq!(refused, 64 * MAX_PENDING - TOTAL_BUDGET / 32_000);
        // A duplicate, a contradicting total and a wrong length are refused.
        let r = &mut links[0];
        let h = header(0, 32_000, 1, 2);
        assert_eq!(r.add(100, &h, &[0; 16_000]), Err(FragDrop::Invalid));
        assert_eq!(
            r.add(100, &header(0, 32_002, 0, 2), &[0; 16_001]),
            Err(FragDrop::Invalid)
        );
        assert_eq!(
            r.add(100, &header(0, 32_000, 0, 2), &[0; 15_999]),
            Err(FragDrop::Invalid)
        );
        // The missing half completes it, and a late copy of a piece is refused afterwards.
        let i = r
            .add(100, &header(0, 32_000, 0, 2), &[7; 16_000])
            .unwrap()
            .unwrap();
        let mut out = vec![0u8; 32_000];
        assert_eq!(r.take(i, &mut out[..31_999]), None);
        assert_eq!(r.counters.frag_reassembled, 0);
        let i = r
            .add(100, &header(1, 32_000, 0, 2), &[7; 16_000])
            .unwrap()
            .unwrap();
        assert_eq!(r.take(i, &mut out), Some(32_000));
        assert_eq!(
            (&out[..16_000], r.counters.frag_reassembled),
            (&[7; 16_000][..], 1)
        );
        assert_eq!(
            r.add(100, &header(1, 32_000, 0, 2), &[7; 16_000]),
            Err(FragDrop::Invalid)
        );
        links.clear();
        assert_eq!(budget.used(), 0);
    }
}
