"""The whole series at a glance: probability against slice position, the threshold as a line; a click jumps there."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QWidget


class TriageStrip(QWidget):
    sliceClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(70)
        self.setToolTip("Calibrated tumour probability per slice; the dashed line is the decision threshold. "
                        "Click a point to jump to its slice.")
        self.count = 0
        self.probabilities: dict[int, float] = {}
        self.threshold = 0.5
        self.current = -1

    def set_data(self, count: int, probabilities: dict[int, float], threshold: float, current: int) -> None:
        self.count, self.probabilities, self.threshold, self.current = count, dict(probabilities), threshold, current
        self.update()

    def _area(self) -> QRectF:
        return QRectF(8, 6, max(1, self.width() - 16), max(1, self.height() - 12))

    def x_for(self, index: int) -> float:
        a = self._area()
        return a.left() + (index + 0.5) * a.width() / max(1, self.count)

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
        for i, prob in self.probabilities.items():
            colour = QColor(235, 80, 70) if prob >= self.threshold else QColor(110, 200, 130)
            p.setPen(Qt.NoPen)
            p.setBrush(colour)
            p.drawEllipse(QPointF(self.x_for(i), a.bottom() - prob * a.height()), 3, 3)

    def mousePressEvent(self, event):
        if self.count:
            a = self._area()
            index = int((event.position().x() - a.left()) / a.width() * self.count)
            self.sliceClicked.emit(max(0, min(self.count - 1, index)))
