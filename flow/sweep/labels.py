"""A point's label: its settings as one short line (``drop_rate=0.5, fc1.reuse_factor=8``), read by
the points (their label) and the results (a setting's label without its seed)."""

from __future__ import annotations

import json


def label(settings: dict) -> str:
    """Settings as a point's label ('base' for none)."""
    return ', '.join(f'{k.removeprefix("model_params.").removeprefix("layers.")}={_short(v)}'
                     for k, v in settings.items()) or 'base'


def _short(v) -> str:
    return f'{v:g}' if isinstance(v, float) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
