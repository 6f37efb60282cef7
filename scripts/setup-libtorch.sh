#!/usr/bin/env bash
# Install a CPU-only libtorch 2.13.0 (what tch 0.26 expects) into a cache directory outside
# the clone, from PyPI's torch wheel, and point the clone at it through the `.libtorch` link
# that .cargo/config.toml hands to torch-sys as LIBTORCH.
#
# Idempotent: a finished install is marked by DIR/.complete and is never redone.
#
# Environment:
#   MEXA_CACHE       cache root (default: ~/.cache/mexa)
#   MEXA_LIBTORCH    use this libtorch instead (for example a CUDA build: see docs/gpu.md);
#                    nothing is downloaded then.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MEXA_CACHE:-$HOME/.cache/mexa}"
version=2.13.0

link_to() {
  # Repoint .libtorch only when it changes: a new LIBTORCH target rebuilds torch-sys.
  local target="$1"
  if [ "$(readlink "$repo/.libtorch" 2>/dev/null)" != "$target" ]; then
    ln -sfn "$target" "$repo/.libtorch"
  fi
  echo "libtorch: $target"
}

if [ -n "${MEXA_LIBTORCH:-}" ]; then
  [ -f "$MEXA_LIBTORCH/lib/libtorch_cpu.so" ] || { echo "error: MEXA_LIBTORCH=$MEXA_LIBTORCH has no lib/libtorch_cpu.so" >&2; exit 1; }
  link_to "$(cd "$MEXA_LIBTORCH" && pwd)"
  exit 0
fi

dest="$cache/libtorch-$version-cpu"
if [ -f "$dest/.complete" ]; then link_to "$dest"; exit 0; fi

py="$(command -v python3 || command -v python)" || { echo "error: python3 with pip is needed to fetch the torch wheel" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/mexa-libtorch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "fetching torch==$version and the two CUDA runtime stubs libtorch_cpu.so names (no GPU needed) ..."
# Any platform tag for manylinux x86_64 with a cp311 ABI: the C++ libraries do not depend on the Python version.
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_25_x86_64 -d "$work" \
  "torch==$version" "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cupti==13.0.85"

rm -rf "$dest.partial" && mkdir -p "$dest.partial"
"$py" - "$work" "$dest.partial" <<'PY'
import glob, os, shutil, sys, zipfile
work, dest = sys.argv[1], sys.argv[2]
os.makedirs(f"{dest}/lib", exist_ok=True)
wanted_libs = {"libtorch_cpu.so", "libtorch.so", "libc10.so", "libgomp.so.1"}
torch_whl = glob.glob(f"{work}/torch-*.whl")[0]
with zipfile.ZipFile(torch_whl) as z:
    for info in z.infolist():
        name = info.filename
        if name.startswith("torch/include/") and not name.endswith("/"):
            out = os.path.join(dest, "include", name[len("torch/include/"):])
        elif name.startswith("torch/lib/") and os.path.basename(name) in wanted_libs:
            out = os.path.join(dest, "lib", os.path.basename(name))
        else:
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
# libtorch_cpu.so has DT_NEEDED on these two even in CPU use; they load without a GPU.
for pattern, lib in [("nvidia_cuda_runtime-*.whl", "libcudart.so.13"), ("nvidia_cuda_cupti-*.whl", "libcupti.so.13")]:
    with zipfile.ZipFile(glob.glob(f"{work}/{pattern}")[0]) as z:
        member = next(n for n in z.namelist() if n.endswith("/" + lib))
        with z.open(member) as src, open(f"{dest}/lib/{lib}", "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
echo "$version" > "$dest.partial/build-version"
touch "$dest.partial/.complete"
rm -rf "$dest" && mv "$dest.partial" "$dest"
link_to "$dest"
