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
    write_parquet_to(file, schema, batches)
}

/// Writes `batches` as Parquet to any writer (a file, stdout); returns the row count.
pub fn write_parquet_to(out: impl std::io::Write + Send, schema: SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    let props = WriterProperties::builder()
        .set_created_by(format!("mexa {}", env!("CARGO_PKG_VERSION")))
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut w = ArrowWriter::try_new(out, schema, Some(props))?;
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
    let bytes = mexa_core::file::read(path, mexa_core::FileKind::Data)?;
    read_parquet_bytes(bytes, path)
}

/// The first cell holding NaN or an infinity, described for an error: the column, the row,
/// the row's identifying text and integer columns (language, pooling, layer, ...) and, for a
/// vector, the element. Nulls are fine: a value that is undefined is stored as null.
pub fn check_finite(schema: &SchemaRef, batches: &[RecordBatch]) -> std::result::Result<(), String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType as D, Float32Type, Float64Type};
    // Index of the first non-finite value among `len` values starting at `offset`.
    fn first_bad(a: &dyn Array, offset: usize, len: usize) -> Option<(usize, f64)> {
        match a.data_type() {
            D::Float32 => {
                let v = a.as_primitive::<Float32Type>();
                (offset..offset + len)
                    .find(|&i| !v.is_null(i) && !v.value(i).is_finite())
                    .map(|i| (i, v.value(i) as f64))
            }
            D::Float64 => {
                let v = a.as_primitive::<Float64Type>();
                (offset..offset + len).find(|&i| !v.is_null(i) && !v.value(i).is_finite()).map(|i| (i, v.value(i)))
            }
            _ => None,
        }
    }
    let mut row0 = 0;
    for b in batches {
        for (f, c) in schema.fields().iter().zip(b.columns()) {
            let found = match c.data_type() {
                D::Float32 | D::Float64 => first_bad(c.as_ref(), 0, c.len()).map(|(r, v)| (r, None, v)),
                D::FixedSizeList(_, w) => {
                    let l = c.as_fixed_size_list();
                    let w = *w as usize;
                    let values = l.values();
                    (0..l.len()).filter(|&r| !l.is_null(r)).find_map(|r| {
                        first_bad(values.as_ref(), (l.offset() + r) * w, w)
                            .map(|(i, v)| (r, Some(i - (l.offset() + r) * w), v))
                    })
                }
                D::List(_) => {
                    let l = c.as_list::<i32>();
                    (0..l.len()).filter(|&r| !l.is_null(r)).find_map(|r| {
                        let (s, e) = (l.value_offsets()[r] as usize, l.value_offsets()[r + 1] as usize);
                        first_bad(l.values().as_ref(), s, e - s).map(|(i, v)| (r, Some(i - s), v))
                    })
                }
                _ => None,
            };
            if let Some((r, element, v)) = found {
                let ids: Vec<String> = schema
                    .fields()
                    .iter()
                    .zip(b.columns())
                    .filter(|(g, _)| matches!(g.data_type(), D::Utf8 | D::Int32 | D::Int64 | D::UInt32 | D::UInt64))
                    .filter_map(|(g, a)| {
                        let fmt = ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()).ok()?;
                        let mut s = fmt.value(r).to_string();
                        if s.chars().count() > 40 {
                            s = s.chars().take(40).collect::<String>() + "…";
                        }
                        Some(format!("{}={s}", g.name()))
                    })
                    .collect();
                let at = element.map(|e| format!(" element {e}")).unwrap_or_default();
                return Err(format!(
                    "{v} in column `{}`{at}, row {}{}",
                    f.name(),
                    row0 + r,
                    if ids.is_empty() { String::new() } else { format!(" ({})", ids.join(", ")) }
                ));
            }
        }
        row0 += b.num_rows();
    }
    Ok(())
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

/// Width to format for: $COLUMNS when set (scripts pin it), else the terminal's width on
/// stdout, else 100 (a pipe or a file).
pub fn terminal_width() -> usize {
    let env = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    let term = || terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| w.0 as usize);
    env.or_else(term).filter(|&w| w >= 40).unwrap_or(100)
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
        let cells: Vec<String> =
            row.iter()
                .map(|c| {
                    if c.contains([',', '"', '\n', '\r']) {
                        format!("\"{}\"", c.replace('"', "\"\""))
                    } else {
                        c.clone()
                    }
                })
                .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// One JSON object per row: numbers as numbers, lists (embedding vectors) as arrays, nulls
