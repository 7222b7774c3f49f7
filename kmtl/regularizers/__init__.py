"""Penalties that tie variables of several layers together (soft sharing and relatives).

A Keras `Regularizer` sees one variable. Multi-task penalties compare the variables of several layers — task
towers, task heads — so kmtl has `Penalty` (in `base`): a small layer-like object that names the layers it reads, is
attached to a `MultiTaskModel` (`MultiTaskModel(..., penalties=[...])`, which builders do for you), adds its value
to the training loss, and is saved with the model (config and any state it keeps).

- `soft_sharing`: `SoftSharingL2`, the towers' squared distance to their mean.
- `low_rank`: `TraceNorm`, nuclear norms of the stacked task weights (last-axis, Tucker and tensor-train).
- `structured`: `GroupLasso` (block sparsity), `MeanRegularized` (task clusters), `TaskRelationshipPrior` (a
  learned task covariance, with its `TaskCovarianceUpdater` callback).
"""

from kmtl.regularizers.base import Penalty
from kmtl.regularizers.low_rank import TraceNorm
from kmtl.regularizers.soft_sharing import SoftSharingL2
from kmtl.regularizers.structured import GroupLasso, MeanRegularized, TaskCovarianceUpdater, TaskRelationshipPrior

__all__ = [
    "GroupLasso",
    "MeanRegularized",
    "Penalty",
    "SoftSharingL2",
    "TaskCovarianceUpdater",
    "TaskRelationshipPrior",
    "TraceNorm",
]
