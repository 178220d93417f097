"""What the plugin costs a suite that does not use it.

(a) ``python -X importtime -c "import pytest_torchbridge"``: which modules the import
    pulls in; torch and the runtime (``torchbridge``) must not be among them.
(b) A generated 1,000-test suite with no TorchBridge feature, collected with
    ``pytest --collect-only -q`` with and without the plugin, repetitions alternating so
    drift on a shared machine hits both arms alike; the median overhead is reported.

Two set-ups for (b):

* ``isolated``: plugin autoloading off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), the plugin
  added with ``-p pytest_torchbridge.plugin``, the baseline with ``-p`` of an empty
  plugin: the overhead against bare pytest, the strictest denominator.
* ``installed``: the environment as installed (every pytest11 plugin), the plugin
  removed with ``-p no:torchbridge`` in the baseline arm.

Usage::

    .venv/bin/python benchmarks/bench_collection_overhead.py [--tests 1000] [--reps 9]
        [--json reports/bench_collection_overhead.json]

Exit status 0 when the isolated median CPU-time overhead (user + system of the pytest
process; wall-clock is reported too, but on a shared machine it mostly measures the
neighbours) is within ``--goal`` percent (default 5).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILES = 20


def imported_modules(statement: str) -> list[str]:
    """Modules ``python -X importtime -c statement`` reports importing."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                          capture_output=True, text=True, check=True)
    names = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":
                names.append(name)
    return names


def import_report() -> dict[str, object]:
    names = imported_modules("import pytest_torchbridge")
    plugin = imported_modules("import pytest_torchbridge.plugin")
    heavy = ("torch", "torchbridge", "numpy", "safetensors")

    def hits(found: list[str]) -> list[str]:
        return sorted({n for n in found if n.split(".")[0] in heavy})

    return {"modules": len(names), "heavy_modules": hits(names),
            "plugin_modules": len(plugin), "plugin_heavy_modules": hits(plugin)}


def write_suite(root: Path, tests: int) -> None:
    """``tests`` plain tests in ``FILES`` files: functions, a class, a parametrization."""
    (root / "pytest.ini").write_text("[pytest]\n")
    per_file = tests // FILES
    for index in range(FILES):
        plain = per_file - 10 - 5
        body = [f"def test_plain_{i}():\n    assert {i} + 1 > {i}\n" for i in range(plain)]
        body.append("class TestGroup:\n" + "".join(
            f"    def test_method_{i}(self):\n        assert True\n" for i in range(5)))
        body.append("import pytest\n\n@pytest.mark.parametrize('n', range(10))\n"
                    "def test_param(n):\n    assert n >= 0\n")
        (root / f"test_generated_{index:02d}.py").write_text("\n\n".join(body))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def collect_once(root: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one ``pytest --collect-only``."""
    cpu, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *args], cwd=root, env=env,
                          capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"collection failed ({' '.join(args)}):\n{proc.stdout}{proc.stderr}")
    return elapsed, cpu


def count_collected(root: Path, args: list[str], env: dict[str, str]) -> int:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
                          cwd=root, env=env, capture_output=True, text=True, check=True)
    return sum(1 for line in proc.stdout.splitlines() if "::" in line)


def _overhead(with_times: list[float], without_times: list[float]) -> dict[str, float]:
    pairs = [w / wo - 1 for w, wo in zip(with_times, without_times, strict=True)]
    return {"median_with_s": statistics.median(with_times),
            "median_without_s": statistics.median(without_times),
            "overhead_pct_of_medians": 100 * (statistics.median(with_times)
                                              / statistics.median(without_times) - 1),
            "overhead_pct_median_of_pairs": 100 * statistics.median(pairs)}


def measure(root: Path, reps: int, with_args: list[str], without_args: list[str],
            env: dict[str, str]) -> dict[str, object]:
    """Alternate the arms (ABBA...) so drift on a shared machine hits both alike."""
    collect_once(root, with_args, env)  # warm the file cache and bytecode for both arms
    collect_once(root, without_args, env)
    runs: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
    for rep in range(reps):
        order = [("with", with_args), ("without", without_args)]
        for arm, args in order if rep % 2 == 0 else reversed(order):
            runs[arm].append(collect_once(root, args, env))
    return {
        "wall": _overhead([w for w, _ in runs["with"]], [w for w, _ in runs["without"]]),
        "cpu": _overhead([c for _, c in runs["with"]], [c for _, c in runs["without"]]),
        "samples": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--goal", type=float, default=5.0, help="allowed overhead, percent")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    report: dict[str, object] = {"python": sys.version.split()[0], "tests": args.tests,
                                 "reps": args.reps, "imports": import_report()}
    imports = report["imports"]
    print(f"import pytest_torchbridge: {imports['modules']} modules; "  # type: ignore[index]
          f"heavy ones: {imports['heavy_modules'] or 'none'}; plugin module: "  # type: ignore[index]
          f"{imports['plugin_heavy_modules'] or 'none'}")  # type: ignore[index]

    with tempfile.TemporaryDirectory(prefix="tb-collect-") as tmp:
        root = Path(tmp)
        write_suite(root, args.tests)
        installed_env = dict(os.environ)
        # Bytecode caching as users have it: with PYTHONDONTWRITEBYTECODE set, every run
        # recompiles (and pytest re-rewrites) each module, which measures the compiler.
        for name in ("TB_HARDWARE", "PYTHONDONTWRITEBYTECODE"):
            installed_env.pop(name, None)
        isolated_env = {**installed_env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        plugin = ["-p", "pytest_torchbridge.plugin"]
        collected = count_collected(root, plugin, isolated_env)
        print(f"generated suite: {collected} tests in {FILES} files")
        report["collected"] = collected
        # pytest looks a -p name up among entry points (one scan of every distribution);
        # the baseline loads an empty plugin the same way, so only our plugin's own cost
        # differs between the arms.
        (root / "tb_bench_noop_plugin.py").write_text('"""An empty pytest plugin."""\n')
        noop = ["-p", "tb_bench_noop_plugin"]
        report["isolated"] = measure(root, args.reps, plugin, noop, isolated_env)
        report["installed"] = measure(root, args.reps, [], ["-p", "no:torchbridge"],
                                      installed_env)
    for name in ("isolated", "installed"):
        for clock in ("cpu", "wall"):
            data = report[name][clock]  # type: ignore[index]
            print(f"{name:>9} {clock:>4}: median with plugin {data['median_with_s']:.3f} s, "
                  f"without {data['median_without_s']:.3f} s, overhead "
                  f"{data['overhead_pct_of_medians']:+.1f} % (median of paired ratios "
                  f"{data['overhead_pct_median_of_pairs']:+.1f} %)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    # CPU time is the gate: on a shared runner wall-clock mostly measures the neighbours.
    overhead = float(report["isolated"]["cpu"]["overhead_pct_median_of_pairs"])  # type: ignore
    ok = overhead <= args.goal and not imports["heavy_modules"]  # type: ignore[index]
    verdict = "met" if ok else "MISSED"
    print(f"goal: CPU overhead <= {args.goal:g} % and no torch/torchbridge import -> {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
