"""Preprocessed images, cached once per data set and preprocessing spec, and the batches Keras trains on.

Every image goes through the application's own reader and `preprocess_slice`, so training and inference cannot
drift. The cache holds uint8 images at the final input size; lower progressive-resizing stages shrink them on the fly.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from brainmri_desktop.core.atomic import atomic_write_with
from brainmri_desktop.core.errors import BrainMRIError
from brainmri_desktop.core.io.study import read_file
from brainmri_desktop.core.preprocess import PreprocessSpec, Preprocessed, preprocess_slice, preprocess_values

from .augment import Augmenter
from .data import Sample, tumour_mask
from .dedup import dhash


def preprocess_sample(sample: Sample, spec: PreprocessSpec) -> Preprocessed:
    """First frame of the sample's file through the application's reader and preprocessing."""
    return preprocess_slice(read_file(sample.path)[0], spec)


def _work(args: tuple[Sample, dict]) -> tuple[np.ndarray | None, float, np.ndarray | None, np.ndarray | None, str]:
    """Preprocessed uint8 image, head fraction, the duplicate hash of the image as stored (so that groups, and with
    them the splits, do not depend on the preprocessing or the input size), and the tumour region on the model-input
    grid (uint8 0-255; None when unknown: a tumour slice without a mask or an outline)."""
    sample, spec_dict = args
    try:
        slice_ = read_file(sample.path)[0]
        values = slice_.values()
        p = preprocess_values(values, slice_.window, PreprocessSpec.from_dict(spec_dict))
        region = tumour_mask(sample, values.shape) if sample.label == 1 else np.zeros(values.shape, bool)
        mask = None if region is None else (p.geometry.to_input(region) * 255 + 0.5).astype(np.uint8)
        return (p.image * 255 + 0.5).astype(np.uint8), p.head_fraction, dhash(values), mask, ""
    except BrainMRIError as exc:
        return None, 0.0, None, None, exc.reason
    except (ValueError, cv2.error, OSError) as exc:
        return None, 0.0, None, None, f"{type(exc).__name__}: {exc}"


@dataclass
class Cache:
    images: np.ndarray  # N x S x S uint8, zeros where unreadable
    head_fraction: np.ndarray
    errors: dict[int, str]  # sample index -> reason
    hashes: np.ndarray  # N x 4 uint64 difference hashes of the stored images; all zero where none (flat image)
    hashed: np.ndarray  # N bool: whether the image had a meaningful hash
    masks: np.ndarray  # N x S x S uint8 tumour region on the model-input grid (0-255); zeros where unknown
    has_mask: np.ndarray  # N bool: the region is known (every no-tumour slice, tumour slices with a mask or outline)

    def hash_list(self) -> list[np.ndarray | None]:
        return [h if ok else None for h, ok in zip(self.hashes, self.hashed)]

    def subset(self, keep: np.ndarray) -> "Cache":
        return Cache(self.images[keep], self.head_fraction[keep], {}, self.hashes[keep], self.hashed[keep],
                     self.masks[keep], self.has_mask[keep])

    @property
    def ok(self) -> np.ndarray:
        mask = np.ones(len(self.images), dtype=bool)
        mask[list(self.errors)] = False
        return mask


CACHE_FORMAT = 4  # bump when the cache's contents change (4: masks from every region of every VIA shape)


def _key(samples: list[Sample], spec: PreprocessSpec) -> str:
    # The model's own normalisation is applied after the cache, so models that differ only there share one cache.
    d = {k: v for k, v in spec.to_dict().items() if k not in ("model_normalisation", "steps")}
    h = hashlib.sha1(json.dumps({**d, "format": CACHE_FORMAT}, sort_keys=True).encode())
    for s in samples:
        st = s.path.stat()
        h.update(f"{s.path}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def build_cache(samples: list[Sample], spec: PreprocessSpec, cache_dir: Path | None, workers: int = 2) -> Cache:
    path = Path(cache_dir) / f"cache-{_key(samples, spec)}.npz" if cache_dir else None
    if path and path.exists():
        with np.load(path, allow_pickle=False) as z:
            errors = {int(i): str(r) for i, r in zip(z["error_index"], z["error_reason"])}
            return Cache(z["images"], z["head_fraction"], errors, z["hashes"], z["hashed"], z["masks"], z["has_mask"])
    jobs = [(s, spec.to_dict()) for s in samples]
    size = spec.input_size
    images = np.zeros((len(samples), size, size), dtype=np.uint8)
    heads = np.zeros(len(samples), dtype=np.float32)
    hashes = np.zeros((len(samples), 4), dtype=np.uint64)
    hashed = np.zeros(len(samples), dtype=bool)
    masks = np.zeros_like(images)
    has_mask = np.zeros(len(samples), dtype=bool)
    errors: dict[int, str] = {}
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers) as pool:
            outcomes = pool.map(_work, jobs, chunksize=64)
            results = list(outcomes)
    else:
        results = [_work(j) for j in jobs]
    for i, (image, head, digest, mask, reason) in enumerate(results):
        if image is None:
            errors[i] = reason
            continue
        images[i], heads[i] = image, head
        if mask is not None:
            masks[i], has_mask[i] = mask, True
        if digest is not None:
            hashes[i], hashed[i] = digest, True
    if path:
        # two runs sharing a cache folder may build the same cache at once: atomic_write_with's names are their own
        atomic_write_with(path, lambda f: np.savez(
            f, images=images, head_fraction=heads, hashes=hashes, hashed=hashed, masks=masks, has_mask=has_mask,
            error_index=np.array(list(errors), dtype=np.int64),
            error_reason=np.array(list(errors.values()), dtype=str)))
    return Cache(images, heads, errors, hashes, hashed, masks, has_mask)


@dataclass(frozen=True)
class LesionTargets:
    """Where the tumour is, for the auxiliary lesion head: per-image regions, whether each is known, and the side of
    the feature grid the head predicts on at the current input size."""

    masks: np.ndarray  # N x S x S uint8
    known: np.ndarray  # N bool
    grid: int
    target: str = "share"  # one of LESION_TARGETS (TrainConfig.lesion_target)

    def batch(self, masks_u8: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """(B, grid, grid, 2): the share of each cell (or of its central half) inside the tumour, and whether that is
        known."""
        share = np.stack([cell_share(m, self.grid, self.target) for m in masks_u8])
        known = np.broadcast_to(self.known[idx, None, None].astype(np.float32), share.shape)
        return np.stack([share, known], axis=-1)


LESION_TARGETS = ("share", "centre")


def cell_share(mask_u8: np.ndarray, grid: int, target: str = "share") -> np.ndarray:
    """(grid, grid) float32 in [0, 1]: the part of each cell inside the tumour ("share"), or of the square of half the
    cell's side around its centre ("centre": each cell's four middle sixteenths)."""
    if target == "share":
        return cv2.resize(mask_u8, (grid, grid), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    quarters = cv2.resize(mask_u8, (4 * grid, 4 * grid), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return quarters.reshape(grid, 4, grid, 4)[:, 1:3, :, 1:3].mean(axis=(1, 3))


def batch_order(n: int, batch_size: int, rng: np.random.Generator | None) -> np.ndarray:
    """Indices of an epoch's batches. Shuffled (training, `rng` given), every batch holds `batch_size` images, so the
    compiled step sees one input shape: the ragged end is dropped (the next epoch's order covers it), and fewer images
    than a batch are repeated to fill one. In order (evaluation), every image once, the last batch possibly shorter
    (padding would bias the loss Keras reports; one more shape compiles once)."""
    if rng is None:
        return np.arange(n)
    order = rng.permutation(n)
    if n < batch_size:
        order = order[np.arange(batch_size) % n]
    return order[: len(order) // batch_size * batch_size]


def uint8_batch(images_u8: np.ndarray, size: int) -> np.ndarray:
    """uint8 cache images as the training graph's input (B, size, size, 1); normalisation happens on the device."""
    if images_u8.shape[1] != size:
        images_u8 = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images_u8])
    return np.ascontiguousarray(images_u8[..., None])


