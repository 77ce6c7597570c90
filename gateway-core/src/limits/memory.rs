//! The in-process backend: the same check-and-reserve semantics under one lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Counter;

#[derive(Default)]
pub struct MemoryBackend {
    counters: Mutex<HashMap<String, (i64, Instant)>>,
}

impl MemoryBackend {
    pub fn reserve(&self, counters: &[Counter]) -> Result<Vec<i64>, (usize, i64)> {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() > 100_000 {
            map.retain(|_, (_, exp)| *exp > now);
        }
        let current = |map: &HashMap<String, (i64, Instant)>, k: &str| {
            map.get(k)
                .filter(|(_, exp)| *exp > now)
                .map_or(0, |(v, _)| *v)
        };
        for (i, c) in counters.iter().enumerate() {
            let cur = current(&map, &c.key);
            if cur + c.amount > c.limit {
                return Err((i, cur));
            }
        }
        Ok(counters
            .iter()
            .map(|c| {
                let cur = current(&map, &c.key);
                let v = cur + c.amount;
                map.insert(c.key.clone(), (v, now + Duration::from_secs(c.ttl_s)));
                v
            })
            .collect())
    }

    pub fn adjust(&self, adjustments: &[(String, i64)]) {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        for (k, d) in adjustments {
            if let Some((v, _)) = map.get_mut(k) {
                *v += d;
            }
        }
    }
}
