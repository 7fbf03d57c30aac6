"""Built-in models: name -> module with ``build(seed)``, ``DATASET``, ``INPUT_PRECISION`` and
``FLOW_DEFAULTS`` (flow settings a user config overrides).

A built-in may take parameters, its ``build(seed, **params)`` keywords with documented defaults;
they are named with the model: ``digits_mlp{"drop_rate": 0.5, "weight_bits": 3}`` (a YAML/JSON
mapping after the name; ``with_params`` writes the canonical form). The name is a setting like any
other, so a build folder retrains when its parameters change.

Importing this package does not import TensorFlow; ``get`` does.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json


class _Builtins(dict):
    """name -> module path; ``in`` also accepts a name with parameters (``digits_mlp{...}``)."""

    def __contains__(self, name) -> bool:
        if not isinstance(name, str):
            return False
        try:
            base, _ = split_params(name)
        except ValueError:
            return False
        return dict.__contains__(self, base)


BUILTIN = _Builtins({
    'digits_mlp': 'keras_models.builtin.digits_mlp',
    'fashion_sst_mlp': 'keras_models.builtin.fashion_sst_mlp',
    'fashion_binary_mlp': 'keras_models.builtin.fashion_binary_mlp',
    'fashion_lowbit_mlp': 'keras_models.builtin.fashion_lowbit_mlp',
    'keywords_hcgs_mlp': 'keras_models.builtin.keywords_hcgs_mlp',
    'keywords_hcgs_lstm': 'keras_models.builtin.keywords_hcgs_lstm',
    'fashion_cgs_cnn': 'keras_models.builtin.fashion_cgs_cnn',
})


def split_params(name: str) -> tuple[str, dict]:
    """``'digits_mlp{"drop_rate": 0.5}'`` -> ``('digits_mlp', {'drop_rate': 0.5})``; ValueError if unreadable."""
    base, brace, rest = name.partition('{')
    if not brace:
        return name, {}
    import yaml

    try:
        params = yaml.safe_load(brace + rest)
    except yaml.YAMLError as e:
        raise ValueError(f'model {name!r}: the parameters after the name are not a YAML/JSON mapping ({e})') from None
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ValueError(f'model {name!r}: the parameters after the name are not a mapping of names to values')
    return base.strip(), params


def with_params(name: str, params: dict | None) -> str:
    """The canonical name of a built-in with parameters (sorted; those equal to their default left out)."""
    base, own = split_params(name)
    params = {**own, **(params or {})}
    if not params:
        return base
    defaults = build_parameters(base)
    kept = {k: v for k, v in params.items() if k not in defaults or not _same(defaults[k], v)}
    return base + json.dumps(kept, sort_keys=True) if kept else base


def build_parameters(name: str) -> dict:
    """The parameters a built-in's ``build`` takes besides the seed, with their defaults."""
    base, _ = split_params(name)
    module = _module(base)
    sig = inspect.signature(module.build)
    return {p.name: p.default for p in list(sig.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _same(default, value) -> bool:
    if isinstance(default, tuple) and isinstance(value, list):
        return list(default) == value
    return default == value and type(default) is type(value)


def _module(base: str):
    if not dict.__contains__(BUILTIN, base):
        raise KeyError(f'unknown built-in model {base!r}; built-in models: {sorted(BUILTIN)} (or pass a saved .h5/.keras file)')
    return importlib.import_module(BUILTIN[base])


class _WithParams:
    """A built-in module whose ``build(seed)`` passes the parameters given with its name."""

    def __init__(self, module, params: dict):
        self._module, self.params = module, params
        self.build = functools.partial(module.build, **params)

    def __getattr__(self, attr):
        return getattr(self._module, attr)


def get(name: str):
    try:
        base, params = split_params(name)
    except ValueError as e:
        raise KeyError(str(e)) from None
    module = _module(base)
    from . import layers  # noqa: F401  (importing it hides TensorFlow/Keras logs and warnings, as for every model)

    if not params:
        return module
    known = build_parameters(base)
    unknown = sorted(set(params) - set(known))
    if unknown:
        accepted = ', '.join(f'{k}={v!r}' for k, v in known.items()) or 'none'
        raise KeyError(f'built-in model {base!r} has no parameter {", ".join(unknown)}; its parameters (defaults): {accepted}')
    return _WithParams(module, params)
