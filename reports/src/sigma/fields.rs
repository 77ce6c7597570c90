//! Where each CloudTrail field of a Sigma rule lives in the lake's `cloudtrail` table.
//!
//! Sigma rules name CloudTrail's JSON paths (`eventSource`, `userIdentity.type`,
//! `requestParameters.bucketName`). The lake keeps the common ones as typed columns and the
//! free-form parts (`requestParameters`, `responseElements`, `additionalEventData`,
//! `serviceEventDetails`, the whole `userIdentity`) as JSON text, read with the Trino-named JSON
//! functions both engines have. `docs/detections.md` prints this table.

/// How a column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A boolean column: compared through its text, `true` or `false`.
    Bool,
    /// A timestamp column: compared by its parts (`|hour`, `|day`, ...) or for presence.
    Time,
}

/// The fields kept as their own columns.
pub const COLUMNS: &[(&str, &str, Kind)] = &[
    ("eventTime", "event_time", Kind::Time),
    ("eventVersion", "event_version", Kind::Text),
    ("eventSource", "event_source", Kind::Text),
    ("eventName", "event_name", Kind::Text),
    ("awsRegion", "aws_region", Kind::Text),
    ("sourceIPAddress", "source_ip_address", Kind::Text),
    ("userAgent", "user_agent", Kind::Text),
    ("requestID", "request_id", Kind::Text),
    ("eventID", "event_id", Kind::Text),
    ("readOnly", "read_only", Kind::Bool),
    ("eventType", "event_type", Kind::Text),
    ("eventCategory", "event_category", Kind::Text),
    ("managementEvent", "management_event", Kind::Bool),
    ("recipientAccountId", "recipient_account_id", Kind::Text),
    ("sharedEventID", "shared_event_id", Kind::Text),
    ("errorCode", "error_code", Kind::Text),
    ("errorMessage", "error_message", Kind::Text),
    ("vpcEndpointId", "vpc_endpoint_id", Kind::Text),
    (
        "vpcEndpointAccountId",
        "vpc_endpoint_account_id",
        Kind::Text,
    ),
    (
        "sessionCredentialFromConsole",
        "session_credential_from_console",
        Kind::Bool,
    ),
    ("tlsDetails.tlsVersion", "tls_version", Kind::Text),
    ("tlsDetails.cipherSuite", "tls_cipher_suite", Kind::Text),
    (
        "tlsDetails.clientProvidedHostHeader",
        "tls_client_provided_host_header",
        Kind::Text,
    ),
    ("userIdentity.type", "user_type", Kind::Text),
    ("userIdentity.arn", "user_arn", Kind::Text),
    ("userIdentity.accountId", "user_account_id", Kind::Text),
    ("userIdentity.principalId", "user_principal_id", Kind::Text),
    ("userIdentity.accessKeyId", "user_access_key_id", Kind::Text),
    ("userIdentity.userName", "user_name", Kind::Text),
    ("userIdentity.invokedBy", "user_invoked_by", Kind::Text),
    (
        "userIdentity.sessionContext.sessionIssuer.type",
        "user_session_issuer_type",
        Kind::Text,
    ),
    (
        "userIdentity.sessionContext.sessionIssuer.arn",
        "user_session_issuer_arn",
        Kind::Text,
    ),
    (
        "userIdentity.sessionContext.sessionIssuer.accountId",
        "user_session_issuer_account_id",
        Kind::Text,
    ),
    (
        "userIdentity.sessionContext.sessionIssuer.principalId",
        "user_session_issuer_principal_id",
        Kind::Text,
    ),
    (
        "userIdentity.sessionContext.sessionIssuer.userName",
        "user_session_issuer_user_name",
        Kind::Text,
    ),
    (
        "userIdentity.sessionContext.attributes.mfaAuthenticated",
        "user_mfa_authenticated",
        Kind::Bool,
    ),
    (
        "userIdentity.sessionContext.attributes.creationDate",
        "user_session_creation_date",
        Kind::Time,
    ),
    (
        "userIdentity.sessionContext.sourceIdentity",
        "user_source_identity",
        Kind::Text,
    ),
];

/// The parts of an event kept as JSON text, and their column.
pub const JSON_COLUMNS: &[(&str, &str)] = &[
    ("requestParameters", "request_parameters"),
    ("responseElements", "response_elements"),
    ("additionalEventData", "additional_event_data"),
    ("serviceEventDetails", "service_event_details"),
    ("userIdentity", "user_identity"),
];

/// Paths that cross a JSON array, where a JSON path cannot reach the members (Trino's JSONPath
/// has no `[*]`): the field reads as the JSON text of the array, so `contains` finds a member's
/// value in it.
pub const ARRAY_PATHS: &[(&str, &str, &str)] = &[(
    "requestParameters.containerDefinitions.command",
    "request_parameters",
    "$.containerDefinitions",
)];

