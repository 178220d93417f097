"""``tb-checksum``: create and verify ``sha256sum``-compatible checksum files.

    tb-checksum create exports/ > exports.sha256
    tb-checksum verify exports.sha256

``verify`` exits 0 when every file matches, 1 when any differs or is missing, 2 when the
checksum file cannot be read.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from torchbridge.cli.common import EXIT_FAILED, EXIT_OK, parser, print_json
from torchbridge.security.checksum import verify_checksums, write_checksums


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser("tb-checksum", "Create or verify sha256sum-compatible checksum files.")
    sub = ap.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="print (or write) checksums of files/folders; "
                                           "an .onnx file brings its external data along")
    create.add_argument("paths", nargs="+")
    create.add_argument("-o", "--output", default=None,
                        help="write here, with paths relative to its folder")
    verify = sub.add_parser("verify", help="verify a checksum file")
    verify.add_argument("checksum_file")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--quiet", action="store_true", help="print only failures")
    args = ap.parse_args(argv)

    if args.action == "create":
        text = write_checksums(args.paths, args.output)
        if args.output is None:
            sys.stdout.write(text)
        return EXIT_OK
    results = verify_checksums(args.checksum_file)
    ok = all(r.ok for r in results)
    if args.json:
        print_json({"ok": ok, "files": [{"path": r.path, "status": r.status,
                                         "expected": r.expected, "actual": r.actual,
                                         "line": r.line} for r in results]})
    else:
        for result in results:
            if not (args.quiet and result.ok):
                print(result.describe())
        bad = [r for r in results if not r.ok]
        if bad:
            print(f"tb-checksum: WARNING: {len(bad)} of {len(results)} listed file(s) did "
                  "not verify", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED
