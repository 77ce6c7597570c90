//! CloudTrail events to `cloudtrail` rows: typed top-level fields, a flattened `userIdentity`,
//! and the polymorphic parts (`requestParameters`, `responseElements`, ...) kept as JSON text.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::{boolean, json_text, nested, text, timestamp_ms};
use crate::reject::{Reason, Reject};
use lake::resources::Resource;
use lake::schema::CloudTrailColumns;

/// A CloudTrail event as captured: every field raw, read leniently afterwards.
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "eventTime", borrow)]
    event_time: Option<&'a RawValue>,
    #[serde(rename = "eventVersion", borrow)]
    event_version: Option<&'a RawValue>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Option<&'a RawValue>,
    #[serde(rename = "eventName", borrow)]
    event_name: Option<&'a RawValue>,
    #[serde(rename = "awsRegion", borrow)]
    aws_region: Option<&'a RawValue>,
    #[serde(rename = "sourceIPAddress", borrow)]
    source_ip: Option<&'a RawValue>,
    #[serde(rename = "userAgent", borrow)]
    user_agent: Option<&'a RawValue>,
    #[serde(rename = "requestID", borrow)]
    request_id: Option<&'a RawValue>,
    #[serde(rename = "eventID", borrow)]
    event_id: Option<&'a RawValue>,
    #[serde(rename = "readOnly", borrow)]
    read_only: Option<&'a RawValue>,
    #[serde(rename = "eventType", borrow)]
    event_type: Option<&'a RawValue>,
    #[serde(rename = "eventCategory", borrow)]
    event_category: Option<&'a RawValue>,
    #[serde(rename = "managementEvent", borrow)]
    management_event: Option<&'a RawValue>,
    #[serde(rename = "recipientAccountId", borrow)]
    recipient_account_id: Option<&'a RawValue>,
    #[serde(rename = "sharedEventID", borrow)]
    shared_event_id: Option<&'a RawValue>,
    #[serde(rename = "errorCode", borrow)]
    error_code: Option<&'a RawValue>,
    #[serde(rename = "errorMessage", borrow)]
    error_message: Option<&'a RawValue>,
    #[serde(rename = "vpcEndpointId", borrow)]
    vpc_endpoint_id: Option<&'a RawValue>,
    #[serde(rename = "vpcEndpointAccountId", borrow)]
    vpc_endpoint_account_id: Option<&'a RawValue>,
    #[serde(rename = "sessionCredentialFromConsole", borrow)]
    session_credential_from_console: Option<&'a RawValue>,
    #[serde(rename = "tlsDetails", borrow)]
    tls_details: Option<&'a RawValue>,
    #[serde(rename = "userIdentity", borrow)]
    user_identity: Option<&'a RawValue>,
    #[serde(rename = "requestParameters", borrow)]
    request_parameters: Option<&'a RawValue>,
    #[serde(rename = "responseElements", borrow)]
    response_elements: Option<&'a RawValue>,
    #[serde(rename = "additionalEventData", borrow)]
    additional_event_data: Option<&'a RawValue>,
    #[serde(rename = "serviceEventDetails", borrow)]
    service_event_details: Option<&'a RawValue>,
    #[serde(borrow)]
    resources: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Tls<'a> {
    #[serde(rename = "tlsVersion", borrow)]
    version: Option<&'a RawValue>,
    #[serde(rename = "cipherSuite", borrow)]
    cipher_suite: Option<&'a RawValue>,
    #[serde(rename = "clientProvidedHostHeader", borrow)]
    host_header: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct UserIdentity<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    arn: Option<&'a RawValue>,
    #[serde(rename = "accountId", borrow)]
    account_id: Option<&'a RawValue>,
    #[serde(rename = "principalId", borrow)]
    principal_id: Option<&'a RawValue>,
    #[serde(rename = "accessKeyId", borrow)]
    access_key_id: Option<&'a RawValue>,
    #[serde(rename = "userName", borrow)]
    user_name: Option<&'a RawValue>,
    #[serde(rename = "invokedBy", borrow)]
    invoked_by: Option<&'a RawValue>,
    #[serde(rename = "identityStoreUserId", borrow)]
    identity_store_user_id: Option<&'a RawValue>,
    #[serde(rename = "onBehalfOf", borrow)]
    on_behalf_of: Option<&'a RawValue>,
    #[serde(rename = "credentialId", borrow)]
    credential_id: Option<&'a RawValue>,
    #[serde(rename = "identityProvider", borrow)]
    identity_provider: Option<&'a RawValue>,
    #[serde(rename = "sessionContext", borrow)]
    session_context: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct SessionContext<'a> {
    #[serde(borrow)]
    attributes: Option<&'a RawValue>,
    #[serde(rename = "sessionIssuer", borrow)]
    session_issuer: Option<&'a RawValue>,
    #[serde(rename = "sourceIdentity", borrow)]
    source_identity: Option<&'a RawValue>,
    #[serde(rename = "sessionTags", alias = "principalTags", borrow)]
    session_tags: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct SessionAttributes<'a> {
    #[serde(rename = "creationDate", borrow)]
    creation_date: Option<&'a RawValue>,
    #[serde(rename = "mfaAuthenticated", borrow)]
    mfa_authenticated: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct SessionIssuer<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    arn: Option<&'a RawValue>,
    #[serde(rename = "accountId", borrow)]
    account_id: Option<&'a RawValue>,
    #[serde(rename = "principalId", borrow)]
    principal_id: Option<&'a RawValue>,
    #[serde(rename = "userName", borrow)]
    user_name: Option<&'a RawValue>,
}

