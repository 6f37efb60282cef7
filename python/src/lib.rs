//! `mexa._mexa`: the Rust half of mexa's Python package. It reads a store — artifacts, their
//! tables, one pipeline stage's results across its grid — and hands tables to Python as Arrow
//! C streams (the Arrow PyCapsule interface), so polars and pyarrow take the buffers without a
//! copy. It links mexa-store and mexa-pipeline only: no libtorch, no model code. Planning needs
//! the stage registry, which lives with the model runtime, so plans come from the `mexa`
//! binary's `plan --json` (see mexa/__init__.py and docs/decisions.md).
use anyhow::{anyhow, Context, Result};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, RecordBatchIterator, StringArray, UInt64Array,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ffi_stream::FFI_ArrowArrayStream;
use mexa_pipeline::export::stage_table;
use mexa_pipeline::stage::read_stitched;
use mexa_pipeline::{Plan, PlanNode, Reason, Status};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn py_err(e: anyhow::Error) -> PyErr {
    PyRuntimeError::new_err(format!("{e:#}"))
}

/// A table read from a store: Arrow record batches that Python libraries take without
/// copying (`__arrow_c_stream__`), with `to_polars()`, `to_pandas()` and `to_arrow()`.
#[pyclass(module = "mexa._mexa", frozen)]
pub struct Table {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Table {
    fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Table {
        Table { schema, batches }
    }
}

#[pymethods]
impl Table {
    /// Rows in all batches.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    #[getter]
    fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    fn __len__(&self) -> usize {
        self.num_rows()
    }

    fn __repr__(&self) -> String {
        format!("mexa.Table({} rows; {})", self.num_rows(), self.column_names().join(", "))
    }

    /// The Arrow PyCapsule interface: a C stream over the batches. The consumer takes the
    /// buffers as they are (no copy); `requested_schema` is not honoured (the protocol allows
    /// that), the table's own schema is given.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RecordBatchIterator::new(self.batches.clone().into_iter().map(Ok), self.schema.clone());
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }

    /// A pyarrow Table (zero copy).
    fn to_arrow<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py().import("pyarrow")?.call_method1("table", (slf,))
    }

    /// A polars DataFrame (numeric columns without a copy; polars converts text to its own
    /// string layout).
    fn to_polars<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py().import("polars")?.call_method1("DataFrame", (slf,))
    }

    /// A pandas DataFrame whose columns stay Arrow arrays (`pd.ArrowDtype`, zero copy); with
    /// `arrow_dtypes=False`, NumPy-backed columns (pyarrow's default conversion, which copies).
    #[pyo3(signature = (arrow_dtypes=true))]
    fn to_pandas<'py>(slf: &Bound<'py, Self>, arrow_dtypes: bool) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let table = Self::to_arrow(slf)?;
        if !arrow_dtypes {
            return table.call_method0("to_pandas");
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("types_mapper", py.import("pandas")?.getattr("ArrowDtype")?)?;
        table.call_method("to_pandas", (), Some(&kwargs))
    }

    /// Address of a column's values buffer in the first batch (for tests that a consumer
    /// shares it instead of copying).
    fn _values_address(&self, column: &str) -> PyResult<usize> {
        let i = self.schema.index_of(column).map_err(|e| py_err(anyhow!(e)))?;
        let b = self.batches.first().ok_or_else(|| py_err(anyhow!("the table has no batches")))?;
        let data = b.column(i).to_data();
        let buf = data.buffers().first().ok_or_else(|| py_err(anyhow!("`{column}` has no values buffer")))?;
        Ok(buf.as_ptr() as usize + data.offset() * data.data_type().primitive_width().unwrap_or(0))
    }
}

/// A mexa artifact store (an existing one: reading never creates a store).
#[pyclass(module = "mexa._mexa", frozen)]
pub struct Store {
    inner: mexa_store::Store,
}

