"""``tb-report merge a.json b.json -o merged.json --markdown summary.md --html report.html``:
merge the JSON reports of several CI jobs, render the summaries and decide the gate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from torchbridge.cli.common import EXIT_USAGE, parser, print_json


def build_parser() -> argparse.ArgumentParser:
    root = parser("tb-report", "Merge TorchBridge JSON reports, render the markdown summary "
                               "and the HTML report, and decide the merge gate (exit 0 pass, "
                               "1 fail).")
    commands = root.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge", help="merge reports and decide the gate")
    merge.add_argument("reports", nargs="+", metavar="REPORT",
                       help="JSON reports written by pytest --tb-json (or merged ones); "
                            "JOB=PATH names the job, else the file name does")
    merge.add_argument("-o", "--output", metavar="PATH", help="write the merged JSON report")
    merge.add_argument("--markdown", metavar="PATH", help="write the markdown summary")
    merge.add_argument("--html", metavar="PATH", help="write the self-contained HTML report")
    merge.add_argument("--openmetrics", metavar="PATH",
                       help="write the metrics as OpenMetrics text (GitLab "
                            "artifacts:reports:metrics)")
    merge.add_argument("--title", default="TorchBridge report", help="title of the HTML report")
    merge.add_argument("--no-step-summary", action="store_true",
                       help="do not append the summary to $GITHUB_STEP_SUMMARY")
    merge.add_argument("--fail-on-skip", action="store_true",
                       help="skipped checks fail the gate (for jobs that must run everything)")
    merge.add_argument("--allow-regressions", action="store_true",
                       help="significant regressions against the baseline do not fail the gate")
    merge.add_argument("--allow-empty", action="store_true",
                       help="reports without any result, or with skipped results only, "
                            "do not fail the gate")
    merge.add_argument("--json", action="store_true", help="print the verdict as JSON")
    return root


def _split(spec: str) -> tuple[str | None, str]:
    job, sep, path = spec.partition("=")
    return (job, path) if sep and job and "/" not in job else (None, spec)


def main(argv: Sequence[str] | None = None) -> int:
    from torchbridge.reporting import GatePolicy, Outputs, merge_reports, publish

    args = build_parser().parse_args(argv)
    if args.command != "merge":  # argparse enforces the choice; kept for clarity
        return EXIT_USAGE
    jobs, paths = zip(*(_split(spec) for spec in args.reports), strict=True)
    report = merge_reports(list(paths), list(jobs))
    policy = GatePolicy(fail_on_skip=args.fail_on_skip,
                        fail_on_regression=not args.allow_regressions,
                        allow_empty=args.allow_empty)
    outputs = Outputs(json=args.output, markdown=args.markdown, html=args.html,
                      openmetrics=args.openmetrics, step_summary=not args.no_step_summary)
    published = publish(report, outputs, policy, args.title)
    verdict = published.verdict
    if args.json:
        print_json({**verdict.to_dict(), "warnings": report.warnings,
                    "files": [str(f) for f in published.files]})
    else:
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(verdict.headline())
        for reason in verdict.reasons:
            print(f"  - {reason}")
        for path in published.files:
            print(f"wrote {path}")
    return verdict.exit_code
