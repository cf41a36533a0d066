"""The two architectures of the seed report, built as flat functional graphs with a named `logit` layer.

Both take any input size (the spatial dimensions are None), so progressive resizing trains one set of weights from a
low resolution up to the final one. The sigmoid sits in its own layer after `logit`: inference averages logits and
Grad-CAM differentiates the logit, never the saturated probability.
"""

from __future__ import annotations

from dataclasses import dataclass

GRADCAM_LAYERS = {"cnn": "block3_relu", "resnet50": "conv5_block3_out"}
# A cell-scored model reads its per-cell map off a fine layer (7x7 cells at 112 px for the ResNet50: conv5 is dropped,
# its activations peaked on the grid's top row) and Grad-CAM reads the evidence the cells score.
CELL_FEATURES = {"cnn": "block3_relu", "resnet50": "conv4_block6_out"}
CELL_EVIDENCE = "cell_evidence"
# How many input pixels a cell of that layer spans, and how the backbone rounds odd sizes (HeadCells).
_CELL_STRIDE = {"cnn": (4, "valid"), "resnet50": (16, "same")}
# Fine cells (ResNet50): conv3's grid, twice as fine as conv4's (14x14 at 112 px), where a small tumour can own a cell;
# conv4's cell features, upsampled, bring the context conv3 lacks.
FINE_CELL_FEATURES = "conv3_block4_out"
FINE_CELL_STRIDE = 8


def gradcam_layer(arch: str, chosen: str | None = None, cell_score: bool = False) -> str:
    """The layer Grad-CAM reads: for a cell-scored model the evidence its cells score; else the chosen one or the
    architecture's default."""
    if cell_score:
        return CELL_EVIDENCE
    return chosen or GRADCAM_LAYERS[arch]


@dataclass(frozen=True)
class ArchConfig:
    arch: str = "cnn"
    cnn_widths: tuple[int, ...] = (32, 64, 128)
    cnn_dropouts: tuple[float, ...] = (0.3, 0.4, 0.5)
    head_dropout: float = 0.4
    l2: float = 1e-4
    backbone_weights: str = "random"  # "imagenet", "random" or a path to a local weights file
    lesion_evidence: bool = False  # the logit also sees the peak of a per-cell tumour map on the Grad-CAM layer
    # The logit is a smooth maximum of per-cell tumour logits over the cells inside the head (issue 27): no globally
    # pooled path reaches it, so Grad-CAM of the score shows the cells that carry it.
    cell_score: bool = False
    fine_cells: bool = False  # ResNet50 cell score on conv3's grid (FINE_CELL_FEATURES)


def _head(x, keras, dropout: float):
    x = keras.layers.Dense(128, activation="relu", name="fc128")(x)
    x = keras.layers.Dropout(dropout, name="fc128_dropout")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc64")(x)
    return x


def _logit(x, features, keras, cfg: ArchConfig, reg=None):
    """The `logit` layer on the head's features; with lesion evidence, also on the highest cell of a 1x1-convolution
    tumour map over the Grad-CAM layer, so that part of the decision rests on a located finding. Trained with masks the
    map finds tumours, but Grad-CAM of the logit need not follow it: on the CNN the head's path dominated the map."""
    if cfg.lesion_evidence:
        lesion = keras.layers.Conv2D(1, 1, name="lesion")(features)
        peak = keras.layers.GlobalMaxPooling2D(name="lesion_peak")(lesion)
        x = keras.layers.Concatenate(name="evidence")([x, peak])
    return keras.layers.Dense(1, kernel_regularizer=reg, name="logit")(x)


