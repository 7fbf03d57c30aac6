"""Keras/QKeras model -> integer reference model, with exact types for every tensor.

One module per family, each registering its exporters with ``@exporter`` (``registry.py``); a
new method adds its own module and imports it below. This is also the deployability check: a
layer without an exporter is refused at load time, with the reason (``model.py``).
"""

from flow.export import activations, block_sparse, conv, dense, depthwise, float_layers, folded, lstm, merge, pool, sst, structure  # noqa: F401  (register exporters)
from flow.export.model import (  # noqa: F401  (the package's API)
    check_deployable,
    deployed_model,
    reference_for,
    removed_nodes,
    to_integer_model,
)
from flow.export.activations import keras_view  # noqa: F401
from flow.export.registry import EXPORTERS, Overrides, UnsupportedModel, layer_overrides  # noqa: F401
from flow.export.types import exact_accum_type  # noqa: F401