/// as null; other types as their display text.
pub fn to_json_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let mut m = serde_json::Map::new();
            for (f, c) in schema.fields().iter().zip(b.columns()) {
                m.insert(f.name().clone(), json_value(c.as_ref(), r)?);
            }
            out.push(serde_json::Value::Object(m));
        }
    }
    Ok(out)
}

/// Row `r` of an Arrow array as JSON.
fn json_value(a: &dyn arrow::array::Array, r: usize) -> Result<serde_json::Value> {
    use arrow::array::{AsArray, FixedSizeListArray};
    use arrow::datatypes::{DataType as D, Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
    use serde_json::Value as J;
    if a.is_null(r) {
        return Ok(J::Null);
    }
    let float = |v: f64| serde_json::Number::from_f64(v).map(J::Number).unwrap_or(J::Null);
    let list = |values: arrow::array::ArrayRef| -> Result<J> {
        Ok(J::Array((0..values.len()).map(|i| json_value(values.as_ref(), i)).collect::<Result<_>>()?))
    };
    Ok(match a.data_type() {
        D::Boolean => J::Bool(a.as_boolean().value(r)),
        D::Int32 => J::from(a.as_primitive::<Int32Type>().value(r)),
        D::Int64 => J::from(a.as_primitive::<Int64Type>().value(r)),
        D::UInt32 => J::from(a.as_primitive::<UInt32Type>().value(r)),
        D::UInt64 => J::from(a.as_primitive::<UInt64Type>().value(r)),
        D::Float32 => float(a.as_primitive::<Float32Type>().value(r) as f64),
        D::Float64 => float(a.as_primitive::<Float64Type>().value(r)),
        D::Utf8 => J::String(a.as_string::<i32>().value(r).to_string()),
        D::LargeUtf8 => J::String(a.as_string::<i64>().value(r).to_string()),
        D::List(_) => list(a.as_list::<i32>().value(r))?,
        D::LargeList(_) => list(a.as_list::<i64>().value(r))?,
        D::FixedSizeList(..) => list(a.as_any().downcast_ref::<FixedSizeListArray>().expect("typed").value(r))?,
        _ => J::String(ArrayFormatter::try_new(a, &FormatOptions::default())?.value(r).to_string()),
    })
}

/// Two tables side by side: rows joined on the text columns both have, and for each numeric
/// (Float64) column both have — p-value columns (`*_p`) left out — `<col> A`, `<col> B` and
/// `<col> B−A`. A row in one table only has nulls on the other side. For `mexa compare`.
pub fn compare_tables(
    a: &(SchemaRef, Vec<RecordBatch>),
    b: &(SchemaRef, Vec<RecordBatch>),
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    let named = |s: &SchemaRef, t: &DataType| -> Vec<String> {
        s.fields().iter().filter(|f| f.data_type() == t).map(|f| f.name().clone()).collect()
    };
    let keys: Vec<String> =
        named(&a.0, &DataType::Utf8).into_iter().filter(|k| named(&b.0, &DataType::Utf8).contains(k)).collect();
    let vals: Vec<String> = named(&a.0, &DataType::Float64)
        .into_iter()
        .filter(|k| named(&b.0, &DataType::Float64).contains(k) && !k.ends_with("_p"))
        .collect();
    if keys.is_empty() || vals.is_empty() {
        anyhow::bail!("the two artifacts share no text key columns and numeric columns to compare");
    }
    let index = |t: &(SchemaRef, Vec<RecordBatch>)| -> BTreeMap<Vec<String>, Vec<f64>> {
        let mut m = BTreeMap::new();
        for batch in &t.1 {
            let col = |k: &String| batch.column_by_name(k).expect("the column is in the schema");
            let kc: Vec<&StringArray> = keys.iter().map(|k| col(k).as_any().downcast_ref().expect("Utf8")).collect();
            let vc: Vec<&Float64Array> =
                vals.iter().map(|k| col(k).as_any().downcast_ref().expect("Float64")).collect();
            for i in 0..batch.num_rows() {
                m.insert(kc.iter().map(|c| c.value(i).to_string()).collect(), vc.iter().map(|c| c.value(i)).collect());
            }
        }
        m
    };
    let (ia, ib) = (index(a), index(b));
    let all: Vec<&Vec<String>> = ia.keys().chain(ib.keys()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut fields: Vec<Field> = keys.iter().map(|k| Field::new(k, DataType::Utf8, false)).collect();
    let mut cols: Vec<arrow::array::ArrayRef> =
        (0..keys.len()).map(|j| Arc::new(StringArray::from_iter_values(all.iter().map(|k| &k[j]))) as _).collect();
    for (j, v) in vals.iter().enumerate() {
        let (x, y): (Vec<Option<f64>>, Vec<Option<f64>>) =
            all.iter().map(|k| (ia.get(*k).map(|r| r[j]), ib.get(*k).map(|r| r[j]))).unzip();
        let d: Vec<Option<f64>> = x.iter().zip(&y).map(|(x, y)| Some(y.as_ref()? - x.as_ref()?)).collect();
        for (suffix, c) in [("A", x), ("B", y), ("B−A", d)] {
            fields.push(Field::new(format!("{v} {suffix}"), DataType::Float64, true));
            cols.push(Arc::new(Float64Array::from(c)));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    Ok((schema.clone(), vec![RecordBatch::try_new(schema, cols)?]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn table(cols: Vec<(&str, arrow::array::ArrayRef)>) -> (SchemaRef, Vec<RecordBatch>) {
        let b = RecordBatch::try_from_iter(cols).unwrap();
        (b.schema(), vec![b])
    }

    #[test]
    fn compare_joins_on_shared_text_columns_and_leaves_gaps_null() {
        use arrow::array::{Array, StringArray};
        let s = |v: &[&str]| Arc::new(StringArray::from(v.to_vec())) as arrow::array::ArrayRef;
        let f = |v: &[f64]| Arc::new(Float64Array::from(v.to_vec())) as arrow::array::ArrayRef;
        let a = table(vec![("language", s(&["fra", "zul"])), ("mean", f(&[0.5, 0.25])), ("r_p", f(&[0.1, 0.2]))]);
        let b = table(vec![("language", s(&["fra", "amh"])), ("mean", f(&[0.75, 0.5])), ("r_p", f(&[0.3, 0.4]))]);
        let (schema, batches) = compare_tables(&a, &b).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["language", "mean A", "mean B", "mean B−A"], "p-values are not compared");
        let rows = text_rows(&schema, &batches).unwrap();
        assert_eq!(rows[1], ["amh", "", "0.5", ""]);
        assert_eq!(rows[2], ["fra", "0.5", "0.75", "0.25"]);
        assert_eq!(rows[3], ["zul", "0.25", "", ""]);
        assert!(batches[0].column(3).is_null(0));
        let none = table(vec![("x", f(&[1.0]))]);
        assert!(compare_tables(&a, &none).is_err());
    }

    #[test]
    fn csv_quotes_and_json_keeps_types_and_vectors() {
        use arrow::array::{FixedSizeListArray, Float32Array, Int32Array, StringArray};
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let vectors =
            FixedSizeListArray::try_new(item, 2, Arc::new(Float32Array::from(vec![1.0, 2.0, 3.0, 0.5])), None).unwrap();
        let t = table(vec![
            ("text", Arc::new(StringArray::from(vec!["a, \"b\"", "line\nbreak"])) as _),
            ("n", Arc::new(Int32Array::from(vec![1, 2])) as _),
            ("x", Arc::new(Float64Array::from(vec![Some(0.5), None])) as _),
            ("vector", Arc::new(vectors) as _),
        ]);
        let csv = to_csv(&t.0, &t.1).unwrap();
        assert_eq!(csv, "text,n,x,vector\n\"a, \"\"b\"\"\",1,0.5,\"[1.0, 2.0]\"\n\"line\nbreak\",2,,\"[3.0, 0.5]\"\n");
        let json = to_json_rows(&t.0, &t.1).unwrap();
        assert_eq!(
            serde_json::Value::Array(json),
            serde_json::json!([
                {"text": "a, \"b\"", "n": 1, "x": 0.5, "vector": [1.0, 2.0]},
                {"text": "line\nbreak", "n": 2, "x": null, "vector": [3.0, 0.5]}
            ])
        );
        let mut bytes = Vec::new();
        write_parquet_to(&mut bytes, t.0.clone(), &t.1).unwrap();
        let (schema, back) = read_parquet_bytes(bytes, Path::new("mem")).unwrap();
        assert_eq!(schema, t.0);
        assert_eq!(back, t.1);
    }

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
