"""TLS with a self-signed certificate made here, configuration errors, and ``tb-serve``."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serving_models import mlp, sample

from torchbridge.errors import ConfigError
from torchbridge.serving import ServerConfig
from torchbridge.serving.config import parse_api_keys
from torchbridge.serving.live import LiveServer


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls_serves_https_verified_against_the_self_signed_certificate(
        certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = ServerConfig(ssl_certfile=str(cert), ssl_keyfile=str(key))
    trust = ssl.create_default_context(cafile=str(cert))
    with LiveServer(mlp(), sample(), config, verify=trust) as live:
        assert live.url.startswith("https://127.0.0.1:")
        response = live.client.post("/predict", json={"inputs": sample(1).tolist()})
        plain = live.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(plain + "/health", timeout=5)
        with pytest.raises(httpx.ConnectError):  # unknown issuer: verification is real
            httpx.get(live.url + "/health", timeout=5)
    assert response.status_code == 200


def test_tls_needs_both_certificate_and_key() -> None:
    with pytest.raises(ConfigError, match="both ssl_certfile and ssl_keyfile"):
        ServerConfig(ssl_certfile="cert.pem")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_batch_size": 0}, "max_batch_size must be a positive integer"),
    ({"timeout_seconds": "5 parsecs"}, "unknown time unit"),
    ({"max_body_bytes": "-1MB"}, "max_body_bytes"),
    ({"rate_limit": "fast"}, "rate_limit"),
    ({"api_keys": {"k" * 12: ("root",)}}, "unknown role"),
])
def test_bad_server_settings_raise_config_errors_naming_the_setting(
        kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_role_error_never_shows_the_key() -> None:
    with pytest.raises(ConfigError) as error:
        ServerConfig(api_keys={"super-secret-key": ("root",)})
    assert "super-secret-key" not in str(error.value)


def test_api_key_file_lines_carry_roles_and_comments() -> None:
    keys = parse_api_keys("# team keys\nkey-aaaa-1111 infer,admin\nkey-bbbb-2222\n\n", "f")
    assert keys == {"key-aaaa-1111": ("infer", "admin"), "key-bbbb-2222": ("infer",)}
    with pytest.raises(ConfigError, match="f line 1: API key shorter than 8"):
        parse_api_keys("short", "f")


def test_api_keys_come_from_the_environment_when_no_file_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TB_API_KEYS", "env-key-0001 admin;env-key-0002")
    keys = ServerConfig().load_api_keys()
    assert keys == {"env-key-0001": ("admin",), "env-key-0002": ("infer",)}


def test_tb_serve_refuses_to_expose_an_open_server(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TB_API_KEYS", raising=False)
    from torchbridge.cli.main import main

    code = main(["serve", "--model", "x:y", "--host", "0.0.0.0"])
    assert code == 2
    assert "--api-keys-file" in capsys.readouterr().err


def test_tb_serve_reports_a_model_it_cannot_load(capsys: pytest.CaptureFixture[str]) -> None:
    from torchbridge.cli.main import main

    assert main(["serve", "--model", "no_such_pkg_xyz.models:build"]) == 2
    assert "no_such_pkg_xyz" in capsys.readouterr().err


def test_tb_serve_serves_a_factory_model_and_exits_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "toymodels.py").write_text(
        "import torch\n\ndef build():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(8, 4))\n")
    keys = tmp_path / "keys.txt"
    keys.write_text("serve-key-0001 infer,admin\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchbridge.cli.main", "serve", "--model", "toymodels:build",
         "--input-shape", "1,8", "--port", str(port), "--api-keys-file", str(keys),
         "--model-version", "v3", "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert first["url"] == f"http://127.0.0.1:{port}" and first["auth"] is True
        headers = {"X-API-Key": "serve-key-0001"}
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{first['url']}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "tb-serve did not become ready"
            time.sleep(0.1)
        response = httpx.post(f"{first['url']}/predict", headers=headers,
                              json={"inputs": [[0.5] * 8]})
        metrics = httpx.get(f"{first['url']}/metrics", headers=headers).text
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        logs = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert response.status_code == 200 and response.headers["x-model-version"] == "v3"
    assert 'torchbridge_model_info{' in metrics and 'version="v3"' in metrics
    assert code in (0, -signal.SIGTERM)
    assert '"endpoint":"/predict","status":200' in logs
    assert "serve-key-0001" not in logs


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_tb_serve_on_an_absent_device_is_an_environment_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from torchbridge.cli.main import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is present here")
    assert main(["serve", "--model", "x:y", "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err
