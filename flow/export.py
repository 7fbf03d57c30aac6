"""Keras/QKeras model -> integer reference model, with exact types for every tensor.

One exporter per Keras class in ``EXPORTERS``; a new method adds its own entry. This is also the
deployability check: a layer without an exporter is refused here, at load time, with the reason.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

import numpy as np

from flow.errors import BadInput
from flow.quantizers import UnsupportedQuantizer, relu_type, weight_type
from flow.runtime.fixed import FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from flow.runtime.ref_layers import Dense, Input, ReLU, sum_bound
from flow.runtime.reference import IntegerModel


class UnsupportedModel(BadInput):
    pass


# hls4ml turns layer names into C++ identifiers (defines.h, parameters.h, weights/<name>.txt)
C_IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
CPP_KEYWORDS = frozenset(
    'alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t class compl const '
    'constexpr const_cast continue decltype default delete do double dynamic_cast else enum explicit export extern '
    'false float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or '
    'or_eq private protected public register reinterpret_cast return short signed sizeof static static_assert '
    'static_cast struct switch template this thread_local throw true try typedef typeid typename union unsigned '
    'using virtual void volatile wchar_t while xor xor_eq'.split()
)
STREAM_MAX_BITS = 32  # the AXI4-Stream format carries codes in 8/16/32-bit lanes (runtime/stream.py)


@dataclass
class Overrides:
    """Per-layer precision the user asked for (hls4ml precision strings), or None for exact."""

    accum: str | None = None
    result: str | None = None


def exact_accum_type(w_codes, w_t: FixedType, b_codes, b_t: FixedType, in_t: FixedType) -> FixedType:
    """Smallest signed accumulator that holds every partial sum exactly, for these weights.

    Tighter than hls4ml's 'auto' (which assumes worst-case weights) and never wraps."""
    bound, frac = sum_bound(w_codes, w_t, b_codes, b_t, in_t)
    width = bound.bit_length() + 1
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
    try:
        acc_t = FixedType.parse(ov.accum) if ov.accum else exact_accum_type(w_codes, w_t, b_codes, b_t, in_t)
    except ValueError as e:  # wider than the int64 codes the reference computes with
        raise UnsupportedModel(
            f"layer '{layer.name}': its exact accumulator is too wide ({e}); narrow the input or weight precision"
        ) from e
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
    """Refuse, with every reason at once, a model whose structure this flow cannot deploy (the
    quantizers and types are checked by ``to_integer_model``)."""
    problems = []
    for layer in model.layers:
        if not C_IDENTIFIER.match(layer.name) or layer.name in CPP_KEYWORDS:
            fixed = re.sub(r'\W', '_', layer.name)
            fixed = fixed if C_IDENTIFIER.match(fixed) and fixed not in CPP_KEYWORDS else f'l_{fixed}'
            problems.append(f"layer name '{layer.name}' is not a C++ identifier (hls4ml generates C++ from layer names); "
                            f"rename it, e.g. to '{fixed}'")
    for layer in _compute_layers(model):
        cls = type(layer).__name__
        if cls not in EXPORTERS:
            problems.append(f"layer '{layer.name}' ({cls}): not supported; supported layers are {sorted(EXPORTERS)}")
    if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.inputs[0].shape) != 2:
        problems.append('the model must have one flat input and one output (a chain of dense layers)')
    if problems:
        sep = '\n  ' if len(problems) > 1 else ' '
        raise UnsupportedModel('model cannot be deployed:' + sep + sep.join(problems))


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
        raise UnsupportedModel(f'per-layer settings name layers the model does not have: {sorted(unknown)}; '
                               f'its layers: {[layer.name for layer in model.layers]}')
    layers = [Input(name=input_layer_name(model), out_type=input_type, shape=tuple(model.inputs[0].shape[1:]))]
    t = input_type
    for layer in _compute_layers(model):
        try:
            ref = EXPORTERS[type(layer).__name__](layer, t, overrides.get(layer.name, Overrides()))
            ref.check(t)
        except UnsupportedModel:
            raise
        except ValueError as e:  # a quantizer or type the hardware cannot reproduce exactly
            raise UnsupportedModel(str(e)) from e
        layers.append(ref)
        t = ref.out_type
    _check_streamable(layers[0], layers[-1])
    return IntegerModel(layers)


def _check_streamable(first, last) -> None:
    if first.out_type.width > STREAM_MAX_BITS:
        raise UnsupportedModel(f'input precision {first.out_type.hls()} is wider than the {STREAM_MAX_BITS}-bit codes the '
                               'accelerator stream carries; choose a narrower input_precision')
    if last.out_type.width > STREAM_MAX_BITS:
        fix = FixedType(STREAM_MAX_BITS, min(last.out_type.integer, STREAM_MAX_BITS), True, 'RND_CONV', 'SAT')  # same range
        raise UnsupportedModel(
            f"layer '{last.name}' (the output): its result type {last.out_type.hls()} is wider than the {STREAM_MAX_BITS}-bit "
            f'codes the accelerator stream carries; give it a narrower result in the config, e.g. '
            f'layers: {{{last.name}: {{result: "{fix.hls()}"}}}}'
        )


def overrides_from(cfg) -> dict[str, Overrides]:
    return {name: Overrides(lc.accum, lc.result) for name, lc in cfg.layers.items() if lc.accum or lc.result}


def reference_for(model, cfg) -> IntegerModel:
    """The integer reference of ``model`` under the flow config: the full deployability check."""
    return to_integer_model(model, FixedType.parse(cfg.input_precision), overrides_from(cfg))
