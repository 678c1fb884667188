#!/usr/bin/env bash
# Create (once) and print the path of the project's virtual environment.
# The venv lives outside the clone, keyed by the hash of requirements.txt, so every clone
# and every CI run with the same pins reuses it; a changed pin builds a new one.
# Progress goes to stderr; stdout carries only the path.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
key=$(sha256sum "$repo/requirements.txt" | cut -c1-12)
root=${DUALPATH_VENV_ROOT:-$HOME/.cache/dualpath}
venv="$root/venv-$key"
if [ "${1:-}" = "--path" ]; then echo "$venv"; exit 0; fi
py=$(command -v python3.11 || command -v python3)
mkdir -p "$root"
exec 9>"$root/.lock-$key"
flock 9   # two clones setting up at once: the second waits for the first
if [ ! -f "$venv/.complete" ]; then
  echo "creating $venv (about 3 minutes)" >&2
  rm -rf "$venv"
  mkdir -p "$root"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$repo/requirements.txt" >&2
  touch "$venv/.complete"
fi
# The package itself is installed editable from *this* clone every time (a second, cheap
# step), so a venv shared between clones always imports the code of the clone that runs.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$(cat "$site/dualpath-src.pth" 2>/dev/null)" != "$repo/lib" ]; then
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo" >&2
  echo "$repo/lib" > "$site/dualpath-src.pth"
fi
echo "$venv"
