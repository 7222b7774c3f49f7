"""The work of the gradient-level train step: each task's backward pass goes through its own head only.

One task's gradient taken from an entry of the joined loss vector also ran, with zeros, back through every other
task's loss and head: T backward passes through T heads each. Counted here by the matrix products in the traced step,
which grow linearly in T when each pass goes through one head and quadratically when it goes through all of them.
"""

import pytest
import tensorflow as tf

import kmtl
from tiny import tiny_data, tiny_model


def _matmuls(num_tasks, weighting):
    tasks = [kmtl.Task(f"t{i}", "regression") for i in range(num_tasks)]
    model = tiny_model(weighting, tasks=tasks, head_units=(3, 3))
    x, y = tiny_data(tasks, n=8)
    data = (tf.constant(x), {name: tf.constant(value) for name, value in y.items()})
    graph = tf.function(model.train_step).get_concrete_function(data).graph
    return sum(op.type == "MatMul" for op in graph.get_operations())


@pytest.mark.slow
@pytest.mark.parametrize("rep_grad", [False, True])
def test_matrix_products_grow_linearly_with_tasks(rep_grad):
    counts = [_matmuls(t, kmtl.weighting.PCGrad(seed=0, rep_grad=rep_grad)) for t in (2, 3, 4)]
    # count(T) = a + b T: the second difference is zero. Through every head it was 2 x (products per head pass).
    assert counts[2] - 2 * counts[1] + counts[0] == 0, counts
