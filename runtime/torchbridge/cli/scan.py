"""``tb-scan``: scan model files and folders for malicious pickles and secrets.

Exit 0 when every file is safe (or not a model), 1 when any is unsafe, invalid or holds
secrets (also ``code`` with ``--strict``), 2 on usage errors.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from torchbridge.cli import arguments as cli
from torchbridge.cli.common import EXIT_FAILED, EXIT_OK, output_console, parser, print_json
from torchbridge.security.policy import denylist_sources
from torchbridge.security.scan import scan_path
from torchbridge.security.verdict import FileVerdict, Verdict

_STYLE = {Verdict.SAFE: "green", Verdict.NOT_A_MODEL: "dim", Verdict.CODE: "yellow",
          Verdict.SECRETS: "red", Verdict.INVALID: "red", Verdict.UNSAFE: "bold red"}


def _table(verdicts: list[FileVerdict], strict: bool) -> None:
    from rich.table import Table

    table = Table(title="tb-scan", show_lines=False)
    for column in ("file", "format", "verdict", "why"):
        table.add_column(column, overflow="fold")
    for v in verdicts:
        why = "\n".join(v.reasons[:4]) + ("\n…" if len(v.reasons) > 4 else "")
        style = _STYLE[v.verdict]
        table.add_row(v.path, v.format, f"[{style}]{v.verdict.value}[/]", why)
    console = output_console()
    console.print(table)
    failed = [v for v in verdicts if v.failed(strict)]
    console.print(f"{len(verdicts)} file(s), {len(failed)} failed" +
                  ("" if strict else " (pass --strict to fail on 'code')"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser("tb-scan", "Scan model files and folders for malicious pickles and secrets.")
    ap.add_argument("paths", nargs="+", help="files or folders to scan")
    ap.add_argument("--json", action="store_true", help="print verdicts as JSON")
    ap.add_argument("--strict", action="store_true",
                    help="also fail on files that import classes outside torch's "
                         "weights_only allowlist (pickled whole modules)")
    ap.add_argument("--no-secrets", action="store_true", help="skip secret scanning")
    cli.add_security_arguments(ap, pickle=False)
    args = ap.parse_args(argv)
    verdicts = [v for path in args.paths
                for v in scan_path(path, secrets=not args.no_secrets,
                                   allowed_globals=args.allow_global)]
    failed = any(v.failed(args.strict) for v in verdicts)
    if args.json:
        print_json({"ok": not failed, "denylists": denylist_sources(),
                    "files": [v.to_dict() for v in verdicts]})
    else:
        _table(verdicts, args.strict)
    sys.stdout.flush()
    return EXIT_FAILED if failed else EXIT_OK
