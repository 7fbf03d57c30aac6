"""hls4ml extension for ``BlockSparseQConv1D``: hls4ml's own io_stream Conv1D (line buffer, padding,
stride) with our whole generated block-sparse kernel (the dense layer's, ReuseLoop pipelined at
II=1) as each output position's product. hls4ml's Resource Conv1D loop around it is not pipelined
(RF plus fill and flush per output position: ``ref_conv.BlockSparseConv1D.engine_estimate``); images
(``block_sparse_conv2d``) have our own pipelined pixel loop instead."""

from __future__ import annotations

import re

from hls4ml.backends.vivado.passes.convolution_templates import Conv1DConfigTemplate, Conv1DFunctionTemplate
from hls4ml.converters.keras.convolution import parse_conv1d_layer
from hls4ml.model.attributes import Attribute, ConfigurableAttribute, TypeAttribute
from hls4ml.model.layers import Conv1D

from .block_sparse_conv2d import HLS4ML_MULT, conv_parser, gather_matrix
from .block_sparse_dense import HEADER, add_gather_weights, config_fields, table_names
from .block_sparse_emit import check_generated_code


parse_block_sparse_qconv1d = conv_parser(parse_conv1d_layer, 'QConv1D', 'BlockSparseConv1D')


class BlockSparseConv1D(Conv1D):
    _expected_attributes = [
        *Conv1D._expected_attributes,
        Attribute('block_in'),
        Attribute('block_out'),
        TypeAttribute('accum'),
        ConfigurableAttribute('reuse_factor', default=1),
    ]

    def initialize(self):
        matrix, block_mask = gather_matrix(self)
        self.add_output_variable([self.get_attr('out_width'), self.get_attr('n_filt')])
        add_gather_weights(self, matrix, block_mask)

    def check_reference(self, ref) -> None:
        check_generated_code(self.name, self, ref)


mult_template = ('struct config{index}_mult : nnet::block_sparse_dense_config {{\n' + config_fields + """\
    // hls4ml's line buffer calls kernel<...>::dense(window, out, weights, biases) per output position:
    // the layer's generated kernel (nnet_code_gen.h) on its weight banks
    template<class data_T, class res_T, class CONFIG_T>
    struct kernel {{
        static void dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out], typename CONFIG_T::weight_t *,
                          typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {{
            nnet::{kernel}<data_T, res_T, CONFIG_T>(data, res, {w}, biases);
        }}
    }};
}};
""")


class BlockSparseConv1DConfigTemplate(Conv1DConfigTemplate):
    """hls4ml's Conv1D config with our mult config; the conv strategy 'resource' (see block_sparse_conv2d)."""

    def __init__(self):
        super(Conv1DConfigTemplate, self).__init__(BlockSparseConv1D)
        hls4ml_conv = Conv1DConfigTemplate()
        self.template, self.mult_template = hls4ml_conv.template, hls4ml_conv.mult_template

    def format(self, node):
        text = super().format(node)
        params = self._default_config_params(node)
        params.update(n_in=node.get_attr('n_chan') * node.get_attr('filt_width'), n_out=node.get_attr('n_filt'),
                      **table_names(node))
        ours, n = HLS4ML_MULT.subn(lambda _: mult_template.format(**params), text, count=1)
        ours, m = re.subn(r'static const unsigned strategy = nnet::\w+;', 'static const unsigned strategy = nnet::resource;',
                          ours, count=1)
        if n != 1 or m != 1:
            raise RuntimeError(f"layer '{node.name}': hls4ml's Conv1D config template changed; cannot place our kernel")
        return ours


class BlockSparseConv1DFunctionTemplate(Conv1DFunctionTemplate):
    def __init__(self):
        super(Conv1DFunctionTemplate, self).__init__(
            BlockSparseConv1D, include_header=['nnet_utils/nnet_conv1d.h', 'nnet_utils/nnet_conv1d_stream.h',
                                               f'nnet_utils/{HEADER}'])
        self.template = Conv1DFunctionTemplate().template
