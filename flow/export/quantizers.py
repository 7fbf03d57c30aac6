"""QKeras quantizers -> exact fixed-point types, refusing the settings hls4ml cannot match.

The refusals follow what was measured on hls4ml 1.3.0 (shared/STACK_NOTES.md): a setting is
refused when QKeras and the generated hardware would not agree bit for bit.
"""

from __future__ import annotations

import numpy as np

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
    if name in SPARSE_ONLY_KERNELS:
        raise UnsupportedQuantizer(
            f'{where}: {name} is deployed by BlockSparseQDense only: hls4ml 1.3.0 builds a QDense {name} kernel '
            f'{SPARSE_ONLY_KERNELS[name]}. Use BlockSparseQDense(units, drop_rate=0.0, kernel_quantizer={name}(alpha=1)) '
            '(or with a mask), whose template stores the exact values {-alpha, 0, +alpha}'
        )
    if name != 'quantized_bits':
        raise UnsupportedQuantizer(f'{where}: quantizer {name} is not supported by this flow; use quantized_bits(bits, integer, '
                                   'alpha=1) (or quantized_po2(bits) for a QDense kernel)')
    bits, integer = int(c['bits']), int(c.get('integer', 0))
    alpha = c.get('alpha')
    if alpha is None or isinstance(alpha, str) or float(alpha) != 1.0:
        raise UnsupportedQuantizer(
            f'{where}: quantized_bits alpha={alpha!r}; hls4ml 1.3.0 mis-scales learned/auto scales '
            "(alpha=None becomes auto_po2, stored scale 2 as 1). Use alpha=1 (or alpha='auto_po2' on a QDense/QConv2D "
            'kernel, whose scales the flow applies exactly)'
        )
    if not c.get('keep_negative', True):
        raise UnsupportedQuantizer(f'{where}: keep_negative=False is emitted as a signed type by hls4ml; keep_negative=True is required')
    if c.get('use_stochastic_rounding'):
        raise UnsupportedQuantizer(f'{where}: stochastic rounding cannot be reproduced; use use_stochastic_rounding=False')
    # integer >= bits is a legal QKeras quantizer: multiples of 2^(integer + 1 - bits), ap_fixed<bits, integer + 1>
    return FixedType(bits, integer + 1, signed=True)


# What hls4ml 1.3.0 makes of these kernels on its own Dense (read from hls4ml/model/quantizers.py
# and backends/fpga/fpga_backend.py): why weight_type refuses them there.
SPARSE_ONLY_KERNELS = {
    'binary': 'as 1-bit XNOR codes {0, 1} (XnorPrecisionType) multiplied by +-x (product weight_binary), so alpha '
              'is lost and no weight can be 0',
    'ternary': 'as ap_int<2> values, which hold no alpha but 1 (0.5 truncates to 0, +2 wraps to -2)',
}


def _po2_alpha(name: str, c: dict, where: str) -> int:
    """log2 of a binary/ternary quantizer's alpha, which must be a fixed power of two."""
    alpha = c.get('alpha')
    fix = f'use {name}(alpha=1) or another fixed power of two (e.g. alpha=0.125)'
    if alpha is None or isinstance(alpha, str) or np.ndim(alpha) != 0:
        # alpha=None becomes 'auto_po2' inside QDense (learned per output channel); 'auto' is learned too
        raise UnsupportedQuantizer(f'{where}: {name} alpha={alpha!r} is a learned per-channel scale the flow cannot '
                                   f'deploy exactly; {fix}')
    mant, exp = np.frexp(float(alpha))
    if mant != 0.5:
        raise UnsupportedQuantizer(f'{where}: {name} alpha={alpha!r} is not a power of two, so alpha * code is not on a '
                                   f'fixed-point grid; {fix}')
    if c.get('use_stochastic_rounding'):
        raise UnsupportedQuantizer(f'{where}: stochastic rounding cannot be reproduced; use use_stochastic_rounding=False')
    return int(exp) - 1


def _sign_code_type(log2_alpha: int) -> FixedType:
    """{-a, 0, +a} with a = 2**log2_alpha: codes -1, 0, 1 in a signed 2-bit type of step a. A mask
    puts 0 among binary weights too, so binary needs the same type as ternary."""
    return FixedType(2, 2 + log2_alpha, signed=True)


def binary_type(q, where: str) -> FixedType:
    """QKeras ``binary(use_01=False, alpha=2**k)``: +-alpha, with 0 mapped to +alpha (sign(0) is made
    +1), which is why masks act after the quantizer."""
    _, c = _config(q)
    if c.get('use_01'):
        raise UnsupportedQuantizer(f'{where}: binary(use_01=True) gives {{0, alpha}} weights, which this flow does not '
                                   'deploy; use binary(use_01=False, alpha=1)')
    return _sign_code_type(_po2_alpha('binary', c, where))


def ternary_type(q, where: str) -> FixedType:
    """QKeras ``ternary(alpha=2**k, threshold=t)``: +-alpha where |x| >= t (0.33 when None), else 0.
    A numeric threshold only moves which weights are 0; a learned ('auto') alpha is refused."""
    _, c = _config(q)
    if isinstance(c.get('threshold'), str):
        raise UnsupportedQuantizer(f"{where}: ternary threshold={c['threshold']!r} is computed from the weights; give a number "
                                   '(or None for 0.33)')
    return _sign_code_type(_po2_alpha('ternary', c, where))


def sign_magnitude_type(q, where: str) -> FixedType:
    """keras_models.quantizers ``sign_magnitude(bits)`` (HCGS): +-k / 2^(bits-1), k = 1 .. 2^(bits-1),
    so +-1 included and 0 from the mask: ap_fixed<bits + 1, 2> holds them all. (The hardware stores
    that two's-complement code: one bit more than the paper's sign + (bits - 1)-bit magnitude.)"""
    bits = int(_config(q)[1]['bits'])
    return FixedType(bits + 1, 2, signed=True)


# Kernel quantizer -> its exact type, for the block-sparse template (fixed-point weights, 0 allowed).
KERNEL_TYPES = {'binary': binary_type, 'ternary': ternary_type, 'sign_magnitude': sign_magnitude_type}


def kernel_type(q, where: str) -> FixedType:
    """Type of a BlockSparseQDense kernel (quantized_bits, binary or ternary), masked zeros included."""
    return KERNEL_TYPES.get(_config(q)[0], weight_type)(q, where)


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
        return FixedType(bits, integer, signed=False, rounding='RND_CONV', overflow='SAT')
    return FixedType(bits, integer + 1, rounding='RND_CONV', overflow='SAT_SYM' if c.get('symmetric') else 'SAT')
