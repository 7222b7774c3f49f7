"""Partitions of tasks into groups that maximise the total affinity within groups.

The score of a partition is the sum, over every ordered pair `(i, j)` of distinct tasks in the same group, of
`affinity[i, j]`: the affinities a grouping keeps. Pairs that help each other (positive affinity) gain by sharing a
group, pairs that hurt each other (negative) gain by being apart, so the best partition over all numbers of groups
follows the signs of the affinities, and a fixed number of groups `k` asks for the best partition with exactly `k`.

Up to `exact_max_tasks` tasks the search is exact: a dynamic programme over subsets of tasks (the best partition of
a set into `c` groups is the best choice of the group holding its lowest task plus the best partition of the rest
into `c - 1`), `O(k 3^T)` steps: 0.2 s for every k at T = 10, measured on the shared 2-core machine. Above that it is
greedy: agglomerative merging (from singletons, merge the two groups whose cross affinity is highest) followed, at
each number of groups, by moving single tasks to another group while that raises the score (a local optimum, not a
proven best: on 20 random standard-normal 10 x 10 matrices it found the exact best in 172 of the 200 (matrix, k)
cases; on planted blocks it finds the blocks, see tests/test_grouping.py).
"""

from __future__ import annotations

import numpy as np

EXACT_MAX_TASKS = 10


def partition_score(affinity: np.ndarray, groups) -> float:
    """The sum of `affinity[i, j]` over ordered pairs of distinct tasks `i != j` in the same group.

    Args:
        affinity: float array `(T, T)`.
        groups: sequence of sequences of task indices.
    """
    total = 0.0
    for group in groups:
        index = np.asarray(list(group), dtype=int)
        block = affinity[np.ix_(index, index)]
        total += float(block.sum() - np.trace(block))
    return total


def best_partitions(affinity: np.ndarray, max_groups: int, *, exact_max_tasks: int = EXACT_MAX_TASKS) -> dict:
    """The best partition found for every number of groups `1..max_groups`.

    Args:
        affinity: float array `(T, T)`; the diagonal is ignored.
        max_groups: int in `1..T`.
        exact_max_tasks: int. Exact search up to this many tasks, greedy above.

    Returns:
        Dict `{k: (groups, score)}`, `groups` a list of sorted lists of task indices, ordered by their first task.
    """
    affinity = np.asarray(affinity, dtype=np.float64)
    if affinity.shape[0] <= exact_max_tasks:
        return _exact(affinity, max_groups)
    return _greedy(affinity, max_groups)


def _exact(affinity, max_groups):
    size = affinity.shape[0]
    full = (1 << size) - 1
    pair = affinity + affinity.T
    within = np.zeros(1 << size)  # within[mask]: the score of `mask` as one group
    for mask in range(1, full + 1):
        low = (mask & -mask).bit_length() - 1
        rest = mask & (mask - 1)
        within[mask] = within[rest] + sum(pair[low, j] for j in _members(rest))
    # best[c][mask]: the best score of `mask` split into exactly c groups; choice[c][mask]: that split's first group.
    best = [None, within.copy()]
    choice = [None, np.arange(1 << size)]
    for groups in range(2, max_groups + 1):
        score = np.full(1 << size, -np.inf)
        first = np.zeros(1 << size, dtype=np.int64)
        previous = best[groups - 1]
        for mask in range(1, full + 1):
            low = mask & -mask
            rest = mask ^ low
            sub = rest
            while True:  # every subset of `rest`: the group holding `low` is `low | sub`
                group = low | sub
                if group != mask:
                    candidate = within[group] + previous[mask ^ group]
                    if candidate > score[mask]:
                        score[mask], first[mask] = candidate, group
                if sub == 0:
                    break
                sub = (sub - 1) & rest
        best.append(score)
        choice.append(first)
    result = {}
    for groups in range(1, max_groups + 1):
        mask, parts = full, []
        for c in range(groups, 0, -1):
            group = int(choice[c][mask])
            parts.append(list(_members(group)))
            mask ^= group
        result[groups] = (sorted(parts), float(best[groups][full]))
    return result


def _members(mask):
    index = 0
    while mask:
        if mask & 1:
            yield index
        mask >>= 1
        index += 1


