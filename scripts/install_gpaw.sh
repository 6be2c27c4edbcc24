#!/usr/bin/env bash
# Install GPAW (serial, no MPI) plus its PAW setups into a virtualenv.
#
# Why a script and not just `pip install innloop[gpaw]`: GPAW is a C extension that pip
# builds from source, and the build needs system libraries (libxc, OpenBLAS, FFTW) plus a
# siteconfig that switches MPI off -- without it the build looks for mpicc, and the
# resulting module would expect an MPI launcher. Debian's own `gpaw` apt package is built
# for Debian's python only, so it cannot be used from the project's venv.
#
# Usage: scripts/install_gpaw.sh [VENV]   (default: .venv)
# Idempotent: apt is skipped when the libraries are present, pip when gpaw imports.
set -euo pipefail

VENV="${1:-.venv}"
GPAW_VERSION="26.7.0"
GPAW_DATA_VERSION="1.2.1"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
    echo "no python at $PY (pass the virtualenv folder as the first argument)" >&2
    exit 2
fi

# -- system libraries ---------------------------------------------------------------
need=()
for pkg in libxc-dev libopenblas-dev libfftw3-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need[@]}"
else
    echo "system libraries already installed: libxc-dev libopenblas-dev libfftw3-dev"
fi

# -- GPAW itself --------------------------------------------------------------------
have=$("$PY" -c "import gpaw; print(gpaw.__version__)" 2>/dev/null || true)
if [[ "$have" == "$GPAW_VERSION" ]]; then
    echo "gpaw $have already installed in $VENV"
else
    # GPAW's setup.py executes the file named by GPAW_CONFIG (a siteconfig) with lists
    # `libraries`, `library_dirs`, `include_dirs` ... already defined.
    cfg="$(mktemp -d)/siteconfig.py"
    cat > "$cfg" <<'PYCFG'
# Serial build: no MPI, no ScaLAPACK/ELPA; libxc + OpenBLAS + FFTW from Debian.
# GPAW 26 compiles its C sources as C++17, so the compiler must be a C++ one: plain
# `gcc` would either select the deprecated C build or fail on <algorithm>.
mpi = False
compiler = 'g++'
scalapack = False
libraries = ['xc', 'openblas', 'fftw3']
fftw = True
PYCFG
    start=$(date +%s)
    GPAW_CONFIG="$cfg" "$PY" -m pip install --no-cache-dir "gpaw==$GPAW_VERSION"
    echo "gpaw build+install took $(( $(date +%s) - start )) s"
fi

# -- PAW setups ---------------------------------------------------------------------
# The gpaw-data wheel ships the setups and registers them with GPAW itself, so no
# GPAW_SETUP_PATH is needed (checked below by loading the Mo setup).
"$PY" -m pip install "gpaw-data==$GPAW_DATA_VERSION"

"$PY" - <<'PYCHK'
import gpaw
from gpaw.setup import create_setup

print("gpaw", gpaw.__version__)
print("Mo PBE setup:", create_setup("Mo", "PBE").symbol, "ok")
PYCHK
