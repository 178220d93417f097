"""GPU check: export the example transformer on CUDA to ONNX and validate it in onnxruntime.

One short run (well under 2 minutes) for a machine with an NVIDIA GPU. It exports the
example text classifier from a CUDA model (dynamo exporter, dynamic batch and ``seq``),
runs the full validation plan in onnxruntime with the CUDA execution provider when the
installed onnxruntime has it (the CPU provider otherwise, which the JSON says), compares
every run with eager PyTorch on CUDA, and times both. Prints one JSON object (also written
to ``$OUT/gpu_export.json`` when ``$OUT`` is set).

    python3 benchmarks/gpu_export.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: float32 across devices/kernels (cuBLAS vs onnxruntime kernels): as the correctness
#: checks' cross-device defaults.
RTOL, ATOL = 1e-3, 1e-4


def main() -> int:
    sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]
    import onnxruntime as ort
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "onnxruntime": ort.__version__,
                            "cuda_available": torch.cuda.is_available(),
                            "providers_available": ort.get_available_providers()}
    if not torch.cuda.is_available():
        info["error"] = "no CUDA device visible to torch"
        return _emit(info, 2)
    info["gpu"] = torch.cuda.get_device_name(0)
    info["cuda_provider"] = "CUDAExecutionProvider" in info["providers_available"]

    from examples.models import EXAMPLES
    from torchbridge.export.common import ExportFailed

    info["runs"] = []
    for name in ("text", "mlp"):
        run: dict[str, Any] = {"model": name}
        info["runs"].append(run)
        try:
            _export_one(EXAMPLES[name], run)
        except ExportFailed as exc:  # recorded, so one model's failure does not hide others
            run["ok"], run["error"] = False, str(exc)[:600]
    info["ok"] = all(run["ok"] for run in info["runs"])
    return _emit(info, 0 if info["ok"] else 1)


def _export_one(example: Any, info: dict[str, Any]) -> None:
    import torch

    from torchbridge.checks import Subject
    from torchbridge.export import ExportOptions, Tolerances, export_model
    from torchbridge.loading import OnnxModel
    from torchbridge.optimize.core import median_ms

    model = example.build().to("cuda")
    subject = Subject(model, example.sample_input(example.batch).to("cuda"), device="cuda",
                      spec=example.input_spec, name=example.name)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{example.name}.onnx"
        start = time.perf_counter()
        report = export_model(subject, "onnx", path,
                              ExportOptions(tolerances=Tolerances(RTOL, ATOL)))
        info["export_and_validate_s"] = round(time.perf_counter() - start, 2)
        info["ok"] = report.ok
        info["providers_used"] = report.details.get("providers")
        info["max_abs_error"] = report.max_abs_error
        info["tolerance"] = {"rtol": RTOL, "atol": ATOL}
        info["validations"] = [{"label": v.label, "sizes": v.sizes, "ok": v.ok,
                                "max_abs": v.max_abs} for v in report.validations]
        session = OnnxModel(path, "cuda")
        x = subject.inputs
        assert isinstance(x, torch.Tensor)

        def eager() -> Any:
            with torch.no_grad():
                return model(x)

        timed = median_ms({"eager_cuda": eager, "onnxruntime": lambda: session(x)}, "cuda",
                          2.0, rounds=3)
        info["latency_ms"] = {k: round(v, 4) for k, v in timed.items()}
        info["latency_note"] = (f"batch {subject.batch_size}; onnxruntime on "
                                f"{session.active_providers[0]}, including host-device "
                                "copies of inputs and outputs")


def _emit(info: dict[str, Any], code: int) -> int:
    text = json.dumps(info, indent=2, default=str)
    print(text)
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_export.json").write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
