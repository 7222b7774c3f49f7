"""`TaskProgbarLogger`: a progress bar that fits a terminal line however many tasks and metrics a model logs.

Keras's progress bar prints every logged value on every step; a multi-task model logs a loss, a weight and metrics
per task (32 values for the facial-attributes recipe, a 1,600-character line). This one prints the total `loss`
and, task by task, one figure per task while the line fits the terminal; every value still reaches `History`,
TensorBoard and the other callbacks, which receive Keras's own logs.
"""

from __future__ import annotations

import shutil

import keras

# Room the progress bar's own part takes: "  12/50 ━━━━━━━━━━━━━━━━━━━━ 1s 30ms/step".
_BAR_WIDTH = 45


class TaskProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras's progress bar showing the total loss and one figure per task, as many as fit `width` characters.

    A task's figure is its first logged metric (e.g. `smiling_accuracy`, `age_mae`), or its loss when it logs
    none. The epoch's last line adds the validation twin of each shown value. `MultiTaskModel.fit` adds this
    logger when `verbose` is not 0 and no `ProgbarLogger` is given.

    Args:
        width: int or None. Line width in characters; None uses the terminal's (80 when unknown).

    Example:

    >>> logger = TaskProgbarLogger(width=90)
    >>> logger.compact({"loss": 1.0, "a_loss": 0.5, "a_accuracy": 0.75, "b_loss": 0.5, "b_mae": 2.0}, ["a", "b"])
    {'loss': 1.0, 'a_accuracy': 0.75}
    """

    def __init__(self, width: int | None = None):
        super().__init__()
        if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
            raise ValueError(f"Invalid value for `width`. Expected a positive int or None. Received: width={width!r}")
        self.width = width
        self._announced = False

    def _line_width(self) -> int:
        return self.width if self.width is not None else shutil.get_terminal_size((80, 24)).columns

    def _task_names(self) -> list[str]:
        return list(getattr(self.model, "task_names", None) or [])

    def compact(self, logs: dict | None, task_names, validation: bool = False) -> dict:
        """The values to show: `loss`, then one figure per task (and their `val_` twins) while they fit."""
        logs = dict(logs or {})
        budget = self._line_width() - _BAR_WIDTH
        names = sorted(task_names, key=len, reverse=True)  # longest first, so "age_group" is not read as "age"

        def owner(key):
            return next((t for t in names if key.startswith(t + "_")), None)

        chosen = ["loss"] + (["val_loss"] if validation else [])
        for task in task_names:
            keys = [k for k in logs if owner(k) == task and not k.endswith("_loss") and not k.endswith("_weight")]
            key = keys[0] if keys else f"{task}_loss"
            chosen += [key] + ([f"val_{key}"] if validation else [])
        shown, used = {}, 0
        for key in chosen:
            if key not in logs:
                continue
            size = len(key) + 11  # " - name: 0.1234"
            if shown and used + size > budget:
                break
            shown[key], used = logs[key], used + size
        return shown

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._announced = False

    def on_train_batch_end(self, batch, logs=None):
        shown = self.compact(logs, self._task_names())
        if self.verbose == 1 and not self._announced and logs and len(shown) < len(logs):
            self._announced = True
            print(f"Showing {len(shown)} of {len(logs)} values; History, TensorBoard and the report hold all.")
        super().on_train_batch_end(batch, shown)

    def on_test_batch_end(self, batch, logs=None):
        super().on_test_batch_end(batch, self.compact(logs, self._task_names()))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self.compact(logs, self._task_names(), validation=True))

    def on_test_end(self, logs=None):
        super().on_test_end(self.compact(logs, self._task_names()))
