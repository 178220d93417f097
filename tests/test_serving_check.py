"""The ``serving`` check and the ``tb_server`` fixture through real inner pytest sessions."""

from __future__ import annotations

import re

import pytest
import torch
from inner_suites import MLP_CONFTEST
from serving_models import mlp, sample

from torchbridge.checks import Subject, run

CONFTEST = MLP_CONFTEST


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_serving_marker_runs_every_subcheck_against_the_live_server(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(test_clf="""
        import pytest_torchbridge as tb

        @tb.serving(max_batch_size=4, max_queue_size=4)
        def test_clf(model, sample_input):
            pass
    """)
    result = suite.runpytest("-q", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2)
    xml = (suite.path / "junit.xml").read_text()
    block = re.search(r'name="test_clf\[tb-serving\]".*?</testcase>', xml, re.S)
    assert block is not None
    props = dict(re.findall(r'<property name="([^"]+)" value="([^"]*)"', block.group(0)))
    assert props["tb.serving.subchecks_failed"] == "0.0"
    assert float(props["tb.serving.subchecks"]) >= 14


def test_serving_fails_a_model_whose_rows_depend_on_their_batch_mates(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(test_norm="""
        import torch
        import pytest_torchbridge as tb

        class CentreBatch(torch.nn.Module):
            # Like BatchNorm left in training mode: each row depends on the others.
            def forward(self, x):
                return x - x.mean(dim=0, keepdim=True)

        @tb.serving(auth=False, overload=False, model_fixture="centring")
        def test_norm(centring, sample_input):
            pass

        import pytest
        @pytest.fixture
        def centring():
            return CentreBatch()
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    # The server's warm-up sees rows change with their batch mates and serves the model
    # unbatched, so no batch can be compared: not exercised, with the server's reason.
    result.stdout.fnmatch_lines(["*serving*batched_parity: not exercised: the server ran "
                                 "each of the 8 single-row requests alone*unbatched: "
                                 "*changes with its batch mates*"])


def test_batched_parity_that_cannot_run_fails_as_not_exercised(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(test_alone="""
        import pytest_torchbridge as tb

        @tb.serving(auth=False, overload=False, concurrent_requests=1)
        def test_alone(model, sample_input):
            pass
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*batched_parity: not exercised: only 1 request can be "
                                 "batched*"])
    assert "sub-checks passed" not in result.stdout.str()


def test_one_row_sample_still_runs_batched_parity_under_the_marker(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(test_one="""
        import pytest, torch
        import pytest_torchbridge as tb

        @pytest.fixture
        def sample_input():
            return torch.randn(1, 8, generator=torch.Generator().manual_seed(1))

        @tb.serving(auth=False, overload=False)
        def test_one(model, sample_input):
            pass
    """)
    result = suite.runpytest("-q", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2)
    xml = (suite.path / "junit.xml").read_text()
    block = re.search(r'name="test_one\[tb-serving\]".*?</testcase>', xml, re.S)
    assert block is not None
    props = dict(re.findall(r'<property name="([^"]+)" value="([^"]*)"', block.group(0)))
    assert props["tb.serving.subchecks_not_exercised"] == "0.0"


def test_one_row_sample_is_grown_to_distinct_rows_served_in_one_batch() -> None:
    result = run("serving", Subject(mlp(), sample(1)), auth=False, overload=False)
    step = next(s for s in result.details["subchecks"] if s["name"] == "batched_parity")
    assert result.passed, result.message
    assert step["status"] == "passed"
    assert step["data"]["batch_rows"] >= 2
    assert min(step["data"]["batched_with"]) >= 2  # the server's X-Batched-With agrees


class DistinctRowsFail(torch.nn.Module):
    """Runs alone and on repeated rows (the server's warm-up falls back to those), but
    raises on a batch of distinct rows: the server re-runs such a batch one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1 and not bool((x == x[:1]).all()):
            raise RuntimeError("cannot run distinct rows together")
        return self.inner(x)


def test_a_batch_that_raised_and_was_rerun_singly_is_not_counted_as_batched() -> None:
    result = run("serving", Subject(DistinctRowsFail().eval(), sample(1)), auth=False,
                 overload=False, concurrent_requests=3)
    assert not result.passed
    assert ("batched_parity: the batch of 3 single-row requests raised RuntimeError: cannot "
            "run distinct rows together; the server re-ran each request alone") in result.message
    assert "served in" not in result.message


def test_impossible_serving_settings_are_a_collection_error(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_bad="""
        import pytest_torchbridge as tb

        @tb.serving(timeout="1s", deadline_probe="5s")
        def test_bad(model):
            pass
    """)
    result = suite.runpytest("-q")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*deadline_probe must be shorter than timeout*"])


def test_tb_server_fixture_serves_the_test_model_on_loopback(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_endpoint="""
        import torch

        def test_predict(tb_server, model, sample_input):
            assert tb_server.url.startswith("http://127.0.0.1:")
            r = tb_server.client.post("/predict", json={"inputs": sample_input.tolist()})
            assert r.status_code == 200
            # torch.allclose, not torch.testing: pytester drops modules an inner session
            # imported, and torch.testing's lazy DTensor import cannot run twice.
            assert torch.allclose(torch.tensor(r.json()["outputs"]),
                                  model(sample_input).detach(), atol=1e-6)
    """)
    suite.runpytest("-q").assert_outcomes(passed=1)


def test_tb_server_config_fixture_configures_the_server(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_auth="""
        import pytest
        from torchbridge.serving import ServerConfig

        @pytest.fixture
        def tb_server_config():
            return ServerConfig(api_keys={"test-key-123": ("infer",)})

        def test_needs_a_key(tb_server, sample_input):
            body = {"inputs": sample_input.tolist()}
            assert tb_server.client.post("/predict", json=body).status_code == 401
            assert tb_server.client.post("/predict", json=body,
                                         headers={"X-API-Key": "test-key-123"}).status_code \\
                == 200
    """)
    suite.runpytest("-q").assert_outcomes(passed=1)


def test_serving_check_runs_from_python_with_its_subchecks_listed() -> None:
    result = run("serving", Subject(mlp(), sample(2)), auth=False, max_queue_size=2)
    names = [s["name"] for s in result.details["subchecks"]]
    assert result.passed, result.message
    assert {"health", "ready", "metrics", "predict_parity", "batched_parity", "malformed_4xx",
            "oversized_413", "deadline_504", "overload_503", "expired_dropped",
            "survives"} <= set(names)
    assert all(s["status"] == "passed" for s in result.details["subchecks"])
    assert "auth" not in names


def test_serving_probes_are_the_smoke_tests_steps() -> None:
    from torchbridge.smoke.client import Client
    from torchbridge.smoke.probe import check_probes
    from torchbridge.smoke.result import Step

    result = run("serving", Subject(mlp(), sample(2)), auth=False, overload=False)
    served = {s["name"]: s for s in result.details["subchecks"]}
    with Client("http://127.0.0.1:9") as unreachable:  # the smoke test's own wording
        smoke = check_probes(unreachable)
    assert [s.name for s in smoke] == ["health", "ready"]
    assert served["health"]["detail"] == "alive (/health 200)"
    assert served["ready"]["detail"] == "ready (/ready 200)"
    assert set(served["health"]) >= set(Step.__dataclass_fields__)


def test_serving_check_reports_a_model_that_cannot_warm_up() -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("weights missing")

    result = run("serving", Subject(Broken(), sample(2)))
    assert result.status.value == "failed"
    assert "warm-up failed: RuntimeError: weights missing" in result.message


PADDED_SUITE = """
    import pytest, torch
    import pytest_torchbridge as tb

    class Encoder(torch.nn.Module):
        serving_padding = {"dim": "seq", "value": 0, "mask": "attention_mask"}

        def __init__(self, masked):
            super().__init__()
            torch.manual_seed(0)
            self.embed = torch.nn.Embedding(32, 4)
            self.masked = masked

        def forward(self, input_ids, attention_mask):
            tokens = self.embed(input_ids)
            if not self.masked:  # pooling that ignores the mask: padding leaks in
                return {"pooled": tokens.mean(1)}
            mask = attention_mask[..., None].to(tokens.dtype)
            return {"pooled": (tokens * mask).sum(1) / mask.sum(1)}

    @pytest.fixture
    def model():
        return Encoder(masked=MASKED).eval()

    @pytest.fixture
    def sample_input():
        ids = torch.tensor([[3, 5, 7, 9, 11, 13]])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    @pytest.fixture
    def input_spec():
        return {"dims": {"seq": {"input": ["input_ids", "attention_mask"], "axis": 1,
                                 "min": 1, "max": 16}}}

    @tb.serving(auth=False, overload=False)
    def test_encoder(model, sample_input):
        pass
"""


def test_padding_leak_fails_naming_the_row_and_its_length(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leak=PADDED_SUITE.replace("MASKED", "False"))
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*serving*padded_parity: row 0 (seq=1): output.pooled: "
                                 "4/4 elements differ*"])
    assert "(seq=16): output.pooled" not in result.stdout.str()  # the longest is unpadded


def test_masked_model_passes_padded_parity_over_mixed_lengths(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_masked=PADDED_SUITE.replace("MASKED", "True"))
    result = pytester.runpytest("-q", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2)
    assert 'name="tb.serving.subchecks_not_exercised" value="0.0"' in \
        (pytester.path / "junit.xml").read_text()


class MaskedMean(torch.nn.Module):
    serving_padding = {"dim": "seq", "value": 0, "mask": "attention_mask"}

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(32, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask[..., None].to(torch.float32)
        return (self.embed(input_ids) * mask).sum(1) / mask.sum(1)


def test_padded_parity_serves_the_dims_range_as_one_padded_batch() -> None:
    ids = torch.tensor([[3, 5, 7, 9, 11, 13]])
    subject = Subject(MaskedMean().eval(), {"input_ids": ids, "attention_mask": ids * 0 + 1},
                      spec={"dims": {"seq": {"input": ["input_ids", "attention_mask"],
                                             "axis": 1, "min": 1, "max": 16}}})
    result = run("serving", subject, auth=False, overload=False)
    step = next(s for s in result.details["subchecks"] if s["name"] == "padded_parity")
    assert step["status"] == "passed", step["detail"]
    assert step["data"]["batch_rows"] == 4
    assert "seq lengths [1, 6, 8, 16]" in step["detail"]


def test_generative_model_reports_ttft_and_inter_token_percentiles() -> None:
    from serving_models import TinyGenerator

    result = run("serving", Subject(TinyGenerator().eval(), torch.tensor([[1, 2, 3, 4]])),
                 auth=False, overload=False, token_requests=3, max_new_tokens=4)
    assert result.passed, result.message
    assert "token_latency" in result.message
    assert {"ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"} <= set(result.metrics)


def test_ttft_budget_gates_the_token_latency_sub_check() -> None:
    from serving_models import TinyGenerator

    result = run("serving", Subject(TinyGenerator().eval(), torch.tensor([[1, 2, 3, 4]])),
                 auth=False, overload=False, token_requests=2, max_new_tokens=2,
                 ttft_p99="1ns")
    assert not result.passed
    assert re.search(r"token_latency: TTFT p99 .+ > budget 1 ns \(2 streamed requests",
                     result.message)


class NeedsTwoTokens(MaskedMean):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] < 2:
            raise ValueError("needs two tokens")
        return super().forward(input_ids, attention_mask)


def test_padded_row_whose_eager_reference_raises_is_named() -> None:
    ids = torch.tensor([[3, 5, 7, 9, 11, 13]])
    subject = Subject(NeedsTwoTokens().eval(),
                      {"input_ids": ids, "attention_mask": ids * 0 + 1},
                      spec={"dims": {"seq": {"input": ["input_ids", "attention_mask"],
                                             "axis": 1, "min": 1, "max": 16}}})
    result = run("serving", subject, auth=False, overload=False)
    assert not result.passed
    assert ("padded_parity: row 0 (seq=1): the eager reference raised ValueError: needs two "
            "tokens") in result.message


def test_serving_parity_on_outputs_without_signal_passes_with_a_warning() -> None:
    model = mlp()
    torch.nn.init.zeros_(model[2].weight)  # a zero-initialised head: all-zero outputs
    torch.nn.init.zeros_(model[2].bias)
    result = run("serving", Subject(model, sample(2)), auth=False, overload=False)
    assert result.passed, result.message
    assert "; warning: no signal in output (every value within 1e-06 of 0)" in result.message
