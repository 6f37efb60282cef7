//! Parquet encoding of artifact tables: uncompressed, one row group per batch, deterministic
//! bytes for equal input (the writer's `created_by` is fixed, no timestamps are written).
use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::Path;

/// Writes `batches` (all of `schema`) to `path` as Parquet; returns the row count.
pub fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let props = WriterProperties::builder()
        .set_created_by(format!("mexa {}", env!("CARGO_PKG_VERSION")))
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut w = ArrowWriter::try_new(file, schema, Some(props))?;
    let mut rows = 0u64;
    for b in batches {
        rows += b.num_rows() as u64;
        w.write(b)?;
    }
    w.close()?;
    Ok(rows)
}

/// Decodes a Parquet file already read into memory (`path` only names it in errors).
pub fn read_parquet_bytes(bytes: Vec<u8>, path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .with_context(|| format!("reading Parquet footer of {}", path.display()))?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(8192).build()?;
    let batches =
        reader.collect::<std::result::Result<Vec<_>, _>>().with_context(|| format!("decoding {}", path.display()))?;
    Ok((schema, batches))
}

/// Reads a whole Parquet file into record batches.
pub fn read_parquet(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let bytes = std::fs::read(path).with_context(|| format!("opening {}", path.display()))?;
    read_parquet_bytes(bytes, path)
}

/// A printable look at a table: its schema and first rows.
pub struct TableSummary;

impl TableSummary {
    /// `name: type` per field, one per line.
    pub fn schema(schema: &SchemaRef) -> String {
        schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>().join("\n")
    }

