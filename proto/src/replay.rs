//! A sliding replay window over per-session message counters (the bitmap scheme of RFC 6479,
//! as WireGuard uses it). `check` before decrypting, `accept` only after the message proved
//! authentic, so forged counters cannot move the window.

const WORD_BITS: u64 = 64;
const WORDS: usize = 32;
/// How far behind the highest counter seen a message may arrive and still be accepted.
pub const WINDOW: u64 = (WORDS as u64 - 1) * WORD_BITS;

#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// One past the highest counter accepted; 0 before the first.
    next: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub fn new() -> Self {
        ReplayWindow {
            next: 0,
            bitmap: [0; WORDS],
        }
    }

    fn slot(counter: u64) -> (usize, u64) {
        let word = (counter / WORD_BITS) as usize % WORDS;
        (word, 1u64 << (counter % WORD_BITS))
    }

    /// Whether `counter` is new and inside the window. The last counter (`u64::MAX`) is never
    /// valid: no session lives that long, and the window could not move past it.
    pub fn check(&self, counter: u64) -> bool {
        if counter == u64::MAX {
            return false;
        }
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        let (w, bit) = Self::slot(counter);
        self.bitmap[w] & bit == 0
    }

    /// How far `counter` is ahead of the highest one accepted (0 if it is not ahead).
    pub fn ahead(&self, counter: u64) -> u64 {
        counter.saturating_sub(self.next)
    }

    /// Records `counter` as seen. Call only after `check` and authentication succeeded.
    pub fn accept(&mut self, counter: u64) {
        if counter >= self.next {
            let cur_word = self.next.saturating_sub(1) / WORD_BITS;
            let new_word = counter / WORD_BITS;
            let advance = if self.next == 0 {
                WORDS as u64
            } else {
                (new_word - cur_word).min(WORDS as u64)
            };
            // Words the window slides over start empty.
            for i in 1..=advance {
                let w = ((cur_word + i) as usize) % WORDS;
                self.bitmap[w] = 0;
            }
            if self.next == 0 {
                self.bitmap = [0; WORDS];
            }
            self.next = counter.saturating_add(1);
        }
        let (w, bit) = Self::slot(counter);
        self.bitmap[w] |= bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_last_counter_is_never_valid_and_nothing_overflows() {
        let mut r = ReplayWindow::new();
        assert!(!r.check(u64::MAX));
        assert!(r.check(u64::MAX - 1));
        r.accept(u64::MAX - 1);
        assert!(!r.check(u64::MAX - 1));
        assert_eq!(r.ahead(5), 0);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut r = ReplayWindow::new();
        for c in [1u64, 2, 3, 10, 5] {
            assert!(r.check(c));
            r.accept(c);
            assert!(!r.check(c));
        }
        assert!(r.check(4));
        assert!(r.check(0));
    }

    #[test]
    fn too_old_is_refused() {
        let mut r = ReplayWindow::new();
        r.accept(5000);
        assert!(!r.check(5000 - WINDOW - 1));
        assert!(r.check(5000 - WINDOW + 1));
        assert!(r.check(100_000));
    }

    #[test]
    fn big_jump_clears_the_window() {
        let mut r = ReplayWindow::new();
        for c in 0..100 {
            r.accept(c);
        }
        r.accept(1_000_000);
        // Counters that map to the same bits as old ones are still new.
        assert!(r.check(1_000_000 - 64));
        assert!(!r.check(1_000_000));
    }

    proptest! {
        // Against a model (a set): within the window, accepted once, refused after.
        #[test]
        fn matches_a_set_model(counters in proptest::collection::vec(0u64..4000, 1..300)) {
            let mut r = ReplayWindow::new();
            let mut seen = std::collections::HashSet::new();
            let mut max: Option<u64> = None;
            for c in counters {
                let in_window = max.is_none_or(|m| c + WINDOW > m);
                let expect = in_window && !seen.contains(&c);
                prop_assert_eq!(r.check(c), expect, "counter {}", c);
                if expect {
                    r.accept(c);
                    seen.insert(c);
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
}
