"""The whole series at a glance: probability against slice position, the threshold as a line; a click jumps there.

Each point is coloured by the session's decision for its slice (flagged, second look, not flagged, outside the
model's scope), never by comparing the probability here again: the session is the one owner of that rule.

The points lie on a cached image: a chunk of results draws only its new points there, and a repaint (every chunk,
every slice the reader moves to) copies the image and draws the two lines. Drawing 2,000 points on each repaint cost
4 ms of processor, tens of milliseconds of stall on a busy machine."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPolygonF
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
        self._layer: QImage | None = None  # the background and the points drawn so far; None: draw them all again
        self._fresh: dict[int, QPolygonF] = {}  # points not on the layer yet, per kind

    def show_session(self, session: Session | None, rows: Iterable[int] | None = None) -> None:
        """Takes the probabilities and decisions of the given slices (all when None) from the session. Points that
        are new and of a kind already drawn are added to that kind's polygon; anything else redraws them all."""
        if session is None or rows is None or self.count != len(session.slices):
            self.count = len(session.slices) if session else 0
            self.probabilities, self.kinds, self._layer = {}, {}, None
            rows = session.results if session else ()
        for i in rows:
            decision = session.decision(i)
            if decision is None:  # a result forgotten (another model's run started): drawn again without it
                if self.kinds.pop(i, None) is not None:
                    del self.probabilities[i]
                    self._layer = None
                continue
            kind, known = kind_of(decision), self.kinds.get(i)
            self.probabilities[i], self.kinds[i] = session.results[i].probability, kind
            if self._layer is not None and known is None:
                self._fresh.setdefault(kind, QPolygonF()).append(self._point(i))
            elif known != kind:
                self._layer = None
        if session is not None:
            self.threshold = session.point.threshold if session.point else 0.5
            self.current = session.current
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

    def _point(self, index: int) -> QPointF:
        a = self._area()
        return QPointF(self.x_for(index), a.bottom() - self.probabilities[index] * a.height())

    def resizeEvent(self, event):
        self._layer = None
        super().resizeEvent(event)

    def _points_layer(self) -> QImage:
        if self._layer is None or self._layer.deviceIndependentSize() != self.size().toSizeF():
            dpr = self.devicePixelRatioF()  # sharp points on a high-density screen
            self._layer = QImage(self.size() * dpr, QImage.Format_ARGB32_Premultiplied)
            self._layer.setDevicePixelRatio(dpr)
            self._layer.fill(QColor(30, 32, 36))
            self._fresh = {}
            for i, kind in self.kinds.items():
                self._fresh.setdefault(kind, QPolygonF()).append(self._point(i))
        if self._fresh:
            with QPainter(self._layer) as p:
                p.setRenderHint(QPainter.Antialiasing)
                for kind, polygon in self._fresh.items():
                    p.setPen(QPen(COLOURS[kind], _POINT, Qt.SolidLine, Qt.RoundCap))
                    p.drawPoints(polygon)
            self._fresh = {}
        return self._layer

    def paintEvent(self, event):
        # Ended explicitly: a painter kept alive past the paint event (by a traceback, say) warns on every repaint.
        with QPainter(self) as p:
            self._paint(p)

    def _paint(self, p: QPainter) -> None:
        a = self._area()
        if self.count == 0:
            p.fillRect(self.rect(), QColor(30, 32, 36))
            p.setPen(QColor(150, 150, 150))
            p.drawText(self.rect(), Qt.AlignCenter, "open a study to see its triage strip")
            return
        p.drawImage(0, 0, self._points_layer())
        y_t = a.bottom() - self.threshold * a.height()
        p.setPen(QPen(QColor(240, 180, 60), 1, Qt.DashLine))
        p.drawLine(QPointF(a.left(), y_t), QPointF(a.right(), y_t))
        if 0 <= self.current < self.count:
            p.setPen(QPen(QColor(120, 160, 255), 1))
            p.drawLine(QPointF(self.x_for(self.current), a.top()), QPointF(self.x_for(self.current), a.bottom()))

    def mousePressEvent(self, event):
        if self.count:
            a = self._area()
            index = int((event.position().x() - a.left()) / a.width() * self.count)
            self.sliceClicked.emit(max(0, min(self.count - 1, index)))