    /// The first `n` rows as an aligned text table; long cells are cut to `width` characters.
    pub fn head(schema: &SchemaRef, batches: &[RecordBatch], n: usize, width: usize) -> Result<String> {
        let opts = FormatOptions::default();
        let mut rows: Vec<Vec<String>> = vec![schema.fields().iter().map(|f| f.name().clone()).collect()];
        'outer: for b in batches {
            let fmts = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            for r in 0..b.num_rows() {
                if rows.len() > n {
                    break 'outer;
                }
                rows.push(
                    fmts.iter()
                        .map(|f| {
                            let s = display_number(f.value(r).to_string());
                            if s.chars().count() > width {
                                let cut: String = s.chars().take(width.saturating_sub(1)).collect();
                                format!("{cut}…")
                            } else {
                                s
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(format_rows_fit(&rows, terminal_width()))
    }
}

/// Width to format for: $COLUMNS, else 100.
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&w: &usize| w >= 40).unwrap_or(100)
}

/// Like [`format_rows`], but a table wider than `width` is printed as several blocks of
/// columns, each repeating the first column so rows stay identifiable.
pub fn format_rows_fit(rows: &[Vec<String>], width: usize) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    if widths.iter().map(|w| w + 2).sum::<usize>() <= width + 2 || cols < 3 {
        return format_rows(rows);
    }
    let mut blocks: Vec<Vec<usize>> = Vec::new();
    let mut c = 1;
    while c < cols {
        let mut block = vec![0];
        let mut used = widths[0] + 2;
        while c < cols && (block.len() == 1 || used + widths[c] + 2 <= width + 2) {
            used += widths[c] + 2;
            block.push(c);
            c += 1;
        }
        blocks.push(block);
    }
    blocks
        .iter()
        .map(|b| {
            format_rows(
                &rows
                    .iter()
                    .map(|r| b.iter().map(|&c| r.get(c).cloned().unwrap_or_default()).collect())
                    .collect::<Vec<_>>(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Floats with more than four decimals are shown with four (for people; CSV/JSON keep all).
fn display_number(s: String) -> String {
    match (s.split_once('.'), s.parse::<f64>()) {
        (Some((_, frac)), Ok(v)) if frac.len() > 4 && !frac.contains(['e', 'E']) && v.abs() >= 1e-3 => {
            format!("{v:.4}")
        }
        (_, Ok(v)) if s.contains(['e', 'E']) || (v != 0.0 && v.abs() < 1e-3) => format!("{v:.2e}"),
        _ => s,
    }
}

/// Left-aligned columns separated by two spaces.
pub fn format_rows(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(c, s)| format!("{s:<w$}", w = widths[c])).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Every cell of a table as text, row by row (header first). Floats are written with Rust's
/// shortest representation that reads back to the same value (arrow's display drops digits).
pub fn text_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    use arrow::array::{Array, Float32Array, Float64Array};
    let opts = FormatOptions::default();
    let mut rows: Vec<Vec<String>> = vec![schema.fields().iter().map(|f| f.name().clone()).collect()];
    for b in batches {
        let cells: Vec<Box<dyn Fn(usize) -> String + '_>> = b
            .columns()
            .iter()
            .map(|c| -> Result<Box<dyn Fn(usize) -> String + '_>> {
                if let Some(a) = c.as_any().downcast_ref::<Float64Array>() {
                    return Ok(Box::new(move |r| if a.is_null(r) { String::new() } else { a.value(r).to_string() }));
                }
                if let Some(a) = c.as_any().downcast_ref::<Float32Array>() {
                    return Ok(Box::new(move |r| if a.is_null(r) { String::new() } else { a.value(r).to_string() }));
                }
                let f = ArrayFormatter::try_new(c.as_ref(), &opts)?;
                Ok(Box::new(move |r| f.value(r).to_string()))
            })
            .collect::<Result<_>>()?;
        for r in 0..b.num_rows() {
            rows.push(cells.iter().map(|f| f(r)).collect());
        }
    }
    Ok(rows)
}

/// RFC 4180 CSV of a table.
pub fn to_csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String> {
    let mut out = String::new();
    for row in text_rows(schema, batches)? {
        let cells: Vec<String> = row
            .iter()
            .map(|c| if c.contains([',', '"', '\n']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.clone() })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// One JSON object per row (numbers as numbers).
pub fn to_json_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<serde_json::Value>> {
    use arrow::datatypes::DataType as D;
    let rows = text_rows(schema, batches)?;
    let types: Vec<&D> = schema.fields().iter().map(|f| f.data_type()).collect();
    Ok(rows[1..]
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            for ((name, cell), ty) in rows[0].iter().zip(r).zip(&types) {
                let v = match ty {
                    D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
                        cell.parse::<i64>().map(serde_json::Value::from).unwrap_or(serde_json::Value::Null)
                    }
                    D::Float32 | D::Float64 => cell
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(serde_json::Value::Number)
                        .unwrap_or(serde_json::Value::Null),
                    D::Boolean => serde_json::Value::Bool(cell == "true"),
                    _ => serde_json::Value::String(cell.clone()),
                };
                m.insert(name.clone(), v);
            }
            serde_json::Value::Object(m)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn wide_tables_fold_into_blocks_that_fit() {
        let header: Vec<String> = (0..12).map(|i| format!("column_{i:02}")).collect();
        let row: Vec<String> = (0..12).map(|i| format!("{}", i * 1000)).collect();
        let out = format_rows_fit(&[header, row], 60);
        assert!(out.lines().all(|l| l.chars().count() <= 60), "{out}");
        assert_eq!(out.matches("column_00").count(), 3, "the first column starts every block:\n{out}");
        assert!(out.contains("column_11") && out.contains("11000"));
        let narrow = format_rows_fit(&[vec!["a".into(), "b".into(), "c".into()]], 60);
        assert_eq!(narrow, format_rows(&[vec!["a".into(), "b".into(), "c".into()]]));
    }

    #[test]
    fn csv_and_json_keep_every_bit_of_floats() {
        let vals = vec![0.44736842105263147, 1.0 / 3.0, 1e-300, -2.5];
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(vals.clone()))]).unwrap();
        let json = to_json_rows(&schema, std::slice::from_ref(&b)).unwrap();
        let back: Vec<f64> = json.iter().map(|r| r["x"].as_f64().unwrap()).collect();
        assert_eq!(back, vals);
        let csv = to_csv(&schema, &[b]).unwrap();
        let back: Vec<f64> = csv.lines().skip(1).map(|l| l.parse().unwrap()).collect();
        assert_eq!(back, vals);
    }
}
