"""SSTQDense: structured sparse ternary (N, K) codewords and a quantized scale."""

from __future__ import annotations

import numpy as np

from flow.export.dense import _dense_types
from flow.export.registry import exporter
from flow.export.types import _exact_type, exact_fixed_type
from flow.runtime.ref_sst import SSTDense
from flow.runtime.sst_code import SSTCode


@exporter('SSTQDense')
def export_sst_qdense(layer, in_t, ov):
    """SSTQDense: the (N, K) ternary pattern as codewords, the quantized scale as the narrowest
    fixed type holding it exactly, the effective weights t * scale (on the scale's grid) sizing the
    accumulator. The ternary pattern comes from ``ternary_kernel``, the function the hls4ml
    extension uses too (tests check it equals the layer's own TensorFlow top-k)."""
    from keras_models.sst import ternary_kernel

    where = f"layer '{layer.name}'"
    t = ternary_kernel(layer.kernel.numpy(), layer.group, layer.nonzeros).astype(np.int64)
    scale = np.asarray(layer.quantized_scale(), dtype=np.float64)
    s_t, _ = exact_fixed_type(scale, f'{where} scale', 'use a scale_quantizer with fewer bits')
    s_full = np.broadcast_to(scale, (layer.units,))

    def sst_kernel(_layer, _where):
        return s_t, t * s_full, {}

    kw, _ = _dense_types(layer, in_t, ov, kernel=sst_kernel)
    bound = int(np.abs(t).sum(axis=0).max(initial=0)) * max(abs(in_t.min_code), abs(in_t.max_code))
    sum_t = _exact_type(bound, in_t.frac, f'{where}: the sum of +-inputs', 'narrow the input precision')
    return SSTDense(name=layer.name, n_in=t.shape[0], n_out=layer.units, group=layer.group, nonzeros=layer.nonzeros,
                    per_output_scale=layer.per_output_scale, scale_type=s_t, sum_type=sum_t,
                    codes=SSTCode(layer.group, layer.nonzeros).encode(t), scale=s_t.from_float_exact(s_full, f'{where} scale'),
                    **kw)
