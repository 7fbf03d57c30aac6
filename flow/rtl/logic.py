"""Reference layers as da4ml logic, with exactly the reference's types.

Each layer kind builds its own logic (``RefLayer.rtl_logic``), given this module for the exact
casts: an accumulating layer (anything with a ``dense_weight()``) is the exact constant
matrix-vector product plus bias as a da4ml shift-and-add graph (zero weights cost nothing), wrapped
in the accumulator type and cast to the result type, as the reference computes it; ReLU, casts,
hard sigmoid/tanh and BatchNormalization have their own. A kind without (lookup-table activations
among them: da4ml 0.5.2's tables mismatched the reference in our tests) raises NoLogic; the rtl
step reports it and builds nothing.
"""

from __future__ import annotations

from decimal import Decimal
import numpy as np

from flow.runtime.fixed import FixedType
from flow.runtime.ref_layers import RefLayer
from flow.runtime.reference import IntegerModel

DA4ML_OVERFLOW = ('WRAP', 'SAT', 'SAT_SYM')


class NoLogic(ValueError):
    """A layer or type with no da4ml form (the RTL is not built; the message says which and why)."""


def _round_half_even(x, f: int):
    """AP_RND_CONV to ``f`` fractional bits as a pre-add before truncation. In codes at the value's
    own F > f bits, with s = F - f: (c + 2^(s-1) - 1 + bit_s(c)) >> s, bit_s being the result's LSB,
    rounds ties to even and everything else to nearest."""
    big_f = int(np.max(x.kif[2]))
    if big_f <= f:
        return x  # nothing to round away
    # the bit of weight 2^-f as a 1-bit signed number, 0 or -2^-f (signed: see _cast_constants)
    neg_lsb = x.quantize(1, -f, f, 'WRAP', 'TRN')
    return x + (2.0 ** -(f + 1) - 2.0**-big_f) - neg_lsb * 2.0 ** -(big_f - f)


# ap_fixed rounding mode -> (pre-add before the quantizer, the quantizer's own mode)
ROUNDING = {'TRN': (None, 'TRN'), 'RND': (None, 'RND'), 'RND_CONV': (_round_half_even, 'TRN')}


def _cast_constants(x, t: FixedType):
    """Cast the elements of ``x`` that are constants (a bias-only output, say) with the reference's
    own arithmetic. da4ml 0.5.2 folds an unsigned wrap of a constant modulo 2^(i+1) instead of 2^i;
    a constant already on ``t``'s grid and in range passes its quantizer unchanged."""
    from da4ml.trace import FixedVariable, FixedVariableArray

    out = x._vars.copy()
    flat = out.reshape(-1)
    for j, v in enumerate(flat):
        if v.low == v.high:
            value = Decimal(v.low)
            frac = 0
            while value * 2**frac != int(value * 2**frac):
                frac += 1
            code = t.from_codes(np.array([int(value * 2**frac)]), frac)[0]
            flat[j] = FixedVariable.from_const(Decimal(int(code)) / Decimal(2) ** t.frac, hwconf=v.hwconf)
    return FixedVariableArray(out, x.solver_options)


def kif(t: FixedType) -> tuple[int, int, int]:
    """da4ml's (keep_negative, integer bits without the sign, fractional bits) of ``t``."""
    k = int(t.signed)
    return k, t.integer - k, t.frac


def cast(x, t: FixedType, where: str):
    """ap_fixed's conversion to ``t`` (rounding, then overflow) as da4ml operations."""
    if t.rounding not in ROUNDING or t.overflow not in DA4ML_OVERFLOW:
        raise NoLogic(f'{where}: type {t.hls()} rounds {t.rounding} / overflows {t.overflow}; the RTL level has '
                      f'rounding {"/".join(ROUNDING)} and overflow {"/".join(DA4ML_OVERFLOW)}')
    if any(v.low == v.high for v in x._vars.reshape(-1)):
        x = _cast_constants(x, t)
    pre, mode = ROUNDING[t.rounding]
    if pre is not None:
        x = pre(x, t.frac)
    return x.quantize(*kif(t), t.overflow, mode)


