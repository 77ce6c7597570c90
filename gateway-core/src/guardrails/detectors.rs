//! Detectors of sensitive data in text. Each returns spans; checksums (Luhn for cards, mod-97
//! for IBANs, the SSN's forbidden ranges) weed out look-alikes. Findings carry types and spans,
//! never copies of the text.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    PaymentCard,
    UsSsn,
    Iban,
    AwsAccessKey,
    AwsSecretKey,
    PrivateKey,
    Jwt,
    DeniedTerm,
    DeniedTopic,
    PromptTooLarge,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Email,
        Kind::Phone,
        Kind::PaymentCard,
        Kind::UsSsn,
        Kind::Iban,
        Kind::AwsAccessKey,
        Kind::AwsSecretKey,
        Kind::PrivateKey,
        Kind::Jwt,
        Kind::DeniedTerm,
        Kind::DeniedTopic,
        Kind::PromptTooLarge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::PaymentCard => "payment_card",
            Kind::UsSsn => "us_ssn",
            Kind::Iban => "iban",
            Kind::AwsAccessKey => "aws_access_key",
            Kind::AwsSecretKey => "aws_secret_key",
            Kind::PrivateKey => "private_key",
            Kind::Jwt => "jwt",
            Kind::DeniedTerm => "denied_term",
            Kind::DeniedTopic => "denied_topic",
            Kind::PromptTooLarge => "prompt_too_large",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

