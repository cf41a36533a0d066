"""An image view with zoom, pan, window/level by right-drag, an optional heat-map overlay and cursor read-out.
Two views are linked by connecting their `viewChanged` signals to each other's `set_view`."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

_JET = None


def jet_lut() -> np.ndarray:
    global _JET
    if _JET is None:
        from matplotlib import colormaps

        _JET = (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return _JET


def grey_qimage(unit: np.ndarray) -> QImage:
    data = np.ascontiguousarray((np.clip(unit, 0, 1) * 255).astype(np.uint8))
    h, w = data.shape
    return QImage(data.data, w, h, w, QImage.Format_Grayscale8).copy()


def heat_qimage(cam: np.ndarray, opacity: float) -> QImage:
    idx = (np.clip(cam, 0, 1) * 255).astype(np.uint8)
    rgba = np.zeros((*cam.shape, 4), np.uint8)
    rgba[..., :3] = jet_lut()[idx]
    # Weak activations fade out, so the anatomy stays readable under the colour.
    rgba[..., 3] = (np.clip(cam, 0, 1) ** 0.7 * 255 * opacity).astype(np.uint8)
    h, w = cam.shape
    return QImage(np.ascontiguousarray(rgba).data, w, h, 4 * w, QImage.Format_RGBA8888).copy()


class ImageView(QGraphicsView):
    viewChanged = Signal(float, QPointF)  # zoom, centre in scene coordinates
    windowDrag = Signal(float, float)  # change of (centre, width) as fractions of the value range
    cursorMoved = Signal(int, int)  # pixel under the cursor (x, y), -1 when outside

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self._image = QGraphicsPixmapItem()
        self._overlay = QGraphicsPixmapItem()
        self._overlay.setZValue(1)
        self.scene().addItem(self._image)
        self.scene().addItem(self._overlay)
        self.setRenderHint(QPainter.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setBackgroundBrush(Qt.black)
        self.setMouseTracking(True)
        self._zoom = 1.0
        self._syncing = False
        self._wl_origin = None
        self._fitted = False

    @property
    def has_overlay(self) -> bool:
        return not self._overlay.pixmap().isNull() and self._overlay.isVisible()

    def set_image(self, unit: np.ndarray) -> None:
        first = self._image.pixmap().isNull()
        size_changed = not first and self._image.pixmap().size().toTuple() != unit.shape[::-1]
        self._image.setPixmap(QPixmap.fromImage(grey_qimage(unit)))
        self.scene().setSceneRect(self._image.boundingRect())
        if first or size_changed:
            self.fit()

    def set_overlay(self, cam: np.ndarray | None, opacity: float = 0.45) -> None:
        self._overlay.setPixmap(QPixmap() if cam is None else QPixmap.fromImage(heat_qimage(cam, opacity)))

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay.setVisible(visible)

    def fit(self) -> None:
        self.fitInView(self._image, Qt.KeepAspectRatio)
        self._zoom = self.transform().m11()

    def set_view(self, zoom: float, centre: QPointF) -> None:
        if self._syncing:
            return
        self._syncing = True
        self.resetTransform()
        self.scale(zoom, zoom)
        self._zoom = zoom
        self.centerOn(centre)
        self._syncing = False

    def _emit_view(self) -> None:
        if not self._syncing:
            self.viewChanged.emit(self._zoom, self.mapToScene(self.viewport().rect().center()))

    def wheelEvent(self, event):
        factor = 1.2 if event.angleDelta().y() > 0 else 1 / 1.2
        self.scale(factor, factor)
        self._zoom *= factor
        self._emit_view()

    def scrollContentsBy(self, dx, dy):
        super().scrollContentsBy(dx, dy)
        self._emit_view()

    def mousePressEvent(self, event):
        if event.button() == Qt.RightButton:
            self._wl_origin = event.position()
            return
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event):
        self._wl_origin = None
        super().mouseReleaseEvent(event)

    def mouseMoveEvent(self, event):
        if self._wl_origin is not None:
            delta = event.position() - self._wl_origin
            self._wl_origin = event.position()
            self.windowDrag.emit(-delta.y() / 400.0, delta.x() / 400.0)
            return
        p = self._image.mapFromScene(self.mapToScene(event.position().toPoint()))
        w, h = self._image.pixmap().width(), self._image.pixmap().height()
        x, y = int(p.x()), int(p.y())
        self.cursorMoved.emit(x if 0 <= x < w and 0 <= y < h else -1, y if 0 <= x < w and 0 <= y < h else -1)
        super().mouseMoveEvent(event)
