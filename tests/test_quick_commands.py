"""The "Quick commands reference" of docs/checklist-coverage.md runs as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "checklist-coverage.md"


def quick_commands() -> list[str]:
    """The lines of the first bash block after the "Quick commands reference" heading."""
    section = DOC.read_text().split("## Quick commands reference", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the Quick commands section lost its bash block"
    return [line for line in block[1].splitlines() if line.strip()]


def test_the_quick_commands_run_as_written_on_a_torchscript_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 4)).eval()
    torch.jit.trace(model, torch.randn(2, 16)).save(str(tmp_path / "model.pt"))
    bin_dir = Path(sys.executable).parent
    for command in quick_commands():
        argv = shlex.split(command)
        done = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    files = {p.name for folder in (tmp_path, tmp_path / "exports") for p in folder.iterdir()}
    assert {"optimized.pt", "optimized.pt.sha256", "optimized.onnx", "optimized.pt2",
            "optimized.ts.pt", "optimized.safetensors"} <= files
    assert not any(name.endswith(".ts.pt.ts.pt") or name == "optimized.pt.ts.pt"
                   for name in files)
