//! An exact-match response cache: the key is the SHA-256 of the normalised request (model,
//! messages, sampling parameters, tools) and the principal's cache scope, so one user never sees
//! another's cached answer unless the scope says so. Bounded by entries and bytes, entries expire.
//! Opt-in per model (`cache_ttl_s`) or by policy (a determining permit with `@cache_ttl("300")`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decision_log::Usage;
use crate::openai::ChatRequest;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub max_entries: usize,
    pub max_bytes: usize,
    /// Who shares cached answers: `principal`, `team` or `global`.
    pub scope: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            scope: "principal".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cached {
    pub content: String,
    pub finish_reason: String,
    pub usage: Usage,
    pub model: String,
    pub tool_calls: Option<serde_json::Value>,
}

struct Entry {
    value: Cached,
    expires: Instant,
    bytes: usize,
    /// Which insertion this is: an `order` slot naming an older one is stale.
    seq: u64,
}

/// Entries, their insertions oldest first (for eviction), and their total size. An entry that
/// expires or is replaced leaves a stale slot in `order`; slots are skipped when their sequence
/// number no longer matches, and swept when they outnumber the entries.
#[derive(Default)]
struct Store {
    map: HashMap<[u8; 32], Entry>,
    order: VecDeque<([u8; 32], u64)>,
    bytes: usize,
    next_seq: u64,
}

impl Store {
    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= e.bytes;
        }
    }

    fn is_current(&self, key: &[u8; 32], seq: u64) -> bool {
        self.map.get(key).is_some_and(|e| e.seq == seq)
    }
}

pub struct ResponseCache {
    config: CacheConfig,
    inner: Mutex<Store>,
}

/// The cache key of a request for a scope and data classification: everything that can change
/// the answer or how it was checked (every message field, tools, sampling, `response_format`,
/// `seed`, ...), except how it is delivered (`stream`, `stream_options`) and the end-user tag.
pub fn key(request: &ChatRequest, scope: &str, classification: &str) -> [u8; 32] {
    let mut normal = serde_json::to_value(request).unwrap_or_default();
    if let Some(map) = normal.as_object_mut() {
        for delivery in ["stream", "stream_options", "user"] {
            map.remove(delivery);
        }
        // `max_tokens` and `max_completion_tokens` mean the same.
        map.remove("max_completion_tokens");
        map.insert("max_tokens".into(), request.max_output_tokens().into());
    }
    let mut h = Sha256::new();
    for part in [scope, classification] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(normal.to_string().as_bytes());
    h.finalize().into()
}

impl ResponseCache {
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Store::default()),
        }
    }

    pub fn scope_kind(&self) -> &str {
        &self.config.scope
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Cached> {
        let mut store = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match store.map.get(key) {
            Some(e) if e.expires > Instant::now() => Some(e.value.clone()),
            Some(_) => {
                store.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: [u8; 32], value: Cached, ttl: Duration) {
        let size = value.content.len()
            + value.model.len()
            + value.tool_calls.as_ref().map_or(0, |t| t.to_string().len())
            + 64;
        if size > self.config.max_bytes {
            return;
        }
        let mut store = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        store.remove(&key);
        while store.map.len() >= self.config.max_entries
            || store.bytes + size > self.config.max_bytes
        {
            let Some((oldest, seq)) = store.order.pop_front() else {
                break;
            };
            if store.is_current(&oldest, seq) {
                store.remove(&oldest);
            }
        }
        if store.order.len() > 2 * store.map.len() + 64 {
            let Store { map, order, .. } = &mut *store;
            order.retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
        let seq = store.next_seq;
        store.next_seq += 1;
        store.map.insert(
            key,
            Entry {
                value,
                expires: Instant::now() + ttl,
                bytes: size,
                seq,
            },
        );
        store.order.push_back((key, seq));
        store.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> ChatRequest {
        serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]}),
        )
        .unwrap()
    }

    fn cached() -> Cached {
        Cached {
            content: "answer".into(),
            finish_reason: "stop".into(),
            usage: Usage::default(),
            model: "m".into(),
            tool_calls: None,
        }
    }

    fn two_entry_cache() -> (ResponseCache, [[u8; 32]; 3]) {
        let c = ResponseCache::new(CacheConfig {
            max_entries: 2,
            ..Default::default()
        });
        (c, ["1", "2", "3"].map(|t| key(&req(t), "s", "internal")))
    }

    #[test]
    fn keys_depend_on_request_scope_and_classification() {
        let k = |r: &ChatRequest, scope| key(r, scope, "internal");
        assert_eq!(k(&req("a"), "u1"), k(&req("a"), "u1"));
        assert_ne!(k(&req("a"), "u1"), k(&req("a"), "u2"));
        assert_ne!(k(&req("a"), "u1"), k(&req("b"), "u1"));
        assert_ne!(
            key(&req("a"), "u1", "internal"),
            key(&req("a"), "u1", "confidential")
        );
        // Fields outside role and content, and extra request fields, change the answer.
        let mut tool = req("a");
        tool.messages[0]
            .extra
            .insert("tool_call_id".into(), "call_1".into());
        assert_ne!(k(&tool, "u1"), k(&req("a"), "u1"));
        let mut seeded = req("a");
        seeded.extra.insert("seed".into(), 7.into());
        assert_ne!(k(&seeded, "u1"), k(&req("a"), "u1"));
        // How the answer is delivered does not.
        let mut streamed = req("a");
        streamed.stream = Some(true);
        streamed.user = Some("end-user-1".into());
        assert_eq!(k(&streamed, "u1"), k(&req("a"), "u1"));
    }

    #[test]
    fn expiry_and_bounds() {
        let (c, [k1, k2, k3]) = two_entry_cache();
        c.put(k1, cached(), Duration::from_secs(60));
        c.put(k2, cached(), Duration::from_secs(60));
        c.put(k3, cached(), Duration::from_secs(60));
        assert!(c.get(&k1).is_none(), "the oldest entry was evicted");
        assert!(c.get(&k3).is_some());
        c.put(k1, cached(), Duration::from_millis(0));
        assert!(c.get(&k1).is_none(), "expired");
    }

    #[test]
    fn a_replaced_entry_is_not_evicted_by_its_old_slot_and_slots_stay_bounded() {
        let (c, [k1, k2, k3]) = two_entry_cache();
        c.put(k1, cached(), Duration::from_secs(60));
        c.put(k2, cached(), Duration::from_secs(60));
        // k1 again: now the newest; its first slot is stale.
        c.put(k1, cached(), Duration::from_secs(60));
        c.put(k3, cached(), Duration::from_secs(60));
        assert!(c.get(&k2).is_none(), "k2 is the oldest live entry");
        assert!(
            c.get(&k1).is_some(),
            "the stale slot did not evict the fresh k1"
        );
        for _ in 0..1000 {
            c.put(k1, cached(), Duration::from_secs(60));
        }
        let slots = c.inner.lock().map(|s| s.order.len()).unwrap_or(0);
        assert!(slots <= 2 * 2 + 64 + 1, "{slots} slots for 2 entries");
    }
}
