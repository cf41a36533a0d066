"""A training run's whole configuration: read from TOML or YAML, overridden from the command line, saved with the run."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from brainmri_desktop.core.preprocess import PreprocessSpec

from .dataset import LESION_TARGETS


@dataclass(frozen=True)
class DataRoot:
    path: str
    source: str | None = None  # defaults to the folder name
    label: int | None = None  # one label for every image of a folder that has no class layout
    weight: float = 1.0  # sampling weight of this source in the loss
    class_map: dict[str, int] | None = None

    @property
    def name(self) -> str:
        return self.source or Path(self.path).name


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[DataRoot, ...] = ()
    arch: str = "cnn"
    img_size: int = 128
    epochs: int = 20
    batch_size: int = 16
    seed: int = 0
    loss: str = "bce"  # bce | focal
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "plateau"  # plateau | cosine
    warmup_epochs: int = 1
    patience: int = 6
    augment: str = "heavy"  # none | moderate | heavy | domain (trainer/augment.py)
    clahe: bool = False
    strip_rim: float = 0.0  # share of the head diameter stripped from its border (see PreprocessSpec)
    intensity_scale: str = "percentiles"  # percentiles | median (see PreprocessSpec)
    # Weight of the auxiliary lesion loss (tumour masks and outlines on the Grad-CAM layer); 0 trains without it.
    lesion_weight: float = 0.0
    # What a cell of the lesion loss learns: "share", the part of the whole cell inside the tumour; "centre", the part
    # of the cell's central half (a square of half its side). The window draws each cell's value at the cell's centre,
    # so a small tumour lying across cells should light the cell whose centre it covers.
    lesion_target: str = "share"
    lesion_evidence: bool = False  # the classifier's logit also reads the peak of that tumour map (ArchConfig)
    # The logit is a smooth maximum of per-cell tumour logits inside the head (ArchConfig.cell_score); the lesion loss
    # then supervises those cells and Grad-CAM reads the evidence they score.
    cell_score: bool = False
    # ResNet50 only: the cells lie on conv3's grid (8 px, 14x14 at 112 px) instead of conv4's (16 px), conv4's cell
    # features upsampled onto it (ArchConfig.fine_cells): a small tumour can own a cell.
    fine_cells: bool = False
    # Backbone layers up to and including this one stay frozen in every stage (their BatchNorm too): on two CPU cores
    # a ResNet50's early stages cost most of the backward pass and gain least from fine-tuning. None trains them all.
    freeze_through: str | None = None
    # The layer Grad-CAM reads (written into the package) and the lesion loss supervises; None: the architecture's last
    # convolutional block (GRADCAM_LAYERS). A finer one (ResNet50 conv4_block6_out: 7x7 cells at 112 px) can point
    # where a 4x4 grid cannot.
    gradcam_layer: str | None = None
    # A model package or run folder whose weights start the run, copied layer by layer where names and shapes match.
    init_from: str | None = None
    class_weights: bool = True
    dedup_distance: int = 4
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    dropout: float = 0.4
    backbone_weights: str = "random"  # imagenet | random | path to a weights file
    head_epochs: int = 3
    head_lr: float = 3e-4
    unfreeze: int = 30
    finetune_lr: float = 1.5e-5
    progressive: tuple[tuple[int, int], ...] = ()  # (size, epochs) stages before the final size
    steps_per_epoch: int | None = None  # cap on batches per epoch, for long CPU runs
    exclude_sources: tuple[str, ...] = ()  # kept out of training and calibration; still reported (leave-source-out)
    tta_eval: int = 4
    sensitivity_target: float = 0.95
    bootstrap: int = 500
    cache_dir: str | None = None
    workers: int = 2  # processes that read the images and build the training batches
    precision: str = "float32"  # or mixed_bfloat16 (computes in bfloat16 on a GPU); the export is float32
    distribute: str = "none"  # or data: data-parallel over every device JAX sees (trainer/distribute.py)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        d = dict(d)
        if "data" in d:
            d["data"] = tuple(DataRoot(**r) if isinstance(r, dict) else DataRoot(path=str(r)) for r in d["data"])
        for key in ("fractions", "exclude_sources"):
            if key in d:
                d[key] = tuple(d[key])
        if "progressive" in d:
            d["progressive"] = tuple(tuple(int(v) for v in stage) for stage in d["progressive"])
        return cls(**d)

    def override(self, **changes) -> "TrainConfig":
        merged = self.to_dict()
        merged.update({k: v for k, v in changes.items() if v is not None})
        return TrainConfig.from_dict(merged)

    def preprocess_spec(self) -> PreprocessSpec:
        """The preprocessing this run trains with, and its package's manifest records."""
        return PreprocessSpec(input_size=self.img_size, clahe=self.clahe, strip_rim=self.strip_rim,
                              intensity_scale=self.intensity_scale,
                              model_normalisation=model_normalisation(self.arch))


def model_normalisation(arch: str) -> str:
    """How an architecture's input is normalised (core.preprocess.to_model_input): the ResNet50's own, else unit."""
    return "resnet50" if arch == "resnet50" else "unit"


def read_config(path: Path | None) -> TrainConfig:
    if path is None:
        return TrainConfig()
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text) or {}
    else:
        raw = tomllib.loads(text)
    raw.pop("ablations", None)
    return TrainConfig.from_dict(raw)


def validate(cfg: TrainConfig) -> None:
    if cfg.arch not in ("cnn", "resnet50"):
        raise ValueError("arch must be cnn or resnet50")
    if cfg.loss not in ("bce", "focal") or cfg.optimizer not in ("adam", "adamw"):
        raise ValueError("loss must be bce or focal; optimizer adam or adamw")
    if cfg.schedule not in ("plateau", "cosine"):
        raise ValueError("schedule must be plateau or cosine")
    if cfg.lesion_weight < 0:
        raise ValueError("lesion_weight must be 0 or more")
    if cfg.lesion_target not in LESION_TARGETS:
        raise ValueError(f"lesion_target must be one of {', '.join(LESION_TARGETS)}")
    if cfg.lesion_evidence and cfg.gradcam_layer is not None:
        raise ValueError("lesion_evidence reads the architecture's last block; it cannot be combined with gradcam_layer")
    if cfg.cell_score and (cfg.lesion_evidence or cfg.gradcam_layer is not None):
        raise ValueError("cell_score fixes the Grad-CAM layer (the evidence its cells score): "
                         "it cannot be combined with lesion_evidence or gradcam_layer")
    if cfg.fine_cells and not (cfg.cell_score and cfg.arch == "resnet50"):
        raise ValueError("fine_cells puts a ResNet50's cell score on conv3's grid: it needs arch = resnet50 and cell_score")
    if cfg.fine_cells and cfg.img_size % 16:
        raise ValueError("fine_cells needs img_size a multiple of 16 (conv4's upsampled grid must meet conv3's)")
    if cfg.freeze_through is not None and cfg.arch != "resnet50":
        raise ValueError("freeze_through names a ResNet50 backbone layer; the CNN trains whole")
    from .train_graph import PRECISIONS

    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    if cfg.workers < 1:
        raise ValueError("workers must be 1 or more")
    from brainmri_desktop.core.augment import MAX_TTA

    if not 1 <= cfg.tta_eval <= MAX_TTA:
        raise ValueError(f"tta_eval must be between 1 and {MAX_TTA} (the views the application can run)")
    if not cfg.data:
        raise ValueError("no data roots given (--data DIR or [[data]] in the config)")
    from .distribute import check

    check(cfg.distribute, cfg.batch_size)