#[expect(
    clippy::expect_used,
    reason = "the patterns are constants, checked by the tests"
)]
fn re(p: &str) -> Regex {
    Regex::new(p).expect("detector pattern")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b",
    )
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\+[1-9][0-9]{0,2}[ .-]?)?\(?\b[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}\b|\+[1-9][0-9]{7,14}\b",
    )
});
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9](?:[ -]?[0-9]){12,18}\b"));
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b([0-9]{3})-([0-9]{2})-([0-9]{4})\b"));
static IBAN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b"));
static AWS_KEY_ID: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?:AKIA|ASIA|AIDA|AROA|ABIA|ACCA|AGPA|ANPA|ANVA|APKA|AIPA)[A-Z0-9]{16}\b")
});
static AWS_SECRET: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|[^A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])"));
static PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?",
    )
});
static PRIVATE_KEY_END: LazyLock<Regex> =
    LazyLock::new(|| re(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"));

/// The byte just past the first private-key END line in `text`, if there is one.
pub fn private_key_end(text: &str) -> Option<usize> {
    PRIVATE_KEY_END.find(text).map(|m| m.end())
}

static JWT: LazyLock<Regex> =
    LazyLock::new(|| re(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{8,}"));

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    // Byte slicing below needs ASCII; anything else is not an IBAN anyway.
    if !compact.is_ascii() || !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        let width = if v >= 10 { 100 } else { 10 };
        rem = (rem * width + v) % 97;
    }
    rem == 1
}

/// A 40-character token that looks like an AWS secret key: upper, lower and digits, and not
/// all hex (which hashes are).
fn secret_like(t: &str) -> bool {
    let upper = t.bytes().any(|b| b.is_ascii_uppercase());
    let lower = t.bytes().any(|b| b.is_ascii_lowercase());
    let digit = t.bytes().any(|b| b.is_ascii_digit());
    let hex = t.bytes().all(|b| b.is_ascii_hexdigit());
    upper && lower && digit && !hex
}

/// Denied terms and the terms of denied topics, matched case-insensitively at word
/// boundaries by one automaton.
pub struct DeniedTerms {
    ac: Option<AhoCorasick>,
    /// Patterns from this index on belong to topics.
    first_topic: usize,
}

impl DeniedTerms {
    pub fn new(terms: &[String]) -> Self {
        Self::with_topics(terms, &std::collections::BTreeMap::new())
    }

    pub fn with_topics(
        terms: &[String],
        topics: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Self {
        let keep = |t: &&String| !t.trim().is_empty();
        let mut patterns: Vec<&String> = terms.iter().filter(keep).collect();
        let first_topic = patterns.len();
        patterns.extend(topics.values().flatten().filter(keep));
        let ac = (!patterns.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(patterns)
                    .ok()
            })
            .flatten();
        Self { ac, first_topic }
    }

    fn find(&self, text: &str, out: &mut Vec<Finding>) {
        let Some(ac) = &self.ac else { return };
        let bytes = text.as_bytes();
        for m in ac.find_iter(text) {
            let before = m.start().checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(m.end()).copied();
            let boundary = |b: Option<u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
            if boundary(before) && boundary(after) {
                out.push(Finding {
                    kind: if m.pattern().as_usize() >= self.first_topic {
                        Kind::DeniedTopic
                    } else {
                        Kind::DeniedTerm
                    },
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }
}

/// Every finding in `text`, sorted by position, overlapping ones resolved in favour of the
/// earlier and longer match.
pub fn scan(text: &str, denied: &DeniedTerms) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |kind: Kind, start: usize, end: usize| out.push(Finding { kind, start, end });
    for m in PRIVATE_KEY.find_iter(text) {
        push(Kind::PrivateKey, m.start(), m.end());
    }
    for m in JWT.find_iter(text) {
        push(Kind::Jwt, m.start(), m.end());
    }
    for m in AWS_KEY_ID.find_iter(text) {
        push(Kind::AwsAccessKey, m.start(), m.end());
    }
    for c in AWS_SECRET.captures_iter(text) {
        if let Some(m) = c.get(1)
            && secret_like(m.as_str())
        {
            push(Kind::AwsSecretKey, m.start(), m.end());
        }
    }
    for m in EMAIL.find_iter(text) {
        push(Kind::Email, m.start(), m.end());
    }
    for m in IBAN.find_iter(text) {
        if iban_valid(m.as_str()) {
            push(Kind::Iban, m.start(), m.end());
        }
    }
    for m in CARD.find_iter(text) {
        let digits: Vec<u8> = m
            .as_str()
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        if (13..=19).contains(&digits.len()) && luhn(&digits) {
            push(Kind::PaymentCard, m.start(), m.end());
        }
    }
    for c in SSN.captures_iter(text) {
        let (Some(a), Some(g), Some(s), Some(all)) = (c.get(1), c.get(2), c.get(3), c.get(0))
        else {
            continue;
        };
        let area = a.as_str();
        if area != "000"
            && area != "666"
            && !area.starts_with('9')
            && g.as_str() != "00"
            && s.as_str() != "0000"
        {
            push(Kind::UsSsn, all.start(), all.end());
        }
    }
    for m in PHONE.find_iter(text) {
        push(Kind::Phone, m.start(), m.end());
    }
    denied.find(text, &mut out);
    // Earlier first; at the same start, the longer (more specific) wins.
    out.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut kept: Vec<Finding> = Vec::with_capacity(out.len());
    for f in out {
        if kept.last().is_none_or(|l| f.start >= l.end) {
            kept.push(f);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<&'static str> {
        scan(text, &DeniedTerms::new(&["project nightingale".into()]))
            .into_iter()
            .map(|f| f.kind.name())
            .collect()
    }

    #[test]
    fn each_detector_and_its_look_alikes() {
        assert_eq!(kinds("mail jane.doe@example.co.uk now"), ["email"]);
        assert_eq!(
            kinds("call (415) 555-0132 or +442071838750"),
            ["phone", "phone"]
        );
        assert_eq!(kinds("card 4111 1111 1111 1111"), ["payment_card"]);
        assert_eq!(kinds("card 4111 1111 1111 1112"), Vec::<&str>::new()); // fails Luhn
        assert_eq!(kinds("ssn 123-45-6789"), ["us_ssn"]);
        assert_eq!(kinds("ssn 666-45-6789 and 123-00-6789"), Vec::<&str>::new());
        assert_eq!(kinds("iban GB82 WEST 1234 5698 7654 32"), ["iban"]);
        assert_eq!(
            kinds("iban GB82 WEST 1234 5698 7654 33"),
            Vec::<&str>::new()
        ); // fails mod-97
        assert_eq!(kinds("key AKIAIOSFODNN7EXAMPLE"), ["aws_access_key"]);
        assert_eq!(
            kinds("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ["aws_secret_key"]
        );
        assert_eq!(
            kinds("sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            Vec::<&str>::new()
        );
        assert_eq!(
            kinds("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"),
            ["private_key"]
        );
        assert_eq!(
            kinds(
                "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
            ),
            ["jwt"]
        );
        assert_eq!(kinds("about Project Nightingale launch"), ["denied_term"]);
        assert_eq!(kinds("about project nightingales"), Vec::<&str>::new());
        let topics = [("weapons".to_string(), vec!["nerve agent".to_string()])].into();
        let d = DeniedTerms::with_topics(&[], &topics);
        let found: Vec<_> = scan("how to make a Nerve Agent", &d)
            .into_iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(found, [Kind::DeniedTopic]);
    }

    #[test]
    fn digits_of_other_scripts_are_not_digits_and_never_panic() {
        // Devanagari and fullwidth digits once reached byte slicing in the IBAN check.
        for text in [
            "GB\u{0969}\u{0969}ABCDEFGHIJK",
            "GB82\u{FF10}WEST12345698765432",
            "card \u{0664}\u{0661}\u{0661}\u{0661} 1111 1111 1111",
            "ssn \u{0661}23-45-6789",
        ] {
            assert!(kinds(text).is_empty(), "{text}");
        }
    }
}
