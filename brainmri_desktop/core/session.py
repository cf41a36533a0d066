"""One series under review, without Qt: its slices, their model inputs and results, the operating point, the scope
verdicts, the reader's marks and the Grad-CAM maps (in the spirit of napari's ViewerModel: the window only shows it).

The one triage path
    `triage_chunks(model, items, tta, point)` is the generator every consumer iterates: the window's engine process
    (core/engine.py, a chunk a request), `brainmri predict`, the self-test and the trainer's evaluation. Per chunk
    of items it prepares each (read and preprocess; an item that fails is reported, the rest go on), predicts, asks
    the scope checks, and computes Grad-CAM maps for the items the caller asks about, then yields one `TriageChunk`.
    A `Session` stores what a chunk holds with `accept(chunk)`; `Session.run(model)` does both for callers that need
    no progress.

Decisions
    A `SliceResult` is what the model said; whether a slice is flagged is decided here only, by `decide()`, from the
    session's `OperatingPoint` choice (`Threshold.DEFAULT`: the manifest's Youden's J point, or
    `Threshold.HIGH_SENSITIVITY`) and the slice's scope verdict, a core.scope `ScopeVerdict` (None when the slice is
    in scope). The checks are core.scope `ScopeCheck`s, `(item, Preprocessed) -> ScopeVerdict | None`, given to
    `triage_chunks(scope=...)` or to `Session(scope=...)`; the default is core.scope's `rule_check` (DICOM headers,
    a blank or near-empty image, the plane read from the pixels where no header gives it). core.scope `assess`
    combines them with the model's own out-of-distribution score (when the package has a scope fit), computed in the
    same forward pass as the identity logit (`SliceResult.ood_score`). A slice out of scope keeps its probability
    but is neither flagged nor sent for a second look unless `include_out_of_scope` is set, except that a verdict
    from the model's features never hides a slice at or over the threshold (`ScopeVerdict.may_hide_finding`): that
    score reads the features the model detects with, and an obvious lesion is unlike the training images because
    of the lesion (on an external set it put six tumour slices at p 0.997-0.999 out of scope). Such a slice stays
    flagged with the reason as a warning ("unusual image: ..."); below the threshold it is out of scope.

Grad-CAM
    Maps are cached per (slice, view): `SLICE_VIEW` on the slice's own grid, `INPUT_VIEW` on the model input ("what
    the model saw"). `cam_chunks()` computes the missing ones (meant for a worker thread), `accept_cams()` stores them.

Several series
    A `Study` holds one `Session` per series, each with its own results, marks and current slice (the window
    keeps zoom, orientation and window per series in ui/viewing.SeriesMemory), so a study browser switches between
    them without re-running anything. The study's `Policy` (operating point, out-of-scope switch) decides them all.

Change events
    A session fires `changed(rows)` when results, decisions or marks change (None: every row) and
    `cams_changed(keys)` when maps arrive; plain callbacks (core.events), so the window redraws what changed and the
    command line listens to nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import BrainMRIError
from .events import Event
from .flag_rule import at_or_over
from .inference import LoadedModel, SliceResult, TTAConfig, predict
from .io.slices import Slice
from .manifest import Manifest, OperatingPoint
from .preprocess import Preprocessed, preprocess_slice
from .review import Mark, Reviews
from .scope import ScopeCheck, ScopeVerdict, assess, rule_check

SLICE_VIEW, INPUT_VIEW = "slice", "input"

DEFAULT_SCOPE: tuple[ScopeCheck, ...] = (rule_check,)


class Threshold(enum.Enum):
    """Which of the manifest's operating points decides."""

    DEFAULT = "default"  # the manifest's main threshold (Youden's J on validation)
    HIGH_SENSITIVITY = "high_sensitivity"

    @property
    def label(self) -> str:
        return {"default": "Youden's J threshold", "high_sensitivity": "High-sensitivity threshold"}[self.value]

    def point(self, manifest: Manifest) -> OperatingPoint:
        """The operating point itself; the main one when the model has no high-sensitivity point."""
        return manifest.operating_point(self is Threshold.HIGH_SENSITIVITY)


