"""Facts about the Keras graph that train, evaluate and export all read: the OOD feature outputs
and the cost of one image. The model is built in train.model; this module only inspects one."""

from __future__ import annotations

BASE_NAME = "mobilenetv2_base"

FIELD_LAYER = "block_12_add"  # last 14×14 block: stain, texture and cell size still show there


def with_features(model):
    """The same model with the OOD score's features as more outputs, for export: the head features
    (the Dense(128, relu) output) and the field features (block 12 pooled), read on the device.
    Models without those layers are returned as they are."""
    import keras

    try:
        base, normalize = model.get_layer(BASE_NAME), model.get_layer("normalize")
        head, last = model.get_layer("dense"), model.get_layer("dense_1")
        pool = model.get_layer("global_average_pooling2d")
        field_map = base.get_layer(FIELD_LAYER).output
    except ValueError:
        return model
    inner = keras.Model(base.input, [base.output, field_map], name=f"{BASE_NAME}_with_field")
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    top, field_map = inner(normalize(inputs), training=False)
    features = head(pool(top))
    field = keras.layers.GlobalAveragePooling2D(name="field_features")(field_map)
    return keras.Model(inputs, [last(features), features, field], name=model.name)


FEATURE_NAMES = ("head", "field")  # the order of with_features' extra outputs, and of the OOD components


def multiply_adds(model) -> int:
    """Multiply-accumulates of one image through the model: convolutions (depthwise included) and
    dense layers, the cost that sets inference time (MobileNetV2 1.0 at 224: about 300 M)."""
    import keras

    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            out_h, out_w, out_c = layer.output.shape[1:4]
            kh, kw = layer.kernel_size
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                total += out_h * out_w * out_c * kh * kw
            else:
                in_c = layer.input.shape[-1]
                total += out_h * out_w * out_c * kh * kw * in_c // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.input.shape[-1]) * layer.units
    return int(total)


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer
