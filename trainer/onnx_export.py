"""A package's graphs for ONNX Runtime (core/onnx_graphs.py reads them), converted from its Keras model with tf2onnx.

The Grad-CAM graph needs the gradient of the logit with respect to the Grad-CAM layer's maps. TensorFlow writes that
gradient with its own gradient kernels (ReluGrad, MaxPoolGrad, ShapeN), which have no ONNX operator; the handlers
below write each as the forward operations it stands for, so the gradient becomes an ordinary ONNX graph.

Weights are stored in half precision where that is exact: the trainer already rounds a ResNet50's weights to float16
in its package, so its kernels are float16 values and a Cast at load gives them back bit for bit, at half the size.
Values that are not exact in float16 (folded batch-norm scales) stay float32, so the graph computes what Keras does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from brainmri_desktop.core.errors import ModelPackageError
from brainmri_desktop.core.inference import LoadedModel
from brainmri_desktop.core.manifest import Manifest
from brainmri_desktop.core.ood import OODDetector
from brainmri_desktop.core.onnx_graphs import (CAM, FEATURES, IMAGE, LOGIT, MAX_GRADCAM_DIFF, MAX_PROBABILITY_DIFF,
                                               SCOPE_PREFIX, OnnxGraphs)

OPSET = 17
MIN_HALF_ELEMENTS = 1024  # smaller tensors gain nothing from half precision


def _relu_grad(ctx, node, name, args):
    from tf2onnx import utils

    gradient, features = node.input
    zero = ctx.make_const(utils.make_name("zero"), np.zeros((), np.float32)).output[0]
    positive = ctx.make_node("Greater", [features, zero]).output[0]
    node.type = "Where"
    ctx.replace_inputs(node, [positive, gradient, zero])


def _max_pool_grad(ctx, node, name, args):
    """The incoming gradient scattered onto the position each window's maximum came from (ONNX MaxPool's indices,
    NCHW and flat over the whole batch), added where windows share a maximum."""
    from tf2onnx import utils

    x, _pooled, gradient = node.input
    kernel, strides = list(node.get_attr("ksize").ints)[1:3], list(node.get_attr("strides").ints)[1:3]
    same = node.get_attr("padding").s.decode() == "SAME"
    nchw = ctx.make_node("Transpose", [x], attr={"perm": [0, 3, 1, 2]}).output[0]
    pool = ctx.make_node("MaxPool", [nchw], output_count=2, attr={
        "kernel_shape": kernel, "strides": strides, "auto_pad": "SAME_UPPER" if same else "VALID"})
    grad_nchw = ctx.make_node("Transpose", [gradient], attr={"perm": [0, 3, 1, 2]}).output[0]
    shape = ctx.make_node("Shape", [nchw]).output[0]
    size = ctx.make_node("ReduceProd", [shape], attr={"keepdims": 1}).output[0]
    zeros = ctx.make_node("ConstantOfShape", [size]).output[0]
    flat = ctx.make_const(utils.make_name("flat"), np.array([-1], np.int64)).output[0]
    indices = ctx.make_node("Reshape", [pool.output[1], flat]).output[0]
    values = ctx.make_node("Reshape", [grad_nchw, flat]).output[0]
    scattered = ctx.make_node("ScatterElements", [zeros, indices, values], attr={"axis": 0, "reduction": "add"})
    back = ctx.make_node("Reshape", [scattered.output[0], shape]).output[0]
    node.type = "Transpose"
    for key in list(node.attr):
        del node.attr[key]
    node.set_attr("perm", [0, 2, 3, 1])
    ctx.replace_inputs(node, [back])


def _shape_n(ctx, node, name, args):
    to = node.get_attr_value("out_type", 6)  # tf2onnx has already turned the TensorFlow type into ONNX's (INT32)
    for i, source in enumerate(node.input):
        shape = ctx.make_node("Shape", [source]).output[0]
        ctx.replace_all_inputs(node.output[i], ctx.make_node("Cast", [shape], attr={"to": to}).output[0])
    ctx.remove_node(node.name)


GRADIENT_HANDLERS = {"ReluGrad": (_relu_grad, []), "MaxPoolGrad": (_max_pool_grad, []), "ShapeN": (_shape_n, [])}


def _half_where_exact(proto):
    """Large float32 initialisers that float16 holds exactly, stored as float16 with a Cast back (folded at load)."""
    import onnx
    from onnx import helper, numpy_helper

    casts = []
    for init in proto.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype != np.float32 or a.size < MIN_HALF_ELEMENTS:
            continue
        half = a.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), a):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}__half"))
        casts.append(helper.make_node("Cast", [f"{name}__half"], [name], to=onnx.TensorProto.FLOAT))
    for cast in reversed(casts):
        proto.graph.node.insert(0, cast)
    return proto


def _convert(function, signature) -> bytes:
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET,
                                             custom_op_handlers=GRADIENT_HANDLERS)
    return _half_where_exact(proto).SerializeToString()


@dataclass(frozen=True)
class Graphs:
    model: bytes  # model input -> logit, the Grad-CAM layer's maps, the scope layers' cell means
    gradcam: bytes  # [model input, the Grad-CAM layer's maps] -> raw Grad-CAM map, one slice at a time


def _cell_means(maps, grid: int):
    """core.ood.grid_means inside the graph: a scope layer's maps leave it as grid x grid cell means (N, grid*grid*C),
    not as maps (the CNN's first block alone is 2 MB a slice, copied out and averaged in NumPy while holding the
    interpreter's lock, which stalled the window)."""
    import tensorflow as tf

    rows, cols = (np.array_split(np.arange(n), grid) for n in maps.shape[1:3])
    return tf.concat([tf.reduce_mean(maps[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1], axis=(1, 2)) for r in rows for c in cols],
                     axis=1)


def convert(keras_model, input_size: int, gradcam_layer: str, scope_layers: tuple[str, ...], grid: int) -> Graphs:
    """Both graphs of a Keras model (on the TensorFlow backend, which traces them): the model graph takes any batch
    size, the Grad-CAM graph one slice."""
    import keras
    import tensorflow as tf

    from brainmri_desktop.core.gradcam import grad_cam

    # Shapes fixed but for the batch: a model built for any image size (the CNN) would otherwise leave the maps'
    # sizes unknown, and TensorFlow's gradients then reshape with shapes ONNX reads otherwise.
    size = (input_size, input_size, 3)
    target = keras_model.get_layer(gradcam_layer).output
    names = [LOGIT, FEATURES, *(SCOPE_PREFIX + n for n in scope_layers)]
    everything = keras.Model(keras_model.input, [keras_model.get_layer("logit").output, target,
                                                 *(keras_model.get_layer(n).output for n in scope_layers)])
    head = keras.Model([keras_model.input, target], keras_model.get_layer("logit").output)
    image = tf.TensorSpec([None, *size], tf.float32, name=IMAGE)
    # One slice at a time: TensorFlow's gradient of a pooling over a batch of unknown size reshapes with shapes that
    # ONNX's Reshape reads otherwise (a 0 copies a dimension there); the head is small, so the loop costs little.
    one_image = tf.TensorSpec([1, *size], tf.float32, name=IMAGE)
    features_model = keras.Model(keras_model.input, target)
    features = tf.TensorSpec([1, *features_model(np.zeros((1, *size), np.float32)).shape[1:]], tf.float32, name=FEATURES)

    @tf.function(input_signature=[image], autograph=False)
    def forward(x):
        logit, maps, *scope = everything(x, training=False)
        return dict(zip(names, [logit, maps, *(_cell_means(m, grid) for m in scope)]))

    @tf.function(input_signature=[one_image, features], autograph=False)
    def cam(x, f):
        with tf.GradientTape() as tape:
            tape.watch(f)
            score = tf.reduce_sum(head([x, f], training=False))
        return {CAM: grad_cam(f, tape.gradient(score, f))}

    return Graphs(_convert(forward, forward.input_signature), _convert(cam, cam.input_signature))


GRAPH_FILE, GRADCAM_GRAPH_FILE = "model.onnx", "gradcam.onnx"


def scope_outputs(keras_model, manifest: Manifest, ood: OODDetector | None) -> tuple[tuple[str, ...], int]:
    """The layers a scope fit of this architecture reads (trainer/scope_fit.LAYERS) and those of the package's own
    fit, and the grid of cells they are averaged over: outputs of the model graph, so that `brainmri-train fit-scope`
    can fit again without a new graph."""
    from .scope_fit import LAYERS

    layers, grid = LAYERS[manifest.architecture]
    present = {layer.name for layer in keras_model.layers}
    wanted = [*layers, *(ood.layers if ood else ())]
    return tuple(dict.fromkeys(n for n in wanted if n in present)), (ood.grid if ood else grid)


def check(keras_loaded: LoadedModel, graphs: OnnxGraphs) -> dict:
    """The graphs against Keras on core.demo's reference slices; refused (ModelPackageError) beyond the bars."""
    from brainmri_desktop.core.demo import reference_slices
    from brainmri_desktop.core.gradcam import GradCAM
    from brainmri_desktop.core.inference import sigmoid
    from brainmri_desktop.core.preprocess import preprocess_values

    manifest = keras_loaded.manifest
    images = np.stack([preprocess_values(s, None, manifest.preprocessing).image for s in reference_slices()])
    onnx_loaded = LoadedModel(keras_loaded.entry, manifest, ood=keras_loaded.ood, graphs=graphs)
    probability = [sigmoid(manifest.calibrated_logit(m.logits(images))) for m in (keras_loaded, onnx_loaded)]
    maps = [GradCAM(m).input_maps(images) for m in (keras_loaded, onnx_loaded)]
    result = {"slices": "brainmri_desktop.core.demo.reference_slices()",
              "reference_probabilities": [round(float(p), 7) for p in probability[0]],
              "probability_max_diff": float(np.abs(probability[0] - probability[1]).max()),
              "gradcam_max_diff": float(np.abs(maps[0] - maps[1]).max())}
    if keras_loaded.ood is not None:
        scores = [m.scored_logits(images)[1] for m in (keras_loaded, onnx_loaded)]
        result["scope_score_max_relative_diff"] = float((np.abs(scores[0] - scores[1]) / np.abs(scores[0])).max())
    if not (result["probability_max_diff"] <= MAX_PROBABILITY_DIFF and result["gradcam_max_diff"] <= MAX_GRADCAM_DIFF):
        raise ModelPackageError(keras_loaded.entry.path, "the ONNX graphs differ from the Keras model beyond the "
                                f"bars (probability {result['probability_max_diff']:.2g}, Grad-CAM "
                                f"{result['gradcam_max_diff']:.2g}): not written")
    return result


def graph_files(keras_loaded: LoadedModel) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest naming the graphs and their check, and the graphs' bytes, for a package being written."""
    manifest = keras_loaded.manifest
    layers, grid = scope_outputs(keras_loaded.keras_model, manifest, keras_loaded.ood)
    graphs = convert(keras_loaded.keras_model, manifest.input_size, manifest.gradcam_layer, layers, grid)
    checked = check(keras_loaded, OnnxGraphs.of(graphs.model, graphs.gradcam, keras_loaded.entry.path,
                                                scope_layers=layers))
    manifest = replace(manifest, graph_file=GRAPH_FILE, gradcam_graph_file=GRADCAM_GRAPH_FILE,
                       graph_check={**checked, "scope_layers": list(layers), "scope_grid": grid})
    return manifest, {GRAPH_FILE: graphs.model, GRADCAM_GRAPH_FILE: graphs.gradcam}


def add_graphs(package: Path, out: Path, force: bool = False) -> Path:
    """`brainmri-train add-graphs`: a copy of an existing package with its graphs added, every other file as it was
    (the manifest lists the new files' hashes). The package itself is not touched; `out` may be its own folder's
    parent only with --force."""
    from brainmri_desktop.core.atomic import atomic_write_folder
    from brainmri_desktop.core.manifest import MANIFEST_NAME
    from brainmri_desktop.core.packages import ModelEntry, read_package

    package = Path(package)
    manifest = read_package(package)
    loaded = LoadedModel.load(ModelEntry(package, "dir", manifest=manifest), "keras")
    manifest, graphs = graph_files(loaded)
    target = Path(out) / manifest.id
    if target.exists() and not force:
        raise ModelPackageError(target, "a package with this id exists already (use --force to replace it)")
    contents = {name: (package / name).read_bytes() for name in manifest.files if name not in graphs}
    contents.update(graphs)
    manifest = replace(manifest, files={n: hashlib.sha256(b).hexdigest() for n, b in contents.items()})
    atomic_write_folder(target, {**contents, MANIFEST_NAME: manifest.to_json().encode("utf-8")})
    return target


def add_graphs_parser(sub) -> None:
    """`brainmri-train add-graphs`, registered by trainer/cli.py."""
    p = sub.add_parser("add-graphs", help="add ONNX Runtime graphs to a package exported without them")
    p.add_argument("package", type=Path)
    p.add_argument("--out", type=Path, help="folder to write the new package into (default: the user's models folder)")
    p.add_argument("--force", action="store_true", help="replace a package with the same id there")
    p.set_defaults(func=lambda args: _cmd_add_graphs(args))


def _cmd_add_graphs(args) -> int:
    from brainmri_desktop.core.packages import user_models_dir

    target = add_graphs(args.package, args.out or user_models_dir(), args.force)
    check_line = json.loads((target / "manifest.json").read_text())["graph_check"]
    print(f"wrote {target} (graphs against Keras: probability within {check_line['probability_max_diff']:.1e}, "
          f"Grad-CAM within {check_line['gradcam_max_diff']:.1e})")
    return 0
