"""CheckResult read back from the dict a report holds."""

from __future__ import annotations

import json

import pytest

from torchbridge.core.result import CheckResult, Metric, ResultFormatError, Status


def test_a_result_survives_the_round_trip_through_json() -> None:
    result = CheckResult("latency", Status.FAILED, "p99 12 ms > 10 ms", "cuda:0",
                         details={"samples_ns": [1, 2]}, duration_s=1.5, test_id="t.py::a")
    result.metric("p99_ms", 12.0, "ms")
    result.budget("p99_ms", 10.0, "ms")
    assert CheckResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_older_results_load_with_defaults() -> None:
    loaded = CheckResult.from_dict({"check": "forward", "status": "PASSED",
                                    "nodeid": "t.py::a", "metrics": {"calls": 3}})
    assert (loaded.status, loaded.test_id, loaded.device, loaded.metrics) == \
        (Status.PASSED, "t.py::a", "cpu", {"calls": Metric(3.0, "")})


@pytest.mark.parametrize("data", [{"oops": 1}, {"check": "forward"}, [1, 2], "passed"])
def test_what_is_not_a_result_is_refused(data: object) -> None:
    with pytest.raises(ResultFormatError, match="not a check result"):
        CheckResult.from_dict(data)  # type: ignore[arg-type]


def test_an_unknown_status_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ResultFormatError, match=r"unknown status 'flaky'.*passed, failed"):
        CheckResult.from_dict({"check": "forward", "status": "flaky"})
