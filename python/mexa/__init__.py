"""mexa from Python: a store's artifacts and a pipeline's results as polars or pandas
DataFrames through Arrow (no copies), and pipelines planned and run by the ``mexa`` binary.

    import mexa
    demo = mexa.Pipeline("pipelines/demo.yaml", where={"model": "gemma3-270m"})
    demo.run()                                  # what is missing; progress as it goes
    demo.table("correlation").to_polars()       # one stage across the grid, axes as columns
    mexa.Store("artifacts").ls().to_pandas()    # every artifact

Reading happens in this process (the ``mexa._mexa`` extension: mexa's store code, no model
runtime); planning and running go through the ``mexa`` binary (``mexa plan --json``,
``mexa run``), which holds the stage registry and libtorch. See docs/python.md.
"""
import json
import os
import shutil
import subprocess
import sys

from ._mexa import Store, Table, __version__, pipeline_store, plan_table

__all__ = ["Store", "Table", "Pipeline", "MexaError", "find_mexa", "__version__"]


class MexaError(RuntimeError):
    """The ``mexa`` binary failed; the message holds what it printed."""


def find_mexa(mexa=None):
    """The ``mexa`` binary: ``mexa`` if given, else ``$MEXA_BIN``, else ``mexa`` on the PATH,
    else the one the repository's scripts build (``$CARGO_TARGET_DIR/debug/mexa``, default
    ``~/.cache/mexa/target/debug/mexa``)."""
    candidates = [mexa, os.environ.get("MEXA_BIN"), shutil.which("mexa")]
    cache = os.environ.get("MEXA_CACHE") or os.path.expanduser("~/.cache/mexa")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(cache, "target")
    candidates.append(os.path.join(target, "debug", "mexa"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.fspath(c)
    raise MexaError(
        "no mexa binary found: build it in the repository with `cargo build -p mexa-cli` "
        "(or ./scripts/demo), put it on the PATH, or set MEXA_BIN"
    )


def _yaml_value(v):
    # `-S` values are YAML: strings go as written, other values as JSON (which is YAML).
    return v if isinstance(v, str) else json.dumps(v)


class Pipeline:
    """A pipeline file with the same choices as the command line: ``where`` (``--where
    axis=value``: only those grid cells) and ``set`` (``-S target=value``: a stage parameter
    ``stage.param`` or a grid axis, values as YAML or Python values), against ``store``
    (default: ``$MEXA_STORE``, else the file's ``store:``, else ``./artifacts``)."""

    def __init__(self, path, *, where=None, set=None, store=None, mexa=None):
        self.path = os.fspath(path)
        self.where = dict(where or {})
        self.set = dict(set or {})
        self.store_path = os.fspath(
            store or os.environ.get("MEXA_STORE") or pipeline_store(self.path) or "artifacts"
        )
        self.mexa = mexa

    def __repr__(self):
        return f"mexa.Pipeline({self.path!r}, where={self.where!r}, set={self.set!r}, store={self.store_path!r})"

    def _selection(self):
        args = []
        for axis, value in self.where.items():
            args += ["--where", f"{axis}={value}"]
        for target, value in self.set.items():
            args += ["-S", f"{target}={_yaml_value(value)}"]
        return args

    def _command(self, verb, *extra):
        return [find_mexa(self.mexa), "--store", self.store_path, verb, self.path, *self._selection(), *extra]

    def plan_json(self):
        """The plan as ``mexa plan --json`` prints it (a dict)."""
        cmd = self._command("plan", "--json")
        p = subprocess.run(cmd, capture_output=True, text=True)
        # `mexa plan` exits 0 when nothing is to run, 1 when something is, 2 on an error.
        if p.returncode not in (0, 1):
            raise MexaError(f"{' '.join(cmd)} failed:\n{p.stderr.strip()}")
        return json.loads(p.stdout)

    def plan(self):
        """The nodes: label, stage, kind, key, status (``cached`` or ``run``), the reason a
        node must run, and the grid's axes as columns."""
        return plan_table(json.dumps(self.plan_json()))

    def run(self, *, only=None, force=None, jobs=None, threads=None, keep_going=False, progress=True):
        """Computes what is missing with ``mexa run`` and returns its output lines. Progress
        comes as one line per node (or shard) started or finished: printed to stderr when
        ``progress`` is true, passed to it when it is a function, dropped when false. Raises
        MexaError when a node fails."""
        extra = []
        if only:
            extra += ["--only", ",".join([only] if isinstance(only, str) else only)]
        if force:
            extra += ["--force", ",".join([force] if isinstance(force, str) else force)]
        if jobs:
            extra += ["--jobs", str(jobs)]
        if threads:
            extra += ["--threads", str(threads)]
        if keep_going:
            extra.append("--keep-going")
        cmd = self._command("run", *extra)
        lines = []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as p:
            for line in p.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                if callable(progress):
                    progress(line)
                elif progress:
                    print(line, file=sys.stderr, flush=True)
        if p.returncode != 0:
            tail = "\n".join(lines[-30:])
            raise MexaError(f"{' '.join(cmd)} exited with {p.returncode}:\n{tail}")
        return lines

    def store(self):
        """The pipeline's store (it must exist: run first)."""
        return Store(self.store_path)

    def table(self, stage, columns=None):
        """One stage's computed results across the grid (the choices of ``where``), the grid's
        axes as leading text columns — what ``mexa table`` prints. Nodes not computed yet are
        left out; none computed is an error."""
        return self.store().stage_table(json.dumps(self.plan_json()), stage, list(columns or []))
