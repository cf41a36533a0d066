"""Entry point of the frozen application (PyInstaller needs a script, not a console-script entry)."""

import sys

from brainmri_desktop.ui.app import main

sys.exit(main())
