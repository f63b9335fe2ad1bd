#!/usr/bin/env bash
# The main job: installs what it needs into .venv, then prepares the embedded dates data.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec "$VENV/bin/cronos" prepare configs/dates.yaml "$@"
