"""Keras/QKeras model -> integer reference model, with exact types for every tensor.

One exporter per Keras class in ``EXPORTERS``; a new method adds its own entry. This is also the
deployability check: a layer without an exporter is refused here, at load time, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow.quantizers import UnsupportedQuantizer, relu_type, weight_type
from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from flow.runtime.ref_layers import Dense, Input, ReLU
from flow.runtime.reference import IntegerModel


class UnsupportedModel(ValueError):
    pass


@dataclass
class Overrides:
    """Per-layer precision the user asked for (hls4ml precision strings), or None for exact."""

    accum: str | None = None
    result: str | None = None


def exact_accum_type(w_codes, w_t: FixedType, b_codes, b_t: FixedType, in_t: FixedType) -> FixedType:
    """Smallest signed accumulator that holds every partial sum exactly, for these weights.

    Tighter than hls4ml's 'auto' (which assumes worst-case weights) and never wraps."""
    frac = max(in_t.frac + w_t.frac, b_t.frac)
    x_max = max(abs(in_t.min_code), abs(in_t.max_code))
    w = np.abs(np.asarray(w_codes, dtype=np.int64).reshape(-1, np.shape(b_codes)[0]))
    bound = (w.sum(axis=0) * x_max) << (frac - in_t.frac - w_t.frac)
    bound = bound + (np.abs(np.asarray(b_codes, dtype=np.int64)) << (frac - b_t.frac))
    width = int(bound.max()).bit_length() + 1
    return FixedType(width, width - frac, signed=True)


def _dense_types(layer, in_t: FixedType, ov: Overrides, element_mask=None):
    """Types and codes of a dense-like layer; the mask multiplies the *quantized* kernel."""
    w_t = weight_type(layer.kernel_quantizer_internal, f"layer '{layer.name}' kernel")
    if not layer.use_bias:
        raise UnsupportedModel(f"layer '{layer.name}': use_bias=False is not supported; hls4ml adds a zero bias, keep use_bias=True")
    b_t = weight_type(layer.bias_quantizer_internal, f"layer '{layer.name}' bias")
    kernel = np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy()))
    if element_mask is not None:
        kernel = kernel * element_mask
    bias = np.asarray(layer.bias_quantizer_internal(layer.bias.numpy()))
    w_codes = w_t.from_float_exact(kernel, f"layer '{layer.name}' quantized kernel")
    b_codes = b_t.from_float_exact(bias, f"layer '{layer.name}' quantized bias")
    acc_t = FixedType.parse(ov.accum) if ov.accum else exact_accum_type(w_codes, w_t, b_codes, b_t, in_t)
    res_t = FixedType.parse(ov.result) if ov.result else acc_t
    act = layer.get_config().get('activation')
    if act not in (None, 'linear'):
        raise UnsupportedModel(
            f"layer '{layer.name}': fused activation {act!r}; put the activation in its own QActivation layer"
        )
    return dict(weight_type=w_t, bias_type=b_t, accum_type=acc_t, bias=b_codes, out_type=res_t), w_codes


def export_qdense(layer, in_t, ov):
    kw, w_codes = _dense_types(layer, in_t, ov)
    return Dense(name=layer.name, weight=w_codes, **kw)


def export_block_sparse_qdense(layer, in_t, ov):
    from keras_models.masks import expand

    block_mask = layer.get_block_mask()
    kw, w_codes = _dense_types(layer, in_t, ov, expand(block_mask, layer.block_shape))
    values, index, k = pack_blocks(w_codes, block_mask, layer.block_shape)
    n_in, n_out = w_codes.shape
    return BlockSparseDense(
        name=layer.name, n_in=n_in, n_out=n_out, block=layer.block_shape, kept_per_row=k, values=values, index=index, **kw
    )


def export_qactivation(layer, in_t, ov):
    if ov.accum or ov.result:
        raise UnsupportedModel(f"layer '{layer.name}': the activation's type comes from its quantizer; remove the override")
    return ReLU(name=layer.name, out_type=relu_type(layer.quantizer, f"layer '{layer.name}'"))


EXPORTERS = {
    'QDense': export_qdense,
    'BlockSparseQDense': export_block_sparse_qdense,
    'QActivation': export_qactivation,
}


def check_deployable(model) -> None:
    """Refuse, with every reason at once, a model this flow cannot deploy bit-exactly."""
    problems = []
    for layer in _compute_layers(model):
        cls = type(layer).__name__
        if cls not in EXPORTERS:
            problems.append(f"layer '{layer.name}' ({cls}): not supported; supported layers are {sorted(EXPORTERS)}")
    if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.inputs[0].shape) != 2:
        problems.append('the model must have one flat input and one output (a chain of dense layers)')
    if problems:
        raise UnsupportedModel('model cannot be deployed:\n  ' + '\n  '.join(problems))


def _has_input_layer(model) -> bool:
    return bool(model.layers) and type(model.layers[0]).__name__ == 'InputLayer'


def _compute_layers(model) -> list:
    return model.layers[1:] if _has_input_layer(model) else model.layers


def input_layer_name(model) -> str:
    return model.layers[0].name if _has_input_layer(model) else model.input.name.split(':')[0]


def to_integer_model(model, input_type: FixedType, overrides: dict[str, Overrides] | None = None) -> IntegerModel:
    check_deployable(model)
    overrides = overrides or {}
    unknown = set(overrides) - {layer.name for layer in model.layers}
    if unknown:
        raise UnsupportedModel(f'per-layer settings name layers the model does not have: {sorted(unknown)}')
    layers = [Input(name=input_layer_name(model), out_type=input_type, shape=tuple(model.inputs[0].shape[1:]))]
    t = input_type
    for layer in _compute_layers(model):
        try:
            ref = EXPORTERS[type(layer).__name__](layer, t, overrides.get(layer.name, Overrides()))
        except UnsupportedQuantizer as e:
            raise UnsupportedModel(str(e)) from e
        layers.append(ref)
        t = ref.out_type
    return IntegerModel(layers)
