//! Protocol adapters: each turns one client API into the admission stages (`crate::admission`),
//! then serves and settles the admitted request. None re-implements a control.
//!
//! - [`chat`]: `POST /v1/chat/completions` (OpenAI), streamed or not.
//! - [`models`]: `GET /v1/models`, filtered by Cedar.

pub mod chat;
pub mod models;
