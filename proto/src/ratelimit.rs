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
            // Full buckets carry no information; drop them, else the stalest one.
            let (per_sec, burst) = (self.per_sec, self.burst);
            self.buckets.retain(|_, b| {
                b.tokens + now.saturating_sub(b.at) as f64 / 1000.0 * per_sec < burst
            });
            if self.buckets.len() >= self.max_sources {
                if let Some(oldest) = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, b)| b.at)
                    .map(|(k, _)| *k)
                {
                    self.buckets.remove(&oldest);
                }
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
    fn table_is_bounded() {
        let mut r = RateLimiter::new(1.0, 2.0, 4);
        for n in 0..100u8 {
            r.allow(ip(n), n as u64);
        }
        assert!(r.buckets.len() <= 4);
    }
}