@dataclass(frozen=True)
class BatchBuilder:
    """Builds training batch `i` of `epoch` from the images at `idx`, seeded by (seed, epoch, i) alone: a batch does
    not depend on which process built it, and a resumed run sees the batches an uninterrupted one would."""

    images: np.ndarray | None  # N x S x S uint8; None in the copy sent to the workers, which open the shared file
    labels: np.ndarray
    weights: np.ndarray
    size: int
    seed: int
    augmenter: Augmenter | None
    lesion: LesionTargets | None

    def __call__(self, epoch: int, i: int, idx: np.ndarray):
        batch = self.images[idx]
        masks = self.lesion.masks[idx] if self.lesion is not None else [None] * len(idx)
        if self.augmenter is not None:
            rng = np.random.default_rng([self.seed, epoch, i])
            pairs = [self.augmenter(im, m, rng) for im, m in zip(batch, masks)]
            batch = np.stack([im for im, _m in pairs])
            masks = [m for _im, m in pairs]
        x = uint8_batch(batch, self.size)
        y, w = self.labels[idx].astype(np.float32), self.weights[idx].astype(np.float32)
        if self.lesion is None:
            return x, y, w
        targets = self.lesion.batch(np.stack(masks), idx)
        return x, {"prob": y, "lesion": targets}, {"prob": w, "lesion": np.ones_like(w)}


_worker_builder: BatchBuilder | None = None  # in a batch worker: the builder over the shared files


