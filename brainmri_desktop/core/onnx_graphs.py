"""A package's exported graphs run by ONNX Runtime: the application's inference without TensorFlow (issue 24).

Two graphs, written by `brainmri-train export` beside the Keras weights and listed with their sha256 in the manifest:

- the model graph, model input (N, S, S, 3) -> `logit` (N, 1), `gradcam_features` (the Grad-CAM layer's maps) and
  `scope_<layer>` (the cell means, core.ood.grid_means, of the layers a scope fit may read, over the grid the
  manifest's `graph_check.scope_grid` names), one forward pass for all of them;
- the Grad-CAM graph, [model input, Grad-CAM layer's maps] -> `cam` (1, h, w), a slice at a time: the gradient of the logit through the
  part of the network above that layer, exported as forward operations, weighted as Grad-CAM weighs it.

So a map costs the backbone's forward pass and the small head's gradient, as under Keras. The trainer checks both
graphs against Keras before it writes them; the self-test checks them against probabilities recorded at export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import ModelPackageError

LOGIT, FEATURES, CAM = "logit", "gradcam_features", "cam"
SCOPE_PREFIX = "scope_"
IMAGE = "image"
# How far the graphs may be from the Keras model (issue 24's bar for `--runtime onnx` against `--runtime keras`):
# probabilities within 1e-4, Grad-CAM maps scaled to [0, 1] within 1e-3. The trainer refuses graphs beyond them;
# the self-test holds the installed runtime to the probabilities recorded at export.
MAX_PROBABILITY_DIFF, MAX_GRADCAM_DIFF = 1e-4, 1e-3

# Most capable first; ONNX Runtime falls back along the list for any operator a provider lacks.
PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")
PROVIDER_WORDS = {"CUDAExecutionProvider": "CUDA", "DmlExecutionProvider": "DirectML",
                  "CoreMLExecutionProvider": "CoreML", "CPUExecutionProvider": "CPU"}
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def available() -> bool:
    """Whether ONNX Runtime is installed (the application's own install always has it; a trainer-only one may not)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def providers() -> tuple[str, ...]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return tuple(p for p in PROVIDERS if p in have) or ("CPUExecutionProvider",)


def _gpu_name() -> str | None:
    """The first NVIDIA GPU's model, from the kernel driver (Linux), without starting CUDA."""
    try:
        info = next(iter(sorted(NVIDIA_GPUS.iterdir()))) / "information"
        line = next(ln for ln in info.read_text().splitlines() if ln.startswith("Model:"))
    except (OSError, StopIteration):
        return None
    return line.split(":", 1)[1].strip()


def device_description() -> str:
    """"ONNX Runtime, CPU (2 cores)", "ONNX Runtime, CUDA (NVIDIA H200)": the provider a session is given first."""
    first = providers()[0]
    if first == "CPUExecutionProvider":
        return f"ONNX Runtime, CPU ({os.cpu_count()} cores)"
    name = _gpu_name() if first == "CUDAExecutionProvider" else None
    return f"ONNX Runtime, {PROVIDER_WORDS[first]}" + (f" ({name})" if name else "")


def _session(graph: Path | bytes, where: Path | None, name: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings name graph internals a reader cannot act on
    # Idle compute threads sleep instead of spinning: on a busy 2-core desktop a spinning pool takes the CPU the
    # window's own thread needs to stay responsive.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), options,
                                    providers=list(providers()))
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types for bad graphs
        raise ModelPackageError(where, f"{name} cannot be loaded by ONNX Runtime "
                                       f"({type(exc).__name__}: {str(exc)[:160]})") from None


@dataclass
class OnnxGraphs:
    """The two graphs of one package, loaded into ONNX Runtime sessions."""

    model: object = field(repr=False)
    gradcam: object = field(repr=False)
    outputs: tuple[str, ...] = ()

    @classmethod
    def load(cls, package: Path, manifest, ood=None) -> "OnnxGraphs":
        """The package's graphs, checked to hold what its scope fit (`ood`, when it has one) reads."""
        package = Path(package)
        if ood is not None and manifest.graph_check.get("scope_grid") != ood.grid:
            raise ModelPackageError(package, f"{manifest.graph_file} averages the scope layers over another grid than "
                                             f"{manifest.ood_file} reads: export its graphs again "
                                             "(brainmri-train add-graphs)")
        return cls.of(package / manifest.graph_file, package / manifest.gradcam_graph_file, package,
                      manifest.graph_file, ood.layers if ood is not None else ())

    @classmethod
    def of(cls, model: Path | bytes, gradcam: Path | bytes, where: Path | None = None, name: str = "model graph",
           scope_layers: tuple[str, ...] = ()) -> "OnnxGraphs":
        """Sessions for the two graphs (files, or their bytes before they are written), checked for the outputs the
        application reads."""
        model_session, gradcam_session = _session(model, where, name), _session(gradcam, where, "Grad-CAM graph")
        outputs = tuple(o.name for o in model_session.get_outputs())
        missing = [n for n in (LOGIT, FEATURES, *(SCOPE_PREFIX + layer for layer in scope_layers)) if n not in outputs]
        if missing:
            raise ModelPackageError(where, f"{name} lacks the outputs {', '.join(missing)}: export its graphs again "
                                           "(brainmri-train add-graphs)")
        return cls(model_session, gradcam_session, outputs)

    def run(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        return self.model.run(names, {IMAGE: np.ascontiguousarray(x, dtype=np.float32)})

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.run(x, [LOGIT])[0], np.float32).reshape(-1)

    def scored(self, x: np.ndarray, layers: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Raw logits (N,) and the cell means of `layers` (N, grid * grid * C each), from one forward pass."""
        out = self.run(x, [LOGIT, *(SCOPE_PREFIX + n for n in layers)])
        return np.asarray(out[0], np.float32).reshape(-1), out[1:]

    def cams(self, x: np.ndarray) -> np.ndarray:
        """Raw Grad-CAM maps (N, h, w) at the package's Grad-CAM layer."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        (features,) = self.run(x, [FEATURES])
        if not len(x):
            return np.zeros((0, *features.shape[1:3]), np.float32)
        return np.concatenate([self.gradcam.run([CAM], {IMAGE: x[i:i + 1], FEATURES: features[i:i + 1]})[0]
                               for i in range(len(x))]).astype(np.float32)
