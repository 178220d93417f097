"""``tb-doctor``: diagnose the environment. Exit 0 all good, 1 a failure, 2 warnings only.

    tb-doctor --full-report
    tb-doctor --json
    tb-doctor --junit-xml reports/doctor.xml
"""

from __future__ import annotations

from collections.abc import Sequence

from torchbridge.cli.common import parser, print_json


def main(argv: Sequence[str] | None = None) -> int:
    from torchbridge.doctor import exit_code, run_diagnostics
    from torchbridge.doctor.render import print_report, to_json, write_junit
    from torchbridge.hardware import detect

    ap = parser("tb-doctor", "Diagnose Python, torch, GPUs, drivers, onnxruntime, "
                             "determinism and threads. Exit 0 ok, 1 a failure, 2 warnings.")
    ap.add_argument("--full-report", action="store_true", help="print every detail")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--junit-xml", metavar="PATH", default=None,
                    help="also write JUnit XML, one test case per diagnostic")
    ap.add_argument("--report-dir", default=".",
                    help="where reports will be written (checked for write access)")
    ap.add_argument("--no-gpu-smoke", action="store_true",
                    help="skip the GPU matmul smoke test")
    args = ap.parse_args(argv)
    diagnostics = run_diagnostics(args.report_dir, gpu_smoke=not args.no_gpu_smoke)
    if args.junit_xml:
        write_junit(diagnostics, args.junit_xml)
    if args.json:
        print_json(to_json(diagnostics, detect().to_dict()))
    else:
        print_report(diagnostics, full=args.full_report)
    return exit_code(diagnostics)