#[pymethods]
impl Store {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        Ok(Store { inner: mexa_store::Store::open_existing(path).map_err(py_err)? })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.root().to_path_buf()
    }

    fn __repr__(&self) -> String {
        format!("mexa.Store({:?})", self.inner.root())
    }

    /// The artifacts (oldest first): key, stage, label, rows, bytes, wall time, creation time
    /// and whether it is a shard (shards are left out unless `shards=True`).
    #[pyo3(signature = (shards=false))]
    fn ls(&self, shards: bool) -> PyResult<Table> {
        ls_table(&self.inner, shards).map_err(py_err)
    }

    /// An artifact's table by key or key prefix (a sharded artifact's shards stitched
    /// together). Data hashes are checked, as by every read.
    fn read(&self, key: &str) -> PyResult<Table> {
        let key = self.inner.resolve_prefix(key).map_err(py_err)?;
        let (schema, batches) = read_stitched(&self.inner, &key).map_err(py_err)?;
        Ok(Table::new(schema, batches))
    }

    /// An artifact's manifest as JSON text.
    fn manifest(&self, key: &str) -> PyResult<String> {
        let key = self.inner.resolve_prefix(key).map_err(py_err)?;
        let m = self.inner.manifest(&key).map_err(|e| py_err(e.into()))?;
        serde_json::to_string(&m).map_err(|e| py_err(anyhow!(e)))
    }

    /// One stage's computed results across the grid of a plan (`mexa plan --json` output),
    /// the grid's axes as leading columns — what `mexa table` prints.
    #[pyo3(signature = (plan_json, stage, columns=Vec::new()))]
    fn stage_table(&self, plan_json: &str, stage: &str, columns: Vec<String>) -> PyResult<Table> {
        let plan = plan_from_json(plan_json, &self.inner).map_err(py_err)?;
        let (schema, batches) = stage_table(&plan, &self.inner, stage, &columns).map_err(py_err)?;
        Ok(Table::new(schema, batches))
    }
}

/// The nodes of a plan (`mexa plan --json` output) as a table: label, stage, kind, key,
/// status (`cached` or `run`), the reason a node must run, and the grid's axes as columns.
#[pyfunction]
fn plan_table(plan_json: &str) -> PyResult<Table> {
    plan_nodes_table(plan_json).map_err(py_err)
}

/// The store a pipeline file names (`store:`, relative to the file's folder), if any.
#[pyfunction]
fn pipeline_store(path: PathBuf) -> PyResult<Option<PathBuf>> {
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display())).map_err(py_err)?;
    let root = mexa_pipeline::yaml::parse(&path.display().to_string(), &text).map_err(|e| py_err(anyhow!("{e}")))?;
    let store = root.get("store").and_then(|n| n.as_str()).filter(|s| !s.is_empty());
    Ok(store.map(|s| path.parent().unwrap_or(Path::new("")).join(s)))
}

fn ls_table(store: &mexa_store::Store, shards: bool) -> Result<Table> {
    let infos: Vec<_> = store.list()?.into_iter().filter(|i| shards || !i.manifest.is_shard()).collect();
    let text = |f: &dyn Fn(&mexa_store::ObjectInfo) -> String| -> ArrayRef {
        Arc::new(StringArray::from(infos.iter().map(f).collect::<Vec<_>>()))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("key", text(&|i| i.key.to_string())),
        ("stage", text(&|i| i.manifest.spec.stage.clone())),
        ("label", text(&|i| i.manifest.label.clone())),
        ("rows", Arc::new(UInt64Array::from(infos.iter().map(|i| i.manifest.rows).collect::<Vec<_>>()))),
        ("bytes", Arc::new(UInt64Array::from(infos.iter().map(|i| i.manifest.bytes).collect::<Vec<_>>()))),
        ("wall_time_s", Arc::new(Float64Array::from(infos.iter().map(|i| i.manifest.wall_time_s).collect::<Vec<_>>()))),
        (
            "created_unix",
            Arc::new(UInt64Array::from(infos.iter().map(|i| i.manifest.created_unix).collect::<Vec<_>>())),
        ),
        ("shard", Arc::new(BooleanArray::from(infos.iter().map(|i| i.manifest.is_shard()).collect::<Vec<_>>()))),
    ];
    batch_of(columns)
}

