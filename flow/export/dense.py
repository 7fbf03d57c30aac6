"""QDense (quantized_bits or quantized_po2 kernels) -> hls4ml's Dense; the types every dense-like
layer shares (kernel, bias, exact accumulator, result)."""

from __future__ import annotations

import numpy as np

from flow.export.quantizers import _config, po2_exponent_bits, weight_type
from flow.export.found import find_blocks
from flow.export.registry import Overrides, UnsupportedModel, _quantizer_name, deploy_rewrite, exporter
from flow.export.types import exact_accum_type, exact_fixed_type
from flow.runtime.fixed import MAX_WIDTH, FixedType
from flow.runtime.ref_block_sparse import BlockSparseDense, pack_blocks
from flow.runtime.ref_layers import Dense, DensePo2


def auto_po2(layer) -> bool:
    """A quantized_bits kernel with alpha='auto_po2' (also alpha=None, which QDense/QConv2D turn into
    it): a power-of-two scale per output channel, computed by QKeras from the kernel."""
    name, c = _config(getattr(layer, 'kernel_quantizer_internal', None))
    return name == 'quantized_bits' and c.get('alpha') == 'auto_po2'


def _fixed_kernel(layer, where: str):
    """A quantized_bits kernel: its type and quantized values (float). An auto_po2 kernel's values
    are codes times their channel's power-of-two scale, as QKeras computes them: held exactly by
    the narrowest type that holds them all (hls4ml's own ApplyAlpha mis-stores such scales, so the
    deploy rewrite hands hls4ml these values as the kernel, ``exact_values_copy``)."""
    q = layer.kernel_quantizer_internal
    if auto_po2(layer):
        name, c = _config(q)
        weight_type({'class_name': name, 'config': {**c, 'alpha': 1}}, where)  # every other setting as for alpha=1
        values = np.asarray(q(layer.kernel.numpy()), dtype=np.float64)
        w_t, _ = exact_fixed_type(values, f'{where} (auto_po2 scales applied)', 'use fewer bits or alpha=1')
        return w_t, values, {}
    w_t = weight_type(q, where)
    return w_t, np.asarray(q(layer.kernel.numpy())), {}


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


def _dense_types(layer, in_t: FixedType, ov: Overrides, kernel=_fixed_kernel, element_mask=None, bias=True):
    """Types and codes of a dense-like layer; the mask multiplies the *quantized* kernel. Its
    activation, if any, is a node of its own (``fused_activation``). ``bias``: True the layer's own,
    False none, or the float values its bias quantizer quantizes (a bias folded with batch norm)."""
    w_t, kernel_values, extra = kernel(layer, f"layer '{layer.name}' kernel")
    if bias is False or (bias is True and not layer.use_bias):  # hls4ml adds a zero bias of type uint<1> (Layer.add_bias)
        b_t, bias = NO_BIAS_TYPE, np.zeros(kernel_values.shape[-1])
    elif _quantizer_name(layer.bias_quantizer_internal) == 'quantized_po2':
        raise UnsupportedModel(
            f"layer '{layer.name}' bias: hls4ml 1.3.0 stores a quantized_po2 bias as exponents, which its dense templates "
            'cannot add (the C++ does not compile); use quantized_bits for the bias, e.g. quantized_bits(8, 3, alpha=1)'
        )
    else:
        b_t = weight_type(layer.bias_quantizer_internal, f"layer '{layer.name}' bias")
        bias = np.asarray(layer.bias_quantizer_internal(layer.bias.numpy() if bias is True else bias))
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
    """hls4ml's Dense, or, when the quantized_bits kernel has zero blocks that are worth dropping (pruned
    by another tool: ``flow/export/found.py``), the block-sparse reference with the found blocks; the
    deploy rewrite below then hands hls4ml a BlockSparseQDense, so both build the same layer."""
    kernel, cls = QDENSE_KERNELS.get(_quantizer_name(layer.kernel_quantizer_internal), (_fixed_kernel, Dense))
    kw, w_codes = _dense_types(layer, in_t, ov, kernel)
    if cls is not Dense:
        if ov.block_shape:
            raise UnsupportedModel(f"layer '{layer.name}': block_shape does not apply to its "
                                   f'{_quantizer_name(layer.kernel_quantizer_internal)} kernel (the block-sparse template '
                                   'multiplies fixed-point weights); remove block_shape for that layer')
        return cls(name=layer.name, weight=w_codes, **kw)
    # auto_po2 kernels stay hls4ml's Dense (the block-sparse handoff rebuilds the layer from its quantizer)
    found = None if auto_po2(layer) else _found_blocks(layer, w_codes, kw['weight_type'].width, ov)
    n_in, n_out = w_codes.shape
    if found is None or not found.worth_it:  # an N:M pattern that would not save bits is reported, kept dense
        report = found is not None and found.n_m is not None
        return Dense(name=layer.name, weight=w_codes, found=found.summary(n_in, n_out) if report else None, **kw)
    values, index, k = pack_blocks(w_codes, found.mask, found.block)
    return BlockSparseDense(name=layer.name, n_in=n_in, n_out=n_out, block=found.block, kept_per_row=k, values=values,
                            index=index, found=found.summary(n_in, n_out), **kw)


