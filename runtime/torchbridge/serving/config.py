"""Server configuration: batching, limits, access control, TLS and logging in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torchbridge.errors import ConfigError, HardwareUnavailable
from torchbridge.hardware import check_device
from torchbridge.units import parse_bytes, parse_duration, parse_rate

#: Environment variable holding API keys when no file is given (same format as the file).
API_KEYS_ENV = "TB_API_KEYS"
ROLES = ("infer", "admin")


@dataclass(frozen=True)
class ServerConfig:
    """How the model server batches, limits, authenticates and logs.

    Batching: a batch is released when it holds ``max_batch_size`` rows, or when
    ``max_batch_delay_ms`` passed since its first request; the worker never waits when no
    other request is on its way, so a lone client sees no added latency.

    ``timeout_seconds`` is one deadline per request covering queueing and inference
    (a client may ask for less with the ``X-Request-Timeout`` header). ``max_queue_size``
    bounds the queue: past it requests get 503 with Retry-After.

    Access: API keys from ``api_keys`` (key -> roles), ``api_keys_file`` or the
    ``TB_API_KEYS`` environment variable, one ``KEY [role,role]`` per line (roles default
    to ``infer``; ``admin`` also opens /metrics and model metadata). With no keys at all,
    the server is open -- which is why it binds 127.0.0.1 unless told otherwise.
    ``rate_limit`` (``"50/s"``) is a token bucket per key (per client address without
    auth), with ``rate_burst`` tokens.

    Without keys, POSTs must say ``Content-Type: application/json`` (or carry the v2
    binary ``Inference-Header-Content-Length`` header), so a web page cannot post to the
    server, and the ``Host`` header must name this server: a loopback name, ``host``, or
    one of ``allowed_hosts`` (``("*",)`` allows any; giving ``allowed_hosts`` also turns the
    check on with keys), which defeats DNS rebinding.

    Slow clients: ``read_timeout_s`` bounds the time to receive a request's headers and,
    separately, its body (408 and the connection closed); ``max_connections`` bounds open
    connections (more get a JSON 503 and are closed). Both apply before authentication.
    ``trusted_proxies``: addresses whose ``X-Forwarded-For`` is believed (for the rate
    limit and logs); empty (the default) believes nobody's.

    Example::

        ServerConfig(max_batch_size=32, max_batch_delay_ms=2, timeout_seconds=30,
                     api_keys_file="keys.txt")
    """

    max_batch_size: int = 8
    max_batch_delay_ms: float = 2.0
    max_queue_size: int = 256
    timeout_seconds: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024
    api_keys: Mapping[str, tuple[str, ...]] | None = None
    api_keys_file: str | None = None
    rate_limit: float | None = None
    rate_burst: float | None = None
    model_name: str = "model"
    model_version: str = "1"
    weights_sha256: str = ""
    warmup: bool = True
    grace_period_s: float = 30.0
    enable_streaming: bool = True
    max_new_tokens: int = 256
    log_payloads: bool = False
    audit_log: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    device: str = "cpu"
    torch_threads: int | None = None
    allowed_hosts: tuple[str, ...] | None = None
    trusted_proxies: tuple[str, ...] = ()
    read_timeout_s: float = 10.0
    max_connections: int = 1024

    def __post_init__(self) -> None:
        _positive_int(self, "max_batch_size")
        _positive_int(self, "max_queue_size")
        _positive_int(self, "max_new_tokens")
        if self.torch_threads is not None:
            _positive_int(self, "torch_threads")
        _positive_int(self, "max_connections")
        for name in ("max_batch_delay_ms", "timeout_seconds", "grace_period_s",
                     "read_timeout_s"):
            _set(self, name, parse_duration(getattr(self, name), name)
                 if name != "max_batch_delay_ms"
                 else _delay_ms(self.max_batch_delay_ms))
        if self.timeout_seconds <= 0:
            raise ConfigError("timeout_seconds must be > 0")
        if self.read_timeout_s <= 0:
            raise ConfigError("read_timeout_s must be > 0")
        for name in ("allowed_hosts", "trusted_proxies"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ConfigError(f"{name} must be a list of strings, not one string")
            if value is not None:
                _set(self, name, tuple(str(v).strip().lower() for v in value))
        _set(self, "max_body_bytes", parse_bytes(self.max_body_bytes, "max_body_bytes"))
        if self.max_body_bytes <= 0:
            raise ConfigError("max_body_bytes must be > 0")
        if self.rate_limit is not None:
            rate = parse_rate(self.rate_limit, "rate_limit")
            if rate <= 0:
                raise ConfigError("rate_limit must be > 0 (or None for no limit)")
            _set(self, "rate_limit", rate)
            burst = self.rate_burst if self.rate_burst is not None else max(1.0, rate)
            if float(burst) < 1:
                raise ConfigError("rate_burst must be >= 1 token")
            _set(self, "rate_burst", float(burst))
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("TLS needs both ssl_certfile and ssl_keyfile")
        if self.api_keys is not None:
            _set(self, "api_keys", {k: _roles(v, k) for k, v in self.api_keys.items()})

    def check_device(self) -> None:
        """Raise :class:`~torchbridge.errors.HardwareUnavailable` when ``device`` is absent."""
        try:
            check_device(self.device)
        except HardwareUnavailable as exc:
            raise HardwareUnavailable(f"device {self.device!r}: {exc}") from None

    @property
    def max_batch_delay_s(self) -> float:
        return self.max_batch_delay_ms / 1000.0

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    def host_allowed(self, host_header: bytes | None) -> bool:
        """Whether a request's ``Host`` names this server (see the class docstring)."""
        allowed = self.allowed_hosts
        if allowed is not None and "*" in allowed:
            return True
        if allowed is None and self.host in ("0.0.0.0", "::", ""):
            return True  # bound everywhere: no one name to check against
        if not host_header:
            return False
        name = _hostname(host_header.decode("latin-1").strip().lower())
        return name in _LOOPBACK or name == self.host.lower() or \
            (allowed is not None and name in allowed)

    def load_api_keys(self) -> dict[str, tuple[str, ...]]:
        """Every configured key with its roles: ``api_keys``, then the file, then the env."""
        keys: dict[str, tuple[str, ...]] = dict(self.api_keys or {})
        if self.api_keys_file:
            path = Path(self.api_keys_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"api_keys_file {path}: cannot read it ({exc.strerror})") \
                    from None
            keys.update(parse_api_keys(text, str(path)))
        elif os.environ.get(API_KEYS_ENV):
            keys.update(parse_api_keys(os.environ[API_KEYS_ENV].replace(";", "\n"),
                                       f"${API_KEYS_ENV}"))
        return keys


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _hostname(value: str) -> str:
    """``example.com:8000`` → ``example.com``; ``[::1]:8000`` → ``::1``; ``""`` (matching
    nothing) when what follows the name is not a port (``localhost:80@evil.com``)."""
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else ""
    if value.count(":") == 1:
        name, _, port = value.partition(":")
        return name if port.isdigit() else ""
    return value


