"""conftest.py texts for the inner pytest sessions that plugin tests run through pytester."""

_SAMPLE = """
@pytest.fixture
def sample_input():
    return torch.randn({batch}, {features}, generator=torch.Generator().manual_seed(1))
"""

#: ``model``: Linear(4 → 3) in eval mode; ``sample_input``: a seeded (2, 4) batch.
LINEAR_CONFTEST = """
import pytest, torch

@pytest.fixture
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
""" + _SAMPLE.format(batch=2, features=4)

#: ``model``: MLP 8 → 16 → 4 in eval mode; ``sample_input``: a seeded (4, 8) batch.
MLP_CONFTEST = """
import pytest, torch

@pytest.fixture
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 4)).eval()
""" + _SAMPLE.format(batch=4, features=8)
