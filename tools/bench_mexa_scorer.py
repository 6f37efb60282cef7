"""The published MEXA scorer's algorithm, timed: a baseline for `mexa bench align`.

compute_mexa.py (Kargaran et al.) scores one (language, layer) pair by filling the n × n
similarity matrix one entry at a time with SciPy's cosine distance in a Python double loop,
then counting the pairs whose diagonal entry beats every other entry of its row and of its
column (strictly). This is that algorithm, written here from its description (not a copy),
on random embeddings of the bench's shape.

    python bench_mexa_scorer.py N D PAIRS   ->  {"n": N, "d": D, "pairs": PAIRS, "seconds_per_pair": s, "mexa": [...]}

Needs numpy and scipy.
"""
import json
import sys
import time

import numpy as np
from scipy.spatial.distance import cosine


def mexa_score(pivot, lang):
    n = len(pivot)
    sim = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            sim[i, j] = 1 - cosine(pivot[i], lang[j])
    hits = 0
    for i in range(n):
        row = np.delete(sim[i, :], i)
        col = np.delete(sim[:, i], i)
        if sim[i, i] > row.max() and sim[i, i] > col.max():
            hits += 1
    return hits / n


def main():
    n, d, pairs = (int(a) for a in sys.argv[1:4])
    rng = np.random.default_rng(0)
    pivot = rng.uniform(-1, 1, (n, d)).astype(np.float32)
    langs = [pivot + 0.8 * rng.uniform(-1, 1, (n, d)).astype(np.float32) for _ in range(pairs)]
    t = time.perf_counter()
    scores = [mexa_score(pivot, lang) for lang in langs]
    seconds = (time.perf_counter() - t) / pairs
    print(json.dumps({"n": n, "d": d, "pairs": pairs, "seconds_per_pair": seconds, "mexa": scores}))


if __name__ == "__main__":
    main()
