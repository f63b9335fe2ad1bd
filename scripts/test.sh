#!/usr/bin/env bash
# The test command: installs what it needs into .venv (and Debian's Chromium, which the HTML
# report's browser test opens, where no Chromium is installed), then runs the whole suite in two
# worker processes of one thread each (half the time of one process of two threads: many tests
# wait on processes of their own, and tiny models gain little from a second thread; the
# invariance tests check two threads where it matters).  Arguments go to pytest (-n 0: one process).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    echo "installing Chromium (Debian package chromium) for the HTML report's browser test" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PY" -m pytest -q -n 2 "$@"