/// The columns a field-less keyword is searched in, as one text.
pub const KEYWORD_COLUMNS: &[&str] = &[
    "event_source",
    "event_name",
    "user_arn",
    "user_agent",
    "source_ip_address",
    "error_code",
    "error_message",
    "request_parameters",
    "response_elements",
    "additional_event_data",
    "user_identity",
];

/// A field as SQL expressions.
#[derive(Debug, Clone)]
pub struct Field {
    pub kind: Kind,
    /// The field's value as text (a scalar), NULL when absent.
    pub scalar: String,
    /// The field's value as text for substring tests: a scalar's text, or an array's or
    /// object's JSON text.
    pub text: String,
    /// NULL exactly when the field is absent (or JSON null).
    pub presence: String,
}

/// A JSON path for `a.b.c`, quoting keys that are not plain names.
fn json_path(rest: &str) -> String {
    let mut out = String::from("$");
    for key in rest.split('.') {
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push('.');
            out.push_str(key);
        } else {
            // `resolve` refuses keys holding `"` or `\\`, so the key is quoted as it is.
            out.push_str(&format!("[\"{key}\"]"));
        }
    }
    out
}

pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Resolves a Sigma field name; the error says why it has no place in the table.
pub fn resolve(name: &str) -> Result<Field, String> {
    if let Some((_, col, kind)) = COLUMNS.iter().find(|(n, _, _)| *n == name) {
        let text = match kind {
            Kind::Bool => format!("CAST({col} AS VARCHAR)"),
            _ => col.to_string(),
        };
        return Ok(Field {
            kind: *kind,
            scalar: text.clone(),
            text,
            presence: col.to_string(),
        });
    }
    if let Some((_, col, path)) = ARRAY_PATHS.iter().find(|(n, _, _)| *n == name) {
        let text = format!(
            "nullif(json_format(json_extract({col}, {})), 'null')",
            quote(path)
        );
        return Ok(Field {
            kind: Kind::Text,
            scalar: text.clone(),
            text: text.clone(),
            presence: text,
        });
    }
    for (prefix, col) in JSON_COLUMNS {
        if name == *prefix {
            // The whole part as JSON text. Policies and other documents sit in it as JSON
            // strings, their quotes escaped (`\"Effect\":\"Allow\"`); rules quote them as
            // written (`'"Allow"'`), so substring tests read the text with `\"` as `"`.
            return Ok(Field {
                kind: Kind::Text,
                scalar: col.to_string(),
                text: format!("replace({col}, '\\\"', '\"')"),
                presence: col.to_string(),
            });
        }
        if let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) {
            // Both engines' JSON paths read `["key"]` with `\"` and `\\` differently, and a
            // Sigma path's `[..]` is an array position: such keys are refused, not guessed.
            if rest.contains(['"', '\\', '[', ']']) || rest.split('.').any(str::is_empty) {
                return Err(format!(
                    "field `{name}`: a key with `\"`, `\\`, `[`, `]` or an empty part has no JSON path both engines read"
                ));
            }
            let path = quote(&json_path(rest));
            let scalar = format!("json_extract_scalar({col}, {path})");
            // JSON `null` is absent, as in Sigma: `json_extract` gives the text `null` for it.
            let whole = format!("nullif(json_format(json_extract({col}, {path})), 'null')");
            return Ok(Field {
                kind: Kind::Text,
                text: format!("coalesce({scalar}, {whole})"),
                scalar,
                presence: whole,
            });
        }
    }
    Err(format!(
        "field `{name}` is not a CloudTrail field the lake keeps (see docs/detections.md for the mapping)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_resolve_to_columns_and_json_paths() {
        assert_eq!(
            resolve("eventName").map(|f| f.scalar).ok().as_deref(),
            Some("event_name")
        );
        let f = resolve("requestParameters.bucketName").expect("json");
        assert_eq!(
            f.scalar,
            "json_extract_scalar(request_parameters, '$.bucketName')"
        );
        assert!(f.text.starts_with("coalesce("));
        let odd = resolve("requestParameters.a-b.c").expect("quoted");
        assert!(odd.scalar.contains(r#"$["a-b"].c"#), "{}", odd.scalar);
        assert!(resolve(r#"requestParameters.a"b"#).is_err());
        assert!(resolve(r"requestParameters.items\[0\]").is_err());
        assert_eq!(resolve("readOnly").map(|f| f.kind).ok(), Some(Kind::Bool));
        let e = resolve("status").expect_err("unknown");
        assert!(e.contains("`status`"), "{e}");
    }
}
