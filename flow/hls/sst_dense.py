"""hls4ml extension for ``SSTQDense`` (structured sparse ternary codes): Keras handler, IR layer,
Vitis templates. The codewords come from ``keras_models.sst.ternary_kernel`` and
``flow.runtime.sst_code.SSTCode``, the functions the integer reference uses; conversion checks
the emitted codewords, scales and biases against the reference exactly, and the layer's generated
kernel (flow/hls/sst_emit.py: group selects, decoder ROM as constants, per-output source lists; a
``Source`` attribute hls4ml writes into nnet_code_gen.h) against the one of the reference's shape.
"""

from __future__ import annotations

import math

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.converters.keras.qkeras import parse_qdense_layer
from hls4ml.converters.keras_v2_to_hls import get_weights_data
from hls4ml.model.attributes import Attribute, ConfigurableAttribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.types import IntegerPrecisionType, Source

from flow.runtime.sst_code import SSTCode
from keras_models.sst import ternary_kernel

from .sst_emit import CODE_ATTR, check_generated_code, function_name, layer_kernel

HEADER = 'nnet_sst_dense.h'


def parse_sst_qdense(keras_layer, input_names, input_shapes, data_reader):
    layer, output_shape = parse_qdense_layer(keras_layer, input_names, input_shapes, data_reader)
    layer['class_name'] = 'SSTDense'
    c = keras_layer['config']
    layer['group'], layer['nonzeros'] = int(c['group']), int(c['nonzeros'])
    layer['scale_quantizer_config'] = c['scale_quantizer']
    layer['scale_raw_data'] = get_weights_data(data_reader, layer['name'], 'scale')
    return layer, output_shape


def sst_tables(kernel, scale_raw, scale_quantizer, group: int, nonzeros: int, n_out: int):
    """(codewords (n_out, G), quantized scale per output (float)) exactly as the reference has them."""
    from qkeras.quantizers import get_quantizer

    t = ternary_kernel(kernel, group, nonzeros)
    scale = np.asarray(get_quantizer(scale_quantizer)(np.abs(np.asarray(scale_raw, dtype=np.float32))), dtype=np.float64)
    return SSTCode(group, nonzeros).encode(t), np.broadcast_to(scale, (n_out,)).copy()


class SSTDense(Layer):
    _expected_attributes = [
        Attribute('n_in'),
        Attribute('n_out'),
        Attribute('group'),
        Attribute('nonzeros'),
        WeightAttribute('code'),
        WeightAttribute('scale'),
        WeightAttribute('bias'),
        TypeAttribute('code'),
        TypeAttribute('scale'),
        TypeAttribute('bias'),
        TypeAttribute('sum'),
        TypeAttribute('accum'),
        ConfigurableAttribute('reuse_factor', default=1),
    ]

    def initialize(self):
        self.add_output_variable([self.get_attr('n_out')])
        n_in, n_out = self.get_attr('n_in'), self.get_attr('n_out')
        group, k = self.get_attr('group'), self.get_attr('nonzeros')
        code = SSTCode(group, k)
        codes, scale = sst_tables(self.get_attr('weight_data'), self.get_attr('scale_raw_data'),
                                  self.get_attr('scale_quantizer_config'), group, k, n_out)
        n_work = codes.size  # one (output, group) pair each
        rf = self.get_attr('reuse_factor')
        if not 1 <= rf <= n_work:
            raise ValueError(f"layer '{self.name}': ReuseFactor {rf} is out of range; it must be 1 .. {n_work} "
                             f'(its {n_out} outputs x {n_in // group} groups)')
        n_dec = math.ceil(n_work / rf)
        # decoder d takes work item d * rf + t in cycle t: pad with codeword 0 (no non-zero)
        padded = np.zeros(n_dec * rf, dtype=np.int64)
        padded[:n_work] = codes.reshape(-1)
        self.set_attr('n_work', n_work)
        self.set_attr('n_dec', n_dec)
        self.set_attr('n_groups', n_in // group)
        self.set_attr(CODE_ATTR, Source(layer_kernel(n_in, n_out, group, k, rf, self.index, f"layer '{self.name}'")))
        self.add_weights_variable(name='code', var_name='c{index}', data=padded,
                                  precision=IntegerPrecisionType(code.code_bits, signed=False))
        self.add_weights_variable(name='scale', var_name='s{index}', data=scale)
        self.add_bias(quantizer=self.get_attr('bias_quantizer'))  # zeros of uint<1> when use_bias=False, as hls4ml

    def check_reference(self, ref) -> None:
        """Called by the conversion's check: the generated kernel is the reference's layer's."""
        check_generated_code(self.name, self, ref)


config_template = """struct config{index} : nnet::sst_dense_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = {n_out};
    static const unsigned group = {group};
    static const unsigned nonzeros = {nonzeros};
    static const unsigned n_groups = {n_groups};
    static const unsigned reuse_factor = {reuse};
    static const unsigned n_work = {n_work};
    static const unsigned n_dec = {n_dec};
    typedef {code_t.name} code_t;
    typedef {scale_t.name} scale_t;
    typedef {bias_t.name} bias_t;
    typedef {sum_t.name} sum_t;
    typedef {accum_t.name} accum_t;
    // the layer's generated kernel (nnet_code_gen.h)
    template<class data_T, class res_T, class CONFIG_T>
    struct kernel {{
        static void dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                          typename CONFIG_T::code_t codes[CONFIG_T::n_dec * CONFIG_T::reuse_factor],
                          typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                          typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {{
            nnet::{kernel}<data_T, res_T, CONFIG_T>(data, res, codes, scale, biases);
        }}
    }};
}};\n"""

function_template = 'nnet::sst_dense<{input_t}, {output_t}, {config}>({input}, {output}, {c}, {s}, {b});'


class SSTDenseConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(SSTDense)
        self.template = config_template

    def format(self, node):
        return self.template.format(**self._default_config_params(node), kernel=function_name(node.index))


class SSTDenseFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(SSTDense, include_header=[f'nnet_utils/{HEADER}'])
        self.template = function_template

    def format(self, node):
        params = self._default_function_params(node)
        for key, weight in (('c', 'code'), ('s', 'scale'), ('b', 'bias')):
            params[key] = node.get_weights(weight).name
        return self.template.format(**params)
