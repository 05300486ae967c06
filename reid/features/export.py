"""The exported copy of a run's model: ONNX, run by ONNX Runtime, for a fast CPU cold start.

``reid match`` on a field laptop is one photo per process, so start-up is most of its time.
Rebuilding the model from ``model.pt`` imports timm, which pulls in torchvision and with it
torch's compiler stack (~1.5 s on a 2-core CPU; ``torch.export.load`` imports the same stack).
ONNX Runtime loads the exported graph without either. The checkpoint stays the source of truth:
the copy carries its fingerprint, and a missing, stale or unreadable copy is never used.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from reid.features.model import ReIDModel

EXPORT_NAME = "model.onnx"  # ONNX copy of model.pt, written by `reid train` beside it
INPUT_NAME = "images"
FINGERPRINT_KEY = "reid_fingerprint"


class _TupleOutput(nn.Module):
    """ReIDModel with a plain (embeddings, logits) tuple as output: what ONNX can name."""

    def __init__(self, model: ReIDModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out.embeddings, out.logits


def export_onnx(model: ReIDModel, input_size: int, fingerprint: str, path: Path) -> None:
    """Export a CPU copy of ``model`` in eval mode to ONNX with a free batch size (``model``
    itself is left as it was), and write it atomically with ``fingerprint`` in its metadata.

    The file maps ``images`` (N, 3, S, S) float32 in [0, 1] to ``embeddings`` (N, D) float32,
    L2-normalised, and ``logits`` (N, C) float32. Needs the packages onnx and onnxscript.
    """
    wrapped = _TupleOutput(copy.deepcopy(model)).cpu().eval()
    example = torch.rand(2, 3, input_size, input_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad():
        program = torch.onnx.export(
            wrapped,
            (example,),
            input_names=[INPUT_NAME],
            output_names=["embeddings", "logits"],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            verbose=False,
        )
    program.model.metadata_props[FINGERPRINT_KEY] = fingerprint
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        program.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class OnnxModel:
    """An exported copy, called like the model on the CPU: (N, 3, S, S) float32 tensor in
    [0, 1] -> ((N, D) float32 L2-normalised embeddings, (N, C) float32 logits) tensors."""

    def __init__(self, session: Any, path: Path) -> None:
        self.session, self.path = session, path

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.detach().float().cpu().contiguous().numpy()
        embeddings, logits = self.session.run(None, {INPUT_NAME: x})
        return torch.from_numpy(embeddings), torch.from_numpy(logits)

    def to(self, device: str | torch.device) -> OnnxModel:
        if torch.device(device).type != "cpu":
            raise ValueError(f"The exported copy {self.path} runs on the CPU only, not {device}.")
        return self

    def eval(self) -> OnnxModel:
        return self


def load_onnx(path: Path, fingerprint: str) -> OnnxModel | None:
    """The exported copy at ``path`` if it exists, ONNX Runtime is installed and reads it, and
    it carries ``fingerprint``; else None (the caller rebuilds from the checkpoint)."""
    if not path.is_file():
        return None
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: a stale copy is expected, not news
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        stored = session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY)
    except Exception:  # noqa: BLE001 - not installed, damaged, or from a newer exporter
        return None
    return OnnxModel(session, path) if stored == fingerprint else None