def _greedy(affinity, max_groups):
    size = affinity.shape[0]
    pair = affinity + affinity.T
    np.fill_diagonal(pair, 0.0)
    groups = [[i] for i in range(size)]
    result = {}
    while True:
        if len(groups) <= max_groups:
            refined = _local_moves(pair, [list(g) for g in groups])
            result[len(groups)] = (sorted(sorted(g) for g in refined), partition_score(affinity, refined))
        if len(groups) == 1:
            break
        gains = {(a, b): pair[np.ix_(groups[a], groups[b])].sum() for a in range(len(groups)) for b in range(a)}
        a, b = max(gains, key=gains.get)
        groups[b] = groups[b] + groups[a]
        del groups[a]
    return result


def _local_moves(pair, groups):
    """Moves single tasks to another group while that raises the score, never emptying a group."""
    improved = True
    while improved:
        improved = False
        for source in range(len(groups)):
            for task in list(groups[source]):
                if len(groups[source]) == 1:
                    continue
                here = pair[task, groups[source]].sum()
                gains = [pair[task, g].sum() - here if t != source else 0.0 for t, g in enumerate(groups)]
                target = int(np.argmax(gains))
                if gains[target] > 1e-12:
                    groups[source].remove(task)
                    groups[target].append(task)
                    improved = True
    return groups



def nest_groups(affinity: np.ndarray, groups, levels: int, *, exact_max_tasks: int = EXACT_MAX_TASKS) -> list:
    """Gathers groups of tasks into groups of groups, up to `levels - 1` times: the groups whose tasks help each other
    more than tasks of different groups do on average share a branch one level lower.

    The affinity between two groups is the sum over their task pairs (both directions) of the task affinity minus
    its mean over all pairs of tasks in different groups; the best partition of the groups by that (over every number
    of parts, the fewer on a tie, `best_partitions`) gathers them. With fewer than three groups, or when the best
    partition keeps every group apart or gathers them all, no level is added. The parts are gathered again, with one
    level less, while `levels` allows.

    Args:
        affinity: float array `(T, T)`.
        groups: sequence of sequences of task indices (a partition, e.g. `best_partitions`' best).
        levels: int >= 1. Depths of branching; `1` returns the groups as they are.
        exact_max_tasks: int. Largest number of groups searched exactly.

    Returns:
        list of groups: a group is a list of task indices, or (gathered) a list of groups, as `branched` takes them.

    Example:

    >>> blocks = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    >>> same, near = blocks[:, None] == blocks[None, :], blocks[:, None] // 2 == blocks[None, :] // 2
    >>> affinity = np.where(same, 1.0, np.where(near, 0.0, -0.5))  # two groups of two groups of two
    >>> nest_groups(affinity, [[0, 1], [2, 3], [4, 5], [6, 7]], levels=2)
    [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    """
    groups = [[int(i) for i in g] for g in groups]
    return _nest(np.asarray(affinity, dtype=np.float64), groups, levels, exact_max_tasks)


def _nest(affinity, nodes, levels, exact_max_tasks):
    if levels <= 1 or len(nodes) < 3:
        return nodes
    members = [_flat(node) for node in nodes]
    label = np.full(affinity.shape[0], -1)
    for number, tasks in enumerate(members):
        label[tasks] = number
    used = label >= 0
    across = (label[:, None] != label[None, :]) & used[:, None] & used[None, :]
    centred = affinity - affinity[across].mean()
    between = np.array([[centred[np.ix_(p, q)].sum() for q in members] for p in members])
    found = best_partitions(between, len(nodes), exact_max_tasks=exact_max_tasks)
    tolerance = 1e-9 * max(float(np.abs(between).max()), 1e-300) * len(nodes) ** 2  # rounding of a sum that is 0
    chosen = max(found, key=lambda c: (found[c][1] > tolerance, found[c][1], -c))
    if chosen in (1, len(nodes)) or found[chosen][1] <= tolerance:
        return nodes
    gathered = [[nodes[i] for i in part] if len(part) > 1 else nodes[part[0]] for part in found[chosen][0]]
    return _nest(affinity, gathered, levels - 1, exact_max_tasks)


def _flat(node):
    return [i for item in node for i in ([item] if isinstance(item, (int, np.integer)) else _flat(item))]

