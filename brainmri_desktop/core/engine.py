"""A model package computing in its own process, at a lower scheduling priority than the process that asked.

Why a process: in one process the window's event loop shares the interpreter lock and the processor with the model's
work (preprocessing, ONNX Runtime, the scope checks), and a repaint waited behind it (the stall bench, issue 24). A
second process shares no lock; lowered with `nice`, the operating system lets the window run first whenever both
want a core. Lowering a thread's priority inside one process does not do that: a lowered thread that holds the lock
makes the window wait for it all the same.

`Engine` answers the questions the window asks of a loaded model (its manifest, where it computes) and of its
Grad-CAM (`slice_maps`, `input_maps`), and triages a series chunk by chunk through core.session's one triage path,
`triage_chunks`, run in the child. Each call is one request and one answer under a lock, so a request for maps from
one worker thread waits at most one chunk for the triage of another. Nothing else lives in the child: a request
carries the slices it is about, so a cancelled run leaves nothing behind to mix with the next.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import weakref
from collections.abc import Iterator, Sequence

import numpy as np

from . import runtime
from .errors import EngineError
from .gradcam import GradCAM
from .inference import LoadedModel, TTAConfig
from .manifest import OperatingPoint
from .packages import ModelEntry
from .preprocess import Preprocessed
from .scope import ScopeCheck
from .session import DEFAULT_SCOPE, TriageChunk, triage_chunks

NICENESS = 10  # added to the child's nice value where the system has one (not Windows)


def _serve(conn, entry: ModelEntry, asked: str) -> None:
    """The child: load the package, say where it computes, then answer requests until told to close or the parent
    goes away."""
    if hasattr(os, "nice"):
        os.nice(NICENESS)
    try:
        model = LoadedModel.load(entry, asked)
        cam = GradCAM(model)
        size = model.manifest.preprocessing.input_size
        cam.input_maps(np.zeros((1, size, size), np.float32))  # the first trace happens here, not in a request
    except Exception as exc:  # noqa: BLE001 - whatever failed, the parent reads why
        conn.send(("error", str(exc)))
        return
    conn.send(("ready", model.device))
    handlers = {
        "chunk": lambda items, first, tta, point, scope: next(
            triage_chunks(model, items, tta, point, chunk=max(1, len(items)), scope=scope, first=first)),
        "slice_maps": cam.slice_maps,
        "input_maps": cam.input_maps,
    }
    while True:
        try:
            name, args = conn.recv()
        except (EOFError, OSError):
            return
        if name == "close":
            return
        try:
            conn.send(("ok", handlers[name](*args)))
        except Exception as exc:  # noqa: BLE001 - one failed request is the caller's error, the child goes on
            conn.send(("error", str(exc) or type(exc).__name__))


def _stop(process) -> None:
    # The pipe is left to the garbage collector: another thread may still be reading it, and the child's end closing
    # is what wakes that reader (with EOFError) once the child is gone.
    if process.is_alive():
        process.terminate()
        process.join(2)


class Engine:
    """One package loaded in a child process (spawned, never forked: the parent runs Qt's threads)."""

    def __init__(self, entry: ModelEntry, asked: str | None = None):
        if entry.manifest is None:
            raise entry.error or EngineError(f"{entry.path} is not a usable package")
        self.entry = entry
        self.manifest = entry.manifest
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, entry, asked or runtime.requested()),
                                        name=f"brainmri-engine {self.manifest.id}", daemon=True)
        self._process.start()
        child.close()
        self._lock = threading.Lock()
        self._closed = weakref.finalize(self, _stop, self._process)
        status, value = self._receive()
        if status != "ready":
            self.close()
            raise EngineError(value)
        self.device: str = value  # where the child computes, in words ("ONNX Runtime, CPU (2 cores)")

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _receive(self) -> tuple[str, object]:
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            code = self._process.exitcode
            raise EngineError(f"the model's process stopped (exit code {code})" if code is not None
                              else "the model's process stopped") from None

    def _ask(self, name: str, *args):
        with self._lock:
            if not self._closed.alive:
                raise EngineError("the model's process was closed")
            try:
                self._conn.send((name, args))
            except (OSError, ValueError):
                raise EngineError("the model's process stopped") from None
            status, value = self._receive()
        if status != "ok":
            raise EngineError(value)
        return value

    def triage(self, items: Sequence, tta: TTAConfig | None = None, point: OperatingPoint | None = None,
               scope: Sequence[ScopeCheck] = DEFAULT_SCOPE, chunk: int = 32) -> Iterator[TriageChunk]:
        """core.session.triage_chunks of `items`, computed in the child, one request a chunk."""
        for start in range(0, len(items), chunk):
            yield self._ask("chunk", list(items[start : start + chunk]), start, tta, point, tuple(scope))

    def slice_maps(self, inputs: list[Preprocessed]) -> list[np.ndarray]:
        """GradCAM.slice_maps, computed in the child."""
        return self._ask("slice_maps", list(inputs)) if inputs else []

    def input_maps(self, images: np.ndarray) -> np.ndarray:
        """GradCAM.input_maps, computed in the child."""
        return self._ask("input_maps", np.asarray(images, np.float32))

    def close(self) -> None:
        """Stops the child at once (it holds no state worth a goodbye); a request waiting on it raises EngineError."""
        self._closed()
