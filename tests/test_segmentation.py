"""Per-pixel tasks: Task(per_pixel=True), Dice losses, Dice/IoU metrics, pixel heads and the U-Net builder."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import kmtl
from kmtl.losses import DiceCrossEntropy, DiceLoss, masked_loss, resolve_loss
from kmtl.metrics import DiceScore, resolve_metrics
from kmtl.model.task_state import update_metric

SEG = kmtl.Task("lesion", "binary", per_pixel=True, loss=DiceLoss(smooth=0.0))


# === Task ===


def test_per_pixel_task_defaults_and_round_trip():
    task = kmtl.Task("organ", "multiclass", num_classes=3, per_pixel=True)
    assert task.metrics == ["dice", "mean_iou"]
    assert kmtl.Task("lesion", "binary", per_pixel=True).metrics == ["dice", "iou"]
    assert repr(task) == "Task('organ', 'multiclass', num_classes=3, per_pixel=True)"
    assert kmtl.Task.from_config(task.get_config()) == task
    task.validate_labels(np.array([[[0, 2], [-1, 1]]]))
    task.validate_labels(np.zeros((2, 4, 4, 1)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "multilabel", "num_labels": 2}, "per_pixel` applies to binary, multiclass and regression"),
        ({"kind": "binary", "per_step": True}, "per_step=True, per_pixel=True"),
        ({"kind": "binary", "per_pixel": "yes"}, "Expected a bool. Received: per_pixel='yes'"),
    ],
)
def test_per_pixel_task_refuses_bad_options(kwargs, match):
    kwargs = {"per_pixel": True, **kwargs}
    with pytest.raises(ValueError, match=match):
        kmtl.Task("seg", **kwargs)


def test_per_pixel_labels_need_image_axes():
    with pytest.raises(ValueError, match=r"labels must have shape \(batch, height, width\).*Received shape \(batch, 4\)"):
        kmtl.Task("seg", "binary", per_pixel=True).validate_label_spec((None, 4), "int32")
    with pytest.raises(ValueError, match="expected values in \\[0, 1\\]"):
        kmtl.Task("seg", "binary", per_pixel=True).validate_labels(np.array([[[0, 2]]]))


# === Dice loss ===

TRUE = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], dtype="float32")  # 2 images, 2x2 masks
PRED = np.array([[[0.8, 0.6], [0.2, 0.0]], [[0.5, 0.5], [0.0, 0.0]]], dtype="float32")[..., None]


def test_dice_loss_by_hand():
    # image 1: 1 - 2*(0.8+0.6) / (2 + 1.6) = 1 - 2.8/3.6; image 2: 1 - 2*0.5 / (1 + 1.0) = 0.5
    expected = np.mean([1 - 2.8 / 3.6, 0.5])
    value = masked_loss(SEG, resolve_loss(SEG.loss), TRUE, PRED)
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
    # Called directly (every pixel), the same; with smooth=0 it is Keras's Dice per image.
    np.testing.assert_allclose(float(DiceLoss(smooth=0.0)(TRUE, PRED)), expected, rtol=1e-6)
    keras_dice = keras.losses.Dice(axis=(1, 2, 3))(TRUE[..., None], PRED)
    np.testing.assert_allclose(float(keras_dice), expected, rtol=1e-5)


def test_dice_loss_smooth_and_multiclass_by_hand():
    # smooth 1: image 1 (2*1.4 + 1) / (3.6 + 1), image 2 (2*0.5 + 1) / (2 + 1)
    task = kmtl.Task("lesion", "binary", per_pixel=True, loss=DiceLoss(smooth=1.0))
    expected = np.mean([1 - 3.8 / 4.6, 1 - 2.0 / 3.0])
    np.testing.assert_allclose(float(masked_loss(task, resolve_loss(task.loss), TRUE, PRED)), expected, rtol=1e-6)
    # Multiclass, one 1x2 image, classes 0 and 1: p = [[0.75, 0.25], [0.5, 0.5]], truth [0, 1].
    task = kmtl.Task("organ", "multiclass", num_classes=2, per_pixel=True, loss=DiceLoss(smooth=0.0))
    probs = np.array([[[[0.75, 0.25], [0.5, 0.5]]]], dtype="float32")
    dice0, dice1 = 2 * 0.75 / (1 + 1.25), 2 * 0.5 / (1 + 0.75)
    value = masked_loss(task, resolve_loss(task.loss), np.array([[[0, 1]]]), probs)
    np.testing.assert_allclose(float(value), 1 - (dice0 + dice1) / 2, rtol=1e-6)


def test_partly_annotated_mask_counts_labelled_pixels_only():
    labels = TRUE.copy()
    labels[0, 1, 0] = -1  # unlabelled pixel predicted 0.2: image 1 becomes 1 - 2.8 / (2 + 1.4)
    value = masked_loss(SEG, resolve_loss(SEG.loss), labels, PRED)
    np.testing.assert_allclose(float(value), np.mean([1 - 2.8 / 3.4, 0.5]), rtol=1e-6)


def test_dice_crossentropy_by_hand():
    task = kmtl.Task("lesion", "binary", per_pixel=True, loss=DiceCrossEntropy(smooth=0.0, crossentropy_weight=0.5))
    labels = TRUE.copy()
    labels[1] = -1  # image 2 missing: Dice over image 1, cross-entropy over its 4 pixels
    p = np.clip(PRED[0, ..., 0].reshape(-1), 1e-7, 1 - 1e-7)
    y = TRUE[0].reshape(-1)
    ce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    value = masked_loss(task, resolve_loss(task.loss), labels, PRED)
    np.testing.assert_allclose(float(value), (1 - 2.8 / 3.6) + 0.5 * ce, rtol=1e-5)


@pytest.mark.parametrize("loss", [DiceLoss(), DiceCrossEntropy()])
def test_missing_mask_changes_nothing_in_loss_or_gradient(loss):
    task = kmtl.Task("lesion", "binary", per_pixel=True, loss=loss)
    fn = resolve_loss(loss)
    rng = np.random.default_rng(0)
    pred = tf.Variable(rng.uniform(0.05, 0.95, (3, 4, 4, 1)).astype("float32"))
    labels = (rng.random((3, 4, 4)) > 0.5).astype("int32")
    missing = labels.copy()
    missing[1] = -1  # image 2's mask is missing
    with tf.GradientTape(persistent=True) as tape:
        with_missing = masked_loss(task, fn, missing, pred)
        without = masked_loss(task, fn, labels[[0, 2]], tf.gather(pred, [0, 2]))
    np.testing.assert_allclose(float(with_missing), float(without), atol=1e-6)
    grad = tape.gradient(with_missing, pred).numpy()
    grad_without = tf.convert_to_tensor(tape.gradient(without, pred)).numpy()  # gather gives IndexedSlices
    np.testing.assert_allclose(grad, grad_without, atol=1e-6)
    assert np.all(grad[1] == 0.0)


def test_missing_mask_changes_nothing_in_model_gradient():
    # A conv model without batch statistics: the segmentation loss's gradient on every weight is that of the batch
    # without the unannotated image.
    task = kmtl.Task("lesion", "binary", per_pixel=True, loss=DiceCrossEntropy())
    image = keras.Input((8, 8, 1))
    model = kmtl.builders.unet(image, [task, kmtl.Task("kind", "binary")], widths=(2, 4), batch_norm=False)
    rng = np.random.default_rng(1)
    x = rng.random((3, 8, 8, 1)).astype("float32")
    labels = (rng.random((3, 8, 8)) > 0.5).astype("int32")
    labels[2] = -1
    fn = resolve_loss(task.loss)
    with tf.GradientTape(persistent=True) as tape:
        full = masked_loss(task, fn, labels, model(x)["lesion"])
        kept = masked_loss(task, fn, labels[:2], model(x[:2])["lesion"])
    np.testing.assert_allclose(float(full), float(kept), atol=1e-6)
    for a, b in zip(tape.gradient(full, model.trainable_variables), tape.gradient(kept, model.trainable_variables)):
        if a is None:
            assert b is None
            continue
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_dice_losses_round_trip_config():
    loss = DiceCrossEntropy(smooth=0.5, crossentropy_weight=2.0)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (type(again), again.smooth, again.crossentropy_weight) == (DiceCrossEntropy, 0.5, 2.0)
    with pytest.raises(ValueError, match="Received: smooth=-1"):
        DiceLoss(smooth=-1)


# === Metrics ===


def test_dice_and_iou_metrics_by_hand_over_labelled_pixels():
    task = kmtl.Task("lesion", "binary", per_pixel=True)
    dice, iou = resolve_metrics(task)
    assert (dice.name, iou.name) == ("lesion_dice", "lesion_iou")
    labels = TRUE.astype("int32").copy()
    labels[0, 1, 0] = -1
    pred = PRED.copy()
    pred[0, 1, 0] = 0.9  # a false positive on an unlabelled pixel: not counted
    for metric in (dice, iou):
        update_metric(task, metric, labels, pred, None)
    # Thresholded at 0.5: image 1 TP 2; image 2 TP 1, FP 1 (0.5 >= 0.5). TP 3, FP 1, FN 0.
    np.testing.assert_allclose(float(dice.result()), 2 * 3 / (2 * 3 + 1), rtol=1e-6)
    np.testing.assert_allclose(float(iou.result()), 3 / 4, rtol=1e-6)


def test_multiclass_dice_and_mean_iou_by_hand():
    task = kmtl.Task("organ", "multiclass", num_classes=3, per_pixel=True)
    dice, iou = resolve_metrics(task)
    labels = np.array([[[0, 1, 2, -1]]])
    probs = np.eye(3, dtype="float32")[[0, 1, 1, 2]][None, None]  # predicted 0, 1, 1, 2
    for metric in (dice, iou):
        update_metric(task, metric, labels, probs, None)
    # class 0: TP1 -> 1; class 1: TP1 FP1 -> dice 2/3, IoU 1/2; class 2: FN1 -> 0.
    np.testing.assert_allclose(float(dice.result()), (1 + 2 / 3 + 0) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(iou.result()), (1 + 1 / 2 + 0) / 3, rtol=1e-6)


def test_binary_dice_score_counts_both_classes_by_hand():
    # Weighted pixels (0 = unlabelled): truth 1 1 0 0 1, guess 1 0 1 0 1, weights 1 2 1 1 0.
    metric = DiceScore(target_class_ids=[0, 1])
    metric.update_state([1, 1, 0, 0, 1], [0.9, 0.1, 0.6, 0.2, 0.8], sample_weight=[1, 2, 1, 1, 0])
    # Foreground: TP 1, FP 1, FN 2; background: TP 1, FP 2, FN 1.
    np.testing.assert_allclose(metric.true_positives.numpy(), [1, 1])
    np.testing.assert_allclose(metric.false_positives.numpy(), [2, 1])
    np.testing.assert_allclose(metric.false_negatives.numpy(), [1, 2])
    np.testing.assert_allclose(float(metric.result()), (2 / 5 + 2 / 5) / 2, rtol=1e-6)


def test_dice_score_config_and_errors():
    metric = DiceScore(num_classes=4, target_class_ids=[1, 3], name="d")
    assert DiceScore.from_config(metric.get_config()).target_class_ids == [1, 3]
    with pytest.raises(ValueError, match="Received: num_classes=1"):
        DiceScore(num_classes=1)


# === Heads and builder ===


def test_pixel_head_shapes_and_errors():
    maps = keras.Input((8, 8, 3))
    out = kmtl.heads.task_head(kmtl.Task("recon", "regression", units=3, per_pixel=True), maps, [4])
    assert tuple(out.shape) == (None, 8, 8, 3)
    with pytest.raises(ValueError, match="is per_pixel: its head reads a feature map"):
        kmtl.heads.task_head(kmtl.Task("seg", "binary", per_pixel=True), keras.Input((8,)))
    with pytest.raises(ValueError, match="declare the task with per_pixel=True"):
        kmtl.heads.task_head(kmtl.Task("seg", "binary"), maps)


def test_unet_builder_outputs_and_autoencoder_decoder():
    tasks = [
        kmtl.Task("lesion", "multiclass", num_classes=3, per_pixel=True),
        kmtl.Task("kind", "binary"),
        kmtl.Task("recon", "regression", units=1, per_pixel=True, auxiliary=True),
    ]
    model = kmtl.builders.unet(keras.Input((8, 8, 1), name="image"), tasks, widths=(2, 4, 8),
                               autoencoder_tasks=["recon"])
    shapes = {k: tuple(v.shape) for k, v in model.output.items()}
    assert shapes == {"lesion": (None, 8, 8, 3), "kind": (None, 1), "recon": (None, 8, 8, 1)}
    names = {layer.name for layer in model.layers}
    assert "recon_decoder_0_up" in names and "recon_decoder_0_skip" not in names and "decoder_0_skip" in names
    classifier = kmtl.builders.unet(keras.Input((8, 8, 1)), [kmtl.Task("kind", "binary")], widths=(2, 4))
    assert not any(layer.name.startswith("decoder") for layer in classifier.layers)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"widths": (2, 4, 8, 16)}, "divisible by 8. Received: image shape \\(None, 12, 12, 1\\)"),
        ({"autoencoder_tasks": ["kind"]}, "Expected names of per-pixel tasks \\['seg'\\]. Received: \\['kind'\\]"),
        ({"widths": ()}, "widths"),
        ({"batch_norm_momentum": 1.0}, "Expected a float in \\(0, 1\\). Received: batch_norm_momentum=1.0"),
    ],
)
def test_unet_builder_refuses_bad_arguments(kwargs, match):
    tasks = [kmtl.Task("seg", "binary", per_pixel=True), kmtl.Task("kind", "binary")]
    with pytest.raises(ValueError, match=match):
        kmtl.builders.unet(keras.Input((12, 12, 1)), tasks, **kwargs)


def test_missing_masks_train_the_classifier_only():
    # Every mask missing: the segmentation head gets no gradient, the classifier still trains.
    tasks = [kmtl.Task("seg", "binary", per_pixel=True, loss=DiceCrossEntropy()), kmtl.Task("kind", "binary")]
    model = kmtl.builders.unet(keras.Input((8, 8, 1)), tasks, widths=(2, 4))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    head = model.get_layer("seg").kernel.numpy().copy()
    classifier = model.get_layer("kind").kernel.numpy().copy()
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    logs = model.train_on_batch(x, {"seg": -np.ones((4, 8, 8), "int32"), "kind": np.array([0, 1, 0, 1.0])},
                                return_dict=True)
    assert logs["seg_loss"] == 0.0
    np.testing.assert_array_equal(model.get_layer("seg").kernel.numpy(), head)
    assert not np.allclose(model.get_layer("kind").kernel.numpy(), classifier)