def _found_blocks(layer, w_codes, weight_bits: int, ov: Overrides):
    """The zero blocks found (``find_blocks``; dropped when ``worth_it``), or None: ``sparse: false``, a
    kernel without a zero block, or one of zeros only."""
    if ov.block_shape:
        (n_in, n_out), (bi, bo) = w_codes.shape, ov.block_shape
        if n_in % bi or n_out % bo:
            raise UnsupportedModel(f"layer '{layer.name}': block_shape [{bi}, {bo}] does not divide its {n_in}x{n_out} "
                                   f'kernel; pick sides that divide {n_in} and {n_out}')
        found = find_blocks(w_codes, weight_bits, forced=(bi, bo))
        if found is None:
            raise UnsupportedModel(f"layer '{layer.name}': block_shape given, but its quantized kernel is all zeros "
                                   '(the block-sparse format keeps at least one block); remove block_shape')
        return found
    if not ov.sparse:
        return None
    return find_blocks(w_codes, weight_bits)


def exact_values_copy(layer, ref):
    """An auto_po2 layer again without its kernel quantizer, its kernel the reference's exact values
    (scales applied), for hls4ml: it then stores the kernel in the reference's weight type as it is.
    None for any other layer."""
    if not auto_po2(layer):
        return None
    import tensorflow as tf

    from keras_models.layers import custom_objects

    with tf.keras.utils.custom_object_scope(custom_objects()):  # QKeras' constraints (Clip)
        new = type(layer).from_config({**layer.get_config(), 'kernel_quantizer': None})

    def load():
        new.kernel.assign(ref.weight_type.to_float(ref.weight).reshape(layer.kernel.shape).astype(np.float32))
        if layer.use_bias:
            new.bias.assign(layer.bias)

    return new, load


@deploy_rewrite('QDense')
def qdense_as_block_sparse(layer, ref):
    """A QDense exported block-sparse -> a BlockSparseQDense with the same config and weights and the
    found block mask, for hls4ml (our registered handler and template); an auto_po2 kernel -> its exact
    values (``exact_values_copy``); None when it stays as it is.
    Returns the (unbuilt) layer and a function that loads its weights once it is built."""
    if not isinstance(ref, BlockSparseDense):
        return exact_values_copy(layer, ref)
    from keras_models.layers import BlockSparseQDense

    return block_sparse_copy(layer, BlockSparseQDense, ref.block, ref.block_mask())


def block_sparse_copy(layer, cls, block, mask):
    """``layer`` as the block-sparse Keras class ``cls`` with the found block ``mask`` (its config and
    weights, nothing dropped at random): the (unbuilt) layer and a function loading its weights."""
    config = layer.get_config()
    config.update(block_shape=list(block), drop_rate=0.0, mask_method='cgs', mask_seed=0, levels=None)
    new = cls.from_config(config)

    def load():
        new.kernel.assign(layer.kernel)
        if layer.use_bias:
            new.bias.assign(layer.bias)
        new.block_mask.assign(np.asarray(mask, dtype=np.float32))

    return new, load