/// A parsed event whose required fields are present, with its time.
pub struct Checked<'a> {
    pub event: Event<'a>,
    pub time_ms: i64,
    resources: Option<Vec<Resource>>,
}

impl Checked<'_> {
    pub fn event_id(&self) -> String {
        text(self.event.event_id)
            .map(|c| c.into_owned())
            .unwrap_or_default()
    }
}

/// Parses one record and checks what every row needs: an event time we can read, a source, a
/// name and an id.
pub fn parse(bytes: &[u8]) -> Result<Checked<'_>, Reject> {
    let event: Event<'_> = serde_json::from_slice(bytes).map_err(Reject::from_json)?;
    for (name, v) in [
        ("eventTime", event.event_time),
        ("eventSource", event.event_source),
        ("eventName", event.event_name),
        ("eventID", event.event_id),
    ] {
        if text(v).is_none_or(|t| t.is_empty()) {
            return Err(Reject::new(
                Reason::MissingRequiredField,
                format!("`{name}` is missing or empty"),
            ));
        }
    }
    let time_text = text(event.event_time).unwrap_or_default();
    let time_ms = timestamp_ms(&time_text).ok_or_else(|| {
        Reject::new(
            Reason::UnparseableTime,
            format!("`eventTime` `{time_text}` is not a time"),
        )
    })?;
    // CloudTrail documents `resources` as `[{ARN, accountId, type}]`; anything else is
    // quarantined whole rather than stored with members dropped.
    let resources = match json_text(event.resources) {
        None => None,
        Some(t) => Some(serde_json::from_str::<Vec<Resource>>(t).map_err(|e| {
            Reject::new(
                Reason::WrongShape,
                format!("`resources` is not a list of {{ARN, accountId, type}} objects: {e}"),
            )
        })?),
    };
    Ok(Checked {
        event,
        time_ms,
        resources,
    })
}

/// The session name of an assumed-role ARN (`arn:aws:sts::123:assumed-role/ROLE/SESSION`).
fn session_name(arn: Option<&str>) -> Option<&str> {
    let arn = arn?;
    let rest = arn.split_once(":assumed-role/")?.1;
    rest.split_once('/').map(|(_, s)| s)
}

fn opt_str(b: &mut datafusion::arrow::array::StringBuilder, v: Option<impl AsRef<str>>) {
    b.append_option(v);
}

