"""Unquantized Keras layers (Dense, Conv2D, ReLU), deployed as hls4ml deploys them: the float kernel
and bias cast to the precision the config gives (``weight``/``bias`` per layer, else the model-wide
``default_precision``, hls4ml's ``ap_fixed<16,6>``), the result in that precision too.

How hls4ml 1.3.0 casts a float weight: its writer prints every value with as many decimals as the
type has fraction bits (``WeightVariable.precision_fmt``, ``'{:.10f}'`` for ap_fixed<16,6>), and the
C++ initializes the ``ap_fixed`` from that literal (a double) with the type's quantization mode: AP_TRN
(toward minus infinity) unless the type names another. ``hls_codes`` computes exactly that from the
decimal string (a value within half a decimal of the next grid point is printed as that point, so it
does not truncate down; checked against Xilinx's ap_fixed in tests/test_float_layers.py). The C simulation reads the same text through a float, which can round such a
literal differently; so the model hls4ml converts gets the cast values themselves (``deploy rewrite``),
which every path reads exactly: reference == C simulation by construction. The float Keras model
differs by the cast: verify reports that deviation in LSBs, never as exact."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from flow.export.conv import _window_geometry
from flow.export.registry import Overrides, UnsupportedModel, _no_override, deploy_rewrite, exporter
from flow.export.types import exact_accum_type
from flow.runtime.fixed import MAX_WIDTH, FixedType, _round_shift
from flow.runtime.ref_conv import Conv2D
from flow.runtime.ref_layers import Dense, ReLU, sum_bound

FLOAT32_SIGNIFICAND = 24  # a cast value of more significant bits would not survive hls4ml's float32 arrays


def hls_codes(values, t: FixedType, where: str) -> np.ndarray:
    """The codes of ``t`` that hls4ml's C++ holds for these float weights: each value printed with
    max(0, frac) decimals (its writer), then cast to ``t`` with its rounding mode. A value that
    ``t``'s range cannot hold is refused where ``t`` wraps (hls4ml's default AP_WRAP would silently
    wrap it), saturated where ``t`` saturates."""
    decimals = max(0, t.frac)
    flat = np.ravel(np.asarray(values, dtype=np.float32))
    guarded = np.empty(flat.shape, dtype=np.int64)
    limit = 1 << (MAX_WIDTH - 2)
    for i, v in enumerate(flat):
        # the literal as the C++ compiler reads it (the nearest double), in LSBs of t
        q = Fraction(float(f'{float(v):.{decimals}f}')) * Fraction(2) ** t.frac
        floor = q.numerator // q.denominator
        rest = q - floor
        # rounding needs only whether the rest is 0, below, at or above the half: two guard bits hold that
        guard = 0 if rest == 0 else 1 if rest < Fraction(1, 2) else 2 if rest == Fraction(1, 2) else 3
        guarded[i] = max(-limit, min(limit, floor)) * 4 + guard  # clamped far outside any type: refused below
    codes = _round_shift(guarded, 2, t.rounding)
    bad = (codes < t.min_code) | (codes > t.max_code)
    if t.overflow == 'WRAP' and bad.any():
        i = int(np.argmax(bad))
        raise UnsupportedModel(f'{where}: the float weight {float(flat[i])!r} is outside the range of {t.hls()}, which '
                               'hls4ml would wrap; give the layer a wider weight (and bias) precision in the config, e.g. '
                               'layers: {name: {weight: "ap_fixed<16,8>"}}, or a saturating one (AP_SAT)')
    return t.from_codes(codes, t.frac).reshape(np.shape(values))


def _types(layer, ov: Overrides):
    w_t = FixedType.parse(ov.weight or ov.default)
    b_t = FixedType.parse(ov.bias or ov.weight or ov.default)
    for what, t in (('weight', w_t), ('bias', b_t)):
        if t.width > FLOAT32_SIGNIFICAND:
            raise UnsupportedModel(f"layer '{layer.name}': {what} precision {t.hls()} is wider than the {FLOAT32_SIGNIFICAND} "
                                   "bits hls4ml's float32 weight arrays hold exactly; give at most 24 bits")
    return w_t, b_t


def _float_dense_fields(layer, in_t: FixedType, ov: Overrides):
    """The Dense fields of an unquantized kernel and bias, cast as hls4ml casts them."""
    w_t, b_t = _types(layer, ov)
    kernel = layer.kernel.numpy()
    w_codes = hls_codes(kernel, w_t, f"layer '{layer.name}' kernel")
    if layer.use_bias:
        b_codes = hls_codes(layer.bias.numpy(), b_t, f"layer '{layer.name}' bias")
    else:  # hls4ml adds a zero bias (of the weight type's kind, values 0)
        b_codes = np.zeros(kernel.shape[-1], dtype=np.int64)
    acc_t = FixedType.parse(ov.accum) if ov.accum else exact_accum_type(w_codes, w_t, b_codes, b_t, in_t)
    out_t = FixedType.parse(ov.result or ov.default)
    note = (f'its float weights are cast to {w_t.hls()} (bias {b_t.hls()}) and its result to {out_t.hls()}, as hls4ml '
            'does; the float Keras layer computes without them')
    bound, frac = sum_bound(w_codes, w_t, b_codes, b_t, in_t)
    if not out_t.holds(bound, frac):  # said, not refused: it is hls4ml's convention, and data may stay in range
        note += (f'; its sums reach {float(bound * 2.0**-frac):g} in magnitude, beyond what {out_t.hls()} holds '
                 f'({"saturating" if out_t.overflow != "WRAP" else "wrapping"}): give it a wider result in the config')
    return dict(weight_type=w_t, bias_type=b_t, accum_type=acc_t, bias=b_codes, out_type=out_t, float_weights=note), w_codes


@exporter('Dense')
def export_float_dense(layer, in_t, ov):
    """Keras Dense: hls4ml's Dense with the kernel and bias cast to the config's precision."""
    kw, w_codes = _float_dense_fields(layer, in_t, ov)
    return Dense(name=layer.name, weight=w_codes, **kw)


@exporter('Conv2D')
def export_float_conv2d(layer, in_t, ov):
    """Keras Conv2D: hls4ml's Conv2D (io_stream) with the kernel and bias cast to the config's precision."""
    geometry = _window_geometry(layer, 'kernel_size')
    kw, w_codes = _float_dense_fields(layer, in_t, ov)
    return Conv2D(name=layer.name, weight=w_codes.reshape(-1, layer.filters), **geometry, **kw)


@exporter('ReLU')
def export_relu_layer(layer, in_t, ov):
    """Keras ReLU(): hls4ml's relu (exact in the input type). hls4ml's parser ignores max_value,
    negative_slope and threshold, so those are refused."""
    _no_override(layer, ov, 'accum', 'an activation has no accumulator')
    c = layer.get_config()
    if c.get('max_value') is not None or float(c.get('negative_slope') or 0) != 0 or float(c.get('threshold') or 0) != 0:
        raise UnsupportedModel(f"layer '{layer.name}' (ReLU): max_value/negative_slope/threshold are ignored by hls4ml "
                               '1.3.0; use ReLU() without them, or QActivation(quantized_relu(bits, integer)) for a bound')
    out_t = FixedType.parse(ov.result) if ov.result else in_t
    return ReLU(name=layer.name, out_type=out_t)


def _cast_copy(layer, ref):
    """The layer again with its weights replaced by the reference's cast values (exact in float32),
    for hls4ml: its writer then prints them exactly and every C++ path reads the same codes."""
    new = type(layer).from_config(layer.get_config())

    def load():
        kernel = ref.weight_type.to_float(ref.weight).reshape(layer.kernel.shape)
        new.kernel.assign(kernel.astype(np.float32))
        if layer.use_bias:
            new.bias.assign(ref.bias_type.to_float(ref.bias).astype(np.float32))

    return new, load


deploy_rewrite('Dense', 'Conv2D')(_cast_copy)
