"""Training on another machine (the GPU machine of docs/GPU_TRAINING.md): the data packed to travel, the run brought
back.

The data travels preprocessed: the training cache (uint8 images at the run's input size, tumour regions, duplicate
hashes, head fractions) with the samples' labels, sources and patients, so the machine there needs neither the data
folders nor the preprocessing, and its split equals the one made here. Images go as JPEG (quality 90 by default: the
11,449 development images at 224 px take 116 MiB, within 0.9 grey levels of the cache on average; quality 95 takes
154 MiB, 0.5 levels) and tumour regions as PNG, in small parts that scripts/gpu/pack.sh deals out to the calls. The run comes back as one zip without its
checkpoints, its model as float16 weights (the precision the ResNet50 package stores anyway), cut into pieces no
larger than a call may return; `unpack_run` joins them and rebuilds `model.keras`, so `brainmri-train export` works
on it as on a run trained here.

    python -m trainer.remote pack-data --config C --out DIR [--part-mb 8] [--quality 90] [--workers N]
    python -m trainer.remote pack-run RUN OUT [--piece-mb 15]
    python -m trainer.remote unpack-run IN RUN
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from brainmri_desktop.core.atomic import atomic_write_bytes, atomic_write_text

from .config import TrainConfig, read_config
from .pack import write_pack
from .train import prepare

MB = 1 << 20


def pack_data(cfg: TrainConfig, out: Path, cache_dir: Path | None = None, part_mb: float = 8, quality: int = 90,
              log=print) -> list[Path]:
    """Preprocess the config's data here (through the usual cache) and write it as parts of at most `part_mb`."""
    prepared = prepare(cfg, cache_dir)
    paths = write_pack(cfg, prepared.samples, prepared.cache, out, part_mb, quality)
    parts = paths[2:]
    log(f"packed {len(prepared.samples)} images ({len(prepared.unreadable)} unreadable left out) at "
        f"{prepared.cache.images.shape[1]} px into {len(parts)} parts: "
        + ", ".join(f"{p.name} {p.stat().st_size / MB:.1f} MiB" for p in parts))
    return paths


# ---- the run's way back --------------------------------------------------------------------------------------------

def split_file(path: Path, out_dir: Path, piece_bytes: int, name: str | None = None) -> list[dict]:
    """`path` as pieces of at most `piece_bytes` in out_dir (named `name`, or name.000, name.001, ...), with their
    order and checksums."""
    data = Path(path).read_bytes()
    name = name or Path(path).name
    pieces = []
    for k, start in enumerate(range(0, max(len(data), 1), piece_bytes)):
        chunk = data[start : start + piece_bytes]
        piece = f"{name}.{k:03d}" if len(data) > piece_bytes else name
        (Path(out_dir) / piece).write_bytes(chunk)
        pieces.append({"name": piece, "sha256": hashlib.sha256(chunk).hexdigest()})
    return pieces


def join_files(in_dir: Path, index: dict, out_dir: Path) -> None:
    """Every file of `index` (file name -> pieces) joined from in_dir into out_dir; a missing or altered piece is an
    error that names it."""
    for rel, pieces in index.items():
        parts = []
        for piece in pieces:
            path = Path(in_dir) / piece["name"]
            if not path.exists():
                raise FileNotFoundError(f"{path}: piece of {rel} missing")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != piece["sha256"]:
                raise ValueError(f"{path}: piece of {rel} does not match its checksum")
            parts.append(data)
        atomic_write_bytes(Path(out_dir) / rel, b"".join(parts))


RUN_FILES = ("config.json", "split.json", "results.json", "predictions.npz", "checkpoints/state.json")


def pack_run(run_dir: Path, out_dir: Path, piece_mb: float = 15) -> list[Path]:
    """A finished run as few files that may come back from the machine: one zip (no checkpoints; the model as its
    architecture and float16 weights; plots) cut into pieces of at most `piece_mb`, and run-index.json."""
    from brainmri_desktop.core.packages import weights_archive

    from .architectures import load_run_model

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_run_model(run_dir)
    archive = out_dir / "run.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.architecture.json", model.to_json())
        z.writestr("model.weights.npz", weights_archive(model, "float16"), compress_type=zipfile.ZIP_STORED)
        for rel in RUN_FILES:
            if (run_dir / rel).exists():
                z.write(run_dir / rel, rel)
        for plot in sorted((run_dir / "plots").glob("*.png")):
            z.write(plot, f"plots/{plot.name}")
    index = {"run.zip": split_file(archive, out_dir, int(piece_mb * MB), "run.zip.part")}
    archive.unlink()
    atomic_write_text(out_dir / "run-index.json", json.dumps(index, indent=1))
    return [out_dir / "run-index.json", *(out_dir / p["name"] for p in index["run.zip"])]


def unpack_run(in_dir: Path, run_dir: Path) -> Path:
    """The run folder again from what pack_run wrote: pieces joined and checked, `model.keras` rebuilt."""
    import keras

    in_dir, run_dir = Path(in_dir), Path(run_dir)
    index = json.loads((in_dir / "run-index.json").read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    join_files(in_dir, index, run_dir)
    with zipfile.ZipFile(run_dir / "run.zip") as z:
        z.extractall(run_dir)
    (run_dir / "run.zip").unlink()
    from brainmri_desktop.core import cell_layers  # noqa: F401 - a cell-scored model's config names its layers

    model = keras.models.model_from_json((run_dir / "model.architecture.json").read_text())
    with np.load(run_dir / "model.weights.npz", allow_pickle=False) as z:
        model.set_weights([z[f"w_{i}"].astype(np.float32) for i in range(len(z.files))])
    model.save(run_dir / "model.keras")
    for name in ("model.architecture.json", "model.weights.npz"):
        (run_dir / name).unlink()
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.remote", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack-data", help="the config's data, preprocessed, in parts that travel")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--part-mb", type=float, default=8)
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the images")
    p.add_argument("--workers", type=int, help="processes that preprocess here (default: the config's)")
    p = sub.add_parser("pack-run", help="a finished run as pieces that may come back")
    p.add_argument("run_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--piece-mb", type=float, default=15)
    p = sub.add_parser("unpack-run", help="the run folder again from its pieces")
    p.add_argument("in_dir", type=Path)
    p.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "pack-data":
            cfg = read_config(args.config).override(workers=args.workers)
            cache_dir = args.cache_dir or (Path(cfg.cache_dir) if cfg.cache_dir else None)
            pack_data(cfg, args.out, cache_dir, args.part_mb, args.quality)
        elif args.command == "pack-run":
            pack_run(args.run_dir, args.out_dir, args.piece_mb)
        else:
            print(f"run ready for `brainmri-train export {unpack_run(args.in_dir, args.run_dir)}`")
    except (ValueError, OSError) as exc:
        print("trainer.remote: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
