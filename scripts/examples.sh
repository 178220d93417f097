#!/usr/bin/env bash
# The main job: the example production-readiness suite on the bundled example models,
# writing every report into reports/ (JUnit XML, the full JSON report, pytest-benchmark
# JSON, github-action-benchmark JSON, a markdown summary and the HTML report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p reports
.venv/bin/python -m pytest examples/ -p no:cacheprovider --tb-hardware=auto \
    --junitxml=reports/junit.xml \
    --tb-json=reports/torchbridge.json \
    --tb-benchmark-json=reports/benchmark.json \
    --tb-github-benchmark-json=reports/github-benchmark.json \
    --tb-markdown=reports/summary.md \
    --tb-html=reports/report.html "$@"
