"""The packed-data format: a run's preprocessed images as JPEG/PNG parts small enough to carry to another machine
(trainer/remote.py moves them; trainer/train.py reads them instead of the data folders)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from brainmri_desktop.core.atomic import atomic_write_text

from .config import TrainConfig
from .data import Sample
from .dataset import Cache

PACK_FORMAT = 1
MB = 1 << 20


def _spec_key(cfg: TrainConfig) -> dict:
    # The model's normalisation is applied after the cache (see dataset._key): it does not change the packed data.
    return {k: v for k, v in cfg.preprocess_spec().to_dict().items() if k not in ("model_normalisation", "steps")}


def _encode(array: np.ndarray, ext: str, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise ValueError(f"could not encode an image as {ext}")
    return buf.tobytes()


def write_pack(cfg: TrainConfig, samples: list[Sample], cache: Cache, out: Path, part_mb: float = 8,
               quality: int = 90) -> list[Path]:
    """Write preprocessed `samples` (their `cache`, made with `cfg`'s preprocessing) as parts of at most `part_mb`:
    pack.json, meta.npz and the parts, pack.json last so that a half-written pack is not read as whole."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts, current, size = [], {"index": [], "jpeg": [], "mask_index": [], "png": []}, 0

    def flush():
        nonlocal current, size
        if not current["index"]:
            return
        path = out / f"data-{len(parts):03d}.npz"
        arrays = {key: np.array(current[key], np.int64) for key in ("index", "mask_index")}
        for key in ("jpeg", "png"):
            blobs = current[key]
            arrays[key] = np.frombuffer(b"".join(blobs), np.uint8)
            arrays[f"{key}_ends"] = np.cumsum([len(b) for b in blobs]).astype(np.int64)
        np.savez(path, **arrays)
        parts.append(path)
        current, size = {"index": [], "jpeg": [], "mask_index": [], "png": []}, 0

    for i in range(len(samples)):
        jpeg = _encode(cache.images[i], ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])
        png = _encode(cache.masks[i], ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9]) if cache.masks[i].any() else b""
        if size + len(jpeg) + len(png) > part_mb * MB:
            flush()
        current["index"].append(i)
        current["jpeg"].append(jpeg)
        if png:
            current["mask_index"].append(i)
            current["png"].append(png)
        size += len(jpeg) + len(png)
    flush()
    meta = {
        "format": PACK_FORMAT, "spec": _spec_key(cfg), "size": int(cache.images.shape[1]), "count": len(samples),
        "parts": [p.name for p in parts], "jpeg_quality": quality,
        "samples": [{"path": str(s.path), "label": s.label, "source": s.source, "patient": s.patient,
                     "mask": None if s.mask is None else str(s.mask), "outlined": s.outline is not None}
                    for s in samples],
    }
    np.savez(out / "meta.npz", head_fraction=cache.head_fraction, hashes=cache.hashes, hashed=cache.hashed,
             has_mask=cache.has_mask)
    atomic_write_text(out / "pack.json", json.dumps(meta))
    return [out / "pack.json", out / "meta.npz", *parts]


def load_packed(pack_dir: Path, cfg: TrainConfig) -> tuple[list[Sample], Cache]:
    """The samples and the cache of a packed data set, checked against the config's preprocessing."""
    pack_dir = Path(pack_dir)
    meta = json.loads((pack_dir / "pack.json").read_text())
    if meta.get("format") != PACK_FORMAT:
        raise ValueError(f"{pack_dir}: packed data of format {meta.get('format')}, this trainer reads {PACK_FORMAT}")
    if meta["spec"] != _spec_key(cfg):
        raise ValueError(f"{pack_dir}: packed with preprocessing {meta['spec']}, the config asks for {_spec_key(cfg)}")
    n, size = meta["count"], meta["size"]
    images = np.zeros((n, size, size), np.uint8)
    masks = np.zeros_like(images)
    seen = np.zeros(n, bool)
    for name in meta["parts"]:
        with np.load(pack_dir / name, allow_pickle=False) as z:
            for key, index, target, flag in (("jpeg", z["index"], images, cv2.IMREAD_GRAYSCALE),
                                             ("png", z["mask_index"], masks, cv2.IMREAD_GRAYSCALE)):
                blob, ends = z[key], z[f"{key}_ends"]
                for i, start, end in zip(index, np.concatenate(([0], ends[:-1])), ends):
                    target[i] = cv2.imdecode(blob[start:end], flag)
            seen[z["index"]] = True
    if not seen.all():
        raise FileNotFoundError(f"{pack_dir}: {int((~seen).sum())} images missing: are all parts "
                                f"({', '.join(meta['parts'])}) there?")
    with np.load(pack_dir / "meta.npz", allow_pickle=False) as z:
        cache = Cache(images, z["head_fraction"], {}, z["hashes"], z["hashed"], masks, z["has_mask"])
    # The outline's shape is not needed there (its region is in the cache); that there is one is kept for the card.
    samples = [Sample(Path(s["path"]), s["label"], s["source"], s["patient"],
                      None if s["mask"] is None else Path(s["mask"]), () if s["outlined"] else None)
               for s in meta["samples"]]
    return samples, cache
