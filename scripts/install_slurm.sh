#!/usr/bin/env bash
# Install a single-node SLURM (slurmctld + slurmd + client tools, slurmdbd with MariaDB for
# accounting and site limits) and munge from Debian, for the oracle tests that submit real
# jobs through psij (tests/oracles/slurm.py starts
# and stops the daemons itself; this script only installs packages). Idempotent: does
# nothing when the binaries are already there. Needs root (or sudo) and apt-get.
set -euo pipefail

need=(slurmctld slurmd sbatch squeue sinfo scancel munged slurmdbd sacctmgr mariadbd)
missing=0
for bin in "${need[@]}"; do
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
        missing=1
    fi
done
if [ "$missing" -eq 0 ]; then
    echo "slurm and munge already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# slurm-wlm pulls slurmctld, slurmd and slurm-client; munge authenticates them; slurmdbd
# and MariaDB hold the accounting that site limits (QOS, associations) need.
$SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge slurmdbd mariadb-server
echo "installed: $(dpkg-query -W -f '${Package} ${Version}\n' slurm-wlm munge slurmdbd mariadb-server | tr '\n' ' ')"
