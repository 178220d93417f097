"""The stock ``tritonclient.http`` client, with its defaults (binary tensor data), against a
real server on 127.0.0.1: requests, responses, several outputs, versions and errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from serving_models import FEATURES, SummaryMLP, mlp, sample

from torchbridge.serving import ServerConfig
from torchbridge.serving.live import LiveServer

tritonclient_http = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(mlp(), sample(1), ServerConfig(max_batch_size=8, model_version="3")) as live:
        yield live


def _client(live: LiveServer) -> object:
    return tritonclient_http.InferenceServerClient(live.url.removeprefix("http://"))


def _input(x: np.ndarray) -> object:
    request = tritonclient_http.InferInput("input_0", list(x.shape), "FP32")
    request.set_data_from_numpy(x)  # binary_data=True: tritonclient's default
    return request


def test_tritonclient_defaults_send_and_receive_binary_tensor_data(server: LiveServer) -> None:
    x = sample(3).numpy()
    result = _client(server).infer("model", [_input(x)])  # no outputs: all, in binary
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 3 * 4 * 4
    np.testing.assert_allclose(result.as_numpy("output_0"),
                               mlp()(torch.from_numpy(x)).detach().numpy(), rtol=1e-5)


def test_requested_binary_outputs_and_a_version_path_work_unchanged(server: LiveServer) -> None:
    x = sample(2).numpy()
    wanted = tritonclient_http.InferRequestedOutput("output_0")  # binary_data=True default
    result = _client(server).infer("model", [_input(x)], outputs=[wanted], model_version="3")
    np.testing.assert_allclose(result.as_numpy("output_0"),
                               mlp()(torch.from_numpy(x)).detach().numpy(), rtol=1e-5)


def test_a_binary_input_with_json_outputs_answers_json(server: LiveServer) -> None:
    x = sample(1).numpy()
    wanted = tritonclient_http.InferRequestedOutput("output_0", binary_data=False)
    result = _client(server).infer("model", [_input(x)], outputs=[wanted])
    assert "data" in result.get_response()["outputs"][0]
    assert result.as_numpy("output_0").shape == (1, 4)


def test_several_named_outputs_come_back_by_name() -> None:
    model = SummaryMLP().eval()
    with LiveServer(model, sample(1), ServerConfig(max_batch_size=4)) as live:
        x = sample(2).numpy()
        result = _client(live).infer("model", [_input(x)])
        outputs = _client(live).get_model_metadata("model")["outputs"]
    assert {o["name"]: o["shape"] for o in outputs} == {"logits": [-1, 4], "summary": [4]}
    expected = model(torch.from_numpy(x))
    np.testing.assert_allclose(result.as_numpy("logits"), expected["logits"].detach().numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(result.as_numpy("summary"),
                               expected["summary"].detach().numpy(), rtol=1e-5)


def test_tritonclient_sees_a_clear_error_for_a_wrong_shape(server: LiveServer) -> None:
    x = np.zeros((1, FEATURES + 1), dtype=np.float32)
    with pytest.raises(InferenceServerException, match=f"dim 1 must be {FEATURES}"):
        _client(server).infer("model", [_input(x)])


def test_binary_sizes_that_do_not_match_the_shape_are_refused(server: LiveServer) -> None:
    header = (b'{"inputs": [{"name": "input_0", "shape": [1, 8], "datatype": "FP32", '
              b'"parameters": {"binary_data_size": 16}}]}')
    response = server.client.post(
        "/v2/models/model/infer", content=header + b"\0" * 16,
        headers={"Inference-Header-Content-Length": str(len(header)),
                 "Content-Type": "application/octet-stream"})
    assert response.status_code == 422 and "needs 32" in response.json()["error"]


def test_server_metadata_lists_the_binary_tensor_data_extension(server: LiveServer) -> None:
    metadata = _client(server).get_server_metadata()
    assert "binary_tensor_data" in metadata["extensions"]
