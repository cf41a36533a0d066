"""The BrainMRI trainer: data, training, validation, calibration and export of model packages.

It imports the application's core (the same reading and preprocessing); the core never imports the trainer.
"""

__version__ = "0.1.0"
