"""The study's model: MobileNetV2 base, GlobalAveragePooling2D, Dense(128, relu), Dense(4, softmax).

Normalisation (x / 127.5 - 1) is the first layer, so the model and every exported variant take raw
RGB pixels 0-255.
"""

from __future__ import annotations

from pathlib import Path

from edgeleuk.errors import UserError
from edgeleuk.keras_graph import BASE_NAME

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def resolve_weights(value: str | None) -> str | None:
    """`imagenet`, `none` or a path to a backbone `.weights.h5` → what Keras accepts."""
    if value is None or str(value).lower() == "none":
        return None
    if str(value).lower() == "imagenet":
        return "imagenet"
    path = Path(value)
    if not path.is_file():
        raise UserError(f"Received: --weights {value}; no such file (expected imagenet, none or a .weights.h5 path)")
    if not path.name.endswith(".h5"):
        raise UserError(f"Received: --weights {value}; expected a Keras .weights.h5 file")
    return str(path)


def build_model(alpha: float = 1.0, input_size: int = 224, weights: str | None = "imagenet",
                num_classes: int = 4, head_units: int = 128):
    """Build the classifier with a frozen base (the study's stage-1 configuration).

    Raises:
        UserError: imagenet weights cannot be downloaded (offline), or a weights file does not fit.
    """
    import keras

    if alpha not in ALPHAS:
        raise UserError(f"Received: alpha={alpha}; expected one of {', '.join(map(str, ALPHAS))}")
    shape = (input_size, input_size, 3)
    try:
        base = keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, include_top=False,
                                              weights=resolve_weights(weights) if weights else None)
    except UserError:
        raise
    except Exception as exc:  # download failures surface as many exception types
        if weights == "imagenet":
            raise UserError("could not get the ImageNet weights (no internet?). Pass a local backbone "
                            "file with --weights PATH (a MobileNetV2 *_no_top.weights.h5), or --weights none") from None
        raise UserError(f"could not load backbone weights {weights}: {exc}") from None
    base.name = BASE_NAME
    base.trainable = False
    inputs = keras.Input(shape=shape, name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    x = base(x, training=False)  # batch norm stays in inference mode, also when fine-tuning
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    x = keras.layers.Dense(head_units, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="dense_1")(x)
    return keras.Model(inputs, outputs, name="edgeleuk_mobilenetv2")


def feature_extractor(model):
    """The model up to the pooled base features (for caching stage-1 features)."""
    import keras

    return keras.Model(model.input, model.get_layer("global_average_pooling2d").output)


def head_model(model):
    """A stand-alone head that shares its layers with `model`: training it trains the model's head."""
    import keras

    features = keras.Input(shape=model.get_layer("global_average_pooling2d").output.shape[1:], name="features")
    x = model.get_layer("dense")(features)
    return keras.Model(features, model.get_layer("dense_1")(x), name="head")


def unfreeze_top(model, from_layer: str) -> int:
    """Make the base trainable from `from_layer` on, batch norm excepted; returns trainable layer count."""
    import keras

    base = model.get_layer(BASE_NAME)
    names = [layer.name for layer in base.layers]
    starts = [i for i, n in enumerate(names) if n.startswith(from_layer)]
    if not starts:
        blocks = sorted({n.split("_")[0] + "_" + n.split("_")[1] for n in names if n.startswith("block_")})
        raise UserError(f"Received: fine-tune from {from_layer!r}; expected a base layer prefix such as {blocks[-4:]}")
    base.trainable = True
    count = 0
    for i, layer in enumerate(base.layers):
        train = i >= starts[0] and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = train
        count += bool(train and layer.weights)
    return count
