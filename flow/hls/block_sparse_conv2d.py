"""hls4ml extension for ``BlockSparseQConv2D``: hls4ml's io_stream Conv2D layer (its config, its
'same' padding as a ZeroPadding2D node, its line buffer) with our block-sparse kernel doing each
output pixel's channel mixing, in one pipelined loop over the image's pixels and kernel cycles
(hls_templates/nnet_block_sparse_conv2d.h: a new output pixel every ReuseFactor cycles).

The IR layer is a subclass of hls4ml's ``Conv2D``, so hls4ml's passes treat it as a convolution.
The kernel is the gather schedule of the (kh * kw * C, F) matrix whose block mask is the channel
mask at every kernel position (flow/runtime/ref_conv.py), generated per layer as ONE cycle of the
engine (flow/hls/block_sparse_emit.py ``emit_cycle``: the same static structure as the dense
kernel), which the mult config names as ``kernel<...>::cycle``.
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

from .block_sparse_dense import add_gather_weights, config_fields, table_names
from .block_sparse_emit import check_generated_code, conv_cycle, cycle_function_name
from .block_sparse_emit import conv_cycle as reference_cycle  # what check_reference compares with

CONV_HEADER = 'nnet_block_sparse_conv2d.h'


def conv_parser(parse, qkeras_class: str, class_name: str):
    """The Keras parser of a block-sparse convolution: hls4ml's ``parse`` reads the kernel for the
    class names it knows (ours is a ``qkeras_class`` with a mask), then our attributes."""

    def parse_layer(keras_layer, input_names, input_shapes, data_reader):
        layer, output_shape = parse({**keras_layer, 'class_name': qkeras_class}, input_names, input_shapes, data_reader)
        layer['class_name'] = class_name
        layer['kernel_quantizer_config'] = keras_layer['config']['kernel_quantizer']
        layer['weight_quantizer'] = get_quantizer(layer['kernel_quantizer_config'])  # QKeras' own (see block_sparse_dense)
        layer['bias_quantizer'] = get_quantizer_from_config(keras_layer, 'bias')
        layer['block_in'], layer['block_out'] = (int(b) for b in keras_layer['config']['block_shape'])
        layer['block_mask_data'] = get_weights_data(data_reader, layer['name'], 'block_mask')
        return layer, output_shape

    return parse_layer


def gather_matrix(node) -> tuple[np.ndarray, np.ndarray]:
    """A block-sparse convolution's (kernel positions x C, F) matrix and its block mask: the channel
    mask at every kernel position."""
    if node.get_attr('data_format') != 'channels_last':
        raise ValueError(f"layer '{node.name}': only channels_last is supported")
    kernel = np.asarray(node.get_attr('weight_data'), dtype=np.float32)  # (k..., C, F)
    positions = int(np.prod(kernel.shape[:-2]))
    block_mask = np.tile(np.asarray(node.get_attr('block_mask_data')).astype(bool), (positions, 1))
    return kernel.reshape(-1, kernel.shape[-1]), block_mask


parse_block_sparse_qconv2d = conv_parser(parse_conv2d_layer, 'QConv2D', 'BlockSparseConv2D')


class BlockSparseConv2D(Conv2D):
    _expected_attributes = [
        *Conv2D._expected_attributes,
        Attribute('block_in'),
        Attribute('block_out'),
        TypeAttribute('accum'),
        ConfigurableAttribute('reuse_factor', default=1),
    ]

    def initialize(self):
        matrix, block_mask = gather_matrix(self)
        self.add_output_variable([self.get_attr('out_height'), self.get_attr('out_width'), self.get_attr('n_filt')])
        add_gather_weights(self, matrix, block_mask, conv_cycle)

    def check_reference(self, ref) -> None:
        """Called by the conversion's check: the generated kernel cycle is the reference's schedule's."""
        check_generated_code(self.name, self, ref, reference_cycle)


mult_template = ('struct config{index}_mult : nnet::block_sparse_dense_config {{\n' + config_fields + """\
    // the pixel loop (nnet_block_sparse_conv2d.h) runs cycle t of the layer's generated kernel (nnet_code_gen.h)
    template<class data_T, class CONFIG_T>
    struct kernel {{
        static void cycle(data_T data[CONFIG_T::n_in], unsigned t, typename CONFIG_T::weight_t weights[CONFIG_T::n_slots],
                          typename CONFIG_T::accum_t acc[CONFIG_T::n_out]) {{
            nnet::{kernel}<data_T, CONFIG_T>(data, t, weights, acc);
        }}
    }};
}};
""")
HLS4ML_MULT = re.compile(r'struct config\d+_mult : nnet::dense_config \{.*?\n\};\n', re.S)


class BlockSparseConv2DConfigTemplate(Conv2DConfigTemplate):
    """hls4ml's conv config (geometry, types) with our mult config (the schedule's numbers and the
    generated kernel cycle); its strategy field is not read (our pixel loop is not hls4ml's)."""

    def __init__(self):
        super(Conv2DConfigTemplate, self).__init__(BlockSparseConv2D)
        hls4ml_conv = Conv2DConfigTemplate()
        self.template, self.mult_template = hls4ml_conv.template, hls4ml_conv.mult_template

    def format(self, node):
        text = super().format(node)
        params = self._default_config_params(node)
        params.update(n_in=node.get_attr('n_chan') * node.get_attr('filt_height') * node.get_attr('filt_width'),
                      n_out=node.get_attr('n_filt'), **table_names(node))
        params['kernel'] = cycle_function_name(node.index)
        ours, n = HLS4ML_MULT.subn(lambda _: mult_template.format(**params), text, count=1)
        if n != 1:
            raise RuntimeError(f"layer '{node.name}': hls4ml's Conv2D config template changed; cannot place our kernel")
        return ours


class BlockSparseConv2DFunctionTemplate(Conv2DFunctionTemplate):
    def __init__(self):
        super(Conv2DFunctionTemplate, self).__init__(BlockSparseConv2D, include_header=[f'nnet_utils/{CONV_HEADER}'])
        self.template = 'nnet::block_sparse_conv_2d_cl<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {b});'
