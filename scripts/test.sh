#!/usr/bin/env bash
# The test command: installs what it needs into .venv (and Debian's Chromium, which the HTML
# report's browser test opens, where no Chromium is installed), then runs the whole suite.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    echo "installing Chromium (Debian package chromium) for the HTML report's browser test" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec "$PY" -m pytest -q "$@"
