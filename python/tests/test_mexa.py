"""mexa's Python package against a real store: the demo pipeline, shrunk with `-S` overrides so
CI stays short (the same stages, models and languages; fewer sentences and XCOPA items), run
through the mexa binary into a temporary store. Tables read through the package are checked
against what the binary itself prints (`mexa show KEY --format json`, `mexa ls --json`).

Run by scripts/test in a fresh venv with the wheel installed:
    python -m unittest discover -s python/tests -v
"""
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import mexa

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "pipelines", "demo.yaml")
# The demo at a CI size: 12 sentences per language (80 in the demo), a probe trained on 42
# English sentences (250), the first 4 XCOPA items per language (30).
SMALL = {"corpus.limit": 12, "train_corpus.limit": 42, "xcopa.limit": 4}
STORE = None


def setUpModule():
    global STORE
    STORE = tempfile.mkdtemp(prefix="mexa-py-test-")
    mexa.Pipeline(DEMO, set=SMALL, store=STORE).run(progress=False)


def tearDownModule():
    shutil.rmtree(STORE, ignore_errors=True)


def demo(**kw):
    return mexa.Pipeline(DEMO, set=SMALL, store=STORE, **kw)


def cli(*args):
    p = subprocess.run([mexa.find_mexa(), "--store", STORE, *args], capture_output=True, text=True, check=True)
    return p.stdout


def docs_example():
    """The first ```python block of docs/python.md."""
    with open(os.path.join(REPO, "docs", "python.md"), encoding="utf-8") as f:
        text = f.read()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


class DocsExample(unittest.TestCase):
    def test_the_notebook_example_runs_as_written(self):
        code = docs_example()
        lines = [l for l in code.splitlines() if l.strip()]
        self.assertLessEqual(len(lines), 15, "the example is meant to fit in 15 lines")
        figure = os.path.join(REPO, "demo-alignment-vs-accuracy.png")
        real = mexa.Pipeline
        # As written, except that it runs on the CI-sized demo in the test's store.
        mexa.Pipeline = functools.partial(real, set=SMALL, store=STORE)
        cwd = os.getcwd()
        try:
            os.chdir(REPO)
            import matplotlib

            matplotlib.use("Agg")
            scope = {"__name__": "__docs__"}
            exec(compile(code, "docs/python.md", "exec"), scope)
            with open(figure, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        finally:
            mexa.Pipeline = real
            os.chdir(cwd)
            if os.path.exists(figure):
                os.remove(figure)
        corr = scope["corr"]
        self.assertEqual(sorted(set(corr["model"].to_list())), ["gemma3-270m", "minilm-l6"])


class Reading(unittest.TestCase):
    def shown(self, key):
        return json.loads(cli("show", key, "--format", "json"))

    def test_the_correlation_table_as_polars_and_pandas_equals_what_mexa_shows(self):
        import pandas as pd
        import polars as pl

        table = demo().table("correlation")
        pl_df, pd_df = table.to_polars(), table.to_pandas()
        self.assertIsInstance(pl_df, pl.DataFrame)
        self.assertIsInstance(pd_df, pd.DataFrame)
        self.assertEqual(pl_df.columns[0], "model")
        self.assertEqual(pl_df.shape, pd_df.shape)
        self.assertEqual(len(table), pl_df.height)
        plan = demo().plan_json()
        nodes = [n for n in plan["nodes"] if n["stage"] == "correlation"]
        self.assertEqual(len(nodes), 2)
        for n in nodes:
            model = dict(n["cell"])["model"]
            rows = self.shown(n["key"])
            got = pl_df.filter(pl.col("model") == model).drop("model").to_dicts()
            self.assertEqual(len(got), len(rows))
            for g, r in zip(got, rows):
                for k, v in r.items():
                    self.assertEqual(g[k], v, f"{model} {k}")
            mine = pd_df[pd_df["model"] == model]
            self.assertEqual(list(mine["pearson"]), [r["pearson"] for r in rows])

    def test_where_and_set_choose_like_the_cli(self):
        only = demo(where={"model": "minilm-l6"}).table("correlation").to_polars()
        self.assertEqual(set(only["model"].to_list()), {"minilm-l6"})
        plan = demo(where={"model": "minilm-l6"}).plan().to_polars()
        self.assertEqual(set(plan["status"].to_list()), {"cached"})
        changed = mexa.Pipeline(DEMO, set={**SMALL, "corpus.limit": 11}, store=STORE).plan().to_polars()
        corpus = changed.filter(changed["stage"] == "corpus")
        self.assertEqual(corpus["status"].to_list(), ["run"])
        self.assertIn("new parameters", corpus["reason"][0].replace("_", " "))
        with self.assertRaises(mexa.MexaError) as e:
            demo(where={"model": "nope"}).plan()
        self.assertIn("has no value `nope`", str(e.exception))

    def test_tables_reach_python_without_a_copy(self):
        import pandas as pd
        import pyarrow as pa
        import polars as pl

        key = demo(where={"model": "gemma3-270m"}).plan_json()["nodes"]
        key = next(n["key"] for n in key if n["stage"] == "align")
        t = mexa.Store(STORE).read(key)
        address = t._values_address("mexa")
        self.assertEqual(pa.table(t).column("mexa").chunks[0].buffers()[1].address, address)
        df = t.to_pandas()
        self.assertIsInstance(df["mexa"].dtype, pd.ArrowDtype)
        self.assertEqual(df["mexa"].array._pa_array.chunks[0].buffers()[1].address, address)
        s = pl.DataFrame(t)["mexa"]
        self.assertEqual(s.to_arrow().buffers()[1].address, address)
        # And the values are the artifact's.
        self.assertEqual(s.to_list(), [r["mexa"] for r in self.shown(key)])

    def test_ls_lists_the_store_like_mexa_ls(self):
        ls = mexa.Store(STORE).ls().to_polars()
        listed = json.loads(cli("ls", "--json"))
        self.assertEqual(ls["key"].to_list(), [r["key"] for r in listed])
        self.assertEqual(ls["rows"].to_list(), [r["rows"] for r in listed])
        self.assertTrue({"embed", "align", "aggregate", "probe", "choice", "join_tasks", "correlate"} <= set(ls["stage"]))
        self.assertFalse(any(ls["shard"]))
        with_shards = mexa.Store(STORE).ls(shards=True).to_polars()
        self.assertGreater(with_shards.height, ls.height)
        manifest = json.loads(mexa.Store(STORE).manifest(ls["key"][0][:10]))
        self.assertEqual(manifest["key"], ls["key"][0])

    def test_run_reports_progress_and_errors(self):
        seen = []
        lines = demo(where={"model": "minilm-l6"}).run(force="correlation", progress=seen.append)
        self.assertEqual(seen, lines)
        self.assertTrue(any("correlation[model=minilm-l6]" in l for l in lines), lines)
        self.assertTrue(any("1 computed" in l for l in lines), lines)
        with self.assertRaises(RuntimeError) as e:
            demo().table("no_such_stage")
        self.assertIn("no stage `no_such_stage`", str(e.exception))
        with self.assertRaises(RuntimeError) as e:
            mexa.Store(os.path.join(STORE, "nowhere"))
        self.assertIn("no store at", str(e.exception))


if __name__ == "__main__":
    unittest.main()
