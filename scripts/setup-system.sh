#!/usr/bin/env bash
# System packages the test suite needs beyond Python (CI machines start bare).
# Each tool is installed only when missing, so a prepared machine pays nothing.
set -euo pipefail
need_apt=()
