"""hls4ml extension for ``BlockSparseQConv2D``: hls4ml's own io_stream Conv2D (line buffer, padding,
strides) with our block-sparse kernel doing each output pixel's channel mixing.

The IR layer is a subclass of hls4ml's ``Conv2D``, so hls4ml's passes treat it as a convolution (its
'same' padding becomes a ZeroPadding2D node in io_stream, the line buffer and strides are hls4ml's).
Only the per-pixel product changes: hls4ml's line buffer calls ``mult_config::kernel<...>::dense`` on
the (kh, kw, C) patch, and our mult config's kernel is ``nnet::block_sparse_dense`` over the gather
schedule of the (kh * kw * C, F) matrix whose block mask is the channel mask at every kernel
position (flow/runtime/ref_conv.py): the same generated kernel (flow/hls/block_sparse_emit.py) and
header as BlockSparseQDense.
"""

from __future__ import annotations

import re

import numpy as np
from hls4ml.backends.vivado.passes.convolution_templates import Conv2DConfigTemplate, Conv2DFunctionTemplate
from hls4ml.converters.keras.convolution import parse_conv2d_layer
from hls4ml.converters.keras.qkeras import get_quantizer_from_config
from hls4ml.converters.keras_v2_to_hls import get_weights_data
from hls4ml.model.attributes import Attribute, ConfigurableAttribute, TypeAttribute
from hls4ml.model.layers import Conv2D
from qkeras.quantizers import get_quantizer

from .block_sparse_dense import HEADER, add_gather_weights, config_fields, table_names
from .block_sparse_emit import check_generated_code


def parse_block_sparse_qconv2d(keras_layer, input_names, input_shapes, data_reader):
    # hls4ml's parser reads the kernel for the class names it knows; ours is a QConv2D with a mask
    layer, output_shape = parse_conv2d_layer({**keras_layer, 'class_name': 'QConv2D'}, input_names, input_shapes, data_reader)
    layer['class_name'] = 'BlockSparseConv2D'
    layer['kernel_quantizer_config'] = keras_layer['config']['kernel_quantizer']
    layer['weight_quantizer'] = get_quantizer(layer['kernel_quantizer_config'])  # QKeras' own (see block_sparse_dense)
    layer['bias_quantizer'] = get_quantizer_from_config(keras_layer, 'bias')
    layer['block_in'], layer['block_out'] = (int(b) for b in keras_layer['config']['block_shape'])
    layer['block_mask_data'] = get_weights_data(data_reader, layer['name'], 'block_mask')
    return layer, output_shape


class BlockSparseConv2D(Conv2D):
    _expected_attributes = [
        *Conv2D._expected_attributes,
        Attribute('block_in'),
        Attribute('block_out'),
        TypeAttribute('accum'),
        ConfigurableAttribute('reuse_factor', default=1),
    ]

    def initialize(self):
        if self.get_attr('data_format') != 'channels_last':
            raise ValueError(f"layer '{self.name}': only channels_last is supported")
        self.add_output_variable([self.get_attr('out_height'), self.get_attr('out_width'), self.get_attr('n_filt')])
        kernel = np.asarray(self.get_attr('weight_data'), dtype=np.float32)  # (kh, kw, C, F)
        positions = kernel.shape[0] * kernel.shape[1]
        block_mask = np.tile(np.asarray(self.get_attr('block_mask_data')).astype(bool), (positions, 1))
        add_gather_weights(self, kernel.reshape(-1, kernel.shape[-1]), block_mask)

    def check_reference(self, ref) -> None:
        """Called by the conversion's check: the generated per-patch kernel is the reference's schedule's."""
        check_generated_code(self.name, self, ref)


mult_template = ('struct config{index}_mult : nnet::block_sparse_dense_config {{\n' + config_fields + """\
    // hls4ml's line buffer calls kernel<...>::dense(patch, out, weights, biases) per output pixel: the
    // layer's generated kernel (nnet_code_gen.h) on its weight banks
    template<class data_T, class res_T, class CONFIG_T>
    struct kernel {{
        static void dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out], typename CONFIG_T::weight_t *,
                          typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {{
            nnet::{kernel}<data_T, res_T, CONFIG_T>(data, res, {w}, biases);
        }}
    }};
}};
""")
HLS4ML_MULT = re.compile(r'struct config\d+_mult : nnet::dense_config \{.*?\n\};\n', re.S)


class BlockSparseConv2DConfigTemplate(Conv2DConfigTemplate):
    """hls4ml's conv config with our mult config. Its strategy is 'resource' in the conv config: the
    line-buffer loop is then not pipelined at II=ReuseFactor around our kernel (which pipelines its
    own ReuseFactor cycles at II=1; a pipelined outer loop would unroll it)."""

    def __init__(self):
        super(Conv2DConfigTemplate, self).__init__(BlockSparseConv2D)
        hls4ml_conv = Conv2DConfigTemplate()
        self.template, self.mult_template = hls4ml_conv.template, hls4ml_conv.mult_template

    def format(self, node):
        text = super().format(node)
        params = self._default_config_params(node)
        params.update(n_in=node.get_attr('n_chan') * node.get_attr('filt_height') * node.get_attr('filt_width'),
                      n_out=node.get_attr('n_filt'), **table_names(node))
        ours, n = HLS4ML_MULT.subn(lambda _: mult_template.format(**params), text, count=1)
        ours, m = re.subn(r'static const unsigned strategy = nnet::\w+;', 'static const unsigned strategy = nnet::resource;',
                          ours, count=1)
        if n != 1 or m != 1:
            raise RuntimeError(f"layer '{node.name}': hls4ml's Conv2D config template changed; cannot place our kernel")
        return ours


class BlockSparseConv2DFunctionTemplate(Conv2DFunctionTemplate):
    def __init__(self):
        super(Conv2DFunctionTemplate, self).__init__(
            BlockSparseConv2D, include_header=['nnet_utils/nnet_conv2d.h', 'nnet_utils/nnet_conv2d_stream.h',
                                               f'nnet_utils/{HEADER}'])
        self.template = Conv2DFunctionTemplate().template
