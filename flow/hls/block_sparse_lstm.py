"""hls4ml extension for ``BlockSparseQLSTM`` (HCGS LSTM): Keras handler, IR layer, Vitis templates.

The packed kept blocks come from ``flow.runtime.ref_lstm.pack_gates``, the function the exporter
uses for the integer reference; hardware and reference store the same arrays: per kernel the
weight banks of its schedule (flow/runtime/lstm_engine.py: the gather schedule of the kept blocks
tiled over the four gates), no index. The step MAC is generated per layer (flow/hls/lstm_emit.py,
a ``Source`` attribute hls4ml writes into nnet_code_gen.h) and checked against the reference's by
``check_reference``. Every intermediate type (accum, gate, act, cell_sum, cell, hidden_product) is a
``*_t`` layer attribute set from the reference by ``flow.stages.convert.hls_config`` and checked after
conversion (``BlockSparseLSTM.hls_attrs``); the weights' values and types are checked through ``hls_weights``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.converters.keras_v2_to_hls import get_weights_data, parse_default_keras_layer
from hls4ml.model.attributes import Attribute, ConfigurableAttribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.types import Source

from flow.runtime.lstm_engine import lstm_engine, rom_words
from flow.runtime.ref_lstm import GATES, HARD_CONST_TYPE, HARD_HALF, pack_gates

from .lstm_emit import CODE_ATTR, check_generated_code, emit_kernel, function_name

HEADER = 'nnet_block_sparse_lstm.h'
# Weight variables: the weight banks of W and U (four gates each), the bias.
TYPES = ('gate', 'act', 'cell_sum', 'cell', 'hidden_product')  # *_t attributes besides accum_t and result_t


def _weights(data_reader, name: str, var: str):
    # '/var:' so that 'kernel' does not also match 'recurrent_kernel' (the reader matches substrings)
    data = get_weights_data(data_reader, name, f'/{var}:')
    if data is None:
        data = get_weights_data(data_reader, name, var)
    return data


def parse_block_sparse_qlstm(keras_layer, input_names, input_shapes, data_reader):
    # Built by hand, not parse_default_keras_layer's 'activation': the LSTM's quantized activations
    # are inside the layer, hls4ml must not add an activation node after it.
    layer = parse_default_keras_layer(keras_layer, input_names)
    layer.pop('activation', None)
    layer['class_name'] = 'BlockSparseLSTM'
    c = keras_layer['config']
    shape = list(input_shapes[0])
    if len(shape) != 3:
        raise ValueError(f"layer '{layer['name']}': BlockSparseQLSTM takes (time steps, features) inputs, got {shape[1:]}")
    layer['n_steps'], layer['n_in'] = int(shape[1]), int(shape[2])
    layer['units'] = int(c['units'])
    layer['return_sequences'] = bool(c['return_sequences'])
    layer['block_in'], layer['block_out'] = (int(b) for b in c['block_shape'])
    layer['rblock_in'], layer['rblock_out'] = (int(b) for b in c['recurrent_block_shape'])
    for q in ('kernel_quantizer', 'recurrent_quantizer', 'bias_quantizer'):
        layer[f'{q}_config'] = c[q]
    for key, var in (('kernel_data', 'kernel'), ('recurrent_kernel_data', 'recurrent_kernel'), ('bias_raw_data', 'bias'),
                     ('block_mask_data', 'block_mask'), ('recurrent_block_mask_data', 'recurrent_block_mask')):
        layer[key] = _weights(data_reader, layer['name'], var)
    u = layer['units']
    out = [shape[0], layer['n_steps'], u] if layer['return_sequences'] else [shape[0], u]
    return layer, out


def lstm_tables(node) -> dict:
    """The quantized, masked kernels packed per gate (QKeras' quantizers, then the block masks, as
    the Keras layer and the exporter do): values (4, kept, bi, bo) floats on their grid, index, kept_per_row."""
    from qkeras.quantizers import get_quantizer

    from keras_models.masks import expand

    out = {}
    for prefix, kernel, mask, block, quant in (
            ('', 'kernel_data', 'block_mask_data', ('block_in', 'block_out'), 'kernel_quantizer_config'),
            ('r', 'recurrent_kernel_data', 'recurrent_block_mask_data', ('rblock_in', 'rblock_out'), 'recurrent_quantizer_config')):
        m = np.asarray(node.get_attr(mask)).astype(bool)
        blk = tuple(node.get_attr(b) for b in block)
        q = get_quantizer(node.get_attr(quant))
        w = np.asarray(q(np.asarray(node.get_attr(kernel), dtype=np.float32)), dtype=np.float64)
        w = w * np.tile(expand(m, blk), (1, GATES))
        out[prefix] = pack_gates(w, m, blk)
    bq = get_quantizer(node.get_attr('bias_quantizer_config'))
    out['bias'] = np.asarray(bq(np.asarray(node.get_attr('bias_raw_data'), dtype=np.float32)), dtype=np.float64)
    return out


class BlockSparseLSTM(Layer):
    _expected_attributes = [
        Attribute('n_in'),
        Attribute('n_steps'),
        Attribute('units'),
        Attribute('block_in'),
        Attribute('block_out'),
        Attribute('rblock_in'),
        Attribute('rblock_out'),
        WeightAttribute('weight'),
        WeightAttribute('recurrent_weight'),
        WeightAttribute('bias'),
        TypeAttribute('weight'),
        TypeAttribute('recurrent_weight'),
        TypeAttribute('bias'),
        TypeAttribute('accum'),
        *(TypeAttribute(t) for t in TYPES),
        ConfigurableAttribute('reuse_factor', default=1),
    ]

    def initialize(self):
        u, steps = self.get_attr('units'), self.get_attr('n_steps')
        self.add_output_variable([steps, u] if self.get_attr('return_sequences') else [u])
        t = lstm_tables(self)
        (values, index, kpr), (rvalues, rindex, rkpr) = t[''], t['r']
        n_kept, n_rkept = len(index), len(rindex)
        rf = self.get_attr('reuse_factor')
        # RF cycles per time step for both kernels (their gather schedules pad the shorter one).
        most = max(n_kept, n_rkept)
        if not 1 <= rf <= most:
            raise ValueError(f"layer '{self.name}': ReuseFactor {rf} is out of range; it must be 1 .. {most} "
                             f'(the kept blocks of its larger kernel: {n_kept} of W, {n_rkept} of U)')
        self.set_attr('n_kept', n_kept)
        self.set_attr('n_rkept', n_rkept)
        # the packed layer as the reference holds it, with the real weights
        packed = SimpleNamespace(name=self.name, n_in=self.get_attr('n_in'), units=u, values=values, index=index,
                                 kept_per_row=kpr, block=(self.get_attr('block_in'), self.get_attr('block_out')),
                                 recurrent_values=rvalues, recurrent_index=rindex, recurrent_kept_per_row=rkpr,
                                 recurrent_block=(self.get_attr('rblock_in'), self.get_attr('rblock_out')))
        eng = lstm_engine(packed, rf)
        self.set_attr('n_wslots', eng.w_slots)
        self.set_attr('n_uslots', eng.u_slots)
        self.set_attr(CODE_ATTR, Source(emit_kernel(eng, function_name(self.index), f"layer '{self.name}'")))
        w_rom, u_rom = rom_words(packed, rf)
        self.add_weights_variable(name='weight', var_name='w{index}', data=w_rom)
        self.add_weights_variable(name='recurrent_weight', var_name='u{index}', data=u_rom)
        self.add_weights_variable(name='bias', var_name='b{index}', data=t['bias'])

    def check_reference(self, ref) -> None:
        """Called by the conversion's check: the generated step MAC is the reference's schedules'."""
        check_generated_code(self.name, self, ref)


