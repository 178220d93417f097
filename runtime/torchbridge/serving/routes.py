"""The server's one route table: every path with the role it needs; deny by default.

The app registers its routes and the middleware authorises requests from this table
alone. :func:`verify` (run when the app is built) refuses an app that has a route missing
from the table, and a path that matches no entry needs the ``admin`` role (then 404s), so a
route added without a role can never be served without authentication.

Roles: ``None`` (open: probes and API docs), ``"infer"``, ``"admin"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

OPEN: None = None
INFER = "infer"
ADMIN = "admin"
#: the label and role of a path that matches no route
UNKNOWN = ("other", ADMIN)


@dataclass(frozen=True)
class RouteRole:
    """One route: its path template (the metrics label too) and the role it needs."""

    path: str
    role: str | None
    inference: bool = False


TABLE: tuple[RouteRole, ...] = (
    RouteRole("/health", OPEN),
    RouteRole("/ready", OPEN),
    RouteRole("/metrics", ADMIN),
    RouteRole("/predict", INFER, inference=True),
    RouteRole("/generate", INFER, inference=True),
    RouteRole("/v2", ADMIN),
    RouteRole("/v2/health/live", OPEN),
    RouteRole("/v2/health/ready", OPEN),
    RouteRole("/v2/models/{name}", ADMIN),
    RouteRole("/v2/models/{name}/ready", OPEN),
    RouteRole("/v2/models/{name}/infer", INFER, inference=True),
    RouteRole("/v2/models/{name}/versions/{version}", ADMIN),
    RouteRole("/v2/models/{name}/versions/{version}/ready", OPEN),
    RouteRole("/v2/models/{name}/versions/{version}/infer", INFER, inference=True),
    RouteRole("/openapi.json", OPEN),
    RouteRole("/docs", OPEN),
    RouteRole("/docs/oauth2-redirect", OPEN),
)
BY_PATH = {route.path: route for route in TABLE}
INFERENCE_ENDPOINTS = frozenset(r.path for r in TABLE if r.inference)
_STATIC = {r.path: (r.path, r.role) for r in TABLE if "{" not in r.path}
_TEMPLATED = [(re.compile("^" + re.sub(r"\{[^}/]+\}", "[^/]+", re.escape(r.path)
                                       .replace(r"\{", "{").replace(r"\}", "}")) + "$"),
               (r.path, r.role)) for r in TABLE if "{" in r.path]


def classify(path: str) -> tuple[str, str | None]:
    """(route template, role needed) for a request path; :data:`UNKNOWN` when no route
    matches (deny by default: the admin role)."""
    hit = _STATIC.get(path)
    if hit is not None:
        return hit
    for pattern, found in _TEMPLATED:
        if pattern.match(path):
            return found
    return UNKNOWN


def verify(paths: Iterable[str]) -> None:
    """Raise ``RuntimeError`` naming any served path that has no entry in :data:`TABLE`."""
    missing = sorted(set(paths) - set(BY_PATH))
    if missing:
        raise RuntimeError(f"route(s) {missing} have no role in torchbridge.serving.routes."
                           "TABLE; every route must declare one")


__all__ = ["ADMIN", "INFER", "INFERENCE_ENDPOINTS", "OPEN", "TABLE", "RouteRole", "classify",
           "verify"]
