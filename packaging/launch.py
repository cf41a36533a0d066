"""Entry point of the frozen application (PyInstaller needs a script, not a console-script entry)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # The window's model runs in a child process (brainmri_desktop/core/engine.py), which a frozen build starts by
    # running this executable again: freeze_support hands that run to multiprocessing instead of the application.
    multiprocessing.freeze_support()
    from brainmri_desktop.ui.app import main

    sys.exit(main())
