//! What a chat request will cost at most, estimated before it is sent: the reservation's upper
//! bound, and the charge of a stream that ended without the provider's usage.

use crate::openai::ChatRequest;

/// Tokens in a text, erring high for real tokenizers: ASCII at four bytes a token, anything
/// else at two tokens a character (CJK, emoji), and never fewer than its words.
pub fn estimate_text_tokens(t: &str) -> u64 {
    let non_ascii = t.chars().filter(|c| !c.is_ascii()).count() as u64;
    let ascii_bytes = t.bytes().filter(u8::is_ascii).count() as u64;
    crate::providers::mock::count_tokens(t).max(ascii_bytes.div_ceil(4) + 2 * non_ascii)
}

/// Prompt tokens to reserve, erring high for real tokenizers (and exact for the mock provider):
/// per message the larger of its word count and a byte count that takes ASCII at four bytes a
/// token and anything else at two tokens a character (CJK, emoji), plus what the message
/// carries besides text (tool calls, tool results' ids) and the tool definitions, which are
/// sent as prompt too.
pub fn estimate_prompt_tokens(request: &ChatRequest) -> u64 {
    // Serialised where it lies: counting clones nothing on the hot path.
    fn json_tokens(v: &impl serde::Serialize) -> u64 {
        serde_json::to_string(v).map_or(0, |t| estimate_text_tokens(&t))
    }
    let messages: u64 = request
        .messages
        .iter()
        .map(|m| {
            let extra = if m.extra.is_empty() {
                0
            } else {
                json_tokens(&m.extra)
            };
            estimate_text_tokens(&m.text()) + extra
        })
        .sum();
    let tools: u64 = request.tools.iter().flatten().map(json_tokens).sum();
    (messages + tools).max(1)
}
