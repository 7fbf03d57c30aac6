"""Registers our layers with hls4ml through its extension API (idempotent).

One module per sparse layer kind; each lists its Keras handler, IR layer and templates in
``EXTENSIONS`` below, and its C++ header lives in ``hls_templates/``.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / 'hls_templates'
BACKENDS = ('Vitis', 'Vivado')
_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    import hls4ml

    from . import block_sparse_dense as bsd

    extensions = [
        ('BlockSparseQDense', bsd.parse_block_sparse_qdense, bsd.BlockSparseDense,
         (bsd.BlockSparseDenseConfigTemplate, bsd.BlockSparseDenseFunctionTemplate), bsd.HEADER),
    ]
    for keras_name, handler, ir_class, templates, header in extensions:
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
    _registered = True