def _cell_logit(inputs, features, keras, cfg: ArchConfig, reg=None, fine=None):
    """The image logit read from a per-cell map: the seed's dual-branch head as two per-cell branches (a 1x1 and a 3x3
    convolution, the latter letting a cell see its neighbours) merged, then 64 features per cell, zeroed outside the
    head (`cell_evidence`, Grad-CAM's layer), one tumour logit per cell (`cell_logit`, which the lesion loss
    supervises) and their smooth maximum over the head's cells (`logit`). `cell_logit` is linear in `cell_evidence`,
    so Grad-CAM of `logit` there is each inside cell's logit less the bias, over the cell count: its peak is the map's.
    With `fine` features (a grid twice as fine), the merged branches are upsampled onto that grid and a 1x1 branch of
    the fine features is added; it starts at zero, so a run begun from a coarse model's weights begins as that model
    (each coarse cell repeated over its four fine cells)."""
    from brainmri_desktop.core.cell_layers import HeadCells, MaskedLogSumExp

    from .config import model_normalisation
    from .train_graph import input_affine

    stride, padding = (FINE_CELL_STRIDE, "same") if fine is not None else _CELL_STRIDE[cfg.arch]
    # what a pixel that preprocessing blanked (0) becomes in the model's input: the normalisation's offset
    background = tuple(float(v) for v in input_affine(model_normalisation(cfg.arch))[1])
    a = keras.layers.Conv2D(128, 1, kernel_regularizer=reg, name="cell_branch_a")(features)
    b = keras.layers.Conv2D(128, 3, padding="same", kernel_regularizer=reg, name="cell_branch_b")(features)
    x = keras.layers.Add(name="cell_merge")([a, b])
    if fine is not None:
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name="cell_upsample")(x)
        c = keras.layers.Conv2D(128, 1, kernel_initializer="zeros", kernel_regularizer=reg,
                                name="cell_branch_fine")(fine)
        x = keras.layers.Add(name="cell_merge_fine")([x, c])
    x = keras.layers.ReLU(name="cell_relu")(x)
    x = keras.layers.SpatialDropout2D(cfg.head_dropout / 2, name="cell_dropout")(x)
    x = keras.layers.Conv2D(64, 1, activation="relu", kernel_regularizer=reg, name="cell_hidden")(x)
    inside = HeadCells(stride, background, padding, name="head_cells")(inputs)
    x = keras.layers.Multiply(name=CELL_EVIDENCE)([x, inside])
    z = keras.layers.Conv2D(1, 1, name="cell_logit")(x)
    return MaskedLogSumExp(name="logit")([z, inside])


def layer_name(block: int) -> str:
    return f"block{block}_relu"


def build_cnn(cfg: ArchConfig):
    import keras

    inputs = keras.Input((None, None, 3), name="image")
    x = inputs
    for i, (width, drop) in enumerate(zip(cfg.cnn_widths, cfg.cnn_dropouts), start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = features = keras.layers.ReLU(name=layer_name(i))(x)
        if cfg.cell_score and layer_name(i) == CELL_FEATURES["cnn"]:
            break
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = keras.layers.Dropout(drop, name=f"block{i}_dropout")(x)
    if cfg.cell_score:
        logit = _cell_logit(inputs, features, keras, cfg)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        x = _head(x, keras, cfg.head_dropout)
        logit = _logit(x, features, keras, cfg)
    prob = keras.layers.Activation("sigmoid", name="prob")(logit)
    return keras.Model(inputs, prob, name="brainmri_cnn")


def _dense_bn(x, keras, units: int, dropout: float, reg, name: str):
    x = keras.layers.Dense(units, kernel_regularizer=reg, name=f"{name}_dense")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)