class Policy:
    """How a study's slices are decided: which operating point, and whether out-of-scope slices are flagged by their
    probability too. One per `Study`, shared by its sessions, so a series switched to is decided as the others;
    `changed` fires when either is set to a new value."""

    def __init__(self, threshold: Threshold = Threshold.DEFAULT, include_out_of_scope: bool = False):
        self._threshold, self._include_out_of_scope = threshold, include_out_of_scope
        self.changed = Event()

    @property
    def threshold(self) -> Threshold:
        return self._threshold

    @threshold.setter
    def threshold(self, value: Threshold) -> None:
        if value is not self._threshold:
            self._threshold = value
            self.changed.emit()

    @property
    def include_out_of_scope(self) -> bool:
        return self._include_out_of_scope

    @include_out_of_scope.setter
    def include_out_of_scope(self, value: bool) -> None:
        if bool(value) != self._include_out_of_scope:
            self._include_out_of_scope = bool(value)
            self.changed.emit()

    def copy(self) -> Policy:
        """The same choices, for another study (each study's sessions listen to its own policy only)."""
        return Policy(self._threshold, self._include_out_of_scope)


@dataclass(frozen=True)
class Decision:
    flagged: bool  # at or over the threshold, and in scope (or the reader included out-of-scope slices)
    second_look: bool  # the augmentations disagree about the side of the threshold
    out_of_scope: str | None = None  # the scope verdict: why this slice lies outside what the model was trained on
    warning: str | None = None  # flagged although its features are unlike the training images (never hidden for it)


def decide(result: SliceResult, point: OperatingPoint, verdict: ScopeVerdict | None = None,
           include_out_of_scope: bool = False) -> Decision:
    """The one rule that turns a probability into a triage decision, given the slice's scope verdict."""
    t = point.threshold
    over = bool(at_or_over(result.probability, t))
    second_look = result.p_low < t <= result.p_high
    if verdict is None or not verdict.out_of_scope:
        return Decision(over, second_look)
    if over and not verdict.may_hide_finding:
        return Decision(True, second_look, None, f"unusual image: {verdict.reason}")
    counts = include_out_of_scope
    return Decision(counts and over, counts and second_look, verdict.reason)


@dataclass
class TriageChunk:
    """One chunk of the triage generator; every dict is keyed by the item's index in the sequence triaged."""

    start: int
    stop: int
    inputs: dict[int, Preprocessed] = field(default_factory=dict)
    results: dict[int, SliceResult] = field(default_factory=dict)
    verdicts: dict[int, ScopeVerdict | None] = field(default_factory=dict)  # None: in scope
    cams: dict[int, np.ndarray] = field(default_factory=dict)  # slice-grid maps of the items asked for
    errors: dict[int, str] = field(default_factory=dict)  # items that could not be prepared, with the reason


def triage_chunks(model: LoadedModel, items: Sequence, tta: TTAConfig | None = None,
                  point: OperatingPoint | None = None, *, chunk: int = 32,
                  prepare: Callable[[object], Preprocessed] | None = None,
                  scope: Sequence[ScopeCheck] = DEFAULT_SCOPE,
                  explain: Callable[[int, object], bool] | None = None, gradcam=None,
                  first: int = 0) -> Iterator[TriageChunk]:
    """Load, preprocess, predict, judge scope (`scope`'s checks, then the model's out-of-distribution score) and
    (for the items `explain(index, item)` accepts) compute Grad-CAM, chunk by chunk. `prepare` turns an item into
    model input (default: `preprocess_slice` of a Slice); a BrainMRIError it raises lands in the chunk's `errors`.
    `point` only steers adaptive TTA. Items are numbered from `first`: `items` may be a part of a series (the
    engine process, core/engine.py, is sent one chunk at a time)."""
    spec = model.manifest.preprocessing
    prepare = prepare or (lambda s: preprocess_slice(s, spec))
    if explain is not None and gradcam is None:
        from .gradcam import GradCAM

        gradcam = GradCAM(model)
    for start in range(first, first + len(items), chunk):
        out = TriageChunk(start, min(start + chunk, first + len(items)))
        for i in range(out.start, out.stop):
            try:
                out.inputs[i] = prepare(items[i - first])
            except BrainMRIError as exc:
                out.errors[i] = exc.reason
        order = list(out.inputs)
        for k, r in enumerate(predict(model, [out.inputs[i] for i in order], tta, point)):
            i = order[k]
            out.results[i] = replace(r, index=i)
            verdict = assess(items[i - first], out.inputs[i], r.ood_score, model.ood, scope)
            out.verdicts[i] = verdict if verdict.out_of_scope else None
        wanted = [i for i in order if explain is not None and explain(i, items[i - first])]
        out.cams = dict(zip(wanted, gradcam.slice_maps([out.inputs[i] for i in wanted]))) if wanted else {}
        yield out


