"""The Keras callback that keeps a training run's state at each epoch: the learning-rate schedule, the history with
the training rate, the best epoch and early stopping, the checkpoint, and the stop for a time budget.

Its own module because it subclasses a Keras class: trainer/train.py imports it inside `fit`, so that importing the
trainer (eda, export, the command line) does not start Keras.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np


@dataclass
class EpochRules:
    """What one stage's epochs are judged by."""

    stage: str  # the stage's name, recorded in the history
    size: int  # its input size; only epochs at the run's final size can be the best
    final_size: int
    monitor: str  # the validation metric that picks the best epoch
    batch_size: int
    patience: int
    early_stopping: bool  # only the last stage stops early
    learning_rate: Callable[[int], float] | None = None  # per epoch of the run, when a schedule sets it
    deadline: float | None = None  # time.time() value a paused run must stop before


class RunState(keras.callbacks.Callback):
    """Keeps `state` (the run's dict in checkpoints/state.json) and `session` (this session's entry in it) true after
    every epoch, and saves the checkpoint through `checkpoints` (train._Checkpoints) with `trainee`'s weights.
    `paused_after` is the epoch after which the time budget stopped the run, else None."""

    def __init__(self, rules: EpochRules, state: dict, session: dict, checkpoints, trainee, log=print):
        super().__init__()
        self.rules, self.state, self.session = rules, state, session
        self.checkpoints, self.trainee, self.log = checkpoints, trainee, log
        self.paused_after: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.batch_ends = time.time(), []
        if self.rules.learning_rate is not None:
            self.model.optimizer.learning_rate.assign(self.rules.learning_rate(epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.batch_ends.append(time.perf_counter())

    def on_test_begin(self, logs=None):
        self.batch_ends.append(time.perf_counter())  # the epoch's training part ends where validation begins

    def on_epoch_end(self, epoch, logs=None):
        rules, state = self.rules, self.state
        logs = dict(logs or {})
        rate = self._images_per_second()
        state["history"].append({"epoch": epoch + 1, "stage": rules.stage, "size": rules.size,
                                 "lr": float(np.asarray(self.model.optimizer.learning_rate)),
                                 "images_per_second": rate,
                                 **{k: float(v) for k, v in logs.items() if k != "learning_rate"}})
        if rate:
            self.log(f"epoch {epoch + 1}: {rate:.0f} images/s in training")
        state["epoch"] = epoch + 1
        self._judge(epoch, float(logs.get(rules.monitor, 0.0)))
        # Kept in the checkpoint so that a resumed run reports the epochs of every session, not its own.
        seconds = time.time() - self.started
        state["epoch_seconds"] = state.get("epoch_seconds", 0.0) + seconds
        self.session["epochs"][1] = epoch + 1
        self.session["seconds"] = round(self.session["seconds"] + seconds, 1)
        self.checkpoints.save(self.trainee, state, self.model.optimizer)
        if rules.deadline and not self.model.stop_training and 2 * time.time() - self.started > rules.deadline:
            self.paused_after = epoch + 1
            self.model.stop_training = True

    def _images_per_second(self) -> float | None:
        # The first batch (which may compile) is left out: the rate is that of the loop as it runs.
        steps = len(self.batch_ends) - 2
        if steps <= 0:
            return None
        return steps * self.rules.batch_size / (self.batch_ends[-1] - self.batch_ends[0])

    def _judge(self, epoch: int, auc: float) -> None:
        """A new best epoch saves its weights; in the last stage, `patience` epochs without one stop the run."""
        rules, state = self.rules, self.state
        if auc > state["best_auc"] and rules.size == rules.final_size:
            state.update(best_auc=auc, best_epoch=epoch + 1, wait=0)
            self.checkpoints.save_weights(self.trainee, "best.weights.h5")
        elif rules.early_stopping:
            state["wait"] += 1
            if state["wait"] >= rules.patience:
                state["stopped"] = True
                self.model.stop_training = True
                self.log(f"early stopping after epoch {epoch + 1}: validation AUC has not improved for "
                         f"{rules.patience}")
