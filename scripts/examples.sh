#!/usr/bin/env bash
# The main job: the example production-readiness suite on the bundled example models,
# writing every report into reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p reports
.venv/bin/python -m pytest examples/ -p no:cacheprovider --tb-hardware=auto \
    --junitxml=reports/junit.xml --tb-json=reports/torchbridge.json "$@"
