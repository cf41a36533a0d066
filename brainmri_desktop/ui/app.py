"""`brainmri-desktop [PATH ...]`: the application's entry point."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..core.wording import DISCLAIMER


def dark_palette(app) -> None:
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    p = QPalette()
    for role, colour in ((QPalette.Window, "#25272b"), (QPalette.WindowText, "#e6e6e6"), (QPalette.Base, "#1c1d20"),
                         (QPalette.AlternateBase, "#2b2d31"), (QPalette.Text, "#e6e6e6"), (QPalette.Button, "#2f3136"),
                         (QPalette.ButtonText, "#e6e6e6"), (QPalette.Highlight, "#3d6fb4"),
                         (QPalette.HighlightedText, "#ffffff"), (QPalette.ToolTipBase, "#2f3136"),
                         (QPalette.ToolTipText, "#e6e6e6")):
        p.setColor(role, QColor(colour))
    app.setPalette(p)


def main(argv: list[str] | None = None) -> int:
    from ..cli import OneLineParser, add_runtime_argument, use_runtime

    parser = OneLineParser(prog="brainmri-desktop", description=f"BrainMRI: brain MRI tumour triage. {DISCLAIMER}")
    parser.add_argument("paths", nargs="*", type=Path, help="images, DICOM files or folders to open")
    parser.add_argument("--models-dir", action="append", type=Path, default=[])
    parser.add_argument("--version", action="store_true", help="print version, commit and model ids")
    parser.add_argument("--self-test", action="store_true", help="load every model, predict on generated data, exit")
    parser.add_argument("--startup-check", action="store_true",
                        help="open the main window, print the wall-clock time (Unix seconds) it was first shown, exit")
    add_runtime_argument(parser)
    args = parser.parse_args(argv)
    use_runtime(args)
    if args.version:
        from ..selftest import version_line

        print(version_line(args.models_dir))
        return 0
    if args.self_test:
        from ..selftest import self_test

        return self_test(args.models_dir)
    from PySide6.QtWidgets import QApplication

    from .first_paint import AfterFirstPaint
    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("BrainMRI")
    app.setOrganizationName("BrainMRI")
    dark_palette(app)
    window = MainWindow(models_dirs=args.models_dir)
    window.show()
    if args.startup_check:
        # Once the window has painted (a zero-time timer fires before the first paint).
        AfterFirstPaint(window, lambda: (print(f"window shown at {time.time():.3f}", flush=True), app.quit()))
    elif args.paths:
        window.open_when_shown(args.paths)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
