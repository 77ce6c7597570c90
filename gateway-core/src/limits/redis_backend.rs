//! The Redis backend: one Lua script checks every counter and increments all of them only if
//! each has room, atomically, in one round trip. Connections are managed (reconnects), and
//! every call has a deadline so a stopped Redis fails requests fast.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{BackendError, Counter};

/// KEYS: the counters. ARGV: limit, amount, ttl for each key in turn.
/// Returns `{0, value1, value2, ...}` after incrementing, or `{i, current}` for the first key
/// without room (nothing incremented).
const RESERVE: &str = r#"
local n = #KEYS
for i = 1, n do
  local limit = tonumber(ARGV[3 * i - 2])
  local amount = tonumber(ARGV[3 * i - 1])
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current + amount > limit then
    return {i, current}
  end
end
local out = {0}
for i = 1, n do
  out[i + 1] = redis.call('INCRBY', KEYS[i], ARGV[3 * i - 1])
  redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
end
return out
"#;

/// KEYS: the counters. ARGV: the change for each key. A counter whose window has already
/// expired is left alone: re-creating it would leave a key with no expiry.
const ADJUST: &str = r#"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i])
  end
end
return 0
"#;

pub struct RedisBackend {
    conn: ConnectionManager,
    script: redis::Script,
    adjust_script: redis::Script,
    timeout: Duration,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl RedisBackend {
    pub fn new(url: &str, timeout_ms: u64) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis url `{url}`: {e}"))?;
        let timeout = Duration::from_millis(timeout_ms.max(10));
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("redis at `{url}`: {e}"))?;
        Ok(Self {
            conn,
            script: redis::Script::new(RESERVE),
            adjust_script: redis::Script::new(ADJUST),
            timeout,
        })
    }

    pub async fn reserve(
        &self,
        counters: &[Counter],
    ) -> Result<Result<Vec<i64>, (usize, i64)>, BackendError> {
        let mut inv = self.script.prepare_invoke();
        for c in counters {
            inv.key(&c.key);
        }
        for c in counters {
            inv.arg(c.limit).arg(c.amount).arg(c.ttl_s);
        }
        let mut conn = self.conn.clone();
        let out: Vec<i64> = tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| err("timed out"))?
            .map_err(err)?;
        match out.first() {
            Some(0) => Ok(Ok(out[1..].to_vec())),
            Some(i) => Ok(Err((
                (*i as usize).saturating_sub(1),
                out.get(1).copied().unwrap_or(0),
            ))),
            None => Err(err("empty reply from the reservation script")),
        }
    }

    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(
            self.timeout * 4,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| err("timed out"))?
        .map(|_| ())
        .map_err(err)
    }

    pub async fn adjust(&self, adjustments: &[(String, i64)]) -> Result<(), BackendError> {
        if adjustments.is_empty() {
            return Ok(());
        }
        let mut inv = self.adjust_script.prepare_invoke();
        for (k, _) in adjustments {
            inv.key(k);
        }
        for (_, d) in adjustments {
            inv.arg(*d);
        }
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout * 4, inv.invoke_async::<i64>(&mut conn))
            .await
            .map_err(|_| err("timed out"))?
            .map(|_| ())
            .map_err(err)
    }
}
