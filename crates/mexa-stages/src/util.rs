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
