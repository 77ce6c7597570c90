//! Entry points for the fuzz targets in `fuzz/` and for the replay of their corpus by the normal
//! test suite. Each takes arbitrary bytes, must never panic, and checks what must hold of any
//! input it accepts.

use ed25519_dalek::SigningKey;

use crate::record::{Record, check_line, seal_line};
use crate::verify::ChainChecker;

const KEY_ID: &str = "fuzz";

/// Decision-record lines, one per input line, through the chain checker. A line whose body is a
/// valid record is also sealed with the harness key, so the chain rules (sequence, `prev`,
/// seals) are reached and not only the signature check: a sealed record must check out and
/// read back as the same body.
pub fn record_lines(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = SigningKey::from_bytes(&[7; 32]);
    let keys = vec![(KEY_ID.to_string(), key.verifying_key())];
    let mut raw = ChainChecker::new(keys.clone());
    let mut sealed = ChainChecker::new(keys.clone());
    for line in text.split_inclusive('\n') {
        let _ = raw.check(line);
        if line.starts_with("#segment") {
            raw.start_segment();
            sealed.start_segment();
            continue;
        }
        let Ok(mut record) = Record::from_body_json(line.trim_end_matches('\n')) else {
            continue;
        };
        record.key_id = KEY_ID.to_string();
        let Ok(body) = record.to_body_json() else {
            continue;
        };
        let Ok((signed, hash)) = seal_line(&record, &key) else {
            continue;
        };
        let Ok(signed) = String::from_utf8(signed) else {
            panic!("a sealed line is not UTF-8");
        };
        match check_line(&signed, &keys) {
            Ok((back, back_hash)) => {
                assert_eq!(back_hash, hash, "a sealed line's hash changed on reading");
                assert_eq!(
                    back.to_body_json().ok(),
                    Some(body),
                    "a sealed record reads back as another body"
                );
            }
            Err(e) => panic!("a line the writer sealed does not check: {e}\n{signed}"),
        }
        let _ = sealed.check(&signed);
    }
}
