"""`MultiTaskModel` and everything it owns.

- `model.py`: the model (tasks, compile, masked task losses, logs, `fit` with its checks, config).
- `task_state.py`: what compile derives from the tasks (losses, metrics, per-task trackers).
- `partition.py`: which variables are shared and which are a task's own; the rep-grad split.
- `gradient_step.py`: the gradient-level `train_step`, a mixin on the model; `gradients.py`: per-task gradients.
- `replicas.py`, `multi_worker.py`: `tf.distribute` with several replicas and several workers.
- `optimizers.py`: `MultiOptimizer` (per-task learning rates and optimizers).
- `nan_guard.py`, `progress.py`: the callbacks `fit` adds (also exported by `kmtl.training`).
"""

from kmtl.model.model import MultiTaskModel
from kmtl.model.multi_worker import MultiWorkerSupport
from kmtl.model.nan_guard import TaskNaNGuard
from kmtl.model.optimizers import MultiOptimizer
from kmtl.model.progress import TaskProgbarLogger

__all__ = ["MultiOptimizer", "MultiTaskModel", "MultiWorkerSupport", "TaskNaNGuard", "TaskProgbarLogger"]
