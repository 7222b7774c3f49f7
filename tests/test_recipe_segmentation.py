"""The segmentation-classification recipe: data, model, CLI flags, and one quick run with both export signatures."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import kmtl
from kmtl.app.cli import main
from kmtl.recipes import segmentation_classification as sc


def test_registered_and_declared():
    from kmtl import recipes

    assert recipes.get("segmentation-classification") is sc.RECIPE
    settings = sc.RECIPE.settings(quick=True, mask_fraction=0.1, reconstruction=True)
    assert (settings["mask_fraction"], settings["reconstruction"], settings["image_size"]) == (0.1, True, 16)


def test_load_data_keeps_the_mask_fraction_and_adds_reconstruction_labels():
    data = sc.load_data(num_train=8, num_val=4, num_test=4, image_size=16, batch_size=8, mask_fraction=0.25,
                        reconstruction=True)
    assert [t.name for t in data.tasks] == ["lesion", "malignant", "reconstruction"]
    assert data.model_settings["channels"] == 1 and data.model_settings["image_size"] == 16
    x, y = next(iter(data.train))
    assert x["image"].shape == (8, 16, 16, 1) and y["lesion"].shape == (8, 16, 16)
    annotated = (y["lesion"].numpy() >= 0).all(axis=(1, 2))
    assert annotated.sum() == 2  # 25% of 8 training images keep their mask
    np.testing.assert_array_equal(y["reconstruction"].numpy(), x["image"].numpy())
    _, y_test = next(iter(data.test))
    assert (y_test["lesion"].numpy() >= 0).all()  # test masks are all kept, to score Dice
    only = sc.load_data(num_train=4, num_val=4, num_test=4, image_size=16, tasks=["malignant"])
    assert list(next(iter(only.train))[1]) == ["malignant"]


def test_bad_source_and_cli_flags_are_refused(capsys):
    with pytest.raises(ValueError, match="Expected 'synthetic', 'folder:PATH' or 'fashion-mnist'. Received: source='x'"):
        sc.load_data(num_train=4, num_val=4, num_test=4, image_size=16, source="x")
    with pytest.raises(SystemExit):
        main(["train", "segmentation-classification", "--mask-fraction", "1.5"])
    assert "expected a number from 0 to 1, got '1.5'" in capsys.readouterr().err
    assert main(["train", "facial-attributes", "--quick", "--mask-fraction", "0.5", "--no-export"]) == 2
    assert "mask_fraction=0.5" in capsys.readouterr().err


def test_model_layout_with_reconstruction():
    model = sc.build_model(image_size=16, widths=(4, 8), reconstruction=True)
    assert [t.name for t in model.tasks] == ["lesion", "malignant", "reconstruction"]
    assert model.task("reconstruction").auxiliary
    assert tuple(model.output["reconstruction"].shape) == (None, 16, 16, 1)
    assert "reconstruction_decoder_0_up" in {layer.name for layer in model.layers}


LOADER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    export_dir, folder, outputs_path = sys.argv[1:]
    loaded = tf.saved_model.load(export_dir)
    images = np.load(f"{folder}/in.npy")
    encoded = [open(f"{folder}/img{i}.png", "rb").read() for i in range(len(images))]
    arrays = loaded.signatures["serving_default"](image=tf.constant(images))
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    out = {f"arrays_{k}": v.numpy() for k, v in arrays.items()}
    out.update({f"bytes_{k}": v.numpy() for k, v in from_bytes.items()})
    np.savez(outputs_path, signatures=np.array(sorted(loaded.signatures)), **out)
    assert "kmtl" not in sys.modules
    print("LOADED WITHOUT KMTL")
    """
)


@pytest.mark.slow  # one quick training run, a SavedModel export and a fresh interpreter (~30 s on 2 cores)
def test_quick_run_trains_saves_plots_and_exports_both_signatures(tmp_path):
    from kmtl.app.train import train_recipe

    lines = []
    run = train_recipe("segmentation-classification", quick=True, export_dir=tmp_path / "out", verbose=0,
                       log=lines.append, reconstruction=True, mask_fraction=0.5)
    table = "\n".join(lines)
    assert "lesion" in table and "dice" in table and "iou" in table and "auroc" in table
    assert np.isfinite(run.history.history["lesion_loss"][0]) and "reconstruction_loss" in run.history.history
    assert run.export_path == tmp_path / "out" / "segmentation_classification_quick" / "1"
    grid = run.export_path / "assets.extra" / "predictions.png"  # drawn by `kmtl train`, its path printed
    assert f"Predictions grid: {grid}" in lines and grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = run.model
    data = sc.load_data(num_train=8, num_val=8, num_test=8, image_size=16, batch_size=8)
    path = sc.save_plots(model, data.test, tmp_path / "plots", num_images=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    # PNG is lossless: images already on the 0..255 grid must give the same outputs from bytes as from arrays.
    images = np.round(next(iter(data.test))[0]["image"].numpy()[:3] * 255) / 255
    expected = model.predict({"image": images}, verbose=0)
    for name, value in again.predict({"image": images}, verbose=0).items():
        np.testing.assert_allclose(value, expected[name], atol=1e-6)
    for i, image in enumerate(images):
        (tmp_path / f"img{i}.png").write_bytes(tf.io.encode_png(np.uint8(np.round(image * 255))).numpy())
    np.save(tmp_path / "in.npy", images.astype("float32"))
    result = subprocess.run([sys.executable, "-c", LOADER, str(run.export_path), str(tmp_path),
                             str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=120)
    assert "LOADED WITHOUT KMTL" in result.stdout, result.stderr[-2000:]
    with np.load(tmp_path / "out.npz") as out:
        assert sorted(out["signatures"]) == ["serving_bytes", "serving_default"]
        assert out["arrays_lesion"].shape == (3, 16, 16) and out["arrays_malignant"].shape == (3,)
        assert "arrays_reconstruction" not in out.files  # auxiliary: not exported
        np.testing.assert_allclose(out["arrays_lesion"], expected["lesion"][..., 0], atol=1e-5)
        np.testing.assert_allclose(out["arrays_malignant"], expected["malignant"][:, 0], atol=1e-5)
        for name in ("lesion", "malignant"):
            np.testing.assert_allclose(out[f"bytes_{name}"], out[f"arrays_{name}"], atol=1e-6)
