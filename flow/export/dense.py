"""QDense (quantized_bits or quantized_po2 kernels) -> hls4ml's Dense; the types every dense-like
layer shares (kernel, bias, exact accumulator, result)."""

from __future__ import annotations

import numpy as np

from flow.export.quantizers import po2_exponent_bits, weight_type
from flow.export.registry import Overrides, UnsupportedModel, _quantizer_name, exporter
from flow.export.types import exact_accum_type
from flow.runtime.fixed import MAX_WIDTH, FixedType
from flow.runtime.ref_layers import Dense, DensePo2


def _fixed_kernel(layer, where: str):
    """A quantized_bits kernel: its type and quantized values (float)."""
    w_t = weight_type(layer.kernel_quantizer_internal, where)
    return w_t, np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy())), {}


def _po2_kernel(layer, where: str):
    """A quantized_po2 kernel. hls4ml 1.3.0 stores each weight as a sign and an ap_int<bits> exponent
    (ExponentWeightVariable, header entries {sign, log2|w|}) and multiplies by shifting
    (nnet::product::weight_exponential). The reference keeps the values on a fixed-point grid wide
    enough for every exponent present; DensePo2.check refuses inputs the shift product would cut."""
    q = layer.kernel_quantizer_internal
    bits = po2_exponent_bits(q, where)
    values = np.asarray(q(layer.kernel.numpy()), dtype=np.float64)
    mant, exp = np.frexp(np.abs(values))
    if np.any(mant != 0.5):  # also catches 0: hls4ml would store log2(0) and multiply by 2^0
        i = tuple(int(k) for k in np.argwhere(mant != 0.5)[0])
        raise UnsupportedModel(f'{where}: quantized_po2 weight {values[i]!r} at index {i} is not a power of two, which '
                               "hls4ml's exponent storage cannot hold")
    e = exp - 1
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if e.min() < lo or e.max() > hi:  # a guard: QKeras 0.9.0 keeps them in range for every max_value (measured)
        bad = int(e.min()) if e.min() < lo else int(e.max())
        raise UnsupportedModel(
            f"{where}: quantized_po2({bits}) produced a weight 2^{bad}, whose exponent does not fit hls4ml's ap_int<{bits}> "
            f'exponent field ([{lo}, {hi}]; it would wrap): lower max_value to at most 2^{hi} or use more bits'
        )
    frac, integer = max(0, -int(e.min())), max(int(e.max()) + 2, 1)
    if frac + integer > MAX_WIDTH:
        raise UnsupportedModel(f'{where}: the po2 weights span 2^{int(e.min())} to 2^{int(e.max())}, more than the '
                               f'{MAX_WIDTH}-bit codes the reference computes with; use a quantized_po2 with fewer bits')
    return FixedType(frac + integer, integer), values, {'exponent_bits': bits}


# kernel quantizer -> (kernel function, reference class); quantized_bits (and anything else, which
# weight_type refuses with the reason) -> hls4ml's plain Dense
QDENSE_KERNELS = {'quantized_po2': (_po2_kernel, DensePo2)}


NO_BIAS_TYPE = FixedType(1, 1, signed=False)


def _dense_types(layer, in_t: FixedType, ov: Overrides, kernel=_fixed_kernel, element_mask=None):
    """Types and codes of a dense-like layer; the mask multiplies the *quantized* kernel. Its
    activation, if any, is a node of its own (``fused_activation``)."""
    w_t, kernel_values, extra = kernel(layer, f"layer '{layer.name}' kernel")
    if not layer.use_bias:  # hls4ml adds a zero bias of type uint<1> (Layer.add_bias)
        b_t, bias = NO_BIAS_TYPE, np.zeros(kernel_values.shape[-1])
    elif _quantizer_name(layer.bias_quantizer_internal) == 'quantized_po2':
        raise UnsupportedModel(
            f"layer '{layer.name}' bias: hls4ml 1.3.0 stores a quantized_po2 bias as exponents, which its dense templates "
            'cannot add (the C++ does not compile); use quantized_bits for the bias, e.g. quantized_bits(8, 3, alpha=1)'
        )
    else:
        b_t = weight_type(layer.bias_quantizer_internal, f"layer '{layer.name}' bias")
        bias = np.asarray(layer.bias_quantizer_internal(layer.bias.numpy()))
    if element_mask is not None:
        kernel_values = kernel_values * element_mask
    w_codes = w_t.from_float_exact(kernel_values, f"layer '{layer.name}' quantized kernel")
    b_codes = b_t.from_float_exact(bias, f"layer '{layer.name}' quantized bias")
    try:
        acc_t = FixedType.parse(ov.accum) if ov.accum else exact_accum_type(w_codes, w_t, b_codes, b_t, in_t)
    except ValueError as e:  # wider than the int64 codes the reference computes with
        raise UnsupportedModel(
            f"layer '{layer.name}': its exact accumulator is too wide ({e}); narrow the input or weight precision"
        ) from e
    res_t = FixedType.parse(ov.result) if ov.result else acc_t
    return dict(weight_type=w_t, bias_type=b_t, accum_type=acc_t, bias=b_codes, out_type=res_t, **extra), w_codes


@exporter('QDense')  # kernel quantized_bits or quantized_po2 (QDENSE_KERNELS)
def export_qdense(layer, in_t, ov):
    kernel, cls = QDENSE_KERNELS.get(_quantizer_name(layer.kernel_quantizer_internal), (_fixed_kernel, Dense))
    kw, w_codes = _dense_types(layer, in_t, ov, kernel)
    return cls(name=layer.name, weight=w_codes, **kw)
