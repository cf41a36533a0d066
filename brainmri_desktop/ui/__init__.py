"""The Qt user interface: it shows and asks; the work happens in the core, off the UI thread."""
