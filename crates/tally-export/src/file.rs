//! Export files: writing a bundle as JSON Lines, CSV or Parquet, and reading any of them back
//! for verification.
//!
//! - `.jsonl`: the stream itself ([`crate::bundle`]): header line, one line per record, end
//!   line. Self-contained.
//! - `.parquet`: one row per record ([`crate::table::columns`]), snappy-compressed; the header
//!   and end line are JSON in the file's key-value metadata under [`PARQUET_HEADER_KEY`] and
//!   [`PARQUET_END_KEY`]. Self-contained.
//! - `.csv`: one row per record with a header row; the header and end line go to a sidecar,
//!   `<file>.proof.json`, which `tally verify --export` reads from beside the CSV.
//!
//! A file is written to a temporary name and renamed into place only by
//! [`ExportFile::finish`]: an export cut short leaves nothing that looks finished.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, TimestampMillisecondBuilder, UInt64Builder};
use arrow_array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use tally_tlog::note::NoteVerifier;

use crate::bundle::{self, End, Header, Line};
use crate::table::{self, rfc3339_ms, spreadsheet_safe, Cell, Row};
use crate::verify::{BundleError, BundleVerifier, Verified};

/// Parquet key-value metadata key of the bundle header (JSON).
pub const PARQUET_HEADER_KEY: &str = "tally.export.header";
/// Parquet key-value metadata key of the bundle end (JSON).
pub const PARQUET_END_KEY: &str = "tally.export.end";
/// Rows per Parquet record batch (and row group granule).
const PARQUET_BATCH: usize = 8192;

/// An export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines: the bundle stream as is.
    Jsonl,
    /// Comma-separated values with a `.proof.json` sidecar.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format a file name's extension implies (`.jsonl`/`.ndjson`, `.csv`, `.parquet`).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// Lower-case name: `jsonl`, `csv`, `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// Where the CSV sidecar of `csv` lives.
pub fn csv_sidecar(csv: &Path) -> PathBuf {
    let mut name = csv.as_os_str().to_owned();
    name.push(".proof.json");
    PathBuf::from(name)
}

/// The CSV cells of a row, in [`table::columns_for`] `version` order.
fn csv_cells(row: &Row, version: u32) -> Vec<String> {
    let mut cells = vec![row.index.to_string()];
    cells.extend(row.cells.iter().map(|cell| match cell {
        Cell::Time(ms) => rfc3339_ms(*ms),
        Cell::Text(s) => spreadsheet_safe(s.as_deref().unwrap_or("")).into_owned(),
    }));
    cells.push(row.event.clone());
    if version >= crate::VIEWS_FORMAT_VERSION {
        cells.push(row.shown.clone().unwrap_or_default());
        cells.push(row.keys.clone().unwrap_or_default());
    }
    cells
}

/// Checks that a row's flat columns say what its record (as shown) says (they are not covered
/// by the proof, so an edit there would otherwise go unnoticed).
fn columns_match(
    row_no: u64,
    version: u32,
    expected: &Row,
    cell: impl Fn(usize) -> Option<String>,
) -> Result<(), BundleError> {
    let (row, index) = (expected, expected.index);
    let _ = row_no;
    for (i, (expected, name)) in csv_cells(row, version)
        .iter()
        .zip(table::columns_for(version))
        .enumerate()
    {
        if cell(i).as_deref() != Some(expected.as_str()) {
            return Err(BundleError::Record {
                row: row_no,
                index,
                message: format!("column {name} does not match the record in the event column"),
            });
        }
    }
    Ok(())
}

/// The row of a record line read back, for checking a file's columns.
fn expected_row(
    row_no: u64,
    index: u64,
    event: &[u8],
    shown: Option<&[u8]>,
    keys: Option<&[u8]>,
) -> Result<Row, BundleError> {
    Row::shown(index, event, shown, keys).map_err(|e| BundleError::Record {
        row: row_no,
        index,
        message: e.reason,
    })
}

/// The CSV sidecar's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    tally_export: Header,
    tally_export_end: End,
}

fn io(path: &Path, e: impl std::fmt::Display) -> BundleError {
    BundleError::Io(format!("{}: {e}", path.display()))
}