/// Session tags: from the session context when present; for the `AssumeRole*` call that created
/// a session, the `tags` it passed (`[{key, value}]`) as a `{key: value}` object.
fn session_tags(session: &SessionContext<'_>, e: &Event<'_>) -> Option<String> {
    if let Some(t) = json_text(session.session_tags) {
        return Some(t.to_string());
    }
    let name = text(e.event_name)?;
    if !name.starts_with("AssumeRole") {
        return None;
    }
    #[derive(Deserialize)]
    struct Tag {
        key: String,
        value: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct Params {
        #[serde(default)]
        tags: Option<Vec<Tag>>,
    }
    let params: Params = serde_json::from_str(json_text(e.request_parameters)?).ok()?;
    let map: serde_json::Map<String, serde_json::Value> =
        params.tags?.into_iter().map(|t| (t.key, t.value)).collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// Appends one checked event as a row.
/// Appends one event's row; `integrity` is its file's state against CloudTrail's digests, when
/// they were checked (`cairn ingest cloudtrail --verify-integrity`).
pub fn append(
    cols: &mut CloudTrailColumns,
    c: &Checked<'_>,
    source: &str,
    number: u64,
    integrity: Option<&str>,
) {
    let e = &c.event;
    cols.event_time.append_value(c.time_ms);
    opt_str(&mut cols.event_version, text(e.event_version));
    opt_str(&mut cols.event_source, text(e.event_source));
    opt_str(&mut cols.event_name, text(e.event_name));
    opt_str(&mut cols.aws_region, text(e.aws_region));
    opt_str(&mut cols.source_ip_address, text(e.source_ip));
    opt_str(&mut cols.user_agent, text(e.user_agent));
    opt_str(&mut cols.request_id, text(e.request_id));
    opt_str(&mut cols.event_id, text(e.event_id));
    cols.read_only.append_option(boolean(e.read_only));
    opt_str(&mut cols.event_type, text(e.event_type));
    opt_str(&mut cols.event_category, text(e.event_category));
    cols.management_event
        .append_option(boolean(e.management_event));
    opt_str(&mut cols.recipient_account_id, text(e.recipient_account_id));
    opt_str(&mut cols.shared_event_id, text(e.shared_event_id));
    opt_str(&mut cols.error_code, text(e.error_code));
    opt_str(&mut cols.error_message, text(e.error_message));
    opt_str(&mut cols.vpc_endpoint_id, text(e.vpc_endpoint_id));
    opt_str(
        &mut cols.vpc_endpoint_account_id,
        text(e.vpc_endpoint_account_id),
    );
    cols.session_credential_from_console
        .append_option(boolean(e.session_credential_from_console));
    let tls: Tls<'_> = nested(e.tls_details);
    opt_str(&mut cols.tls_version, text(tls.version));
    opt_str(&mut cols.tls_cipher_suite, text(tls.cipher_suite));
    opt_str(
        &mut cols.tls_client_provided_host_header,
        text(tls.host_header),
    );

    let user: UserIdentity<'_> = nested(e.user_identity);
    let session: SessionContext<'_> = nested(user.session_context);
    let attrs: SessionAttributes<'_> = nested(session.attributes);
    let issuer: SessionIssuer<'_> = nested(session.session_issuer);
    let arn = text(user.arn);
    opt_str(&mut cols.user_type, text(user.kind));
    opt_str(&mut cols.user_session_name, session_name(arn.as_deref()));
    opt_str(&mut cols.user_arn, arn.as_deref());
    opt_str(&mut cols.user_account_id, text(user.account_id));
    opt_str(&mut cols.user_principal_id, text(user.principal_id));
    opt_str(&mut cols.user_access_key_id, text(user.access_key_id));
    opt_str(&mut cols.user_name, text(user.user_name));
    opt_str(&mut cols.user_invoked_by, text(user.invoked_by));
    opt_str(&mut cols.user_session_issuer_type, text(issuer.kind));
    opt_str(&mut cols.user_session_issuer_arn, text(issuer.arn));
    opt_str(
        &mut cols.user_session_issuer_account_id,
        text(issuer.account_id),
    );
    opt_str(
        &mut cols.user_session_issuer_principal_id,
        text(issuer.principal_id),
    );
    opt_str(
        &mut cols.user_session_issuer_user_name,
        text(issuer.user_name),
    );
    cols.user_mfa_authenticated
        .append_option(boolean(attrs.mfa_authenticated));
    cols.user_session_creation_date
        .append_option(text(attrs.creation_date).and_then(|t| timestamp_ms(&t)));
    opt_str(
        &mut cols.user_source_identity,
        text(session.source_identity),
    );
    opt_str(
        &mut cols.user_session_tags,
        session_tags(&session, e).as_deref(),
    );
    opt_str(
        &mut cols.user_identity_store_user_id,
        text(user.identity_store_user_id),
    );
    opt_str(&mut cols.user_on_behalf_of, json_text(user.on_behalf_of));
    opt_str(&mut cols.user_credential_id, text(user.credential_id));
    opt_str(
        &mut cols.user_identity_provider,
        text(user.identity_provider),
    );
    opt_str(&mut cols.user_identity, json_text(e.user_identity));
    opt_str(
        &mut cols.request_parameters,
        json_text(e.request_parameters),
    );
    opt_str(&mut cols.response_elements, json_text(e.response_elements));
    opt_str(
        &mut cols.additional_event_data,
        json_text(e.additional_event_data),
    );
    opt_str(
        &mut cols.service_event_details,
        json_text(e.service_event_details),
    );
    cols.resources.append_option(c.resources.as_deref());
    cols.ingest_source.append_value(source);
    cols.ingest_record.append_value(number as i64);
    cols.integrity.append_option(integrity);
    cols.row_done();
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampMillisecondType;

    #[test]
    fn assumed_role_is_flattened() {
        let rec = br#"{"eventTime":"2024-10-17T20:09:52Z","eventSource":"bedrock.amazonaws.com","eventName":"InvokeModel",
            "eventID":"e1","readOnly":"true","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/alice",
            "sessionContext":{"sourceIdentity":"alice","attributes":{"creationDate":"2024-10-17T20:07:50Z","mfaAuthenticated":"false"},
            "sessionIssuer":{"type":"Role","arn":"arn:aws:iam::1:role/r","userName":"r"}}},
            "requestParameters":{"modelId":"m"},"responseElements":null}"#;
        let c = parse(rec).unwrap();
        let mut cols = CloudTrailColumns::new(4);
        append(&mut cols, &c, "s3://b/k", 7, None);
        let batch = cols.finish().unwrap();
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        assert_eq!(
            col("user_session_name").as_string::<i32>().value(0),
            "alice"
        );
        assert_eq!(
            col("user_source_identity").as_string::<i32>().value(0),
            "alice"
        );
        assert!(col("read_only").as_boolean().value(0));
        assert!(!col("user_mfa_authenticated").as_boolean().value(0));
        assert_eq!(
            col("request_parameters").as_string::<i32>().value(0),
            r#"{"modelId":"m"}"#
        );
        assert!(col("response_elements").is_null(0));
        assert_eq!(
            col("event_time")
                .as_primitive::<TimestampMillisecondType>()
                .value(0),
            1_729_195_792_000
        );
    }

    #[test]
    fn bad_records_say_why() {
        assert_eq!(parse(b"[1,2]").err().unwrap().reason, Reason::WrongShape);
        assert_eq!(
            parse(b"{\"eventTime\":").err().unwrap().reason,
            Reason::InvalidJson
        );
        assert_eq!(
            parse(br#"{"eventName":"X","eventSource":"s","eventID":"i"}"#)
                .err()
                .unwrap()
                .reason,
            Reason::MissingRequiredField
        );
        assert_eq!(
            parse(br#"{"eventTime":"soon","eventName":"X","eventSource":"s","eventID":"i"}"#)
                .err()
                .unwrap()
                .reason,
            Reason::UnparseableTime
        );
    }
}
