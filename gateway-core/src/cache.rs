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
}

/// Entries, their insertion order (oldest first, for eviction), and their total size.
type Store = (HashMap<[u8; 32], Entry>, VecDeque<[u8; 32]>, usize);

pub struct ResponseCache {
    config: CacheConfig,
    inner: Mutex<Store>,
}

/// The cache key of a request for a scope.
pub fn key(request: &ChatRequest, scope: &str) -> [u8; 32] {
    let normal = serde_json::json!({
        "model": request.model,
        "messages": request.messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_output_tokens(),
        "stop": request.stop,
        "tools": request.tools,
        "tool_choice": request.tool_choice,
    });
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(normal.to_string().as_bytes());
    h.finalize().into()
}

impl ResponseCache {
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            inner: Mutex::new((HashMap::new(), VecDeque::new(), 0)),
        }
    }

    pub fn scope_kind(&self) -> &str {
        &self.config.scope
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Cached> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, _, bytes) = &mut *g;
        match map.get(key) {
            Some(e) if e.expires > Instant::now() => Some(e.value.clone()),
            Some(_) => {
                if let Some(e) = map.remove(key) {
                    *bytes -= e.bytes;
                }
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
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order, bytes) = &mut *g;
        if let Some(old) = map.remove(&key) {
            *bytes -= old.bytes;
        }
        while map.len() >= self.config.max_entries || *bytes + size > self.config.max_bytes {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            if let Some(e) = map.remove(&oldest) {
                *bytes -= e.bytes;
            }
        }
        map.insert(
            key,
            Entry {
                value,
                expires: Instant::now() + ttl,
                bytes: size,
            },
        );
        order.push_back(key);
        *bytes += size;
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

    #[test]
    fn keys_depend_on_request_and_scope() {
        assert_eq!(key(&req("a"), "u1"), key(&req("a"), "u1"));
        assert_ne!(key(&req("a"), "u1"), key(&req("a"), "u2"));
        assert_ne!(key(&req("a"), "u1"), key(&req("b"), "u1"));
    }

    #[test]
    fn expiry_and_bounds() {
        let c = ResponseCache::new(CacheConfig {
            max_entries: 2,
            ..Default::default()
        });
        let (k1, k2, k3) = (
            key(&req("1"), "s"),
            key(&req("2"), "s"),
            key(&req("3"), "s"),
        );
        c.put(k1, cached(), Duration::from_secs(60));
        c.put(k2, cached(), Duration::from_secs(60));
        c.put(k3, cached(), Duration::from_secs(60));
        assert!(c.get(&k1).is_none(), "the oldest entry was evicted");
        assert!(c.get(&k3).is_some());
        c.put(k1, cached(), Duration::from_millis(0));
        assert!(c.get(&k1).is_none(), "expired");
    }
}
