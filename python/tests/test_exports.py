"""Exports that load the first time: every bundled pipeline that runs offline, shrunk with `-S`
overrides to a CI size, exported with `mexa export`, then read back with exactly the lines the
export prints (the ones docs/pipelines.md shows) in polars, pandas and DuckDB, one stage at a
time. The UDHR pipeline has a grid axis named like a result column (`metric`, beside
aggregate's `metric`), so the namespaced-axis case is among them.

Not run here: pipelines/sib200.yaml (the same stages as sib200-cpu.yaml, imported from
shared/sib200-stages.yaml, with Qwen2.5-Coder-1.5B, hours on 2 cores) and
pipelines/mexa-reproduction.yaml (7-70B models whose weights are not bundled).

Run by scripts/test-python in a fresh venv with the wheel, polars, pandas, pyarrow and duckdb.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import duckdb
import pandas as pd
import polars as pl

import mexa

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (pipeline file, -S overrides that shrink it to a CI size: the same stages and models).
PIPELINES = [
    ("demo.yaml", ["corpus.limit=4", "corpus.languages=[ita_Latn, swh_Latn, quy_Latn]", "train_corpus.limit=30",
                   "xcopa.limit=3", "xcopa.languages=[ita_Latn, swh_Latn, quy_Latn]"]),
    ("udhr.yaml", ["corpus.limit=4", "corpus.languages=[fra, hin, swh]"]),
    ("sib200-cpu.yaml", ["sentences=[4]", "corpus.languages=[ita_Latn, swh_Latn, hat_Latn]",
                         "train_corpus.limit=30", "xcopa.limit=3"]),
]


def mexa_cli(store, *args, cwd=None):
    p = subprocess.run([mexa.find_mexa(), "--store", store, *args], capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise AssertionError(f"mexa {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p


class Exports(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mexa-export-test-")
        cls.store = os.path.join(cls.tmp, "store")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_bundled_pipeline_s_export_loads_with_the_printed_lines(self):
        for name, overrides in PIPELINES:
            with self.subTest(pipeline=name):
                self.check(name, overrides)

    def check(self, name, overrides):
        file = os.path.join(REPO, "pipelines", name)
        sets = [a for s in overrides for a in ("-S", s)]
        mexa_cli(self.store, "run", file, *sets)
        out = "results-" + name.removesuffix(".yaml")
        # Every stage, embeddings included, written relative to the working directory as a
        # user would (`mexa export results/ …`).
        plan = mexa.Pipeline(file, set=dict(s.split("=", 1) for s in overrides), store=self.store).plan_json()
        stages = sorted({n["stage"] for n in plan["nodes"]} - {"report"})
        p = mexa_cli(self.store, "export", out, file, *sets, "--stages", ",".join(stages), cwd=self.tmp)
        printed = p.stdout
        polars_line = re.search(r"polars:\s+(pl\.read_parquet\(.*\))$", printed, re.M).group(1)
        pandas_line = re.search(r"pandas:\s+(pd\.read_parquet\(.*\))$", printed, re.M).group(1)
        duckdb_line = re.search(r"duckdb:\s+(SELECT .*)$", printed, re.M).group(1)
        last = re.search(r"stage=([a-z_]+)", polars_line).group(1)
        exported = re.search(r"\(stages: ([^)]*)\)", printed).group(1).split(", ")
        self.assertEqual(exported[-1], last, printed)
        if name == "udhr.yaml":
            self.assertIn("exported as `grid_metric`", p.stderr)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.tmp)
        for stage in exported:
            # The printed lines, for this stage.
            on = lambda line: line.replace(f"stage={last}", f"stage={stage}")
            frames = {
                "polars": eval(on(polars_line), {"pl": pl}),
                "pandas": eval(on(pandas_line), {"pd": pd}),
                "duckdb": duckdb.sql(on(duckdb_line)).pl(),
            }
            # The same rows as `mexa table` prints for the stage (embeddings are not a table's).
            if stage != "embed":
                rows = json.loads(mexa_cli(self.store, "table", file, stage, "--format", "json", *sets).stdout)
            else:
                rows = None
            for tool, df in frames.items():
                columns = list(df.columns)
                self.assertEqual(len(columns), len(set(columns)), f"{name} {stage} {tool}: {columns}")
                if rows is not None:
                    self.assertEqual(len(df), len(rows), f"{name} {stage} {tool}")
                    # Every column `mexa table` has (grid axes, language metadata, results).
                    self.assertLessEqual(set(rows[0]) if rows else set(), set(columns), f"{name} {stage} {tool}")
                if "language" in columns:
                    for extra in ("language_name", "script", "family", "branch"):
                        self.assertIn(extra, columns, f"{name} {stage} {tool}")
            self.assertGreater(len(frames["polars"]), 0, f"{name} {stage}")


if __name__ == "__main__":
    unittest.main()
