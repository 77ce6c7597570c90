//! CloudTrail's `resources`: a list of `{ARN, accountId, type}` objects, stored as
//! `LIST<STRUCT<arn, account_id, type>>` so readers can unnest and filter it without parsing
//! JSON.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayBuilder, ArrayRef, ListArray, StringBuilder, StructArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use serde::Deserialize;

/// One resource an event names, as CloudTrail writes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    #[serde(rename = "ARN")]
    pub arn: Option<String>,
    #[serde(rename = "accountId")]
    pub account_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

pub fn resource_fields() -> Fields {
    Fields::from(vec![
        Field::new("arn", DataType::Utf8, true),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("type", DataType::Utf8, true),
    ])
}

fn item_field() -> Arc<Field> {
    Arc::new(Field::new_list_field(
        DataType::Struct(resource_fields()),
        true,
    ))
}

pub fn resource_list_type() -> DataType {
    DataType::List(item_field())
}

/// Builds a `resources` column row by row.
#[derive(Debug)]
pub struct ResourceListBuilder {
    arn: StringBuilder,
    account_id: StringBuilder,
    kind: StringBuilder,
    offsets: Vec<i32>,
    valid: Vec<bool>,
}

impl ResourceListBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            arn: StringBuilder::new(),
            account_id: StringBuilder::new(),
            kind: StringBuilder::new(),
            offsets,
            valid: Vec::with_capacity(rows),
        }
    }

    /// Appends a row's resources, or null when the event names none.
    pub fn append_option(&mut self, resources: Option<&[Resource]>) {
        if let Some(list) = resources {
            for r in list {
                self.arn.append_option(r.arn.as_deref());
                self.account_id.append_option(r.account_id.as_deref());
                self.kind.append_option(r.kind.as_deref());
            }
        }
        // Offsets are i32 as in Arrow's `List`; a batch never holds 2^31 resources (files are
        // flushed at a fixed row count and an event's size is bounded).
        let end = i32::try_from(self.arn.len()).unwrap_or(i32::MAX);
        self.offsets.push(end);
        self.valid.push(resources.is_some());
    }

    pub fn finish(&mut self) -> ListArray {
        let structs = StructArray::new(
            resource_fields(),
            vec![
                Arc::new(self.arn.finish()) as ArrayRef,
                Arc::new(self.account_id.finish()) as ArrayRef,
                Arc::new(self.kind.finish()) as ArrayRef,
            ],
            None,
        );
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let valid = std::mem::take(&mut self.valid);
        let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
        ListArray::new(
            item_field(),
            OffsetBuffer::new(offsets.into()),
            Arc::new(structs),
            nulls,
        )
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};

    use super::*;

    #[test]
    fn rows_of_resources_and_none() {
        let mut b = ResourceListBuilder::with_capacity(2);
        let list: Vec<Resource> = serde_json::from_str(
            r#"[{"ARN":"arn:aws:s3:::b","accountId":"1","type":"AWS::S3::Bucket"},{"ARN":"arn:x"}]"#,
        )
        .unwrap();
        b.append_option(Some(&list));
        b.append_option(None);
        b.append_option(Some(&[]));
        let a = b.finish();
        assert_eq!(a.len(), 3);
        assert!(a.is_null(1) && !a.is_null(2));
        assert_eq!(a.value_length(0), 2);
        let first = a.value(0);
        let s = first.as_struct();
        assert_eq!(s.column(0).as_string::<i32>().value(1), "arn:x");
        assert!(s.column(2).is_null(1));
        assert_eq!(a.data_type(), &resource_list_type());
        assert!(
            serde_json::from_str::<Vec<Resource>>(r#"[{"ARN":"a","other":1}]"#).is_err(),
            "an unknown member is refused, so it is never dropped"
        );
    }
}
