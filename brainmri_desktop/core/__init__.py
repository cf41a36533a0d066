"""The Qt-free core: image I/O, preprocessing, model packages, inference and Grad-CAM.

Nothing here imports Qt or the trainer, so the command line, the trainer and the tests use it without a display.
"""
