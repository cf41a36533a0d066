"""Small images, DICOM series and models that tests build for themselves: nothing real, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from brainmri_desktop.core.demo import head_image, write_series

# The test CNN's signal: a bright disc inside the head, whose radius (a share of the image's shorter side) says how sure
# the model is. The fixture (conftest.model_dir) trains it to give each kind this calibrated probability, so that its
# two operating points, 0.5 and 0.2, decide differently: a small disc is flagged at the high-sensitivity point only.
BLOB_KINDS = {"none": (None, 0.05), "small": ((0.05, 0.06), 0.35), "large": ((0.09, 0.13), 0.95)}
SMALL_BLOB, LARGE_BLOB = 0.055, 0.11  # the radii the tests draw, inside the trained ranges


def blob_image(kind: str, h: int = 64, w: int = 64, seed: int = 0, radius: float | None = None) -> np.ndarray:
    """A head with no disc, a small or a large one (BLOB_KINDS) at a place drawn from `seed`; `radius` (a share of the
    shorter side) overrides the kind's middle."""
    rng = np.random.default_rng(seed)
    tumour = None
    if kind != "none":
        share = radius if radius is not None else {"small": SMALL_BLOB, "large": LARGE_BLOB}[kind]
        tumour = (int(h * rng.uniform(0.4, 0.6)), int(w * rng.uniform(0.4, 0.6)), min(h, w) * share)
    return head_image(h, w, tumour=tumour, seed=seed)


def train_blob_cnn(temperature: float, logit_bias: float, seed: int = 0, n: int = 450, input_size: int = 32):
    """The small CNN of the test packages, trained for a few seconds to see the bright disc (BLOB_KINDS): each kind's
    target is its probability taken back through the package's calibration, so what the app shows is that value."""
    import keras

    from brainmri_desktop.core.inference import logit, sigmoid
    from brainmri_desktop.core.io.slices import Slice
    from brainmri_desktop.core.preprocess import PreprocessSpec, preprocess_slice, to_model_input
    from trainer.architectures import ArchConfig, build_cnn

    rng = np.random.default_rng(seed)
    spec, images, targets = PreprocessSpec(input_size=input_size), [], []
    for k in range(n):
        kind = tuple(BLOB_KINDS)[k % 3]
        h = int(rng.integers(40, 140))
        w = int(h * rng.uniform(0.75, 1.33))
        radii, probability = BLOB_KINDS[kind]
        img = blob_image(kind, h, w, int(rng.integers(1 << 30)), radius=rng.uniform(*radii) if radii else None)
        images.append(preprocess_slice(Slice(Path(f"{kind}{k}.png"), img), spec).image)
        targets.append(float(sigmoid(temperature * (logit(probability) - logit_bias))))
    x = to_model_input(np.stack(images), spec.model_normalisation)
    keras.utils.set_random_seed(seed)
    model = build_cnn(ArchConfig(cnn_widths=(8, 16, 16), cnn_dropouts=(0.0, 0.0, 0.0), head_dropout=0.0))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9  # at Keras's 0.99 the moving statistics lag a run this short and skew inference
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x, np.array(targets, np.float32), batch_size=64, epochs=20, verbose=0)
    return model


def write_labelled_folder(root: Path, n_per_class: int = 12, size: int = 64, seed: int = 0) -> Path:
    """A `yes/` + `no/` folder: tumour images carry a bright disc at a random place inside the head."""
    rng = np.random.default_rng(seed)
    for label in ("yes", "no"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            tumour = None
            if label == "yes":
                tumour = (int(rng.integers(size * 0.35, size * 0.65)), int(rng.integers(size * 0.35, size * 0.65)),
                          int(rng.integers(4, 8)))
            img = head_image(size, size, tumour=tumour, seed=int(rng.integers(1 << 30)))
            cv2.imwrite(str(root / label / f"{label}{i}.png"), img)
    return root


def write_patient_folders(root: Path, patients: int = 4, slices: int = 8, size: int = 48, seed: int = 0) -> Path:
    """The LGG layout: `<patient>/<slice>.png` with `<slice>_mask.png` (255 = tumour); every other slice has a disc."""
    rng = np.random.default_rng(seed)
    for p in range(patients):
        folder = root / f"P{p:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(slices):
            mask = np.zeros((size, size), np.uint8)
            tumour = None
            if i % 2:
                tumour = (int(rng.integers(size * 0.35, size * 0.65)), int(rng.integers(size * 0.35, size * 0.65)),
                          int(rng.integers(4, 8)))
                cv2.circle(mask, (tumour[1], tumour[0]), tumour[2], 255, -1)
            cv2.imwrite(str(folder / f"P{p:02d}_{i}.png"), head_image(size, size, tumour=tumour,
                                                                      seed=int(rng.integers(1 << 30))))
            cv2.imwrite(str(folder / f"P{p:02d}_{i}_mask.png"), mask)
    return root


def write_dicom_series(folder: Path, n: int = 6, size: int = 64, description: str = "T1 synthetic",
                       patient=("Synthetic^Patient", "SYN-0001"), shuffle: bool = True, tumour_slices=(),
                       small_tumour_slices=(), extra: dict | None = None) -> list[Path]:
    """The demo's series. `tumour_slices` (0-based, in position order) carry the demo's disc, a large one to the test
    CNN (a tenth of the side); `small_tumour_slices` a small one (SMALL_BLOB), in the same place and brightness."""
    paths = write_series(folder, n=n, size=size, description=description, patient=patient, reverse=shuffle,
                         tumour_slices=tumour_slices, extra=extra)
    if small_tumour_slices:
        import pydicom

        yy, xx = np.mgrid[0:size, 0:size]
        disc = (yy - int(size * 0.42)) ** 2 + (xx - int(size * 0.58)) ** 2 <= (size * SMALL_BLOB) ** 2
        for path in paths:
            ds = pydicom.dcmread(path)
            if ds.InstanceNumber - 1 in small_tumour_slices:
                pixels = ds.pixel_array.copy()
                pixels[disc] = 250 * 8  # the demo's disc: 250 on its 8-times scale
                ds.PixelData = pixels.tobytes()
                ds.save_as(path)
    return paths


def bright_spot_model(threshold: float = 0.8):
    """A model whose logit depends only on pixels brighter than `threshold` (after preprocessing): its Grad-CAM must
    light up exactly where those pixels are."""
    import keras

    inputs = keras.Input((None, None, 3), name="image")
    feat = keras.layers.Conv2D(1, 1, activation="relu", name="feat")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(feat)
    logit = keras.layers.Dense(1, name="logit")(pooled)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="prob")(logit))
    model.get_layer("feat").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.array([-threshold], np.float32)])
    model.get_layer("logit").set_weights([np.array([[50.0]], np.float32), np.array([-1.0], np.float32)])
    return model
