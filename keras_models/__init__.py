"""Built-in models: name -> module with ``build(seed)``, ``DATASET``, ``INPUT_PRECISION`` and
``FLOW_DEFAULTS`` (flow settings a user config overrides).

Importing this package does not import TensorFlow; ``get`` does.
"""

from __future__ import annotations

import importlib

BUILTIN = {
    'digits_mlp': 'keras_models.builtin.digits_mlp',
    'fashion_sst_mlp': 'keras_models.builtin.fashion_sst_mlp',
    'fashion_binary_mlp': 'keras_models.builtin.fashion_binary_mlp',
    'fashion_lowbit_mlp': 'keras_models.builtin.fashion_lowbit_mlp',
    'keywords_hcgs_mlp': 'keras_models.builtin.keywords_hcgs_mlp',
    'keywords_hcgs_lstm': 'keras_models.builtin.keywords_hcgs_lstm',
    'fashion_cgs_cnn': 'keras_models.builtin.fashion_cgs_cnn',
}


def get(name: str):
    if name not in BUILTIN:
        raise KeyError(f'unknown built-in model {name!r}; built-in models: {sorted(BUILTIN)} (or pass a saved .h5/.keras file)')
    module = importlib.import_module(BUILTIN[name])
    from . import layers  # noqa: F401  (importing it hides TensorFlow/Keras logs and warnings, as for every model)

    return module