def _start_worker(folder: str, shell: BatchBuilder) -> None:
    global _worker_builder
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle: it shuts the pool down
    cv2.setNumThreads(1)  # the processes are the parallelism; OpenCV's own threads would oversubscribe the cores
    images = np.load(Path(folder) / "images.npy", mmap_mode="r")
    lesion = shell.lesion and replace(shell.lesion, masks=np.load(Path(folder) / "masks.npy", mmap_mode="r"))
    _worker_builder = replace(shell, images=images, lesion=lesion)
    threading.Thread(target=_end_with_parent, args=(folder,), daemon=True).start()


def _end_with_parent(folder: str) -> None:
    """A trainer killed before it could clean up (SIGTERM, SIGKILL) would leave its workers waiting for work for ever
    (each holds the task pipe open itself) and the folder behind: end both when it dies."""
    multiprocessing.parent_process().join()
    shutil.rmtree(folder, ignore_errors=True)  # the other workers' mappings stay valid
    os._exit(1)


def _build_in_worker(epoch: int, i: int, idx: np.ndarray):
    return _worker_builder(epoch, i, idx)


def _stop_pool(pool: ProcessPoolExecutor, folder: Path) -> None:
    pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(folder, ignore_errors=True)


class BatchPool:
    """`workers` spawned processes that build batches. Spawned, not forked: forking a process that runs JAX's or
    TensorFlow's threads can deadlock the child. The images (and tumour masks) are written once to a temporary
    folder and memory-mapped by every worker, so a batch carries only its indices there and its arrays back."""

    def __init__(self, builder: BatchBuilder, workers: int):
        self.folder = Path(tempfile.mkdtemp(prefix="brainmri-batches-"))
        try:
            np.save(self.folder / "images.npy", builder.images)
            if builder.lesion is not None:
                np.save(self.folder / "masks.npy", builder.lesion.masks)
            shell = replace(builder, images=None,
                            lesion=builder.lesion and replace(builder.lesion, masks=None))
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker, initargs=(str(self.folder), shell))
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        # Also at interpreter exit, should the trainer end without closing it (an error, Ctrl-C).
        self.close = weakref.finalize(self, _stop_pool, self.pool, self.folder)

    def submit(self, epoch: int, i: int, idx: np.ndarray) -> Future:
        return self.pool.submit(_build_in_worker, epoch, i, idx)


def make_sequence(images, labels, weights, batch_size, size, augmenter=None, shuffle=True, seed=0,
                  max_batches=None, lesion: LesionTargets | None = None, workers: int = 1):
    """Batches for `fit` in uint8 (see trainer/train_graph.py); with `lesion`, the targets are a dict for the
    classifier ('prob') and the lesion head. With `workers` > 1, batches are built in a `BatchPool` of that many
    processes, up to `max(10, 2 * workers)` ahead of the one Keras asks for, and are the same as with one worker;
    call `close()` when training ends (it also runs at exit)."""
    import keras

    builder = BatchBuilder(images, labels, weights, size, seed, augmenter, lesion)
    ahead = max(10, 2 * workers)  # batches in the making, as many as Keras's own queue held

    class Batches(keras.utils.PyDataset):
        """Epoch-seeded order and augmentation. With `max_batches`, each epoch is a fresh random subset of that many
        batches. Keras asks for the batches in order from one thread (workers=1): the pool is the parallelism."""

        def __init__(self):
            super().__init__()
            self.epoch = 0
            self._order()
            self.pool: BatchPool | None = None  # started at the first batch, so an unused sequence costs nothing
            self.pending: dict[tuple[int, int], Future] = {}

        def _order(self):
            rng = np.random.default_rng([seed, self.epoch]) if shuffle else None
            self.order = batch_order(len(images), batch_size, rng)

        def _indices(self, i):
            return self.order[i * batch_size: (i + 1) * batch_size]

        def __len__(self):
            full = int(np.ceil(len(self.order) / batch_size))
            return min(full, max_batches) if max_batches else full

        def __getitem__(self, i):
            if workers == 1:
                return builder(self.epoch, i, self._indices(i))
            if self.pool is None:
                self.pool = BatchPool(builder, workers)
            for j in range(i, min(len(self), i + ahead)):
                if (self.epoch, j) not in self.pending:
                    self.pending[self.epoch, j] = self.pool.submit(self.epoch, j, self._indices(j))
            for key in [k for k in self.pending if k[0] != self.epoch or k[1] < i]:
                self.pending.pop(key).cancel()  # batches of a past epoch or skipped: not wanted any more
            return self.pending.pop((self.epoch, i)).result()

        def on_epoch_end(self):
            self.epoch += 1
            self._order()

        def close(self):
            """Stop the workers and remove their files; a later batch starts a new pool."""
            self.pending.clear()
            if self.pool is not None:
                self.pool.close()
                self.pool = None

    return Batches()
