# Sourced by scripts/demo and scripts/test: makes .venv and installs the project into it.
# PyTorch's CPU wheel is installed first so that nothing pulls a multi-GB CUDA build.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}  # (not DICOM_NODE_*: those are the node's settings)
EXTRAS=${1:-}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "dicom-node needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating the virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.dicom-node-installed"
want="$(cat pyproject.toml scripts/_venv.sh | sha256sum | cut -d' ' -f1) extras=$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing torch==2.13.0 (CPU) and the project into $VENV (log: $VENV/install.log)"
    log="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install --upgrade pip \
            && "$VENV/bin/python" -m pip install torch==2.13.0 \
            && "$VENV/bin/python" -m pip install -e ".${EXTRAS:+[$EXTRAS]}"; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "installation failed; the whole log is in $log" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
