"""Encoder stage: a BERT backbone run by ONNX Runtime (CPU, fp32) for batch embedding.

Reads a loaded Hugging Face encoder; writes <cache_dir>/<model hash>-opset<N>.onnx once per
weights (atomically). Used for the frozen backbone's pooled features on the CPU path, where the
same fp32 model runs ~1.1x faster than torch eager (less time outside the GEMMs); training
and the GPU path stay in torch. Figures: BENCHMARKS.md, text embedding throughput.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from recsys.atomic import atomic_write_bytes
from recsys.encoder.backbone import model_hash

OPSET = 17


class OnnxRuntimeError(RuntimeError):
    """The ONNX runtime was requested but cannot run here (not installed, export failed)."""


def runtime_available() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(setting: str, device: str) -> str:
    """ "auto" -> "onnxruntime" on CPU when installed, else "torch"; explicit settings checked."""
    if setting not in ("auto", "onnxruntime", "torch"):
        raise OnnxRuntimeError(
            f"runtime: expected 'auto', 'onnxruntime' or 'torch', found {setting!r}"
        )
    on_cpu = str(device) == "cpu"
    if setting == "auto":
        return "onnxruntime" if on_cpu and runtime_available() else "torch"
    if setting == "onnxruntime":
        if not on_cpu:
            raise OnnxRuntimeError(f"runtime 'onnxruntime' runs on the CPU only, not {device}")
        if not runtime_available():
            raise OnnxRuntimeError(
                "runtime 'onnxruntime': expected the packages onnx and onnxruntime, not installed "
                "(pip install onnx onnxruntime, or set runtime = 'torch')"
            )
    return setting


class _LastHidden(torch.nn.Module):
    """(input_ids, attention_mask) -> last_hidden_state: the graph that is exported."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """Export the encoder's last hidden states with dynamic batch and sequence axes.

    A deep copy is traced: after tracing, a transformers BertModel's own outputs no longer
    agree with what it gave before (measured: cosine down to 0.82; tests/encoder/test_onnx.py),
    so the caller's model is never touched. Written to a temporary name, then renamed."""
    if not runtime_available():
        raise OnnxRuntimeError("exporting to ONNX needs the onnx package (pip install onnx)")
    wrapper = _LastHidden(copy.deepcopy(model).to("cpu").eval())
    example = torch.ones((2, 8), dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    axes["hidden"] = {0: "batch", 1: "seq"}
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        scratch = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation + tracer notes
            try:
                torch.onnx.export(
                    wrapper,
                    (example, example),
                    str(scratch),
                    input_names=["input_ids", "attention_mask"],
                    output_names=["hidden"],
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    dynamo=False,
                )
            except Exception as exc:  # noqa: BLE001  (any exporter failure: say which model)
                raise OnnxRuntimeError(
                    f"ONNX export of backbone {model_hash(model)} failed: {exc}; "
                    f"set runtime = 'torch' to embed with torch"
                ) from exc
        extra = [p for p in Path(tmp).iterdir() if p != scratch]
        if extra:  # external weight files: the model is over ONNX's 2 GB protobuf limit
            raise OnnxRuntimeError(
                f"ONNX export wrote external data files {sorted(p.name for p in extra)}; models "
                f"over 2 GB are not supported by runtime 'onnxruntime', use 'torch'"
            )
        atomic_write_bytes(path, scratch.read_bytes())


def ensure_export(model: torch.nn.Module, cache_dir: Path) -> Path:
    """<cache_dir>/<model hash>-opset<N>.onnx, exported now when missing. The Ray backend calls it
    on the driver first, so the actors that embed only read the file."""
    path = Path(cache_dir) / f"{model_hash(model)}-opset{OPSET}.onnx"
    if not path.is_file():
        export_onnx(model, path)
    return path


class OnnxBackbone:
    """A BERT-like encoder's last hidden states through ONNX Runtime's CPU provider (fp32): a
    recsys.encoder.backbone.Backbone, like TorchBackbone.

    `config` is the torch model's, so code that reads hidden_size / max_position_embeddings
    treats both alike. Threads follow torch.get_num_threads() unless given."""

    def __init__(self, model: torch.nn.Module, cache_dir: Path | None, threads: int | None = None):
        import onnxruntime as ort

        self.config = model.config
        self._tmp = None
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="recsys-onnx-")
            cache_dir = Path(self._tmp.name)
        self.path = ensure_export(model, Path(cache_dir))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001  (a damaged cache file: set aside, re-export)
            damaged = self.path.with_suffix(".damaged")
            os.replace(self.path, damaged)
            warnings.warn(f"{self.path}: unreadable ({exc}); moved to {damaged.name}", stacklevel=2)
            export_onnx(model, self.path)
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )

    def last_hidden_state(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq) int64 ids and mask -> (batch, seq, hidden) float32, on the CPU."""
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids.numpy(), dtype=np.int64),
            "attention_mask": np.ascontiguousarray(mask.numpy(), dtype=np.int64),
        }
        return torch.from_numpy(self.session.run(["hidden"], feeds)[0])
