"""hls4ml extension for ``BlockSparseQDense`` (CGS): Keras handler, IR layer, Vitis templates.

Everything goes through hls4ml's public extension API; nothing in site-packages is patched.
The packed kept blocks are computed by ``flow.runtime.ref_block_sparse.pack_blocks``, the same
function the integer reference uses, so the two cannot drift apart; the ``gather`` schedule of
``flow.runtime.schedule`` derived from them gives the weight banks (a weight variable) and the
per-layer kernel C++ (flow/hls/block_sparse_emit.py, a ``Source`` attribute that hls4ml writes into
nnet_code_gen.h), built like the Verilog engine of flow/rtl/engine.py.
"""

from __future__ import annotations

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.converters.keras.core import parse_dense_layer
from hls4ml.converters.keras.qkeras import get_quantizer_from_config
from hls4ml.converters.keras_v2_to_hls import get_weights_data
from hls4ml.model.attributes import Attribute, ConfigurableAttribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType, Source
from qkeras.quantizers import get_quantizer

from flow.export.quantizers import kernel_type
from flow.runtime.ref_block_sparse import BlockSparseDense as RefBlockSparseDense
from flow.runtime.ref_block_sparse import pack_blocks, unpack_blocks
from flow.runtime.schedule import gather

from .block_sparse_emit import CODE_ATTR, check_generated_code, emit_kernel, function_name
from keras_models.masks import expand

HEADER = 'nnet_block_sparse_dense.h'


def parse_block_sparse_qdense(keras_layer, input_names, input_shapes, data_reader):
    # The kernel quantizer is the QKeras function itself: hls4ml's wrapper knows quantized_bits,
    # binary and ternary only (it prints 'Unsupported quantizer' for sign_magnitude) and turns
    # binary's -a/+a into XNOR codes 0/1. The reference gives the weights' exact type.
    layer, output_shape = parse_dense_layer(keras_layer, input_names, input_shapes, data_reader)
    layer['kernel_quantizer_config'] = keras_layer['config']['kernel_quantizer']
    layer['weight_quantizer'] = get_quantizer(layer['kernel_quantizer_config'])
    layer['bias_quantizer'] = get_quantizer_from_config(keras_layer, 'bias')
    layer['class_name'] = 'BlockSparseDense'
    layer['block_in'], layer['block_out'] = (int(b) for b in keras_layer['config']['block_shape'])
    layer['block_mask_data'] = get_weights_data(data_reader, layer['name'], 'block_mask')
    return layer, output_shape


def _unsigned(values) -> IntegerPrecisionType:
    """Just enough bits for the largest stored value (at least 1); the LSTM's index tables."""
    return IntegerPrecisionType(max(1, int(np.max(values, initial=0)).bit_length()), signed=False)


class BlockSparseDense(Layer):
    _expected_attributes = [
        Attribute('n_in'),
        Attribute('n_out'),
        Attribute('block_in'),
        Attribute('block_out'),
        WeightAttribute('weight'),
        WeightAttribute('bias'),
        TypeAttribute('weight'),
        TypeAttribute('bias'),
        TypeAttribute('accum'),
        ConfigurableAttribute('reuse_factor', default=1),
    ]

    def initialize(self):
        self.add_output_variable([self.get_attr('n_out')])
        block_mask = np.asarray(self.get_attr('block_mask_data')).astype(bool)
        add_gather_weights(self, np.asarray(self.get_attr('weight_data'), dtype=np.float32), block_mask)

    def check_reference(self, ref) -> None:
        """Called by the conversion's check: the generated kernel is the reference's schedule's."""
        check_generated_code(self.name, self, ref)


