//! Arrow helpers shared by the stages.
use anyhow::{anyhow, Result};
use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;

/// A schema of non-nullable fields.
pub fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(fields.iter().map(|(n, t)| Field::new(*n, t.clone(), false)).collect::<Vec<_>>()))
}

pub fn utf8_col(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

pub fn f64_col(v: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}

/// A schema whose fields named in `undefined` may hold nulls: a value that is undefined by
/// design (an interval not computed, a correlation of a constant) is stored as null, never as
/// NaN (the store refuses NaN: there it is a failed computation).
pub fn schema_with_nulls(fields: &[(&str, DataType)], undefined: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        fields.iter().map(|(n, t)| Field::new(*n, t.clone(), undefined.contains(n))).collect::<Vec<_>>(),
    ))
}

/// A Float64 column for a field of [`schema_with_nulls`]: NaN (undefined, in memory) becomes
/// null.
pub fn f64_col_undefined(v: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect::<Vec<_>>()))
}

/// Row `i` of a Float64 column, null read back as NaN (undefined, in memory).
pub fn f64_or_nan(a: &Float64Array, i: usize) -> f64 {
    use arrow::array::Array;
    if a.is_null(i) {
        f64::NAN
    } else {
        a.value(i)
    }
}

pub fn bool_col(v: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}

pub fn i32_col(v: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(v))
}

fn col<'b, T: 'static>(b: &'b RecordBatch, name: &str) -> Result<&'b T> {
    b.column_by_name(name)
        .ok_or_else(|| anyhow!("column `{name}` missing"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| anyhow!("column `{name}` has an unexpected type"))
}

pub fn col_str<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b StringArray> {
    col(b, name)
}
pub fn col_i32<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b Int32Array> {
    col(b, name)
}
pub fn col_f64<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b Float64Array> {
    col(b, name)
}
pub fn col_bool<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b BooleanArray> {
    col(b, name)
}