enum Sink {
    Jsonl(BufWriter<File>),
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Parquet(Box<ParquetSink>),
}

/// An export file being written.
pub struct ExportFile {
    path: PathBuf,
    temp: tempfile::NamedTempFile,
    header: Header,
    sink: Sink,
    rows: u64,
}

impl ExportFile {
    /// Starts `path` in `format` with the bundle's header. Nothing appears at `path` before
    /// [`finish`](Self::finish).
    pub fn create(path: &Path, format: Format, header: &Header) -> Result<ExportFile, BundleError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".tally-export-")
            .tempfile_in(dir)
            .map_err(|e| io(dir, e))?;
        let file = temp.reopen().map_err(|e| io(temp.path(), e))?;
        let sink = match format {
            Format::Jsonl => {
                let mut w = BufWriter::with_capacity(1 << 20, file);
                w.write_all(&bundle::header_line(header))
                    .map_err(|e| io(path, e))?;
                Sink::Jsonl(w)
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
                w.write_record(table::columns_for(header.version))
                    .map_err(|e| io(path, e))?;
                Sink::Csv(Box::new(w))
            }
            Format::Parquet => Sink::Parquet(Box::new(ParquetSink::new(file, header)?)),
        };
        Ok(ExportFile {
            path: path.to_path_buf(),
            temp,
            header: header.clone(),
            sink,
            rows: 0,
        })
    }

    /// Appends the stored record at leaf `index`.
    pub fn record(&mut self, index: u64, record: &[u8]) -> Result<(), BundleError> {
        self.record_shown(index, record, None, None)
    }

    /// Appends the stored record at leaf `index` with (version 2) the record as shown to the
    /// exporter and the disclosed keys, as its bundle line carries them.
    pub fn record_shown(
        &mut self,
        index: u64,
        record: &[u8],
        shown: Option<&[u8]>,
        keys: Option<&[u8]>,
    ) -> Result<(), BundleError> {
        let path = &self.path;
        let version = self.header.version;
        let row = || {
            Row::shown(index, record, shown, keys).map_err(|e| BundleError::Format(e.to_string()))
        };
        match &mut self.sink {
            Sink::Jsonl(w) => {
                let mut line = Vec::with_capacity(record.len() * 2 + 32);
                match shown {
                    Some(shown) => bundle::push_shown_record_line(
                        &mut line,
                        index,
                        record,
                        shown,
                        keys.map(|k| std::str::from_utf8(k).unwrap_or("{}")),
                    ),
                    None => bundle::push_record_line(&mut line, index, record),
                }
                w.write_all(&line).map_err(|e| io(path, e))?;
            }
            Sink::Csv(w) => {
                w.write_record(csv_cells(&row()?, version))
                    .map_err(|e| io(path, e))?;
            }
            Sink::Parquet(p) => p.push(row()?)?,
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows written.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Completes the file with the bundle's end and moves it into place (for CSV, the
    /// sidecar first).
    pub fn finish(self, end: &End) -> Result<(), BundleError> {
        let path = &self.path;
        match self.sink {
            Sink::Jsonl(mut w) => {
                w.write_all(&bundle::end_line(end))
                    .map_err(|e| io(path, e))?;
                w.into_inner()
                    .map_err(|e| io(path, e.error()))?
                    .sync_all()
                    .map_err(|e| io(path, e))?;
            }
            Sink::Csv(mut w) => {
                w.flush().map_err(|e| io(path, e))?;
                let inner = w.into_inner().map_err(|e| io(path, e.error()))?;
                inner
                    .into_inner()
                    .map_err(|e| io(path, e.error()))?
                    .sync_all()
                    .map_err(|e| io(path, e))?;
                let sidecar = csv_sidecar(path);
                let text = serde_json::to_vec_pretty(&Sidecar {
                    tally_export: self.header.clone(),
                    tally_export_end: end.clone(),
                })
                .map_err(|e| io(&sidecar, e))?;
                std::fs::write(&sidecar, text).map_err(|e| io(&sidecar, e))?;
            }
            Sink::Parquet(p) => p.finish(end)?,
        }
        self.temp.persist(path).map_err(|e| io(path, e.error))?;
        Ok(())
    }
}

struct ParquetSink {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    index: UInt64Builder,
    /// One per flat column, in order.
    cells: Vec<CellBuilder>,
    event: StringBuilder,
    /// Version 2: the `shown` and `keys` columns.
    views: Option<(StringBuilder, StringBuilder)>,
    pending: usize,
}

/// The builder of one flat column.
enum CellBuilder {
    Time(TimestampMillisecondBuilder),
    Text(StringBuilder),
}

/// The Parquet columns: the leaf index, the flat columns typed (times as UTC millisecond
/// timestamps, never null; strings nullable, as the first exporter wrote them, even those every
/// record carries), and the record.
fn parquet_schema(version: u32) -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields = vec![Field::new(table::INDEX_COLUMN, DataType::UInt64, false)];
    for column in table::flat_columns() {
        fields.push(if column.is_time() {
            Field::new(column.name, ts.clone(), false)
        } else {
            Field::new(column.name, DataType::Utf8, true)
        });
    }
    fields.push(Field::new(table::EVENT_COLUMN, DataType::Utf8, false));
    if version >= crate::VIEWS_FORMAT_VERSION {
        fields.push(Field::new(table::SHOWN_COLUMN, DataType::Utf8, true));
        fields.push(Field::new(table::KEYS_COLUMN, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

impl ParquetSink {
    fn new(file: File, header: &Header) -> Result<ParquetSink, BundleError> {
        let schema = parquet_schema(header.version);
        let header_json =
            serde_json::to_string(header).map_err(|e| BundleError::Io(e.to_string()))?;
        // No statistics, page indexes or bloom filters: query engines prune with them
        // without reading the rows, so they would be unverified claims about the rows (a
        // forged maximum hides a row from a filtered query). The verifier refuses them.
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_offset_index_disabled(true)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                PARQUET_HEADER_KEY.to_string(),
                header_json,
            )]))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| BundleError::Io(e.to_string()))?;
        Ok(ParquetSink {
            writer,
            schema,
            index: UInt64Builder::new(),
            cells: table::flat_columns()
                .iter()
                .map(|column| {
                    if column.is_time() {
                        CellBuilder::Time(TimestampMillisecondBuilder::new().with_timezone("UTC"))
                    } else {
                        CellBuilder::Text(StringBuilder::new())
                    }
                })
                .collect(),
            event: StringBuilder::new(),
            views: (header.version >= crate::VIEWS_FORMAT_VERSION)
                .then(|| (StringBuilder::new(), StringBuilder::new())),
            pending: 0,
        })
    }

    fn push(&mut self, row: Row) -> Result<(), BundleError> {
        self.index.append_value(row.index);
        for (builder, cell) in self.cells.iter_mut().zip(&row.cells) {
            match (builder, cell) {
                (CellBuilder::Time(b), Cell::Time(ms)) => b.append_value(*ms),
                (CellBuilder::Text(b), Cell::Text(value)) => b.append_option(value.as_deref()),
                // Builders and cells come from the same column list, in the same order.
                _ => return Err(BundleError::Io("a cell of the wrong type".into())),
            }
        }
        self.event.append_value(&row.event);
        if let Some((shown, keys)) = &mut self.views {
            shown.append_option(row.shown.as_deref());
            keys.append_option(row.keys.as_deref());
        }
        self.pending += 1;
        if self.pending >= PARQUET_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BundleError> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.index.finish())];
        columns.extend(self.cells.iter_mut().map(|b| match b {
            CellBuilder::Time(b) => Arc::new(b.finish()) as ArrayRef,
            CellBuilder::Text(b) => Arc::new(b.finish()) as ArrayRef,
        }));
        columns.push(Arc::new(self.event.finish()));
        if let Some((shown, keys)) = &mut self.views {
            columns.push(Arc::new(shown.finish()));
            columns.push(Arc::new(keys.finish()));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| BundleError::Io(e.to_string()))?;
        self.writer
            .write(&batch)
            .map_err(|e| BundleError::Io(e.to_string()))?;
        self.pending = 0;
        Ok(())
    }

    fn finish(mut self: Box<Self>, end: &End) -> Result<(), BundleError> {
        self.flush()?;
        let end_json = serde_json::to_string(end).map_err(|e| BundleError::Io(e.to_string()))?;
        self.writer
            .append_key_value_metadata(KeyValue::new(PARQUET_END_KEY.to_string(), end_json));
        let file = self
            .writer
            .into_inner()
            .map_err(|e| BundleError::Io(e.to_string()))?;
        file.sync_all().map_err(|e| BundleError::Io(e.to_string()))
    }
}

