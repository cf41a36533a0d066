"""The two image views side by side: the slice, and the same slice under its Grad-CAM overlay, panned and zoomed
together."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from .image_view import ImageView, mouse_help


class SliceViews(QSplitter):
    def __init__(self, parent=None):
        super().__init__(Qt.Horizontal, parent)
        self.view, self.cam_view = ImageView(), ImageView()
        self.view.setToolTip("The slice. " + mouse_help())
        self.cam_view.setToolTip("The same slice with the Grad-CAM overlay: where the model's evidence lies.")
        for title, v in (("Image", self.view), ("Grad-CAM", self.cam_view)):
            box = QWidget()
            lay = QVBoxLayout(box)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(QLabel(title))
            lay.addWidget(v)
            self.addWidget(box)
        self.view.viewChanged.connect(self.cam_view.set_view)
        self.cam_view.viewChanged.connect(self.view.set_view)

    @property
    def views(self) -> tuple[ImageView, ImageView]:
        return self.view, self.cam_view

    def show_image(self, unit: np.ndarray, cam: np.ndarray | None, opacity: float, overlay_visible: bool) -> None:
        self.view.set_image(unit)
        self.cam_view.set_image(unit)
        self.cam_view.set_overlay(cam, opacity)
        self.cam_view.set_overlay_visible(overlay_visible)

    def fit(self) -> None:
        self.view.fit()
        self.cam_view.fit()
