#!/usr/bin/env bash
# Debian's chromium for the portal's browser tests (Playwright drives it with executable_path;
# Playwright's own browser download is not used). Installs only when it is missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "chromium is missing: run 'sudo apt-get install -y chromium' (needed by tests/integration/gateway)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