/// Verifies an export file of any format against the log's key; `on_row` is called with the
/// number of rows checked so far, every few thousand rows (progress).
pub fn verify_file(
    path: &Path,
    key: &NoteVerifier,
    mut on_row: impl FnMut(u64),
) -> Result<Verified, BundleError> {
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(|e| io(path, e))?;
    drop(file);
    if n == 0 {
        return Err(BundleError::Format(format!(
            "{}: the file is empty",
            path.display()
        )));
    }
    if &magic[..n] == b"PAR1" {
        verify_parquet(path, key, &mut on_row)
    } else if n > 0 && magic[0] == b'{' {
        verify_jsonl(path, key, &mut on_row)
    } else {
        verify_csv(path, key, &mut on_row)
    }
}

fn verify_jsonl(
    path: &Path,
    key: &NoteVerifier,
    on_row: &mut dyn FnMut(u64),
) -> Result<Verified, BundleError> {
    let reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| io(path, e))?);
    let mut verifier: Option<BundleVerifier> = None;
    let mut lines = reader.lines();
    let mut n = 0;
    while let Some(line) = lines.next() {
        n += 1;
        let line = line.map_err(|e| io(path, e))?;
        let line_no = n;
        if line.is_empty() {
            continue;
        }
        let bad = |m: String| BundleError::Format(format!("line {line_no}: {m}"));
        match (
            bundle::parse_line(&line).map_err(|e| bad(e.to_string()))?,
            verifier.as_mut(),
        ) {
            (Line::Header(h), None) => verifier = Some(BundleVerifier::new(h, key)?),
            (Line::Header(_), Some(_)) => return Err(bad("a second header line".into())),
            (_, None) => return Err(bad("the first line must be the export header".into())),
            (
                Line::Record {
                    index,
                    event,
                    shown,
                    keys,
                },
                Some(v),
            ) => {
                v.record_shown(
                    index,
                    event.get().as_bytes(),
                    shown.map(|s| s.get().as_bytes()),
                    keys.map(|k| k.get().as_bytes()),
                )?;
                if v.rows().is_multiple_of(4096) {
                    on_row(v.rows());
                }
            }
            (Line::End(end), Some(_)) => {
                let v = verifier.take().expect("matched Some");
                on_row(v.rows());
                let verified = v.finish(&end)?;
                // Lines after the end would be read by other tools but covered by nothing.
                for (m, rest) in lines.by_ref().enumerate() {
                    if !rest.map_err(|e| io(path, e))?.is_empty() {
                        return Err(BundleError::Format(format!(
                            "line {}: data after the end line",
                            line_no + m + 1
                        )));
                    }
                }
                return Ok(verified);
            }
            (Line::Error(m), Some(_)) => {
                return Err(BundleError::Format(format!(
                    "the server failed during the export: {m}"
                )))
            }
        }
    }
    match verifier {
        None => Err(BundleError::Format("the file is empty".into())),
        Some(_) => Err(BundleError::Truncated),
    }
}

