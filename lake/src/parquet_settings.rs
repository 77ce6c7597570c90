//! How every Parquet file of the lake is written: zstd, row-group size, page statistics. The
//! ingest's writer and `cairn query --format parquet` share these settings.

use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

/// Rows per Parquet row group: large enough for efficient scans, small enough for pruning.
pub const ROW_GROUP_ROWS: usize = 131_072;

pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("cairn {}", env!("CARGO_PKG_VERSION")))
        .build()
}
