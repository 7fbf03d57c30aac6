"""Registers our layers with hls4ml through its extension API (idempotent).

One module per sparse layer kind; each lists its Keras handler, IR layer, templates and (optional)
hls4ml Dense equivalent in ``EXTENSIONS`` below, and its C++ header lives in ``hls_templates/``.

A layer whose strategy is hls4ml's ``distributed_arithmetic`` (da4ml's multiplier-free
shift-and-add graph, ReuseFactor 1) is built by hls4ml's own Dense: the pass ``DAAsHls4mlDense``
swaps our IR layer for a Dense with the same weights (zeros included) before hls4ml's Vitis
passes initialize and generate it, and keeps a copy of every DA kernel for
``flow.stages.convert.check_against_reference`` (hls4ml deletes the weights once the DA code exists).
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / 'hls_templates'
BACKENDS = ('Vitis', 'Vivado')
STREAM_HEADER = 'nnet_stream_vector.h'
DA_STRATEGY = 'distributed_arithmetic'  # hls4ml 1.3.0's spelling (it also takes 'da')
DA_PASS = 'flow_da_as_hls4ml_dense'
# our IR class name -> function(node) giving the attributes of hls4ml's Dense with the same weights
DENSE_EQUIVALENTS: dict = {}
_registered = False


def is_da(node) -> bool:
    return str(node.model.config.get_strategy(node)).lower() in (DA_STRATEGY, 'da')


def _da_pass():
    from hls4ml.model.optimizer import OptimizerPass

    class DAAsHls4mlDense(OptimizerPass):
        """Our dense-like layer with strategy distributed_arithmetic -> hls4ml's Dense (same name,
        inputs, outputs, config); every DA Dense keeps its kernel and bias as ``da_weight``/``da_bias``."""

        def match(self, node):
            if not is_da(node):
                return False
            return node.class_name in DENSE_EQUIVALENTS or (node.class_name == 'Dense' and 'da_weight' not in node.attributes)

        def transform(self, model, node):
            if node.class_name in DENSE_EQUIVALENTS:
                attrs = DENSE_EQUIVALENTS[node.class_name](node)
                new = model.make_node('Dense', node.name, attrs, list(node.inputs), list(node.outputs))
                model.replace_node(node, new)
                node = new
            node.set_attr('da_weight', node.get_weights('weight').data.copy())
            node.set_attr('da_bias', node.get_weights('bias').data.copy())
            return True

    return DAAsHls4mlDense


def register() -> None:
    global _registered
    if _registered:
        return
    import hls4ml
    from hls4ml.model.flow import update_flow
    from hls4ml.model.optimizer import register_pass

    from . import block_sparse_conv1d as conv1d
    from . import block_sparse_conv2d as conv
    from . import block_sparse_dense as bsd
    from . import block_sparse_lstm as lstm
    from . import sst_dense as sst

    extensions = [
        ('BlockSparseQDense', bsd.parse_block_sparse_qdense, bsd.BlockSparseDense,
         (bsd.BlockSparseDenseConfigTemplate, bsd.BlockSparseDenseFunctionTemplate), bsd.HEADER, bsd.dense_attributes),
        ('SSTQDense', sst.parse_sst_qdense, sst.SSTDense, (sst.SSTDenseConfigTemplate, sst.SSTDenseFunctionTemplate),
         sst.HEADER, None),
        ('BlockSparseQLSTM', lstm.parse_block_sparse_qlstm, lstm.BlockSparseLSTM,
         (lstm.BlockSparseLSTMConfigTemplate, lstm.BlockSparseLSTMFunctionTemplate), lstm.HEADER, None),
        ('BlockSparseQConv2D', conv.parse_block_sparse_qconv2d, conv.BlockSparseConv2D,
         (conv.BlockSparseConv2DConfigTemplate, conv.BlockSparseConv2DFunctionTemplate), conv.CONV_HEADER, None),
        ('BlockSparseQConv1D', conv1d.parse_block_sparse_qconv1d, conv1d.BlockSparseConv1D,
         (conv1d.BlockSparseConv1DConfigTemplate, conv1d.BlockSparseConv1DFunctionTemplate), bsd.HEADER, None),
    ]
    for backend_name in BACKENDS:  # shared by the headers: io_stream adapters of our vector kernels
        hls4ml.backends.get_backend(backend_name).register_source(TEMPLATES_DIR / STREAM_HEADER)
    for keras_name, handler, ir_class, templates, header, dense_equivalent in extensions:
        source = TEMPLATES_DIR / header
        if not source.is_file():
            raise FileNotFoundError(f'HLS template {source} is missing; install the flow from a checkout (pip install -e .)')
        hls4ml.converters.register_keras_v2_layer_handler(keras_name, handler)
        hls4ml.model.layers.register_layer(ir_class.__name__, ir_class)
        for backend_name in BACKENDS:
            backend = hls4ml.backends.get_backend(backend_name)
            for template in templates:
                backend.register_template(template)
            backend.register_source(source)
        if dense_equivalent is not None:
            DENSE_EQUIVALENTS[ir_class.__name__] = dense_equivalent
    # The generic 'optimize' flow runs after conversion and before the backend's init_layers
    # (which sets the Dense strategy) and its optimize flow (which generates the DA code).
    register_pass(DA_PASS, _da_pass())
    update_flow('optimize', add_optimizers=[DA_PASS])
    _registered = True
