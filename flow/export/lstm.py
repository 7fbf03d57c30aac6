"""BlockSparseQLSTM (HCGS LSTM): gates with shared block masks, hard activations, exact state types."""

from __future__ import annotations

import numpy as np

from flow.export.quantizers import _config, kernel_type, quantized_bits_activation_type, sigmoid_type, tanh_type, weight_type
from flow.export.registry import UnsupportedModel, _no_override, exporter
from flow.export.types import _exact_type
from flow.runtime.ref_lstm import BlockSparseLSTM, pack_gates


@exporter('BlockSparseQLSTM')  # takes (time steps, features): BlockSparseLSTM.sequence_input
def export_block_sparse_qlstm(layer, in_t, ov):
    """BlockSparseQLSTM: every type from its quantizers (weights and bias quantized_bits; gates
    quantized_sigmoid and cell activation quantized_tanh in their hard forms; cell and hidden state
    quantized_bits, i.e. AP_RND_CONV and AP_SAT), the gate sums, f c + i g and o tanh(c) in the
    exact types sized from the weights and these types."""
    where = f"layer '{layer.name}'"
    for f in ('accum', 'result', 'table_size', 'table_t'):
        _no_override(layer, ov, f, 'every type of the LSTM comes from its quantizers or is sized exactly')
    w_t = kernel_type(layer.kernel_quantizer_internal, f'{where} kernel')
    u_t = kernel_type(layer.recurrent_quantizer_internal, f'{where} recurrent kernel')
    b_t = weight_type(layer.bias_quantizer_internal, f'{where} bias')
    for q, name, real, arg in ((layer.gate_activation, 'quantized_sigmoid', 'use_real_sigmoid', 'recurrent_activation'),
                               (layer.cell_activation, 'quantized_tanh', 'use_real_tanh', 'activation')):
        got, c = _config(q)
        if got != name or c.get(real):
            raise UnsupportedModel(f'{where}: {arg} must be {name}(bits) in its hard form (exact in hardware and in '
                                   f'float32); got {got}{" with " + real if c.get(real) else ""}')
    gate_t = sigmoid_type(layer.gate_activation, f'{where} recurrent_activation')
    act_t = tanh_type(layer.cell_activation, f'{where} activation')
    cell_t = quantized_bits_activation_type(layer.cell_quantizer_internal, f'{where} cell_quantizer')
    h_t = quantized_bits_activation_type(layer.state_quantizer_internal, f'{where} state_quantizer')
    w_mask, u_mask = layer.element_masks_numpy()
    w = w_t.from_float_exact(np.asarray(layer.kernel_quantizer_internal(layer.kernel.numpy())) * w_mask,
                             f'{where} quantized kernel')
    u = u_t.from_float_exact(np.asarray(layer.recurrent_quantizer_internal(layer.recurrent_kernel.numpy())) * u_mask,
                             f'{where} quantized recurrent kernel')
    b = b_t.from_float_exact(np.asarray(layer.bias_quantizer_internal(layer.bias.numpy())), f'{where} quantized bias')
    values, index, k = pack_gates(w, layer.get_block_mask(), layer.block_shape)
    r_values, r_index, r_k = pack_gates(u, layer.get_recurrent_block_mask(), layer.recurrent_block_shape)
    ref = BlockSparseLSTM(
        name=layer.name, out_type=h_t, n_in=w.shape[0], units=layer.units, return_sequences=layer.return_sequences,
        block=layer.block_shape, recurrent_block=layer.recurrent_block_shape, kept_per_row=k, recurrent_kept_per_row=r_k,
        weight_type=w_t, recurrent_type=u_t, bias_type=b_t, gate_type=gate_t, act_type=act_t, cell_type=cell_t,
        values=values, index=index, recurrent_values=r_values, recurrent_index=r_index, bias=b,
        levels=[list(b) for b, _ in layer.levels] if len(layer.levels) > 1 else None,
        recurrent_levels=[list(b) for b, _ in layer.recurrent_levels] if len(layer.recurrent_levels) > 1 else None)
    ref.accum_type = _exact_type(*ref.z_bound(in_t), f'{where}: the gate sums x W + h U + b',
                                 'narrow the input, weight or hidden state precision')
    ref.cell_sum_type = _exact_type(*ref.cell_sum_bound(), f'{where}: f * c + i * g', 'narrow the cell_quantizer')
    ref.hidden_product_type = _exact_type(*ref.hidden_product_bound(), f'{where}: o * tanh(c)', 'use fewer activation bits')
    return ref
