#!/usr/bin/env python3
"""Reference values for the scores of issue 27, computed by the libraries a reviewer would
use, written to tests/fixtures/science/*.json; crates/mexa-metrics/tests/science_reference.rs
holds mexa's own implementations to them.

- tfidf.json: scikit-learn's TfidfVectorizer(analyzer='char_wb' | 'char', ngram_range=...)
  with its defaults, fitted on the 2n sentences of a (pivot, language) pair of SIB-200
  (FLORES-200 text, CC BY-SA 4.0; the first 12 test sentences of each language named below),
  the cosine matrix X_pivot · X_langᵀ, and the alignment scores of that matrix written out
  with NumPy from their definitions (docs/metrics.md): μ (strict), P@1 both ways, the mean
  parallel cosine and the margin accuracy (k = 4).
- permutation.json: SciPy's pearsonr(x, y, method=PermutationMethod(n_resamples=inf)) p-value
  (all n! pairings) for samples of 4 to 10 points, untied and tied.
- multitest.json: statsmodels' multipletests(p, method='holm' | 'fdr_bh') adjusted p-values.
- logistic.json: statsmodels' GLM(y, [1, x], family=Binomial()).fit() (IRLS) parameters for
  fractional y (the fractional logit of mexa's `predict`).
- newcombe.json: statsmodels' confint_proportions_2indep(k1, n1, k2, n2, method='newcomb',
  compare='diff'), the interval of a difference of two proportions.

Pinned: numpy==2.3.5 scipy==1.16.3 scikit-learn==1.7.2 statsmodels==0.14.5 pandas==2.3.3 (statsmodels
0.14.5 does not import under pandas 3), Python 3.11.
Usage: python3 tools/make_science_fixtures.py [SIB200_DIR] [OUT]
(SIB200_DIR defaults to $MEXA_ASSETS/corpora/sib200, OUT to tests/fixtures/science).
"""
import csv
import json
import math
import os
import sys

import numpy as np
import scipy
import sklearn
import statsmodels
import statsmodels.api as sm
from scipy import stats
from sklearn.feature_extraction.text import TfidfVectorizer
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

PINNED = {"numpy": "2.3.5", "scipy": "1.16.3", "scikit-learn": "1.7.2", "statsmodels": "0.14.5"}
ASSETS = os.environ.get("MEXA_ASSETS") or os.path.expanduser("~/.cache/mexa/assets")
SIB = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ASSETS, "corpora", "sib200")
OUT = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/science"
# Scripts and casing rules worth checking: Latin with diacritics, Greek (final sigma), Turkish
# (dotted capital I), Cyrillic, Han, Ethiopic, Devanagari, Thai (no spaces), Vietnamese.
LANGS = ["fra_Latn", "ell_Grek", "tur_Latn", "rus_Cyrl", "zho_Hans", "amh_Ethi", "hin_Deva", "tha_Thai", "vie_Latn"]
SENTENCES = 12
SETTINGS = [("char_wb", 1, 4), ("char", 2, 5), ("char_wb", 3, 3)]


def check_versions():
    got = {"numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
           "statsmodels": statsmodels.__version__}
    if got != PINNED:
        sys.exit(f"versions differ from the pinned ones: {got} (want {PINNED})")
    return got


