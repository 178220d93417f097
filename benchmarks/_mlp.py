"""The benchmark subject: the example MLP (256→1024→1024→10) at batch 8, one thread.

Taken from ``examples/models`` when present, else built here with the same shapes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (str(ROOT / "runtime"), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)


def mlp_and_input(batch: int = 8) -> tuple[Any, Any]:
    import torch

    torch.set_num_threads(1)
    try:
        from examples.models import build_mlp, sample_mlp

        return build_mlp(), sample_mlp(batch)
    except ImportError:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                                    torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                    torch.nn.Linear(1024, 10)).eval()
        return model, torch.randn(batch, 256)
