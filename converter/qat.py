"""Quantization-aware fine-tuning with tensorflow-model-optimization.

Every static-ViT layer is wrapped with a custom `QuantizeConfig`
(`ViTQuantizeConfig`): its linear weights (full kernels and both low-rank
factors V, U, and the patch-embedding kernel) are fake-quantized per output
channel, symmetric, narrow range, exactly like the converter's int8 weights;
its output (the graph's token tensors and the logits) gets a learned
moving-average range. After fine-tuning, the writer uses these learned ranges
for `tokens_*` and `logits`; the op-internal points (LayerNorm outputs, q/k/v,
context, low-rank intermediates, fc1/GELU outputs, pooled) are calibrated on
the fine-tuned float weights, since they live inside the fused layers.
"""
from __future__ import annotations

import numpy as np

import common  # noqa: F401  (TF_USE_LEGACY_KERAS before tensorflow)
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from common.errors import UserError
from keras_supernet import static_vit as SV

Q = tfmot.quantization.keras
QUANTIZED_WEIGHT_SUFFIXES = ("_kernel", "_v", "_u")


def _short(name: str) -> str:
    return name.split(":")[0].split("/")[-1]


class ViTQuantizeConfig(Q.QuantizeConfig):
    """Per-channel weights of the (low-rank) linears, learned output range."""

    def get_weights_and_quantizers(self, layer):
        weights = [w for w in layer.trainable_weights
                   if _short(w.name) == "kernel" or _short(w.name).endswith(QUANTIZED_WEIGHT_SUFFIXES)]
        # the wrapper replaces these attributes by tensors, which untracks them: remember names now
        layer._qat_weight_names = [_short(w.name) for w in weights]
        return [(w, Q.quantizers.LastValueQuantizer(num_bits=8, per_axis=True, symmetric=True, narrow_range=True))
                for w in weights]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        for name, value in zip(layer._qat_weight_names, quantize_weights):
            setattr(layer, name, value)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [Q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


# The wrapper asks for output shapes; computing them statically keeps it from
# tracing the layer (with replaced weight tensors) in a scratch graph.
class _QatPatchEmbed(SV.PatchEmbed):
    def compute_output_shape(self, s):
        return (s[0], (s[1] // self.patch_size) * (s[2] // self.patch_size) + int(self.use_cls), self.embed_dim)


class _QatAttention(SV.AttentionBlock):
    def compute_output_shape(self, s):
        return s


class _QatMlp(SV.MlpBlock):
    def compute_output_shape(self, s):
        return s


class _QatHead(SV.ClassifierHead):
    def compute_output_shape(self, s):
        return (s[0], self.num_classes)


_QAT_LAYERS = {"PatchEmbed": _QatPatchEmbed, "AttentionBlock": _QatAttention, "MlpBlock": _QatMlp,
               "ClassifierHead": _QatHead}


def quantize_aware(model, initial_ranges=None) -> keras.Model:
    """The tfmot QAT model of a static ViT, starting from its weights.

    `initial_ranges` (calibrated, by tensor name) start the moving-average
    output ranges, which otherwise start at tfmot's [-6, 6] and move slowly
    (EMA decay 0.999).
    """
    if any(l.name.startswith("stem") for l in model.layers):
        raise UserError("QAT does not cover stem convolutions yet; convert this model with post-training "
                        "quantization (--qat-epochs 0)")
    def annotate(layer):
        kind = type(layer).__name__
        if kind not in _QAT_LAYERS:
            return layer.__class__.from_config(layer.get_config())
        return Q.quantize_annotate_layer(_QAT_LAYERS[kind].from_config(layer.get_config()),
                                         quantize_config=ViTQuantizeConfig())

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with Q.quantize_scope({"ViTQuantizeConfig": ViTQuantizeConfig,
                           **{c.__name__: c for c in _QAT_LAYERS.values()}}):
        qat_model = Q.quantize_apply(annotated)
    depth = sum(1 for l in model.layers if isinstance(l, SV.AttentionBlock))
    for layer in model.layers:
        name = _output_name(layer.name, depth) if layer.weights else None
        if initial_ranges and name in initial_ranges:
            variables = {_short(w.name): w for w in qat_model.get_layer(f"quant_{layer.name}").weights}
            variables["output_min"].assign(min(initial_ranges[name][0], 0.0))
            variables["output_max"].assign(max(initial_ranges[name][1], 0.0))
    return qat_model


def _output_name(layer_name: str, depth: int) -> str:
    if layer_name == "patch_embed":
        return "tokens_0"
    if layer_name == "head":
        return "logits"
    block, kind = layer_name[len("block"):].split("_")
    return f"tokens_{2 * int(block) + (1 if kind == 'attn' else 2)}"


def extract(qat_model, float_model) -> tuple:
    """(float static model with the fine-tuned weights, learned ranges of tokens_* and logits)."""
    finetuned = keras.models.clone_model(float_model)
    ranges = {}
    depth = sum(1 for l in float_model.layers if isinstance(l, SV.AttentionBlock))
    for layer in finetuned.layers:
        if not layer.weights:
            continue
        wrapper = qat_model.get_layer(f"quant_{layer.name}")
        values = {_short(w.name): w.numpy() for w in wrapper.weights}
        layer.set_weights([values[_short(w.name)] for w in layer.weights])
        ranges[_output_name(layer.name, depth)] = (float(values["output_min"]), float(values["output_max"]))
    return finetuned, ranges


def finetune(model, x_train, y_train, epochs: int = 1, batch_size: int = 128, learning_rate: float = 1e-4,
             progress: bool = True, initial_ranges=None) -> tuple:
    """QAT-fine-tune a static ViT; returns `extract`'s pair.

    `x_train`: uint8 pixels (scaled to /255 batch by batch, so large image sets
    are never held as floats) or float pixels already divided by 255.
    """
    import tensorflow as tf

    scale = 1.0 / 255.0 if np.asarray(x_train[:1]).dtype == np.uint8 else 1.0
    data = (tf.data.Dataset.from_tensor_slices((x_train, np.asarray(y_train)))
            .shuffle(4096, seed=0).batch(batch_size)
            .map(lambda x, y: (tf.cast(x, tf.float32) * scale, y)))
    qat_model = quantize_aware(model, initial_ranges)
    qat_model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat_model.fit(data, epochs=epochs, verbose=1 if progress else 0)
    return extract(qat_model, model)
