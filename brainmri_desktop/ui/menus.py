"""The window's menus and their shortcuts (File, Review, View, Help)."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow

from . import help_dialogs
from .recent import RecentStudies
from .shortcuts import help_action
from .result_panel import ask_reader_name


def build_menus(window: QMainWindow) -> RecentStudies:
    """Fills the menu bar of a MainWindow; returns the recent-studies list of its File menu."""

    def action(menu, text, slot, shortcut=None, name=None):
        a = QAction(text, window)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        if name:
            a.setObjectName(name)
        a.triggered.connect(slot)
        menu.addAction(a)
        window.addAction(a)
        return a

    w = window
    m = w.menuBar().addMenu("&File")
    action(m, "Open files...", w.open_files_dialog, QKeySequence.Open)
    action(m, "Open folder / DICOM series...", w.open_folder_dialog, "Ctrl+Shift+O")
    recent = RecentStudies(w.settings, m.addMenu("Recent studies"), lambda p: w.open_paths([p]))
    action(m, "Open from PACS...", w.pacs.open_dialog, None, "openFromPacs")
    m.addSeparator()
    action(m, "Export report (PDF)...", w.export_report_dialog, "Ctrl+E")
    action(m, "Export table (CSV)...", w.export_csv_dialog, "Ctrl+Shift+E")
    w.pacs.watch(action(m, "Send results to PACS", w.pacs.send_results, None, "sendToPacs"))
    action(m, "Send Grad-CAM overlays with the results", w.pacs.set_overlays, None, "pacsOverlays").setCheckable(True)
    m.addSeparator()
    action(m, "Reader name...", lambda: ask_reader_name(w, w.settings), None, "readerName")
    m.addSeparator()
    action(m, "Quit", w.close, QKeySequence.Quit)
    m = w.menuBar().addMenu("&Review")
    action(m, "Next flagged slice", lambda: w.step_flagged(1), "N", "nextFlagged")
    action(m, "Previous flagged slice", lambda: w.step_flagged(-1), "P", "previousFlagged")
    action(m, "Include out-of-scope slices", w.set_include_out_of_scope, None, "includeOutOfScope").setCheckable(True)
    action(m, "Agree", lambda: w.mark("agree"), "A")
    action(m, "Disagree", lambda: w.mark("disagree"), "D")
    action(m, "Clear mark and note", lambda: w.mark(None), "C", "clearMark")
    action(m, "Fit image", w.views.fit, "F")
    w.menuBar().addMenu("&View").addActions(w.tools.actions.actions)  # already the window's: keys work anywhere
    m = w.menuBar().addMenu("&Help")
    m.addAction(help_action(w))
    action(m, "Open demo study", w.open_demo, None, "openDemo")
    action(m, "Model card", lambda: help_dialogs.show_model_card(w, w.bar.entry))
    action(m, "About BrainMRI", lambda: help_dialogs.show_about(w, w.bar.entries.values()))
    return recent
