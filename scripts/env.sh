# Sourced by scripts/main.sh and scripts/test.sh: create (or reuse) .venv and install cronos into it.
# torch is pinned first so pip never resolves an unpinned torch (that would pull several GB of CUDA
# packages); override with CRONOS_TORCH_VERSION=... if your machine carries another wheel.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CRONOS_VENV:-$ROOT/.venv}"
TORCH_VERSION="${CRONOS_TORCH_VERSION:-2.13.0}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.cronos-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing torch $TORCH_VERSION and cronos with its extras into $VENV (a few minutes the first time)" >&2
    "$PY" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[plot,tensorboard,attributions,ctranslate2,serve,dev]"
    touch "$stamp"
fi
