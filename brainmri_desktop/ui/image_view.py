"""An image view with the reading habits of PACS viewers: the wheel scrolls slices, Ctrl+wheel or a drag with the zoom
button zooms, a left drag pans (or measures with the ruler), a right drag sets window/level; invert, flip and rotate;
an optional heat-map overlay. Two views are linked by connecting their `viewChanged` signals to each other's
`set_view`; orientation and inversion are applied to both by whoever owns them (see ui/shortcuts.ViewingActions)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

from ..core.geometry import PixelGeometry, edge_labels
from .ruler import RulerItem

# Mouse gestures, listed in Help beside the keyboard shortcuts; kept here, beside the code that handles them.
MOUSE_GESTURES = (
    ("Wheel", "Previous / next slice"),
    ("Ctrl+Wheel", "Zoom"),
    ("Middle drag", "Zoom (drag up to zoom in)"),
    ("Left drag", "Pan (with the ruler tool on: measure a distance)"),
    ("Right drag", "Window/level: up/down moves the centre, left/right the width"),
)


def mouse_help() -> str:
    """The gestures in one line, for a view's tooltip."""
    return "; ".join(f"{what}: {does.lower()}" for what, does in MOUSE_GESTURES) + "."


_MIN_RULER_PX = 0.5  # image pixels
_NOTCH = 120  # angleDelta of one wheel notch; touchpads send smaller steps that add up to it

# matplotlib's "jet" as its segment data (position, value) per channel: the same 256 colours, without importing
# matplotlib on the UI thread at the first overlay (70 ms idle, more on a busy machine: a stall while a study opens).
_JET_SEGMENTS = (((0, 0), (0.35, 0), (0.66, 1), (0.89, 1), (1, 0.5)),
                 ((0, 0), (0.125, 0), (0.375, 1), (0.64, 1), (0.91, 0), (1, 0)),
                 ((0, 0.5), (0.11, 1), (0.34, 1), (0.65, 0), (1, 0)))
_JET = None


def jet_lut() -> np.ndarray:
    global _JET
    if _JET is None:
        x = np.linspace(0, 1, 256)
        channels = [np.interp(x, *zip(*segments)) for segments in _JET_SEGMENTS]
        _JET = (np.stack(channels, axis=1) * 255).astype(np.uint8)
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


@dataclass(frozen=True)
class Orientation:
    """How the image is shown: first mirrored left-right (if `mirrored`), then turned clockwise by quarter turns.
    Every flip and rotation the reader asks for, in any order, is one of these eight."""

    quarter_turns: int = 0
    mirrored: bool = False

    def rotated(self, turns: int) -> Orientation:
        return replace(self, quarter_turns=(self.quarter_turns + turns) % 4)

    def flipped_horizontally(self) -> Orientation:
        # A mirror after a turn equals the opposite turn after a mirror: H R^k = R^-k H.
        return Orientation(-self.quarter_turns % 4, not self.mirrored)

    def flipped_vertically(self) -> Orientation:
        # A vertical flip is a horizontal one followed by a half turn.
        return self.flipped_horizontally().rotated(2)

    def transform(self, width: float, height: float) -> QTransform:
        """Pixel coordinates to scene coordinates, the turned image's bounding box starting at (0, 0)."""
        m = QTransform.fromScale(-1 if self.mirrored else 1, 1) * QTransform().rotate(90 * self.quarter_turns)
        box = m.mapRect(QRectF(0, 0, width, height))
        return m * QTransform.fromTranslate(-box.left(), -box.top())


@dataclass(frozen=True)
class ViewState:
    """What a reader set on a view, to give back when they return to a series."""

    zoom: float
    centre: tuple[float, float]
    orientation: Orientation = Orientation()
    inverted: bool = False