def values(codes, frac: int) -> np.ndarray:
    return np.asarray(codes, dtype=np.float64) * 2.0**-frac


def finish(layer, exact_sum):
    """An accumulating layer's exact sum wrapped in its accumulator type, cast to its result type."""
    where = f'layer {layer.name!r}'
    return cast(cast(exact_sum, layer.accum_type, where + ' accumulator'), layer.out_type, where)


def unbuilt_reason(layer: RefLayer) -> str | None:
    """Why the RTL level is not built for this layer's kind (None if it can be): no tool can change it."""
    if layer.rtl_unbuilt is None:
        return None
    return (f'layer {layer.name!r} ({layer.kind}): {layer.rtl_unbuilt}; its hardware is the HLS template, checked '
            'bit-exact in C simulation by the verify step')


AUTO_WEIGHT_BITS = 32768  # rtl: auto builds networks up to this many stored weight bits (the default model: 10112)


def too_big_for_auto(im: IntegerModel, engines: list | None = None) -> str | None:
    """Why ``rtl: auto`` skips this network: da4ml's fully parallel logic, its Verilator build and
    yosys grow with the stored weight bits (174,080 bits took over 10 minutes here). ``engines``: the
    only layers built (a network without a da4ml form), whose weight bits count instead."""
    layers = im.layers[1:] if engines is None else engines
    bits = sum((layer.storage() or {}).get('weight_bits', 0) for layer in layers)
    if bits > AUTO_WEIGHT_BITS:
        what = 'networks' if engines is None else 'the time-multiplexed engines of a network without a da4ml form'
        return (f'rtl: auto builds {what} up to {AUTO_WEIGHT_BITS} stored weight bits and this one has {bits} '
                '(the RTL would take tens of minutes): set rtl: true to build it anyway')
    return None


def no_rtl(im: IntegerModel) -> str | None:
    """The first reason, whatever the tools installed, that the network has no RTL level."""
    return next((r for layer in im.layers[1:] if (r := unbuilt_reason(layer))), None)


def layer_logic(layer: RefLayer, x, in_type: FixedType):
    """``layer`` applied to the da4ml array ``x`` (values of ``in_type``)."""
    from flow.rtl import logic  # this module: the exact casts the kind's logic is written with

    if reason := unbuilt_reason(layer):
        raise NoLogic(reason)
    layer.check(in_type)
    out = layer.rtl_logic(x, in_type, logic)
    if out is not None:
        return out
    if layer.elementwise:  # sigmoid/tanh tables
        raise NoLogic(f'layer {layer.name!r} ({layer.kind}) is a lookup table: da4ml 0.5.2\'s lookup tables did not '
                      'reproduce the reference in our tests, so the RTL level covers dense-like layers, ReLU, casts and '
                      'hard sigmoid/tanh only; use hard_sigmoid/hard_tanh, or rtl: false')
    raise NoLogic(f'layer {layer.name!r} ({layer.kind}) has no da4ml form: it is neither a constant matrix-vector '
                  'product nor elementwise (the RTL level covers dense-like layers and elementwise activations)')


def _traced_input(shape, t: FixedType):
    from da4ml.trace import FixedVariableArrayInput

    inp = FixedVariableArrayInput((int(np.prod(shape)),))
    # the codes arrive on t's grid: declare the width, nothing to round or saturate
    return inp, inp.quantize(*kif(t)).reshape(*shape)


def network_comb(im: IntegerModel):
    """The whole network as one combinational da4ml graph: flat input codes in, output codes out."""
    from da4ml.trace import comb_trace

    inp, x = _traced_input(im.input.shape, im.in_type)
    t = im.in_type
    for layer in im.layers[1:]:
        x = layer_logic(layer, x, t)
        t = layer.out_type
    return comb_trace(inp, x.reshape(-1))


def layer_comb(layer: RefLayer, in_shape, in_type: FixedType):
    """One layer alone, its input quantized to ``in_type``: for per-layer resources and taps."""
    from da4ml.trace import comb_trace

    inp, x = _traced_input(in_shape, in_type)
    return comb_trace(inp, layer_logic(layer, x, in_type).reshape(-1))