HARD_CONST = HARD_CONST_TYPE.hls()
HARD_VALUE = HARD_HALF * 2.0**-HARD_CONST_TYPE.frac  # QKeras' hard sigmoid: slope = shift = 0.5

config_template = """struct config{index}_sig {{
    static const unsigned n_in = {units};
    static const {hard_t} slope;
    static const {hard_t} shift;
    static const unsigned io_type = nnet::io_parallel;
    static const unsigned reuse_factor = 1;
}};
const {hard_t} config{index}_sig::slope = {hard_value};
const {hard_t} config{index}_sig::shift = {hard_value};

struct config{index} : nnet::block_sparse_lstm_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_steps = {n_steps};
    static const unsigned units = {units};
    static const bool return_sequences = {return_sequences};
    static const unsigned block_in = {block_in};
    static const unsigned block_out = {block_out};
    static const unsigned rblock_in = {rblock_in};
    static const unsigned rblock_out = {rblock_out};
    static const unsigned reuse_factor = {reuse};
    static const unsigned n_wslots = {n_wslots};
    static const unsigned n_uslots = {n_uslots};
    typedef config{index}_sig hard_config;
    typedef {weight_t.name} weight_t;
    typedef {recurrent_weight_t.name} recurrent_t;
    typedef {bias_t.name} bias_t;
    typedef {accum_t.name} accum_t;
    typedef {gate_t.name} gate_t;
    typedef {act_t.name} act_t;
    typedef {cell_sum_t.name} cell_sum_t;
    typedef {cell_t.name} cell_t;
    typedef {hidden_product_t.name} hidden_product_t;
    // the layer's generated step MAC (nnet_code_gen.h)
    template<class data_T, class res_T, class CONFIG_T>
    struct kernel {{
        static void mac(data_T x[CONFIG_T::n_in], res_T h[CONFIG_T::units],
                        typename CONFIG_T::weight_t w[CONFIG_T::n_wslots],
                        typename CONFIG_T::recurrent_t u[CONFIG_T::n_uslots],
                        typename CONFIG_T::accum_t z[4 * CONFIG_T::units]) {{
            nnet::{kernel}<data_T, res_T, CONFIG_T>(x, h, w, u, z);
        }}
    }};
}};\n"""

function_template = 'nnet::block_sparse_lstm<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {u}, {b});'


class BlockSparseLSTMConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(BlockSparseLSTM)
        self.template = config_template

    def format(self, node):
        params = self._default_config_params(node)
        params['return_sequences'] = 'true' if node.get_attr('return_sequences') else 'false'
        params['hard_t'], params['hard_value'] = HARD_CONST, repr(HARD_VALUE)
        params['kernel'] = function_name(node.index)
        return self.template.format(**params)


class BlockSparseLSTMFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(BlockSparseLSTM, include_header=[f'nnet_utils/{HEADER}'])
        self.template = function_template

    def format(self, node):
        params = self._default_function_params(node)
        for key, weight in (('w', 'weight'), ('u', 'recurrent_weight'), ('b', 'bias')):
            params[key] = node.get_weights(weight).name
        return self.template.format(**params)
