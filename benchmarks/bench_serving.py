"""HTTP load benchmark: TorchBridge's server against a plain FastAPI route and LitServe.

Each server runs alone in its own process on 127.0.0.1, serving the same MLP
(256 -> 1024 -> 1024 -> 10); ``wrk`` (Debian package ``wrk``) sends one JSON request of 256
floats per call at 1 and 16 connections. The table gives requests/s, p50 and p99.

TorchBridge is measured twice:

* ``torchbridge-default``: started exactly as ``tb-serve`` starts it, with its default
  settings (``tb-serve --model bench_serving:build_model --input-shape 1,256``): JSON
  access log on (one line per request to stderr), batching 8 / 2 ms, queue 256;
* ``torchbridge``: tuned for the benchmark: access log off, queue 1024.

    .venv/bin/python benchmarks/bench_serving.py                # everything, 10 s each
    .venv/bin/python benchmarks/bench_serving.py --duration 3 --only torchbridge plain

Run it on a quiet machine: on a shared or loaded one the numbers say more about the
neighbours than about the servers.

This is a script, not a test: nothing here is asserted.
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVERS = ("torchbridge-default", "torchbridge", "plain", "litserve-batch", "litserve")
HERE = Path(__file__).resolve().parent
FEATURES = 256


def build_model() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
        torch.nn.ReLU(), torch.nn.Linear(1024, 10)).eval()


# ------------------------------------------------------------------- the servers
def serve_torchbridge(port: int) -> None:
    import torch

    from torchbridge.serving import ServerConfig, create_fastapi_server, run_server

    config = ServerConfig(max_batch_size=8, max_batch_delay_ms=2, max_queue_size=1024)
    app = create_fastapi_server(build_model(), config, sample_input=torch.randn(1, FEATURES))
    import logging

    logging.getLogger("torchbridge.serving.access").setLevel(logging.WARNING)
    run_server(app, port=port, log_level="warning")


def serve_torchbridge_default(port: int) -> None:
    """``tb-serve`` itself, with nothing but the model, its input shape and the port."""
    sys.path.insert(0, str(HERE))
    from torchbridge.cli.serve import main as tb_serve

    raise SystemExit(tb_serve(["--model", "bench_serving:build_model", "--input-shape",
                               f"1,{FEATURES}", "--port", str(port)]))


def serve_plain(port: int) -> None:
    """A FastAPI sync route calling the model, as FastAPI's docs would have it."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    model = build_model()
    app = FastAPI()

    class Item(BaseModel):
        inputs: list[list[float]]

    @app.post("/predict")
    def predict(item: Item) -> dict[str, Any]:
        with torch.no_grad():
            out = model(torch.tensor(item.inputs))
        return {"outputs": out.tolist()}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


try:  # LitServe's workers are spawned processes: its API class must live at module level.
    import litserve as ls
except ImportError:  # the LitServe rows are then skipped
    ls = None

if ls is not None:

    class MLPAPI(ls.LitAPI):  # type: ignore[misc]
        def setup(self, device: str) -> None:
            self.model = build_model()

        def decode_request(self, request: dict[str, Any]) -> Any:
            import torch

            return torch.tensor(request["inputs"][0])

        def batch(self, inputs: list[Any]) -> Any:
            import torch

            return torch.stack(inputs)

        def predict(self, x: Any) -> Any:
            import torch

            with torch.no_grad():
                return self.model(x if x.ndim == 2 else x[None])

        def unbatch(self, output: Any) -> list[Any]:
            return list(output)

        def encode_response(self, output: Any) -> dict[str, Any]:
            return {"outputs": output.reshape(-1, 10).tolist()}


def serve_litserve(port: int, batching: bool) -> None:
    if ls is None:
        raise SystemExit("litserve is not installed")
    api = MLPAPI(max_batch_size=8, batch_timeout=0.005) if batching else MLPAPI()
    ls.LitServer(api, accelerator="cpu").run(port=port, generate_client_file=False)


# ------------------------------------------------------------------- driving wrk
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    paths = ("/ready", "/health")
    while time.monotonic() < deadline:
        for path in paths:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not become ready")


def wrk_script(directory: Path) -> Path:
    rows = [[round(random.Random(1).uniform(-1, 1), 6) for _ in range(FEATURES)]]
    body = json.dumps({"inputs": rows})
    script = directory / "post.lua"
    script.write_text('wrk.method = "POST"\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(body)}\n")
    return script


def run_wrk(port: int, connections: int, duration: float, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}/predict"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": to_ms(percentiles["50"]), "p99_ms": to_ms(percentiles["99"]),
            "non_2xx": float(errors.group(1)) if errors else 0.0}


def to_ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def bench(name: str, duration: float, script: Path) -> list[dict[str, Any]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        run_wrk(port, 4, 2, script)  # warm-up
        rows = []
        for connections in (1, 16):
            result = run_wrk(port, connections, duration, script)
            rows.append({"server": name, "connections": connections, **result})
            print(f"{name:15s} c={connections:<3d} {result['rps']:8.0f} req/s  "
                  f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                  f"non-2xx {result['non_2xx']:.0f}", flush=True)
        return rows
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| server | connections | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['server']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--only", nargs="*", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        {"torchbridge": serve_torchbridge, "torchbridge-default": serve_torchbridge_default,
         "plain": serve_plain,
         "litserve-batch": lambda p: serve_litserve(p, True),
         "litserve": lambda p: serve_litserve(p, False)}[args.serve](args.port)
        return 0
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    print(f"CPU cores: {os.cpu_count()}; {args.duration:g} s per run; wrk -t1", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        script = wrk_script(Path(tmp))
        rows = [row for name in args.only for row in bench(name, args.duration, script)]
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