fn batch_of(columns: Vec<(&str, ArrayRef)>) -> Result<Table> {
    let schema: SchemaRef = Arc::new(Schema::new(
        columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), a.null_count() > 0)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect())?;
    Ok(Table::new(schema, vec![batch]))
}

fn json_nodes(plan_json: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(plan_json).context("not a plan (`mexa plan --json` output)")?;
    if !v["nodes"].is_array() {
        anyhow::bail!("not a plan (`mexa plan --json` output): no `nodes` list");
    }
    Ok(v)
}

/// A node's grid cell: `[[axis, value], ...]`.
fn cell_of(n: &Value) -> Vec<(String, String)> {
    n["cell"]
        .as_array()
        .map(|c| c.iter().filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn text_of(n: &Value, field: &str) -> Result<String> {
    n[field].as_str().map(str::to_string).ok_or_else(|| anyhow!("a plan node without `{field}`"))
}

/// A plan read back from `mexa plan --json`, with each node's status taken from the store as
/// it is now (a node counts as computed when its artifact is complete).
fn plan_from_json(plan_json: &str, store: &mexa_store::Store) -> Result<Plan> {
    let v = json_nodes(plan_json)?;
    let mut nodes = Vec::new();
    for n in v["nodes"].as_array().expect("checked") {
        let key: mexa_store::Key = text_of(n, "key")?.parse().map_err(|e| anyhow!("a plan node's `key`: {e}"))?;
        let status = if store.complete(&key) { Status::Cached } else { Status::Run(Reason::NeverRun) };
        nodes.push(PlanNode {
            stage: text_of(n, "stage")?,
            kind: text_of(n, "kind")?,
            label: text_of(n, "label")?,
            cell: cell_of(n),
            params: n["params"].clone(),
            spec: serde_json::from_value(n["spec"].clone()).context("a plan node's `spec`")?,
            key,
            deps: serde_json::from_value(n["deps"].clone()).context("a plan node's `deps`")?,
            resources: n["resources"].clone(),
            status,
        });
    }
    Ok(Plan {
        pipeline: v["pipeline"].as_str().unwrap_or_default().to_string(),
        description: v["description"].as_str().unwrap_or_default().to_string(),
        nodes,
    })
}

fn plan_nodes_table(plan_json: &str) -> Result<Table> {
    let v = json_nodes(plan_json)?;
    let nodes = v["nodes"].as_array().expect("checked");
    let mut axes: Vec<String> = Vec::new();
    for n in nodes {
        for (a, _) in cell_of(n) {
            if !axes.contains(&a) {
                axes.push(a);
            }
        }
    }
    let field = |f: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            nodes.iter().map(|n| n[f].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>(),
        ))
    };
    // Status serialises as "cached" or {"run": {"reason": ..., "detail": ...}}.
    let status: Vec<&str> = nodes.iter().map(|n| if n["status"] == "cached" { "cached" } else { "run" }).collect();
    let reason: Vec<Option<String>> = nodes
        .iter()
        .map(|n| {
            let r = &n["status"]["run"];
            r["reason"].as_str().map(|k| match &r["detail"] {
                Value::Null => k.to_string(),
                d => format!("{k}: {d}"),
            })
        })
        .collect();
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("label", field("label")),
        ("stage", field("stage")),
        ("kind", field("kind")),
        ("key", field("key")),
        ("status", Arc::new(StringArray::from(status))),
        ("reason", Arc::new(StringArray::from(reason))),
    ];
    for a in &axes {
        let vals: Vec<Option<String>> =
            nodes.iter().map(|n| cell_of(n).into_iter().find(|(x, _)| x == a).map(|(_, v)| v)).collect();
        columns.push((a.as_str(), Arc::new(StringArray::from(vals))));
    }
    batch_of(columns)
}

#[pymodule]
fn _mexa(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Table>()?;
    m.add_class::<Store>()?;
    m.add_function(wrap_pyfunction!(plan_table, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline_store, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
