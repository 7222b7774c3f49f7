"""Tasks: the one declaration of what a model learns, and the checks of labels and data against it.

- `task.py`: `Task` (kind, classes, loss, metrics, weight, missing-label marker) and its own label checks.
- `loss.py`: a task's loss as per-entry values (kmtl applies the masked mean).
- `labels.py`: a whole label dict checked against the tasks.
- `fit_checks.py`: the data given to `fit`/`evaluate`, checked before training.
- `batch_checks.py`: every batch's labels checked as a dataset or generator is read.
"""

from kmtl.tasks.labels import check_label_keys, validate_label_dict
from kmtl.tasks.loss import resolve_loss
from kmtl.tasks.task import KINDS, Task, validate_task_list

__all__ = ["KINDS", "Task", "check_label_keys", "resolve_loss", "validate_label_dict", "validate_task_list"]