class ImageView(QGraphicsView):
    viewChanged = Signal(float, QPointF)  # zoom, centre in scene coordinates
    windowDrag = Signal(float, float)  # change of (centre, width) as fractions of the value range
    cursorMoved = Signal(int, int)  # pixel under the cursor (x, y) in the image's own grid, -1 when outside
    step = Signal(int)  # slices to move by: the wheel, one per notch (towards the reader: next slice)
    measured = Signal(object)  # a finished ruler's core.geometry.Distance

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self._image = QGraphicsPixmapItem()
        # The overlay and the rulers are children of the image: they turn and flip with it.
        self._overlay = QGraphicsPixmapItem(self._image)
        self._overlay.setZValue(1)
        self.scene().addItem(self._image)
        self.setRenderHint(QPainter.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setBackgroundBrush(Qt.black)
        self.setMouseTracking(True)
        self.zoom_button = Qt.MiddleButton
        self._zoom = 1.0
        self._syncing = False
        self._unit: np.ndarray | None = None
        self._inverted = False
        self._orientation = Orientation()
        self._geometry = PixelGeometry()
        self._geometry_key: object = None
        self._ruler_tool = False
        self._rulers: list[RulerItem] = []
        self._drawing: RulerItem | None = None
        self._wl_origin = None
        self._zoom_origin = None
        self._wheel_rest = 0

    # ---------------------------------------------------------------- content
    @property
    def has_overlay(self) -> bool:
        return not self._overlay.pixmap().isNull() and self._overlay.isVisible()

    def set_image(self, unit: np.ndarray) -> None:
        first = self._unit is None
        size_changed = not first and self._unit.shape != unit.shape
        self._unit = unit
        self._render()
        if first or size_changed:
            self._place()

    def shown_image(self) -> QImage:
        """The grey image as drawn (after inversion), in the slice's own pixel grid."""
        return self._image.pixmap().toImage()

    def set_overlay(self, cam: np.ndarray | None, opacity: float = 0.45) -> None:
        self._overlay.setPixmap(QPixmap() if cam is None else QPixmap.fromImage(heat_qimage(cam, opacity)))

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay.setVisible(visible)

    def set_geometry(self, geometry: PixelGeometry | None, key: object = None) -> None:
        """The shown slice's geometry, for the ruler, and a key naming the slice (its index, say). Rulers belong to
        one slice: another key or geometry clears them; the same again (a window change redraws) keeps them."""
        geometry = geometry or PixelGeometry()
        if (geometry, key) != (self._geometry, self._geometry_key):
            self.clear_measurements()
        self._geometry, self._geometry_key = geometry, key
        self.viewport().update()

    def _render(self) -> None:
        unit = 1.0 - self._unit if self._inverted else self._unit
        self._image.setPixmap(QPixmap.fromImage(grey_qimage(unit)))

    def _place(self) -> None:
        h, w = self._unit.shape
        self._image.setTransform(self._orientation.transform(w, h))
        self.scene().setSceneRect(self._image.sceneBoundingRect())
        self.fit()

    # ------------------------------------------------------------ orientation
    @property
    def inverted(self) -> bool:
        return self._inverted

    @property
    def orientation(self) -> Orientation:
        return self._orientation

    def set_inverted(self, inverted: bool) -> None:
        self._inverted = inverted
        if self._unit is not None:
            self._render()

    def set_orientation(self, orientation: Orientation) -> None:
        self._orientation = orientation
        if self._unit is not None:
            self._place()
        self.viewport().update()

    def view_state(self) -> ViewState:
        centre = self.mapToScene(self.viewport().rect().center())
        return ViewState(self._zoom, (centre.x(), centre.y()), self._orientation, self._inverted)

    def restore_state(self, state: ViewState) -> None:
        self.set_inverted(state.inverted)
        self.set_orientation(state.orientation)
        self.set_view(state.zoom, QPointF(*state.centre))

    def image_direction(self, screen_dx: float, screen_dy: float) -> tuple[float, float]:
        """The image direction (column, row) that a screen direction shows, after the display's flip and turn."""
        inverse, _ok = self._orientation.transform(1, 1).inverted()
        v = inverse.map(QPointF(screen_dx, screen_dy)) - inverse.map(QPointF(0, 0))
        return v.x(), v.y()

    def edge_labels(self) -> dict[str, str]:
        """The patient side shown at each edge (left, right, top, bottom); empty without an orientation header.
        They follow flips and turns, so a mirrored image can never pass for one shown as stored."""
        if self._geometry.orientation is None or self._unit is None:
            return {}
        return edge_labels(self._geometry.orientation, self.image_direction(1, 0), self.image_direction(0, 1))

    def drawForeground(self, painter, rect):
        labels = self.edge_labels()
        if not labels:
            return
        painter.save()
        painter.resetTransform()  # viewport coordinates: the letters sit at the window's edges at every zoom
        painter.setPen(QColor(255, 220, 60))
        area = self.viewport().rect().adjusted(6, 4, -6, -4)
        for side, flags in (("left", Qt.AlignLeft | Qt.AlignVCenter), ("right", Qt.AlignRight | Qt.AlignVCenter),
                            ("top", Qt.AlignTop | Qt.AlignHCenter), ("bottom", Qt.AlignBottom | Qt.AlignHCenter)):
            painter.drawText(area, flags, labels[side])
        painter.restore()

    # ------------------------------------------------------------- zoom, pan
    @property
    def zoom(self) -> float:
        return self._zoom

    def fit(self) -> None:
        self.fitInView(self._image, Qt.KeepAspectRatio)
        self._zoom = self.transform().m11()

    def zoom_by(self, factor: float) -> None:
        self.scale(factor, factor)
        self._zoom *= factor
        self._emit_view()

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

    def scrollContentsBy(self, dx, dy):
        super().scrollContentsBy(dx, dy)
        self._emit_view()

    def wheelEvent(self, event):
        delta = event.angleDelta().y()
        if event.modifiers() & Qt.ControlModifier:
            self.zoom_by(1.2 ** (delta / _NOTCH))
            return
        self._wheel_rest += delta
        notches = int(self._wheel_rest / _NOTCH)
        if notches:
            self._wheel_rest -= notches * _NOTCH
            self.step.emit(-notches)  # rolling the wheel towards oneself (negative delta) goes to the next slice

    # ------------------------------------------------------------------ rulers
    @property
    def ruler_tool(self) -> bool:
        return self._ruler_tool

    def set_ruler_tool(self, on: bool) -> None:
        self._ruler_tool = on
        self.setDragMode(QGraphicsView.NoDrag if on else QGraphicsView.ScrollHandDrag)
        self.viewport().setCursor(Qt.CrossCursor if on else Qt.OpenHandCursor)

    @property
    def measurements(self) -> list[RulerItem]:
        return list(self._rulers)

    def clear_measurements(self) -> None:
        for ruler in self._rulers:
            self.scene().removeItem(ruler)
        self._rulers.clear()
        self._drawing = None

    def _pixel_at(self, position) -> QPointF:
        return self._image.mapFromScene(self.mapToScene(position.toPoint()))

    # ------------------------------------------------------------------ mouse
    def mousePressEvent(self, event):
        button = event.button()
        if button == Qt.RightButton:
            self._wl_origin = event.position()
        elif button == self.zoom_button:
            self._zoom_origin = event.position()
        elif button == Qt.LeftButton and self._ruler_tool and self._unit is not None:
            self._drawing = RulerItem(self._pixel_at(event.position()), self._geometry, self._image)
            self._rulers.append(self._drawing)
        else:
            super().mousePressEvent(event)

    def mouseReleaseEvent(self, event):
        self._wl_origin = self._zoom_origin = None
        if self._drawing is not None and event.button() == Qt.LeftButton:
            ruler, self._drawing = self._drawing, None
            ruler.set_end(self._pixel_at(event.position()))
            if ruler.line().length() < _MIN_RULER_PX:  # a click, not a measurement
                self.scene().removeItem(ruler)
                self._rulers.remove(ruler)
            else:
                self.measured.emit(ruler.distance)
            return
        super().mouseReleaseEvent(event)

    def mouseMoveEvent(self, event):
        if self._wl_origin is not None:
            delta = event.position() - self._wl_origin
            self._wl_origin = event.position()
            self.windowDrag.emit(-delta.y() / 400.0, delta.x() / 400.0)
            return
        if self._zoom_origin is not None:
            dy = event.position().y() - self._zoom_origin.y()
            self._zoom_origin = event.position()
            self.zoom_by(1.01 ** -dy)
            return
        if self._drawing is not None:
            self._drawing.set_end(self._pixel_at(event.position()))
        self._emit_cursor(self._pixel_at(event.position()))
        super().mouseMoveEvent(event)

    def _emit_cursor(self, p: QPointF) -> None:
        x, y = math.floor(p.x()), math.floor(p.y())
        inside = self._unit is not None and 0 <= x < self._unit.shape[1] and 0 <= y < self._unit.shape[0]
        self.cursorMoved.emit(x if inside else -1, y if inside else -1)