def add_gather_weights(node, kernel, block_mask, emit=None) -> None:
    """Quantize and mask a (n_in, n_out) kernel (block mask over (n_in / block_in, n_out / block_out)),
    pack its kept blocks and add the gather schedule's weight banks and the bias as the node's
    weight variables, and its kernel C++ as the node's generated code (``CODE_ATTR``): ``emit``
    (schedule, node index, what) -> C++, the whole dense kernel by default (a convolution emits one
    cycle of it)."""
    block = (node.get_attr('block_in'), node.get_attr('block_out'))
    wq = node.get_attr('weight_quantizer')
    # Mask after quantization, exactly as the Keras layer and the reference do.
    kernel = np.asarray(wq(kernel)) * expand(block_mask, block)
    values, index, kept_per_row = pack_blocks(kernel, block_mask, block)
    n_kept = values.size
    rf = node.get_attr('reuse_factor')
    # The gather schedule pads with zero weights, so any ReuseFactor works up to one cycle per kept weight.
    if not 1 <= rf <= n_kept:
        raise ValueError(f"layer '{node.name}': ReuseFactor {rf} is out of range; it must be 1 .. {n_kept} "
                         f'(its kept weights)')
    n_in, n_out = kernel.shape
    # The packed form stays available (dense_attributes); the template stores the schedule.
    node.set_attr('packed_values', values)
    node.set_attr('packed_index', index)
    node.set_attr('kept_per_row', kept_per_row)
    node.set_attr('n_kept', n_kept)
    # The schedule places kept weights by position only (the reference's types play no part).
    ref = RefBlockSparseDense(node.name, out_type=None, n_in=n_in, n_out=n_out, block=block,
                              kept_per_row=kept_per_row, values=values, index=index)
    sched = gather(ref, rf)
    for attr in ('n_lanes', 'n_mult'):
        node.set_attr(attr, getattr(sched, attr))
    node.set_attr('n_slots', sched.slots)
    what = f"layer '{node.name}'"
    code = emit(sched, node.index, what) if emit else emit_kernel(sched, function_name(node.index), what)
    node.set_attr(CODE_ATTR, Source(code))
    # The reference's exact type, not wq.hls_type: hls4ml gives a binary kernel a 1-bit XNOR type
    # ({0, 1}), which cannot hold the masked zeros nor the padding; check_against_reference compares.
    w_t = kernel_type(node.get_attr('kernel_quantizer_config'), f"layer '{node.name}' kernel")
    node.add_weights_variable(name='weight', var_name='w{index}', data=sched.weights.reshape(-1),
                              precision=FixedPrecisionType(w_t.width, w_t.integer, signed=w_t.signed))
    node.add_bias(quantizer=node.get_attr('bias_quantizer'))  # zeros of uint<1> when use_bias=False, as hls4ml


# The schedule's numbers (also the per-patch kernel of a block-sparse convolution's mult config).
config_fields = """    static const unsigned n_in = {n_in};
    static const unsigned n_out = {n_out};
    static const unsigned block_in = {block_in};
    static const unsigned block_out = {block_out};
    static const unsigned reuse_factor = {reuse};
    static const unsigned n_lanes = {n_lanes};
    static const unsigned n_mult = {n_mult};
    static const unsigned n_slots = {n_slots};
    typedef {accum_t.name} accum_t;
    typedef {bias_t.name} bias_t;
    typedef {weight_t.name} weight_t;
"""
config_template = 'struct config{index} : nnet::block_sparse_dense_config {{\n' + config_fields + """\
    // the layer's generated kernel (nnet_code_gen.h)
    template<class data_T, class res_T, class CONFIG_T>
    struct kernel {{
        static void dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                          typename CONFIG_T::weight_t weights[CONFIG_T::n_slots],
                          typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {{
            nnet::{kernel}<data_T, res_T, CONFIG_T>(data, res, weights, biases);
        }}
    }};
}};
"""

function_template = 'nnet::block_sparse_dense<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {b});'


class BlockSparseDenseConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(BlockSparseDense)
        self.template = config_template

    def format(self, node):
        return self.template.format(**self._default_config_params(node), kernel=function_name(node.index))




def table_names(node) -> dict:
    return {'w': node.get_weights('weight').name, 'b': node.get_weights('bias').name,
            'kernel': function_name(node.index)}


class BlockSparseDenseFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(BlockSparseDense, include_header=[f'nnet_utils/{HEADER}'])
        self.template = function_template

    def format(self, node):
        return self.template.format(**self._default_function_params(node), **table_names(node))


def dense_attributes(node: BlockSparseDense) -> dict:
    """hls4ml's own Dense with the same weights, the dropped blocks' zeros included (what its
    ``distributed_arithmetic`` strategy takes: zero weights cost nothing there). The kernel is the
    quantized, masked one already; the config gives its precision (no quantizer)."""
    shape = (node.get_attr('n_in'), node.get_attr('n_out'))
    block = (node.get_attr('block_in'), node.get_attr('block_out'))
    kernel = unpack_blocks(node.get_attr('packed_values'), node.get_attr('packed_index'), node.get_attr('kept_per_row'), shape, block)
    keep = ('n_in', 'n_out', 'bias_data', 'bias_quantizer', 'activation', 'data_format')
    return {**{k: node.get_attr(k) for k in keep if k in node.attributes}, 'weight_data': kernel, 'weight_quantizer': None}
