"""The model manifest: everything the application must know about a model besides its weights."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from .augment import MAX_TTA
from .errors import ModelPackageError
from .preprocess import PreprocessSpec

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
ARCHITECTURES = ("cnn", "resnet50")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def calibrated_logit(logits, temperature: float, bias: float = 0.0):
    """Temperature scaling with a bias, the one calibration formula of packages and trainer: the bias takes out the
    shift that class weighting leaves in the logit, which a temperature alone cannot."""
    return logits / temperature + bias


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold on the calibrated probability and how it was chosen."""

    threshold: float
    method: str  # for example "youden_j" or "sensitivity>=0.95"
    data: str  # which predictions it was chosen on
    sensitivity: float | None = None
    specificity: float | None = None

    @property
    def method_in_words(self) -> str:
        """How the threshold was chosen, as a reader says it ("Youden's J", not the code "youden_j")."""
        return METHOD_WORDS.get(self.method, self.method.replace(">=", " \u2265 "))


METHOD_WORDS = {"youden_j": "Youden's J"}


@dataclass(frozen=True)
class Manifest:
    id: str
    name: str
    architecture: str
    preprocessing: PreprocessSpec
    gradcam_layer: str
    temperature: float
    threshold: OperatingPoint
    files: dict[str, str]  # file name -> sha256, every file of the package but the manifest
    architecture_file: str = "architecture.json"
    weights_file: str = "weights.npz"
    weights_dtype: str = "float32"
    high_sensitivity: OperatingPoint | None = None
    logit_bias: float = 0.0  # calibration: probability = sigmoid(logit / temperature + logit_bias)
    default_tta: int = 1
    version: str = "1"
    initialisation: str = "random"
    metrics: dict = field(default_factory=dict)
    training_data: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    created: str = ""
    trainer_version: str = ""
    # The scope guard (core/scope.py, core/ood.py): what the model saw (orientations, sequences, input kinds) and the
    # file holding its out-of-distribution fit ("" when the package has none).
    trained_on: dict = field(default_factory=dict)
    ood_file: str = ""
    # The graphs ONNX Runtime runs (core/onnx_graphs.py; "" when the package has none) and how they were checked at
    # export: the largest differences from Keras, and the probabilities of core.demo's reference slices.
    graph_file: str = ""
    gradcam_graph_file: str = ""
    graph_check: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    def calibrated_logit(self, logits):
        return calibrated_logit(logits, self.temperature, self.logit_bias)

    def operating_point(self, high_sensitivity: bool = False) -> OperatingPoint:
        return self.high_sensitivity if high_sensitivity and self.high_sensitivity else self.threshold

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        d["input_size"] = self.input_size
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @cached_property  # a frozen manifest never changes; the window asks at every slice shown
    def content_key(self) -> str:
        """What identifies the package's content, not its name: the manifest lists the sha256 of every other file
        (checked at load), so a package re-exported or re-fitted under the same id has another key."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def _point(d: dict | None, where: Path, key: str) -> OperatingPoint | None:
    if d is None:
        return None
    try:
        point = OperatingPoint(
            threshold=float(d["threshold"]),
            method=str(d["method"]),
            data=str(d.get("data", "")),
            sensitivity=None if d.get("sensitivity") is None else float(d["sensitivity"]),
            specificity=None if d.get("specificity") is None else float(d["specificity"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelPackageError(where, f"manifest field {key!r} is invalid ({exc})") from None
    if not 0.0 < point.threshold < 1.0:
        raise ModelPackageError(where, f"manifest {key} threshold {point.threshold} is outside (0, 1)")
    return point


def parse_manifest(text: str, where: Path) -> Manifest:
    """Validate and build a manifest; every problem is a ModelPackageError naming the package."""
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelPackageError(where, f"manifest.json is not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise ModelPackageError(where, "manifest.json must hold an object")
    if d.get("schema_version") != SCHEMA_VERSION:
        raise ModelPackageError(where, f"unsupported manifest schema {d.get('schema_version')!r} (expected {SCHEMA_VERSION})")
    missing = [k for k in ("id", "name", "architecture", "preprocessing", "gradcam_layer", "temperature", "threshold", "files") if k not in d]
    if missing:
        raise ModelPackageError(where, f"manifest lacks {', '.join(missing)}")
    if not isinstance(d["id"], str) or not _ID_PATTERN.match(d["id"]):
        raise ModelPackageError(where, "manifest id must be 1-64 letters, digits, '.', '_' or '-'")
    if d["architecture"] not in ARCHITECTURES:
        raise ModelPackageError(where, f"unknown architecture {d['architecture']!r}")
    files = d["files"]
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ModelPackageError(where, "manifest 'files' must map file names to sha256 digests")
    for name in files:
        if Path(name).name != name or name in ("", ".", "..", MANIFEST_NAME):
            raise ModelPackageError(where, f"manifest lists an invalid file name {name!r}")
    try:
        temperature = float(d["temperature"])
        logit_bias = float(d.get("logit_bias", 0.0))
        spec = PreprocessSpec.from_dict(d["preprocessing"])
        default_tta = int(d.get("default_tta", 1))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelPackageError(where, f"manifest has an invalid value ({exc})") from None
    if not 0.01 <= temperature <= 100:
        raise ModelPackageError(where, f"calibration temperature {temperature} is implausible")
    if not -20 <= logit_bias <= 20:  # also refuses nan
        raise ModelPackageError(where, f"calibration bias {logit_bias} is implausible")
    if default_tta < 1:
        raise ModelPackageError(where, f"default_tta {default_tta} is below 1")
    manifest = Manifest(
        id=d["id"],
        name=str(d["name"]),
        architecture=d["architecture"],
        preprocessing=spec,
        gradcam_layer=str(d["gradcam_layer"]),
        temperature=temperature,
        logit_bias=logit_bias,
        threshold=_point(d["threshold"], where, "threshold"),
        high_sensitivity=_point(d.get("high_sensitivity"), where, "high_sensitivity"),
        files=dict(files),
        architecture_file=str(d.get("architecture_file", "architecture.json")),
        weights_file=str(d.get("weights_file", "weights.npz")),
        weights_dtype=str(d.get("weights_dtype", "float32")),
        # The trainer takes the first k views of TTA_ORDER, so a run with more than MAX_TTA measured MAX_TTA.
        default_tta=min(default_tta, MAX_TTA),
        version=str(d.get("version", "1")),
        initialisation=str(d.get("initialisation", "")),
        metrics=d.get("metrics") if isinstance(d.get("metrics"), dict) else {},
        training_data=d.get("training_data") if isinstance(d.get("training_data"), dict) else {},
        config=d.get("config") if isinstance(d.get("config"), dict) else {},
        created=str(d.get("created", "")),
        trainer_version=str(d.get("trainer_version", "")),
        trained_on=d.get("trained_on") if isinstance(d.get("trained_on"), dict) else {},
        ood_file=str(d.get("ood_file") or ""),
        graph_file=str(d.get("graph_file") or ""),
        gradcam_graph_file=str(d.get("gradcam_graph_file") or ""),
        graph_check=d.get("graph_check") if isinstance(d.get("graph_check"), dict) else {},
    )
    if bool(manifest.graph_file) != bool(manifest.gradcam_graph_file):
        raise ModelPackageError(where, "manifest names one ONNX graph without the other")
    optional = [n for n in (manifest.ood_file, manifest.graph_file, manifest.gradcam_graph_file) if n]
    for name in (manifest.architecture_file, manifest.weights_file, *optional):
        if name not in manifest.files:
            raise ModelPackageError(where, f"manifest does not list its own model file {name!r}")
    return manifest
