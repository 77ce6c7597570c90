//! Sessions of the handshake-era revisions: `initialize` mints an `Mcp-Session-Id`, later
//! requests carry it. A session belongs to the principal that opened it: the same id from
//! anyone else is an unknown session (404, as the specification asks), so a leaked id grants
//! nothing a token does not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Session {
    principal: String,
    version: String,
    last_used: Instant,
}

pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            idle,
            max: max.max(1),
        }
    }

    /// A new session for `principal`, or `None` when the table is full of live sessions. One
    /// principal holds at most a tenth of the table: past that, its own oldest session makes
    /// room, so a client that opens sessions in a loop crowds out only itself.
    pub fn open(&self, principal: &str, version: &str) -> Option<String> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let per_principal = (self.max / 10).max(1);
        let mine: Vec<(&String, Instant)> = map
            .iter()
            .filter(|(_, s)| s.principal == principal)
            .map(|(id, s)| (id, s.last_used))
            .collect();
        if mine.len() >= per_principal
            && let Some(oldest) = mine
                .iter()
                .min_by_key(|(_, t)| *t)
                .map(|(id, _)| (*id).clone())
        {
            map.remove(&oldest);
        }
        if map.len() >= self.max {
            let idle = self.idle;
            map.retain(|_, s| s.last_used.elapsed() < idle);
            if map.len() >= self.max {
                return None;
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        map.insert(
            id.clone(),
            Session {
                principal: principal.to_string(),
                version: version.to_string(),
                last_used: Instant::now(),
            },
        );
        Some(id)
    }

    /// The session's revision, when `id` is a live session of `principal`.
    pub fn touch(&self, id: &str, principal: &str) -> Option<String> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let live = map
            .get(id)
            .is_some_and(|s| s.last_used.elapsed() < self.idle);
        if !live {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        if s.principal != principal {
            return None;
        }
        s.last_used = Instant::now();
        Some(s.version.clone())
    }

    /// Ends a session (HTTP DELETE); false when it was not `principal`'s.
    pub fn close(&self, id: &str, principal: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.principal == principal => {
                map.remove(id);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_its_principal() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let id = s.open("User::\"a\"", "2025-06-18").expect("room");
        assert_eq!(s.touch(&id, "User::\"a\"").as_deref(), Some("2025-06-18"));
        assert_eq!(s.touch(&id, "User::\"b\""), None);
        assert!(!s.close(&id, "User::\"b\""));
        assert!(s.close(&id, "User::\"a\""));
        assert_eq!(s.touch(&id, "User::\"a\""), None);
    }

    #[test]
    fn one_principal_crowds_out_only_itself() {
        let s = Sessions::new(Duration::from_secs(60), 20);
        let first = s.open("b", "v").expect("room");
        let ids: Vec<String> = (0..50).filter_map(|_| s.open("a", "v")).collect();
        assert_eq!(ids.len(), 50, "a's own oldest sessions make room");
        assert_eq!(s.touch(&first, "b").as_deref(), Some("v"));
        assert!(s.touch(&ids[0], "a").is_none());
        assert!(s.touch(&ids[49], "a").is_some());
    }

    #[test]
    fn a_full_table_refuses_until_sessions_go_idle() {
        let s = Sessions::new(Duration::from_millis(0), 1);
        assert!(s.open("p", "v").is_some());
        // Idle at once: the full table makes room.
        assert!(s.open("p", "v").is_some());
        let s = Sessions::new(Duration::from_secs(60), 1);
        assert!(s.open("p", "v").is_some());
        assert!(
            s.open("q", "v").is_none(),
            "another principal's live session is kept"
        );
    }
}
