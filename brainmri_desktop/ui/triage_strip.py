"""The whole series at a glance: probability against slice position, the threshold as a line; a click jumps there.

Each point is coloured by the session's decision for its slice (flagged, second look, not flagged, outside the
model's scope), never by comparing the probability here again: the session is the one owner of that rule. The
points of one colour are drawn in a single call: one ellipse per slice cost a paint of 2,000 slices tens of
milliseconds, stalling the window at every chunk of results."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QWidget

from ..core.session import Decision, Session

FLAGGED, SECOND_LOOK, NOT_FLAGGED, OUT_OF_SCOPE = range(4)
COLOURS = {FLAGGED: QColor(235, 80, 70), SECOND_LOOK: QColor(240, 180, 60), NOT_FLAGGED: QColor(110, 200, 130),
           OUT_OF_SCOPE: QColor(140, 140, 140)}
_POINT = 6  # px, the diameter of a point


def kind_of(decision: Decision) -> int:
    if decision.out_of_scope and not decision.flagged:
        return OUT_OF_SCOPE
    if decision.flagged:
        return FLAGGED
    return SECOND_LOOK if decision.second_look else NOT_FLAGGED


class TriageStrip(QWidget):
    sliceClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(70)
        self.setToolTip("Calibrated tumour probability per slice, coloured by the triage decision (red: flagged, "
                        "amber: second look, green: not flagged, grey: outside the model's scope); the dashed line "
                        "is the decision threshold. Click a point to jump to its slice.")
        self.count = 0
        self.probabilities: dict[int, float] = {}
        self.kinds: dict[int, int] = {}
        self.threshold = 0.5
        self.current = -1
        self._polygons: dict[int, QPolygonF] | None = None  # per colour, in widget coordinates; None: rebuild

    def show_session(self, session: Session | None, rows: Iterable[int] | None = None) -> None:
        """Takes the probabilities and decisions of the given slices (all when None) from the session."""
        if session is None:
            self.count, self.probabilities, self.kinds = 0, {}, {}
        else:
            if rows is None or self.count != len(session.slices):
                self.count, self.probabilities, self.kinds = len(session.slices), {}, {}
                rows = session.results
            for i in rows:
                decision = session.decision(i)
                if decision is not None:
                    self.probabilities[i] = session.results[i].probability
                    self.kinds[i] = kind_of(decision)
            self.threshold = session.point.threshold if session.point else 0.5
            self.current = session.current
        self._polygons = None
        self.update()

    def set_current(self, index: int) -> None:
        if index != self.current:
            self.current = index
            self.update()

    def _area(self) -> QRectF:
        return QRectF(8, 6, max(1, self.width() - 16), max(1, self.height() - 12))

    def x_for(self, index: int) -> float:
        a = self._area()
        return a.left() + (index + 0.5) * a.width() / max(1, self.count)

    def resizeEvent(self, event):
        self._polygons = None
        super().resizeEvent(event)

    def _points(self) -> dict[int, QPolygonF]:
        if self._polygons is None:
            a = self._area()
            step, left, bottom, height = a.width() / max(1, self.count), a.left(), a.bottom(), a.height()
            points: dict[int, list[QPointF]] = {kind: [] for kind in COLOURS}
            for i, prob in self.probabilities.items():
                points[self.kinds[i]].append(QPointF(left + (i + 0.5) * step, bottom - prob * height))
            self._polygons = {kind: QPolygonF(p) for kind, p in points.items() if p}
        return self._polygons

    def paintEvent(self, event):
        # Ended explicitly: a painter kept alive past the paint event (by a traceback, say) warns on every repaint.
        with QPainter(self) as p:
            self._paint(p)

    def _paint(self, p: QPainter) -> None:
        p.fillRect(self.rect(), QColor(30, 32, 36))
        a = self._area()
        if self.count == 0:
            p.setPen(QColor(150, 150, 150))
            p.drawText(self.rect(), Qt.AlignCenter, "open a study to see its triage strip")
            return
        y_t = a.bottom() - self.threshold * a.height()
        p.setPen(QPen(QColor(240, 180, 60), 1, Qt.DashLine))
        p.drawLine(QPointF(a.left(), y_t), QPointF(a.right(), y_t))
        if 0 <= self.current < self.count:
            p.setPen(QPen(QColor(120, 160, 255), 1))
            p.drawLine(QPointF(self.x_for(self.current), a.top()), QPointF(self.x_for(self.current), a.bottom()))
        p.setRenderHint(QPainter.Antialiasing)
        for kind, polygon in self._points().items():
            p.setPen(QPen(COLOURS[kind], _POINT, Qt.SolidLine, Qt.RoundCap))
            p.drawPoints(polygon)

    def mousePressEvent(self, event):
        if self.count:
            a = self._area()
            index = int((event.position().x() - a.left()) / a.width() * self.count)
            self.sliceClicked.emit(max(0, min(self.count - 1, index)))