def add_conv_l2(model, l2: float) -> None:
    """L2 on every convolution kernel of a model built elsewhere (the Keras ResNet50 has no regulariser argument).
    Keras 3 collects a variable's `regularizer` into the loss, so setting it after building is enough."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and l2 > 0:
            layer.kernel.regularizer = keras.regularizers.L2(l2)


def build_resnet50(cfg: ArchConfig):
    import keras

    inputs = keras.Input((None, None, 3), name="image")
    weights = None if cfg.backbone_weights == "random" else cfg.backbone_weights
    # input_tensor puts the backbone's layers into this graph, so Grad-CAM can reach conv5_block3_out from the input.
    base = keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=inputs)
    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None
    if cfg.cell_score:  # the backbone stops at the cells' layer: what lies above it is left out of the graph
        fine = base.get_layer(FINE_CELL_FEATURES).output if cfg.fine_cells else None
        logit = _cell_logit(inputs, base.get_layer(CELL_FEATURES["resnet50"]).output, keras, cfg, reg, fine)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(base.output)
        a = _dense_bn(x, keras, 512, cfg.head_dropout, reg, "branch_a")
        b = _dense_bn(x, keras, 512, cfg.head_dropout, reg, "branch_b")
        x = keras.layers.Add(name="branch_merge")([a, b])
        x = _dense_bn(x, keras, 256, cfg.head_dropout, reg, "head256")
        x = _dense_bn(x, keras, 128, 0.3, reg, "head128")
        logit = _logit(x, base.output, keras, cfg, reg)
    prob = keras.layers.Activation("sigmoid", name="prob")(logit)
    model = keras.Model(inputs, prob, name="brainmri_resnet50")
    add_conv_l2(model, cfg.l2)
    return model


def build(cfg: ArchConfig):
    if cfg.arch == "cnn":
        return build_cnn(cfg)
    if cfg.arch == "resnet50":
        return build_resnet50(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}")


def with_lesion_head(model, layer: str):
    """The model with a second output for training: a 1x1 convolution on the Grad-CAM `layer` that predicts, per cell,
    whether it lies in the tumour (logits). It shares every layer with `model`, which stays the classifier that is
    exported; the head is dropped with the training graph. It asks the Grad-CAM layer's features to carry the
    tumour's location, not only whatever else tells the classes (or the sources) apart."""
    import keras

    names = {l.name for l in model.layers}
    if "cell_logit" in names:  # a cell-scored model: the lesion loss supervises the cells its score reads
        lesion = keras.layers.Identity(name="lesion")(model.get_layer("cell_logit").output)
    elif "lesion" in names:  # the model's own evidence map
        lesion = model.get_layer("lesion").output
    else:
        lesion = keras.layers.Conv2D(1, 1, name="lesion")(model.get_layer(layer).output)
    return keras.Model(model.input, {"prob": model.output, "lesion": lesion}, name=f"{model.name}_with_lesion_head")


def lesion_loss(y_true, y_pred):
    """Binary cross-entropy per cell against the tumour share of the cell, averaged over images whose tumour region is
    known (channel 1 of the target): tumour slices without a mask or outline teach the head nothing."""
    import keras

    share, known = y_true[..., :1], y_true[..., 1:]
    bce = keras.ops.binary_crossentropy(share, y_pred, from_logits=True)
    return keras.ops.sum(bce * known, axis=(1, 2, 3)) / keras.ops.maximum(keras.ops.sum(known, axis=(1, 2, 3)), 1.0)


def backbone_layer_names(model) -> list[str]:
    """Names of the ResNet50 backbone's layers in order, for partial unfreezing: Keras names them conv*/pool*."""
    return [layer.name for layer in model.layers if layer.name.startswith(("conv", "pool"))]


def load_run_model(run_dir):
    """A run folder's `model.keras`, in safe mode (no code stored in the file runs), with the core's cell layers
    registered: a cell-scored model names them, and Keras finds a layer class only once its module is imported."""
    from pathlib import Path

    import keras

    from brainmri_desktop.core import cell_layers  # noqa: F401

    return keras.models.load_model(Path(run_dir) / "model.keras", compile=False, safe_mode=True)


def load_weights_by_name(model, source) -> int:
    """Copy the weights of a model package or run folder (`model.keras`) into `model`, layer by layer where the name
    and the weight shapes match; returns how many layers were copied. Raises ValueError when none match."""
    from pathlib import Path

    import keras

    from brainmri_desktop.core.packages import load_keras_model, read_package

    source = Path(source)
    if (source / "model.keras").is_file():
        donor = load_run_model(source)
    else:
        donor = load_keras_model(source, read_package(source))
    weights = {layer.name: layer.get_weights() for layer in donor.layers if layer.weights}
    copied = 0
    for layer in model.layers:
        given = weights.get(layer.name)
        if given and [w.shape for w in given] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(given)
            copied += 1
    if not copied:
        raise ValueError(f"{source}: no layer of its model matches this architecture by name and shape")
    return copied