def parse_api_keys(text: str, source: str) -> dict[str, tuple[str, ...]]:
    """``KEY [role,role]`` per line; ``#`` starts a comment. Keys are never echoed back."""
    keys: dict[str, tuple[str, ...]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise ConfigError(f"{source} line {number}: expected 'KEY [role,role]'")
        if len(parts[0]) < 8:
            raise ConfigError(f"{source} line {number}: API key shorter than 8 characters")
        keys[parts[0]] = _roles(parts[1].split(",") if len(parts) == 2 else ("infer",),
                                f"{source} line {number}")
    return keys


def _roles(value: object, where: str) -> tuple[str, ...]:
    roles = (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        # The key itself must never reach a log or an error message.
        label = where if " line " in where or where.startswith("$") else "an API key"
        raise ConfigError(f"{label}: unknown role(s) {unknown}; known roles: {', '.join(ROLES)}")
    return tuple(str(r) for r in roles)


def _delay_ms(value: object) -> float:
    if isinstance(value, str):
        return parse_duration(value, "max_batch_delay_ms") * 1000.0
    number = float(value)  # type: ignore[arg-type]
    if number < 0:
        raise ConfigError("max_batch_delay_ms must be >= 0")
    return number


def _positive_int(config: ServerConfig, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _set(config: ServerConfig, name: str, value: object) -> None:
    object.__setattr__(config, name, value)
