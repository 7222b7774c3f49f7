"""Learned task grouping: which tasks should share layers, from their affinity in a short joint training.

- `suggest(model_or_build_fn, data)`: measures inter-task affinity (lookahead loss change, Fifty et al. 2021, or
  gradient cosine similarity) and returns a `TaskGrouping`: the groups, the affinity matrix, a heatmap and the
  branched model to build.
- `branched(inputs, features, tasks, groups)`: a trunk shared by all tasks, one branch per group, a head per task.
- `shared_features(model)`: the trunk of a model to branch from (its deepest complete shared feature vector).
- `best_partitions(affinity, max_groups)`, `partition_score(affinity, groups)`: the partition search on its own;
  `nest_groups(affinity, groups, levels)`: groups gathered into groups of groups, for branches that split twice.

See docs/grouping.md.
"""

from kmtl.grouping.branched import branched, shared_features
from kmtl.grouping.partition import best_partitions, nest_groups, partition_score
from kmtl.grouping.suggestion import TaskGrouping, suggest

__all__ = [
    "TaskGrouping", "best_partitions", "branched", "nest_groups", "partition_score", "shared_features", "suggest"
]
