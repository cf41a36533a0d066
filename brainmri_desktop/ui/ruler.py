"""A distance ruler drawn on the image: its ends in pixel coordinates, its length in mm from the slice's spacing."""

from __future__ import annotations

from PySide6.QtCore import QLineF, QPointF
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsLineItem, QGraphicsSimpleTextItem

from ..core.geometry import Distance, PixelGeometry

_COLOUR = QColor(255, 220, 60)


class RulerItem(QGraphicsLineItem):
    """A child of the image item, so that it turns and flips with the image; its label stays upright and readable."""

    def __init__(self, start: QPointF, geometry: PixelGeometry, parent: QGraphicsItem):
        super().__init__(QLineF(start, start), parent)
        pen = QPen(_COLOUR, 2)
        pen.setCosmetic(True)  # the same thickness at every zoom
        self.setPen(pen)
        self.setZValue(2)
        self._geometry = geometry
        self._label = QGraphicsSimpleTextItem(self)
        self._label.setBrush(_COLOUR)
        self._label.setFlag(QGraphicsItem.ItemIgnoresTransformations)
        self.set_end(start)

    @property
    def distance(self) -> Distance:
        line = self.line()
        return self._geometry.distance((line.x1(), line.y1()), (line.x2(), line.y2()))

    def set_end(self, end: QPointF) -> None:
        self.setLine(QLineF(self.line().p1(), end))
        self._label.setText(str(self.distance))
        self._label.setPos(end)

    @property
    def label(self) -> str:
        return self._label.text()
