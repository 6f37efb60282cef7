//! Declarative pipelines: YAML files of typed stages and experiment grids, expanded into a
//! DAG of content-addressed nodes, planned against an artifact store and run locally.
//!
//! Flow: [`spec::load`] parses and validates a file (every error names file:line:column),
//! [`plan::plan`] expands the grid and computes each node's key and status, [`run::run`]
//! computes what is missing. Stage implementations live elsewhere (mexa-stages) and are
//! registered in a [`stage::Registry`]; this crate knows none of them.
//!
//! Invariants: a node's key depends only on its stage kind and version, its parameters
//! (external files by content hash) and its inputs' keys; a node is cached exactly when the
//! store has its key; every artifact is written by [`node::execute_node`] under the key's lock.

// The declaration macros name this crate by its path, also from inside it.
extern crate self as mexa_pipeline;

#[doc(hidden)]
pub use serde as __serde;

pub mod error;
pub mod executor_options;
pub mod export;
pub mod node;
pub mod params;
pub mod plan;
pub mod profile;
pub mod run;
pub mod schema;
pub mod slurm;
pub mod spec;
pub mod stage;
pub mod walk;
pub mod yaml;

pub use error::{ParamError, Pos, SpecError, SpecErrors};
pub use node::{execute_node, NodeOutcome, NodeSpec};
pub use params::{ParamEnum, ParamKind};
pub use plan::{plan, Plan, PlanNode, Reason, Status};
pub use run::{run, ProgressMode, RunOptions};
pub use slurm::{run_slurm, SlurmOptions};
pub use spec::{load, load_with, parse, Override, PipelineSpec};
pub use stage::{
    check, shards_of, Ctx, InputRef, InputSpec, Output, ParamSpec, ParamType, Progress, Registry, Resources, Stage,
    Table,
};
pub use walk::{walk, Budget, Executor, Finished, Held, Observer, RunSummary, WalkOptions};