fn verify_csv(
    path: &Path,
    key: &NoteVerifier,
    on_row: &mut dyn FnMut(u64),
) -> Result<Verified, BundleError> {
    let sidecar = csv_sidecar(path);
    let text = std::fs::read(&sidecar).map_err(|e| {
        BundleError::Io(format!(
            "{}: {e} (a CSV export's proof is in this file beside it; keep the two together)",
            sidecar.display()
        ))
    })?;
    let Sidecar {
        tally_export: header,
        tally_export_end: end,
    } = serde_json::from_slice(&text)
        .map_err(|e| BundleError::Format(format!("{}: {e}", sidecar.display())))?;
    let version = header.version;
    let mut verifier = BundleVerifier::new(header, key)?;
    let mut reader = csv::Reader::from_path(path).map_err(|e| io(path, e))?;
    let headers = reader.byte_headers().map_err(|e| io(path, e))?.clone();
    // Exactly the columns the exporter writes, in order: an added, renamed, duplicated or
    // moved column would be shown by a spreadsheet but checked by nothing.
    let expected = table::columns_for(version);
    if headers.len() != expected.len()
        || headers
            .iter()
            .zip(&expected)
            .any(|(h, e)| h != e.as_bytes())
    {
        return Err(BundleError::Format(format!(
            "{}: the header row must be exactly the export's columns ({})",
            path.display(),
            expected.join(",")
        )));
    }
    let index_col = 0;
    let event_col = table::columns().len() - 1;
    // Version 2: an empty `shown` or `keys` cell is none.
    let optional = |row: &csv::ByteRecord, col: usize| {
        row.get(col).filter(|c| !c.is_empty()).map(<[u8]>::to_vec)
    };
    let mut row = csv::ByteRecord::new();
    while reader.read_byte_record(&mut row).map_err(|e| io(path, e))? {
        let line = row.position().map(|p| p.line()).unwrap_or(0);
        let bad = |m: &str| BundleError::Format(format!("{} line {line}: {m}", path.display()));
        let index = std::str::from_utf8(row.get(index_col).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("index is not a number"))?;
        let event = row.get(event_col).ok_or_else(|| bad("no event column"))?;
        let (shown, keys) = if version >= crate::VIEWS_FORMAT_VERSION {
            (optional(&row, event_col + 1), optional(&row, event_col + 2))
        } else {
            (None, None)
        };
        verifier.record_shown(index, event, shown.as_deref(), keys.as_deref())?;
        let expected = expected_row(
            verifier.rows(),
            index,
            event,
            shown.as_deref(),
            keys.as_deref(),
        )?;
        let cells = &row;
        columns_match(verifier.rows(), version, &expected, |i| {
            String::from_utf8(cells.get(i)?.to_vec()).ok()
        })?;
        if verifier.rows().is_multiple_of(4096) {
            on_row(verifier.rows());
        }
    }
    on_row(verifier.rows());
    verifier.finish(&end)
}

