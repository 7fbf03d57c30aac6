"""QKeras quantizers -> exact fixed-point types, refusing the settings hls4ml cannot match.

The refusals follow what was measured on hls4ml 1.3.0 (shared/STACK_NOTES.md): a setting is
refused when QKeras and the generated hardware would not agree bit for bit.
"""

from __future__ import annotations

from flow.runtime.fixed import FixedType


class UnsupportedQuantizer(ValueError):
    pass


def _config(q) -> tuple[str, dict]:
    if q is None:
        return 'none', {}
    if isinstance(q, dict):
        return q['class_name'], q.get('config', {})
    return type(q).__name__, q.get_config() if hasattr(q, 'get_config') else {}


def weight_type(q, where: str) -> FixedType:
    """Type of a kernel/bias quantized with ``quantized_bits``."""
    name, c = _config(q)
    if name == 'none':
        raise UnsupportedQuantizer(
            f'{where}: no quantizer; float weights cannot be reproduced bit-exactly. '
            'Use quantized_bits(bits, integer, alpha=1).'
        )
    if name != 'quantized_bits':
        raise UnsupportedQuantizer(f'{where}: quantizer {name} is not supported by this flow; use quantized_bits(bits, integer, '
                                   'alpha=1) (or quantized_po2(bits) for a QDense kernel)')
    bits, integer = int(c['bits']), int(c.get('integer', 0))
    alpha = c.get('alpha')
    if alpha is None or isinstance(alpha, str) or float(alpha) != 1.0:
        raise UnsupportedQuantizer(
            f'{where}: quantized_bits alpha={alpha!r}; hls4ml 1.3.0 mis-scales learned/auto scales '
            '(alpha=None becomes auto_po2, stored scale 2 as 1). Use alpha=1.'
        )
    if not c.get('keep_negative', True):
        raise UnsupportedQuantizer(f'{where}: keep_negative=False is emitted as a signed type by hls4ml; keep_negative=True is required')
    if c.get('use_stochastic_rounding'):
        raise UnsupportedQuantizer(f'{where}: stochastic rounding cannot be reproduced; use use_stochastic_rounding=False')
    if integer >= bits:
        raise UnsupportedQuantizer(f'{where}: quantized_bits({bits}, {integer}) needs integer < bits')
    return FixedType(bits, integer + 1, signed=True)


def relu_type(q, where: str) -> FixedType:
    """Output type of quantized_relu(bits, integer): ap_ufixed with RND_CONV and SAT."""
    name, c = _config(q)
    if name != 'quantized_relu':
        raise UnsupportedQuantizer(f'{where}: activation {name} is not quantized_relu(bits, integer)')
    if c.get('negative_slope', 0) not in (0, 0.0) or c.get('use_sigmoid', 0) or c.get('relu_upper_bound') is not None:
        raise UnsupportedQuantizer(f'{where}: quantized_relu with negative_slope/use_sigmoid/relu_upper_bound is not supported')
    if c.get('use_stochastic_rounding'):
        raise UnsupportedQuantizer(f'{where}: stochastic rounding cannot be reproduced')
    bits, integer = int(c['bits']), int(c.get('integer', 0))
    return FixedType(bits, integer, signed=False, rounding='RND_CONV', overflow='SAT')


def sigmoid_type(q, where: str) -> FixedType:
    """Output type of quantized_sigmoid(bits): round(p * 2**bits) / 2**bits (half to even) clipped
    to [0, 1 - 2**-bits], i.e. ap_ufixed<bits, 0, AP_RND_CONV, AP_SAT>."""
    _, c = _config(q)
    if c.get('use_stochastic_rounding'):
        raise UnsupportedQuantizer(f'{where}: stochastic rounding cannot be reproduced')
    if c.get('symmetric'):
        raise UnsupportedQuantizer(f'{where}: quantized_sigmoid(symmetric=True) clips its minimum to 2^-bits, which no '
                                   'ap_fixed overflow mode does; use symmetric=False')
    return FixedType(int(c.get('bits', 8)), 0, signed=False, rounding='RND_CONV', overflow='SAT')


def tanh_type(q, where: str) -> FixedType:
    """Output type of quantized_tanh(bits): round(p * 2**(bits-1)) / 2**(bits-1) (half to even)
    clipped to [-1, 1 - 2**(1-bits)] (symmetric: [-1 + 2**(1-bits), ...]): ap_fixed<bits, 1,
    AP_RND_CONV, AP_SAT> (AP_SAT_SYM when symmetric)."""
    _, c = _config(q)
    if c.get('use_stochastic_rounding'):
        raise UnsupportedQuantizer(f'{where}: stochastic rounding cannot be reproduced')
    bits = int(c.get('bits', 8))
    if bits < 2:
        raise UnsupportedQuantizer(f'{where}: quantized_tanh needs at least 2 bits')
    return FixedType(bits, 1, rounding='RND_CONV', overflow='SAT_SYM' if c.get('symmetric') else 'SAT')


def po2_exponent_bits(q, where: str) -> int:
    """Width of the exponent hls4ml stores for each ``quantized_po2`` weight: ExponentPrecisionType
    (ap_int<bits>), next to a sign bit. The values themselves are checked by the caller."""
    name, c = _config(q)
    if name != 'quantized_po2':
        raise UnsupportedQuantizer(f'{where}: quantizer {name} is not quantized_po2')
    if c.get('use_stochastic_rounding'):
        raise UnsupportedQuantizer(f'{where}: quantized_po2 with stochastic rounding cannot be reproduced (hls4ml '
                                   're-quantizes the float weights); use use_stochastic_rounding=False')
    return int(c['bits'])


def quantized_bits_activation_type(q, where: str) -> FixedType:
    """Output type of a ``quantized_bits`` activation (QActivation, fused, or on the input):
    round(x * 2**frac) half to even, clipped to the code range, i.e. ap_fixed<bits, integer + 1,
    AP_RND_CONV, AP_SAT> (AP_SAT_SYM when symmetric; ap_ufixed<bits, integer> when keep_negative
    is False). Measured against QKeras 0.9.0 for alpha=None and alpha=1 (no scale on activations)."""
    name, c = _config(q)
    if name != 'quantized_bits':
        raise UnsupportedQuantizer(f'{where}: activation {name} is not quantized_bits')
    alpha = c.get('alpha')
    if alpha is not None and (isinstance(alpha, str) or float(alpha) != 1.0):
        raise UnsupportedQuantizer(f'{where}: quantized_bits alpha={alpha!r} scales the activation, which hls4ml does not '
                                   'model; use alpha=1')
    if c.get('use_stochastic_rounding'):
        raise UnsupportedQuantizer(f'{where}: stochastic rounding cannot be reproduced; use use_stochastic_rounding=False')
    bits, integer = int(c['bits']), int(c.get('integer', 0))
    if not c.get('keep_negative', True):
        if integer > bits:
            raise UnsupportedQuantizer(f'{where}: quantized_bits({bits}, {integer}, keep_negative=False) needs integer <= bits')
        return FixedType(bits, integer, signed=False, rounding='RND_CONV', overflow='SAT')
    if integer >= bits:
        raise UnsupportedQuantizer(f'{where}: quantized_bits({bits}, {integer}) needs integer < bits')
    return FixedType(bits, integer + 1, rounding='RND_CONV', overflow='SAT_SYM' if c.get('symmetric') else 'SAT')