def sentences(lang):
    with open(os.path.join(SIB, lang, "test.tsv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["text"] for r in rows[:SENTENCES]]


def scores(c, k=4):
    """The alignment scores of a cosine matrix, from their definitions, one loop at a time."""
    n = c.shape[0]
    mu = p_row = p_col = 0
    for i in range(n):
        row = all(c[i, i] > c[i, j] for j in range(n) if j != i)
        col = all(c[i, i] > c[j, i] for j in range(n) if j != i)
        mu += row and col
        p_row += row
        p_col += col
    kk = min(k, n)
    pivot_nn = [np.sort(c[i, :])[::-1][:kk].sum() / (2 * kk) for i in range(n)]
    lang_nn = [np.sort(c[:, j])[::-1][:kk].sum() / (2 * kk) for j in range(n)]
    margin = lambda i, j: c[i, j] / (pivot_nn[i] + lang_nn[j])
    hits = sum(all(margin(j, j) > margin(i, j) for i in range(n) if i != j) for j in range(n))
    return {"mexa": mu / n, "p1_pivot_to_lang": p_row / n, "p1_lang_to_pivot": p_col / n,
            "mean_cosine": float(np.mean(np.diag(c))), "margin_acc": hits / n}


def tfidf():
    eng = sentences("eng_Latn")
    cases = []
    for lang in LANGS:
        other = sentences(lang)
        for analyzer, lo, hi in SETTINGS:
            v = TfidfVectorizer(analyzer=analyzer, ngram_range=(lo, hi))
            x = v.fit_transform(eng + other)
            xp, xl = x[:SENTENCES], x[SENTENCES:]
            c = (xp @ xl.T).toarray()
            s = scores(c)
            cases.append({"pivot": "eng_Latn", "language": lang, "analyzer": analyzer, "ngram_range": [lo, hi],
                          "features": len(v.vocabulary_), "cosines": c.ravel().tolist(), "scores": s})
    return {"pivot_sentences": eng, "sentences": {l: sentences(l) for l in LANGS}, "cases": cases}


def permutation():
    rng = np.random.default_rng(27)
    cases = []
    for n in range(4, 11):
        x = rng.normal(size=n).round(3)
        y = (0.6 * x + rng.normal(size=n)).round(3)
        cases.append((f"normal{n}", x, y))
    cases.append(("tied8", np.array([1, 2, 2, 3, 4, 4, 5, 6.0]), np.array([2, 1, 3, 3, 5, 4, 6, 6.0])))
    cases.append(("perfect5", np.arange(5.0), 2 * np.arange(5.0) + 1))
    # The demo's Gemma 3 270M points (μMean, SIB-200 topic accuracy) as docs/results.md prints them.
    cases.append(("demo8", np.array([0.505, 0.527, 0.505, 0.191, 0.327, 0.014, 0.028, 0.014]),
                  np.array([0.444, 0.600, 0.572, 0.471, 0.522, 0.089, 0.143, 0.180])))
    out = []
    for name, x, y in cases:
        r = stats.pearsonr(x, y, method=stats.PermutationMethod(n_resamples=np.inf))
        out.append({"name": name, "x": x.tolist(), "y": y.tolist(), "r": float(r.statistic), "p": float(r.pvalue)})
    return out


def multitest():
    families = [
        [0.01, 0.04, 0.03, 0.2],
        [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216],
        [0.05, 0.05, 0.05, 0.5, 0.9],
        [0.3, 0.0001, 0.7, 0.02, 0.02, 1.0],
    ]
    out = []
    for p in families:
        out.append({"p": p, "holm": multipletests(p, method="holm")[1].tolist(),
                    "fdr_bh": multipletests(p, method="fdr_bh")[1].tolist()})
    return out


def logistic():
    rng = np.random.default_rng(270)
    out = []
    for n, a, b in [(8, -1.5, 4.0), (20, -2.0, 6.0), (60, -0.5, 2.0)]:
        x = rng.uniform(0, 0.6, size=n).round(4)
        y = np.clip(1 / (1 + np.exp(-(a + b * x))) + rng.normal(0, 0.05, size=n), 0, 1).round(4)
        fit = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit(tol=1e-14, maxiter=200)
        out.append({"x": x.tolist(), "y": y.tolist(), "params": fit.params.tolist()})
    return out


def newcombe():
    out = []
    for k1, n1, k2, n2 in [(30, 40, 10, 40), (5, 9, 20, 71), (0, 12, 3, 68), (14, 14, 50, 66), (1, 2, 1, 3), (40, 80, 40, 80)]:
        lo, hi = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
        out.append({"k1": k1, "n1": n1, "k2": k2, "n2": n2, "lo": float(lo), "hi": float(hi)})
    return out


def main():
    versions = check_versions()
    os.makedirs(OUT, exist_ok=True)
    for name, make in [("tfidf", tfidf), ("permutation", permutation), ("multitest", multitest),
                       ("logistic", logistic), ("newcombe", newcombe)]:
        made = make()
        data = {"generator": "tools/make_science_fixtures.py", "versions": versions}
        data.update(made if isinstance(made, dict) else {"cases": made})
        with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"{OUT}/{name}.json")


if __name__ == "__main__":
    main()