fn verify_parquet(
    path: &Path,
    key: &NoteVerifier,
    on_row: &mut dyn FnMut(u64),
) -> Result<Verified, BundleError> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| io(path, e))?;
    let kv = |name: &str| -> Result<String, BundleError> {
        builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == name))
            .and_then(|k| k.value.clone())
            .ok_or_else(|| {
                BundleError::Format(format!(
                    "{}: no {name} metadata (not a Tally export, or cut short)",
                    path.display()
                ))
            })
    };
    check_parquet_metadata(path, builder.metadata())?;
    let header: Header = serde_json::from_str(&kv(PARQUET_HEADER_KEY)?)
        .map_err(|e| BundleError::Format(format!("{PARQUET_HEADER_KEY}: {e}")))?;
    let end_json = kv(PARQUET_END_KEY).map_err(|_| BundleError::Truncated)?;
    let end: End = serde_json::from_str(&end_json)
        .map_err(|e| BundleError::Format(format!("{PARQUET_END_KEY}: {e}")))?;
    let version = header.version;
    let mut verifier = BundleVerifier::new(header, key)?;

    let expected = parquet_schema(version);
    let fields = builder.schema().fields();
    let same = |a: &Field, b: &Field| {
        a.name() == b.name()
            && a.data_type() == b.data_type()
            && a.is_nullable() == b.is_nullable()
            && a.metadata().is_empty()
    };
    if fields.len() != expected.fields().len()
        || fields
            .iter()
            .zip(expected.fields())
            .any(|(a, b)| !same(a, b))
    {
        return Err(BundleError::Format(format!(
            "{}: the columns must be exactly the export's ({}), with their types",
            path.display(),
            table::columns_for(version).join(",")
        )));
    }
    let reader = builder
        .with_batch_size(PARQUET_BATCH)
        .build()
        .map_err(|e| io(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| io(path, e))?;
        let wrong = || BundleError::Format(format!("{}: unexpected column types", path.display()));
        let indexes = batch
            .column_by_name(table::INDEX_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .ok_or_else(wrong)?;
        let events = batch
            .column_by_name(table::EVENT_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(wrong)?;
        let cells = table::flat_columns()
            .iter()
            .map(|column| {
                let array = batch.column_by_name(column.name).map(|c| c.as_any());
                if column.is_time() {
                    array
                        .and_then(|a| a.downcast_ref::<TimestampMillisecondArray>())
                        .map(CellArray::Time)
                } else {
                    array
                        .and_then(|a| a.downcast_ref::<StringArray>())
                        .map(CellArray::Text)
                }
                .ok_or_else(wrong)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let text_column = |name: &str| -> Result<Option<&StringArray>, BundleError> {
            if version < crate::VIEWS_FORMAT_VERSION {
                return Ok(None);
            }
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .map(Some)
                .ok_or_else(wrong)
        };
        let (shown_col, keys_col) = (
            text_column(table::SHOWN_COLUMN)?,
            text_column(table::KEYS_COLUMN)?,
        );
        fn cell_of(array: Option<&StringArray>, r: usize) -> Option<&[u8]> {
            array.and_then(|a| (!a.is_null(r)).then(|| a.value(r).as_bytes()))
        }
        if indexes.null_count() > 0 || events.null_count() > 0 {
            return Err(BundleError::Format(format!(
                "{}: empty index or event cells",
                path.display()
            )));
        }
        for r in 0..batch.num_rows() {
            let (index, event) = (indexes.value(r), events.value(r).as_bytes());
            let (shown, keys) = (cell_of(shown_col, r), cell_of(keys_col, r));
            verifier.record_shown(index, event, shown, keys)?;
            let row_no = verifier.rows();
            let expected = expected_row(row_no, index, event, shown, keys)?;
            let mismatch = cells
                .iter()
                .zip(&expected.cells)
                .zip(table::flat_columns())
                .find(|((array, want), _)| match (array, want) {
                    (CellArray::Time(a), Cell::Time(ms)) => a.is_null(r) || a.value(r) != *ms,
                    (CellArray::Text(a), Cell::Text(s)) => {
                        (!a.is_null(r)).then(|| a.value(r)) != s.as_deref()
                    }
                    _ => true,
                })
                .map(|(_, column)| column.name);
            if let Some(name) = mismatch {
                return Err(BundleError::Record {
                    row: row_no,
                    index,
                    message: format!("column {name} does not match the record in the event column"),
                });
            }
        }
        on_row(verifier.rows());
    }
    verifier.finish(&end)
}

/// A flat column of a Parquet batch, typed.
enum CellArray<'a> {
    Time(&'a TimestampMillisecondArray),
    Text(&'a StringArray),
}

/// Refuses Parquet metadata that readers act on but the verifier does not check: key-value
/// entries other than the bundle's (each exactly once) and Arrow's schema, and column
/// statistics, page indexes, bloom filters or sort orders, which query engines use to skip
/// rows without reading them.
fn check_parquet_metadata(
    path: &Path,
    meta: &parquet::file::metadata::ParquetMetaData,
) -> Result<(), BundleError> {
    let bad = |m: String| BundleError::Format(format!("{}: {m}", path.display()));
    let mut seen: Vec<&str> = Vec::new();
    for kv in meta
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
    {
        let key = kv.key.as_str();
        if ![PARQUET_HEADER_KEY, PARQUET_END_KEY, "ARROW:schema"].contains(&key) {
            return Err(bad(format!(
                "metadata key {key:?} is not part of a Tally export"
            )));
        }
        if seen.contains(&key) {
            return Err(bad(format!("metadata key {key:?} appears twice")));
        }
        seen.push(key);
    }
    for (g, group) in meta.row_groups().iter().enumerate() {
        if group.sorting_columns().is_some() {
            return Err(bad(format!("row group {g} declares a sort order")));
        }
        for column in group.columns() {
            let what = if column.statistics().is_some() {
                "statistics"
            } else if column.column_index_offset().is_some()
                || column.offset_index_offset().is_some()
            {
                "a page index"
            } else if column.bloom_filter_offset().is_some() {
                "a bloom filter"
            } else {
                continue;
            };
            return Err(bad(format!(
                "row group {g}, column {} carries {what}, which a Tally export never writes and \
                 the proof does not cover",
                column.column_path()
            )));
        }
    }
    Ok(())
}
