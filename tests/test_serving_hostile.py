"""Hostile clients: slow headers and bodies, connection floods, cross-site posts, DNS
rebinding, spoofed X-Forwarded-For, unparsable requests and unknown routes. Real uvicorn
servers on 127.0.0.1 with ephemeral ports; raw sockets where a client library would
refuse to misbehave."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from serving_models import mlp, sample

from torchbridge.serving import ServerConfig, create_fastapi_server
from torchbridge.serving.live import LiveServer
from torchbridge.serving.routes import TABLE, classify

ADMIN, INFER = "admin-key-0001", "infer-key-0002"
BODY = json.dumps({"inputs": sample(1).tolist()}).encode()


def _port(live: LiveServer) -> int:
    return int(live.url.rsplit(":", 1)[1])


def _connect(live: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(live)), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _status_and_json(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), raw[:300]
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def keyless() -> Iterator[LiveServer]:
    config = ServerConfig(max_batch_size=2, read_timeout_s=1.0, max_connections=8)
    with LiveServer(mlp(), sample(1), config) as live:
        yield live


# ------------------------------------------------------------------ 6: slow clients
def test_a_body_sent_one_byte_at_a_time_is_cut_with_408(keyless: LiveServer) -> None:
    sock = _connect(keyless)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                 b"\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n")
    start = time.monotonic()
    raw = b""
    for byte in BODY[:20]:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        time.sleep(0.1)
        if time.monotonic() - start > 1.5:
            break
    raw = _read_all(sock)
    status, body = _status_and_json(raw)
    assert status == 408 and "body" in str(body["error"])
    assert time.monotonic() - start < 5


def test_headers_sent_slowly_get_408_and_the_connection_closed(keyless: LiveServer) -> None:
    sock = _connect(keyless)
    start = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    for _ in range(30):
        try:
            sock.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
        time.sleep(0.1)
        if time.monotonic() - start > 1.5:
            break
    status, body = _status_and_json(_read_all(sock))
    assert status == 408 and "headers" in str(body["error"])
    assert time.monotonic() - start < 5


def test_connections_past_the_limit_get_a_json_503_and_are_closed() -> None:
    config = ServerConfig(max_batch_size=2, read_timeout_s=10.0, max_connections=4)
    with LiveServer(mlp(), sample(1), config) as live:
        held = [_connect(live) for _ in range(4)]
        time.sleep(0.2)
        extra = _connect(live)
        status, body = _status_and_json(_read_all(extra))
        for sock in held:
            sock.close()
        time.sleep(0.2)
        after = live.client.get("/health").status_code
    assert status == 503 and "connections" in str(body["error"])
    assert after == 200


# ------------------------------------------------------------------ 9: browsers
@pytest.mark.parametrize("content_type", [b"text/plain", b"application/x-www-form-urlencoded",
                                          b"multipart/form-data; boundary=x", None])
def test_keyless_servers_refuse_bodies_a_web_page_can_post(keyless: LiveServer,
                                                           content_type: bytes | None) -> None:
    headers = {"Content-Type": content_type.decode()} if content_type else {}
    response = keyless.client.post("/predict", content=BODY, headers=headers)
    assert response.status_code == 415 and "application/json" in response.json()["error"]


def test_keyless_servers_answer_only_their_own_host_names(keyless: LiveServer) -> None:
    rebound = keyless.client.get("/metrics", headers={"Host": "evil.example:8000"})
    local = keyless.client.get("/metrics", headers={"Host": f"localhost:{_port(keyless)}"})
    assert rebound.status_code == 400 and "Host" in rebound.json()["error"]
    assert local.status_code == 200


def test_allowed_hosts_admit_a_configured_name() -> None:
    config = ServerConfig(max_batch_size=2, allowed_hosts=("api.example",))
    with LiveServer(mlp(), sample(1), config) as live:
        named = live.client.get("/ready", headers={"Host": "api.example"})
        other = live.client.get("/ready", headers={"Host": "evil.example"})
    assert named.status_code == 200 and other.status_code == 400


def test_servers_with_keys_accept_any_body_type_from_an_authenticated_client() -> None:
    config = ServerConfig(max_batch_size=2, api_keys={INFER: ("infer",)})
    with LiveServer(mlp(), sample(1), config,
                    headers={"Authorization": f"Bearer {INFER}"}) as live:
        response = live.client.post("/predict", content=BODY,
                                    headers={"Content-Type": "text/plain"})
    assert response.status_code == 200


# ------------------------------------------------------------------ 10: X-Forwarded-For
def _rotating(live: LiveServer) -> list[int]:
    return [live.client.post("/predict", content=BODY,
                             headers={"Content-Type": "application/json",
                                      "X-Forwarded-For": f"10.0.0.{i}"}).status_code
            for i in range(3)]


def test_a_rotating_x_forwarded_for_does_not_lift_the_rate_limit() -> None:
    config = ServerConfig(max_batch_size=2, rate_limit="1/s", rate_burst=1)
    with LiveServer(mlp(), sample(1), config) as live:
        statuses = _rotating(live)
    assert statuses[0] == 200 and 429 in statuses[1:]


def test_forwarded_addresses_are_believed_from_a_configured_proxy() -> None:
    config = ServerConfig(max_batch_size=2, rate_limit="1/s", rate_burst=1,
                          trusted_proxies=("127.0.0.1",))
    with LiveServer(mlp(), sample(1), config) as live:
        statuses = _rotating(live)
    assert statuses == [200, 200, 200]


# ------------------------------------------------------------------ 11: uvicorn's 400s
@pytest.mark.parametrize("request_bytes", [
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1e20\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x00b\r\n\r\n",
    b"NOT-HTTP\r\n\r\n",
])
def test_requests_uvicorn_cannot_parse_get_a_json_400(keyless: LiveServer,
                                                      request_bytes: bytes) -> None:
    sock = _connect(keyless)
    sock.sendall(request_bytes)
    status, body = _status_and_json(_read_all(sock))
    assert status == 400 and body["error"]


# ------------------------------------------------------------------ 12: route table
def test_every_served_route_declares_its_role_in_the_one_table() -> None:
    app = create_fastapi_server(mlp(), ServerConfig(), sample_input=sample(1))
    served = {route.path for route in app.routes if hasattr(route, "path")}
    assert served <= {r.path for r in TABLE}
    assert classify("/v2/models/m/versions/1/infer") == \
        ("/v2/models/{name}/versions/{version}/infer", "infer")


def test_unknown_paths_and_routes_added_later_need_the_admin_role() -> None:
    config = ServerConfig(max_batch_size=2, api_keys={ADMIN: ("infer", "admin"),
                                                      INFER: ("infer",)})
    with LiveServer(mlp(), sample(1), config) as live:

        @live.app.get("/debug")
        async def debug() -> dict[str, str]:
            return {"secret": "internals"}

        anonymous = live.client.get("/debug")
        infer_only = live.client.get("/debug", headers={"Authorization": f"Bearer {INFER}"})
        admin = live.client.get("/debug", headers={"Authorization": f"Bearer {ADMIN}"})
        unknown = live.client.get("/nowhere", headers={"Authorization": f"Bearer {ADMIN}"})
    assert anonymous.status_code == 401 and infer_only.status_code == 403
    assert admin.status_code == 200
    assert unknown.status_code == 404 and unknown.json()["error"]
