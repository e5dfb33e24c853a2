//! Rate limiting per source: a token bucket each, so a flood from some sources cannot starve
//! the others. Handshakes are limited per source address, ICC requests per peer. The table is
//! bounded; when full, the stalest bucket is reused.

use crate::mactable::Millis;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Millis,
}

#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    per_sec: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<K, Bucket>,
    pub refused: u64,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    pub fn new(per_sec: f64, burst: f64, max_sources: usize) -> Self {
        RateLimiter {
            per_sec,
            burst,
            max_sources,
            buckets: HashMap::new(),
            refused: 0,
        }
    }

    /// Takes one token for `src`; false if it has none left.
    pub fn allow(&mut self, src: K, now: Millis) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.max_sources {
            // Full buckets carry no information: drop them. If that frees less than half the
            // table (most sources are being limited right now), drop the older half as well.
            // Each pass frees at least half the table, so a flood of new sources costs O(1)
            // per datagram on average, not a scan of the table each.
            let (per_sec, burst) = (self.per_sec, self.burst);
            self.buckets.retain(|_, b| {
                b.tokens + now.saturating_sub(b.at) as f64 / 1000.0 * per_sec < burst
            });
            if self.buckets.len() > self.max_sources / 2 {
                let mut ages: Vec<Millis> = self.buckets.values().map(|b| b.at).collect();
                let mid = ages.len() / 2;
                let (_, median, _) = ages.select_nth_unstable(mid);
                let median = *median;
                self.buckets.retain(|_, b| b.at > median);
            }
        }
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.saturating_sub(b.at) as f64 / 1000.0 * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.refused += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 99, 0, n])
    }

    #[test]
    fn burst_then_refill() {
        let mut r = RateLimiter::new(10.0, 5.0, 16);
        for _ in 0..5 {
            assert!(r.allow(ip(1), 0));
        }
        assert!(!r.allow(ip(1), 0));
        // Another source is not affected.
        assert!(r.allow(ip(2), 0));
        // 100 ms later one token is back.
        assert!(r.allow(ip(1), 100));
        assert!(!r.allow(ip(1), 100));
        assert_eq!(r.refused, 2);
    }

    #[test]
    fn a_flood_of_new_sources_rarely_scans_the_table() {
        let mut r = RateLimiter::new(1.0, 2.0, 64);
        // Every source spends its burst, so no bucket is full and none is dropped for free.
        let mut passes = 0;
        for n in 0..10_000u32 {
            let src = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            let before = r.buckets.len();
            r.allow(src, 0);
            r.allow(src, 0);
            if r.buckets.len() < before {
                passes += 1;
            }
        }
        assert!(r.buckets.len() <= 64);
        // At least half the table is freed per pass: at most one pass per 32 new sources.
        assert!(passes <= 10_000 / 32 + 1, "{passes} eviction passes");
    }

    #[test]
    fn table_is_bounded() {
        let mut r = RateLimiter::new(1.0, 2.0, 4);
        for n in 0..100u8 {
            r.allow(ip(n), n as u64);
        }
        assert!(r.buckets.len() <= 4);
    }
}
