"""Fixtures for the example production-readiness suite.

Each test module names its example model with a module attribute, ``EXAMPLE = "mlp"``;
these fixtures then provide what TorchBridge reads: ``model``, ``sample_input``,
``model_factory`` (a fresh model with the same weights) and ``input_spec`` (batch and
named dynamic dims). To add checks to an example, stack more ``@tb.<check>`` markers on
its test; nothing here needs to change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from examples.models import EXAMPLES, Example


@pytest.fixture(scope="module")
def example(request: pytest.FixtureRequest) -> Example:
    """The example model named by the test module's ``EXAMPLE`` attribute."""
    name = getattr(request.module, "EXAMPLE", None)
    if name not in EXAMPLES:
        raise pytest.UsageError(f"{request.module.__name__}: set EXAMPLE to one of "
                                f"{', '.join(EXAMPLES)}")
    return EXAMPLES[name]


@pytest.fixture
def model(example: Example) -> torch.nn.Module:
    """A freshly built model per test, so a check that moves it cannot affect another."""
    return example.build()


@pytest.fixture
def model_factory(example: Example) -> Callable[[], torch.nn.Module]:
    return example.build


@pytest.fixture
def sample_input(example: Example) -> torch.Tensor:
    return example.sample_input(example.batch)


@pytest.fixture
def input_spec(example: Example) -> dict[str, Any]:
    return example.input_spec
