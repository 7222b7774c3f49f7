"""Shape checks shared by layers that take a list of tensors (one per task or per depth)."""


def shape_list(layer_name, input_shape, what="tensor"):
    """Returns `input_shape` as a list of tuples, or raises if it is not a non-empty list of shapes.

    Args:
        layer_name: str. The layer class name, for the error message.
        input_shape: what Keras passes to `build`/`compute_output_shape` for a list input.
        what: str. What each tensor is, e.g. "tensor, one per task".
    """
    if (
        not isinstance(input_shape, (list, tuple))
        or not input_shape
        or any(s is None or isinstance(s, int) for s in input_shape)
    ):
        raise ValueError(
            f"{layer_name} expects a list of at least one {what}. Received input shape: {input_shape}"
        )
    return [tuple(s) for s in input_shape]
