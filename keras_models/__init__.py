"""Built-in models: name -> module with ``build(seed, **params)``, ``DATASET``, ``INPUT_PRECISION`` and
``FLOW_DEFAULTS`` (flow settings a user config overrides).

A built-in may take parameters, the keywords of its ``build`` with documented defaults; a flow
config gives them as ``model_params`` (``model_params: {drop_rate: 0.5, weight_bits: 3}``),
checked against the signature by ``check_params``.

Importing this package does not import TensorFlow; ``get`` does (and ``build_parameters``, which
reads the module).
"""

from __future__ import annotations

import importlib
import inspect

BUILTIN = {
    'digits_mlp': 'keras_models.builtin.digits_mlp',
    'fashion_sst_mlp': 'keras_models.builtin.fashion_sst_mlp',
    'fashion_binary_mlp': 'keras_models.builtin.fashion_binary_mlp',
    'fashion_lowbit_mlp': 'keras_models.builtin.fashion_lowbit_mlp',
    'keywords_hcgs_mlp': 'keras_models.builtin.keywords_hcgs_mlp',
    'keywords_hcgs_lstm': 'keras_models.builtin.keywords_hcgs_lstm',
    'fashion_cgs_cnn': 'keras_models.builtin.fashion_cgs_cnn',
    'keywords_dscnn': 'keras_models.builtin.keywords_dscnn',
    'fashion_resnet': 'keras_models.builtin.fashion_resnet',
}


def build_parameters(name: str) -> dict:
    """The parameters a built-in's ``build`` takes besides the seed, with their defaults."""
    sig = inspect.signature(get(name).build)
    return {p.name: p.default for p in list(sig.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_params(name: str, params: dict) -> dict:
    """``params`` without those equal to their defaults (one config, one fingerprint); KeyError naming
    an unknown parameter and the built-in's own."""
    known = build_parameters(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        accepted = ', '.join(f'{k}={v!r}' for k, v in known.items()) or 'none'
        raise KeyError(f'built-in model {name!r} has no parameter {", ".join(unknown)}; its parameters (defaults): {accepted}')
    return {k: v for k, v in sorted(params.items()) if not _same(known[k], v)}


def _same(default, value) -> bool:
    if isinstance(default, tuple) and isinstance(value, list):
        return list(default) == value
    return default == value and type(default) is type(value)


def get(name: str):
    if name not in BUILTIN:
        raise KeyError(f'unknown built-in model {name!r}; built-in models: {sorted(BUILTIN)} (or pass a saved .h5/.keras file)')
    module = importlib.import_module(BUILTIN[name])
    from . import layers  # noqa: F401  (importing it hides TensorFlow/Keras logs and warnings, as for every model)

    return module
