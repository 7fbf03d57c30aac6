"""hls4ml extension for ``BlockSparseQDense`` (CGS): Keras handler, IR layer, Vitis templates.

Everything goes through hls4ml's public extension API; nothing in site-packages is patched.
The packed storage is computed by ``flow.runtime.ref_block_sparse.pack_blocks``, the same
function the integer reference uses, so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.converters.keras.qkeras import parse_qdense_layer
from hls4ml.converters.keras_v2_to_hls import get_weights_data
from hls4ml.model.attributes import Attribute, ConfigurableAttribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.types import IntegerPrecisionType

from flow.runtime.ref_block_sparse import index_bits, pack_blocks, unpack_blocks
from keras_models.masks import expand

HEADER = 'nnet_block_sparse_dense.h'


def parse_block_sparse_qdense(keras_layer, input_names, input_shapes, data_reader):
    layer, output_shape = parse_qdense_layer(keras_layer, input_names, input_shapes, data_reader)
    layer['class_name'] = 'BlockSparseDense'
    layer['block_in'], layer['block_out'] = (int(b) for b in keras_layer['config']['block_shape'])
    layer['block_mask_data'] = get_weights_data(data_reader, layer['name'], 'block_mask')
    return layer, output_shape


def valid_reuse_factors(n_kept: int) -> list[int]:
    return [rf for rf in range(1, n_kept + 1) if n_kept % rf == 0]


class BlockSparseDense(Layer):
    _expected_attributes = [
        Attribute('n_in'),
        Attribute('n_out'),
        Attribute('block_in'),
        Attribute('block_out'),
        WeightAttribute('weight'),
        WeightAttribute('bias'),
        WeightAttribute('block_index'),
        TypeAttribute('weight'),
        TypeAttribute('bias'),
        TypeAttribute('block_index'),
        TypeAttribute('accum'),
        ConfigurableAttribute('reuse_factor', default=1),
    ]

    def initialize(self):
        self.add_output_variable([self.get_attr('n_out')])
        block = (self.get_attr('block_in'), self.get_attr('block_out'))
        block_mask = np.asarray(self.get_attr('block_mask_data')).astype(bool)
        wq = self.get_attr('weight_quantizer')
        # Mask after quantization, exactly as the Keras layer and the reference do.
        kernel = wq(self.get_attr('weight_data')) * expand(block_mask, block)
        values, index, kept_per_row = pack_blocks(kernel, block_mask, block)
        n_kept = values.size
        rf = self.get_attr('reuse_factor')
        if n_kept % rf:
            valid = valid_reuse_factors(n_kept)
            near = [v for v in (max((v for v in valid if v < rf), default=None), min((v for v in valid if v > rf), default=None)) if v]
            raise ValueError(
                f"layer '{self.name}': ReuseFactor {rf} does not divide its {n_kept} kept weights; "
                f'nearest valid values: {near}'
            )
        self.set_attr('kept_per_row', kept_per_row)
        self.set_attr('n_kept_blocks', len(index))
        self.set_attr('n_kept', n_kept)
        self.add_weights_variable(name='weight', var_name='w{index}', data=values.reshape(-1), precision=wq.hls_type)
        self.add_weights_variable(name='bias', var_name='b{index}', quantizer=self.get_attr('bias_quantizer'))
        bits = index_bits(self.get_attr('n_out'), block[1])
        self.add_weights_variable(
            name='block_index', var_name='bi{index}', data=index, precision=IntegerPrecisionType(bits, signed=False)
        )


config_template = """struct config{index} : nnet::block_sparse_dense_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = {n_out};
    static const unsigned block_in = {block_in};
    static const unsigned block_out = {block_out};
    static const unsigned kept_per_row = {kept_per_row};
    static const unsigned n_kept_blocks = {n_kept_blocks};
    static const unsigned n_kept = {n_kept};
    static const unsigned reuse_factor = {reuse};
    static const unsigned n_mult = {n_mult};
    typedef {accum_t.name} accum_t;
    typedef {bias_t.name} bias_t;
    typedef {weight_t.name} weight_t;
    typedef {block_index_t.name} index_t;
}};\n"""

function_template = 'nnet::block_sparse_dense<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {bi}, {b});'


class BlockSparseDenseConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(BlockSparseDense)
        self.template = config_template

    def format(self, node):
        params = self._default_config_params(node)
        params['n_mult'] = node.get_attr('n_kept') // node.get_attr('reuse_factor')
        return self.template.format(**params)


class BlockSparseDenseFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(BlockSparseDense, include_header=[f'nnet_utils/{HEADER}'])
        self.template = function_template

    def format(self, node):
        params = self._default_function_params(node)
        params['w'] = node.get_weights('weight').name
        params['bi'] = node.get_weights('block_index').name
        params['b'] = node.get_weights('bias').name
        return self.template.format(**params)


def dense_attributes(node: BlockSparseDense) -> dict:
    """hls4ml's own Dense with the same weights, the dropped blocks' zeros included (what its
    ``distributed_arithmetic`` strategy takes: zero weights cost nothing there). The kernel is the
    quantized, masked one already; the config gives its precision (no quantizer)."""
    shape = (node.get_attr('n_in'), node.get_attr('n_out'))
    block = (node.get_attr('block_in'), node.get_attr('block_out'))
    values = node.get_weights('weight').data.reshape(-1, *block)
    kernel = unpack_blocks(values, node.get_weights('block_index').data, node.get_attr('kept_per_row'), shape, block)
    keep = ('n_in', 'n_out', 'bias_data', 'bias_quantizer', 'activation', 'data_format')
    return {**{k: node.get_attr(k) for k in keep if k in node.attributes}, 'weight_data': kernel, 'weight_quantizer': None}
