#!/usr/bin/env bash
# Install Debian's Chromium for the tests that look at the Prefect UI the way a user does
# (headless screenshots of artifact pages). Idempotent: does nothing when it is already
# there. Needs root (or sudo) and apt-get.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
echo "installed: $(dpkg-query -W -f '${Package} ${Version}\n' chromium | tr '\n' ' ')"