class Session:
    """One series under review. Plain attributes, read freely; change them through the methods, which fire
    `changed(rows)` (the results, decisions or marks of those slices, None for all) and `cams_changed(keys)`."""

    def __init__(self, slices: Sequence[Slice], reviews: Reviews | None = None,
                 scope: Sequence[ScopeCheck] = DEFAULT_SCOPE):
        self.slices: list[Slice] = list(slices)
        self.reviews = reviews if reviews is not None else Reviews()  # a ReviewStore writes them to disk
        self.scope = tuple(scope)
        self.changed = Event()
        self.cams_changed = Event()
        self.use_policy(Policy())
        self._manifest: Manifest | None = None
        self.inputs: dict[int, Preprocessed] = {}
        self.results: dict[int, SliceResult] = {}
        self.verdicts: dict[int, ScopeVerdict | None] = {}
        self.errors: dict[int, str] = {}
        self.cams: dict[tuple[int, str], np.ndarray] = {}
        self.current = 0 if self.slices else -1  # the slice shown, kept per series for the study browser

    # ------------------------------------------------------------------- policy
    def use_policy(self, policy: Policy) -> None:
        """Decide by `policy` (a study's, shared by its series) from now on."""
        self.policy = policy
        policy.changed.connect(lambda: self.changed.emit(None) if self.policy is policy else None)
        self.changed.emit(None)

    @property
    def threshold(self) -> Threshold:
        return self.policy.threshold

    @threshold.setter
    def threshold(self, value: Threshold) -> None:
        self.policy.threshold = value

    @property
    def include_out_of_scope(self) -> bool:
        return self.policy.include_out_of_scope

    @include_out_of_scope.setter
    def include_out_of_scope(self, value: bool) -> None:
        self.policy.include_out_of_scope = value

    @property
    def manifest(self) -> Manifest | None:
        """The model whose results these are; its operating points decide."""
        return self._manifest

    @manifest.setter
    def manifest(self, manifest: Manifest | None) -> None:
        """The same results read with another manifest's points (a refitted package): every decision may change."""
        self._manifest = manifest
        self.changed.emit(None)

    # ------------------------------------------------------------------ results
    def start(self, manifest: Manifest) -> None:
        """Forgets the results, inputs and maps of a previous model; the marks and the view stay."""
        forgotten = set(self.results) | set(self.errors)
        self._manifest = manifest
        self.inputs, self.results, self.verdicts, self.errors, self.cams = {}, {}, {}, {}, {}
        self.changed.emit(forgotten)  # not every row: a 2,000-row refresh stalls a window while the model loads

    def triage(self, model: LoadedModel, tta: TTAConfig | None = None, chunk: int = 32,
               explain: Callable[[int, object], bool] | None = None) -> Iterator[TriageChunk]:
        """`triage_chunks` over this series at the session's operating point (call `start` first)."""
        return triage_chunks(model, self.slices, tta, self.point, chunk=chunk, scope=self.scope, explain=explain)

    def accept(self, chunk: TriageChunk) -> None:
        self.inputs.update(chunk.inputs)
        self.results.update(chunk.results)
        self.verdicts.update(chunk.verdicts)
        self.errors.update(chunk.errors)
        self.cams.update({(i, SLICE_VIEW): m for i, m in chunk.cams.items()})
        self.changed.emit(set(chunk.results) | set(chunk.errors))
        if chunk.cams:
            self.cams_changed.emit({(i, SLICE_VIEW) for i in chunk.cams})

    def run(self, model: LoadedModel, tta: TTAConfig | None = None,
            explain: Callable[[int, object], bool] | None = None) -> None:
        """The whole triage at once, for callers that need no progress (the command line, the self-test)."""
        self.start(model.manifest)
        for chunk in self.triage(model, tta, explain=explain):
            self.accept(chunk)

    @property
    def complete(self) -> bool:
        return len(self.results) + len(self.errors) == len(self.slices)

    # -------------------------------------------------------------- decisions
    @property
    def point(self) -> OperatingPoint | None:
        return self.threshold.point(self.manifest) if self.manifest else None

    def decision(self, index: int) -> Decision | None:
        r = self.results.get(index)
        if r is None or self.manifest is None:
            return None
        return decide(r, self.point, self.verdicts.get(index), self.include_out_of_scope)

    def decisions(self) -> dict[int, Decision]:
        """Every decided slice's decision. The window asks for them after each chunk of a triage, on its UI thread:
        the operating point is looked up once, not once per slice (2,000 slices, 63 chunks: 1.1 s of lookups)."""
        if self.manifest is None:
            return {}
        point, include = self.point, self.include_out_of_scope
        return {i: decide(self.results[i], point, self.verdicts.get(i), include) for i in sorted(self.results)}

    def flagged(self) -> list[int]:
        return [i for i, d in self.decisions().items() if d.flagged]

    def step_flagged(self, direction: int) -> int | None:
        """The next (direction > 0) or previous flagged slice after the current one, wrapping round; None if none."""
        flagged = self.flagged()
        if not flagged:
            return None
        if direction > 0:
            return next((i for i in flagged if i > self.current), flagged[0])
        return next((i for i in reversed(flagged) if i < self.current), flagged[-1])

    # ------------------------------------------------------------------ marks
    @property
    def marks(self) -> dict[int, Mark]:
        return self.reviews.marks

    def mark(self, index: int, verdict: str | None, note: str = "", reader: str | None = None) -> None:
        """Records the reader's verdict with its note, who and when (reader None: the system user name); None takes
        the mark back. Raises OSError when it could not be saved (it is kept for this session)."""
        try:
            self.reviews.set(index, verdict, note, reader, self.manifest.id if self.manifest else "")
        finally:
            self.changed.emit({index})

    def note(self, index: int, text: str, reader: str | None = None) -> None:
        """The note as typed; the verdict stays (without one it is a note-only mark). OSError as `mark`."""
        try:
            self.reviews.set_note(index, text, reader, self.manifest.id if self.manifest else "")
        finally:
            self.changed.emit({index})

    # --------------------------------------------------------------- Grad-CAM
    def cam(self, index: int, view: str = SLICE_VIEW) -> np.ndarray | None:
        return self.cams.get((index, view))

    def missing_cams(self, indices: Iterable[int], view: str = SLICE_VIEW) -> list[int]:
        """The slices among `indices` that have a result and an input but no map in this view yet."""
        return [i for i in indices if (i, view) not in self.cams and i in self.inputs and i in self.results]

    def cam_chunks(self, gradcam, indices: Sequence[int], view: str = SLICE_VIEW,
                   chunk: int = 8) -> Iterator[dict[tuple[int, str], np.ndarray]]:
        """Computes the maps of `indices` (see `missing_cams`), a chunk at a time; nothing is stored here."""
        for start in range(0, len(indices), chunk):
            inputs = self.inputs  # one dict per run: a new run (start) while this works leaves it whole
            part = [i for i in indices[start : start + chunk] if i in inputs]
            if view == INPUT_VIEW:
                maps = gradcam.input_maps(np.stack([inputs[i].image for i in part])) if part else []
            else:
                maps = gradcam.slice_maps([inputs[i] for i in part])
            yield {(i, view): m for i, m in zip(part, maps)}

    def accept_cams(self, maps: dict[tuple[int, str], np.ndarray]) -> None:
        self.cams.update(maps)
        self.cams_changed.emit(set(maps))


class Study:
    """The series open at once, each with its own session, in the order they were opened, decided by one `Policy`."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.sessions: dict[str, Session] = {}
        self.active: str | None = None

    def add(self, key: str, session: Session) -> Session:
        session.use_policy(self.policy)
        self.sessions[key] = session
        if self.active is None:
            self.active = key
        return session

    @property
    def session(self) -> Session | None:
        return self.sessions.get(self.active) if self.active is not None else None

    def activate(self, key: str) -> Session:
        self.active = key
        return self.sessions[key]

    def key_of(self, session: Session) -> str | None:
        return next((key for key, s in self.sessions.items() if s is session), None)

    @staticmethod
    def needs_triage(session: Session, model: Manifest, running: Session | None = None) -> bool:
        """Not triaged by this model yet (its content: a package re-exported under the same id is another model), or
        stopped before the end, and not the series being triaged now."""
        if session is running:
            return False
        return session.manifest is None or session.manifest.content_key != model.content_key or not session.complete

    def next_to_triage(self, model: Manifest, running: Session | None = None) -> Session | None:
        """The first series, in the order opened, that `needs_triage`."""
        return next((s for s in self.sessions.values() if self.needs_triage(s, model, running)), None)
