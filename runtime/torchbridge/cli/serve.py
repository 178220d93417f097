"""``tb-serve``: serve a model over HTTP with the TorchBridge server.

Example::

    tb-serve --model pkg.models:build --weights clf.safetensors --input-shape 1,256 \\
             --port 8000 --api-keys-file keys.txt
    tb-serve --model pkg.models:build_bert --input-shape input_ids=1,128 \\
             --input-shape attention_mask=1,128 --dtype int64 \\
             --dim seq=input_ids:1,attention_mask:1:1-512

Model, input and device options are the shared ones of :mod:`torchbridge.cli.arguments`;
``--input-dtype`` is a deprecated spelling of ``--dtype``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from torchbridge.cli import arguments as cli
from torchbridge.cli.common import EXIT_FAILED, EXIT_OK, parser
from torchbridge.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parse_args(_parser(), argv)
    try:
        from torchbridge.inputs import named_shapes
        from torchbridge.serving import ServerConfig, run_server
        from torchbridge.serving.loader import build_app
        from torchbridge.serving.server import WorkerDied
    except ImportError as exc:
        raise ConfigError(f"tb-serve needs {exc.name}: pip install "
                          "'pytest-torchbridge[serve]'") from None
    config = ServerConfig(
        max_batch_size=args.max_batch_size, max_batch_delay_ms=args.max_batch_delay_ms,
        max_queue_size=args.max_queue_size, timeout_seconds=args.timeout,
        max_body_bytes=args.max_body, api_keys_file=args.api_keys_file,
        rate_limit=args.rate_limit, model_name=args.model_name,
        model_version=args.model_version, warmup=not args.no_warmup,
        grace_period_s=args.grace_period, log_payloads=args.log_payloads,
        audit_log=args.audit_log, host=args.host, port=args.port,
        ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key, device=args.device,
        allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None,
        trusted_proxies=tuple(args.trusted_proxy), read_timeout_s=args.read_timeout,
        max_connections=args.max_connections)
    config.check_device()
    exposed = config.host not in ("127.0.0.1", "localhost", "::1")
    if exposed and not args.insecure_no_auth and not config.load_api_keys():
        # ShellTorch-style exposure: never serve an open endpoint beyond loopback by accident.
        raise ConfigError(f"--host {config.host} exposes the server beyond this machine; "
                          "give --api-keys-file (or $TB_API_KEYS), or pass --insecure-no-auth")
    names, shapes = named_shapes(args.input_shape or [])
    app = build_app(args.model, args.weights, config, input_shapes=shapes, input_names=names,
                    input_dtypes=args.dtype or ["float32"], input_spec=cli.spec_from_args(args),
                    allow_pickle=args.allow_pickle, allowed_globals=tuple(args.allow_global))
    if args.json:
        scheme = "https" if config.tls else "http"
        print(json.dumps({"url": f"{scheme}://{config.host}:{config.port}",
                          "model": config.model_name, "version": config.model_version,
                          "max_batch_size": config.max_batch_size,
                          "auth": bool(config.load_api_keys())}), flush=True)
    try:
        run_server(app, host=config.host, port=config.port, ssl_certfile=config.ssl_certfile,
                   ssl_keyfile=config.ssl_keyfile, grace_period_s=config.grace_period_s,
                   torch_threads=args.torch_threads)
    except WorkerDied as exc:  # non-zero, so that an orchestrator restarts the server
        print(f"tb-serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = parser("tb-serve", "Serve a PyTorch model over HTTP (FastAPI + uvicorn, dynamic "
                           "batching, Prometheus metrics, Open Inference Protocol v2).")
    cli.add_model_arguments(p)
    cli.add_input_arguments(p)
    p.add_argument("--input-dtype", dest="dtype", action=cli.DeprecatedAlias, new="--dtype",
                   help=argparse.SUPPRESS)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    cli.add_device_argument(p)
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--max-batch-delay-ms", type=float, default=2.0)
    p.add_argument("--max-queue-size", type=int, default=256)
    p.add_argument("--timeout", default="30s", help="per-request deadline (queue + compute)")
    p.add_argument("--max-body", default="4MiB")
    p.add_argument("--api-keys-file", help="'KEY [role,role]' per line; or set $TB_API_KEYS")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow binding beyond loopback without API keys")
    p.add_argument("--rate-limit", help="per-key token bucket, e.g. 50/s")
    p.add_argument("--model-name", default="model")
    p.add_argument("--model-version", default="1")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--grace-period", default="30s",
                   help="on SIGTERM, time to finish in-flight and queued requests")
    p.add_argument("--log-payloads", action="store_true",
                   help="log input values (off: logs carry shapes and dtypes only)")
    p.add_argument("--audit-log", help="append one JSON line per inference request here")
    p.add_argument("--tls-cert", help="PEM certificate (with --tls-key): serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--torch-threads", type=int,
                   help="intra-op threads (default: CPU count - 1, leaving the event loop a "
                        "core)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name clients may use besides loopback names and --host "
                        "(repeat; '*' allows any). Checked when no API keys are set, or "
                        "whenever given")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                   help="a proxy address (or CIDR) whose X-Forwarded-For is believed "
                        "(repeat; default: nobody's)")
    p.add_argument("--read-timeout", default="10s",
                   help="time allowed to send the request headers, and the body (408)")
    p.add_argument("--max-connections", type=int, default=1024,
                   help="open connections at most; more get a 503 and are closed")
    p.add_argument("--json", action="store_true", help="print the serving URL as JSON first")
    return p


if __name__ == "__main__":
    sys.exit(main())
