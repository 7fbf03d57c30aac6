"""Points of a sweep: the axes expanded (grid, or a seeded random draw), each a full flow config."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass, field

from flow.sweep.labels import label
from flow.sweep.spec import Range, SweepSpec


@dataclass
class Point:
    settings: dict  # axis -> value: what this point varies
    config: dict  # the flow config mapping it runs (FlowConfig.load's input; the model named with its parameters)
    model_params: dict = field(default_factory=dict)
    error: str | None = None  # the settings cannot make a flow config (bad input, exit 2)
    flow_config: object = None  # the FlowConfig it runs (None with an error)

    @property
    def key(self) -> str:
        """Its build folder's name: the fingerprint of its whole flow config (built-in defaults
        included, files by content), so points that resolve to the same config share a folder."""
        if self.flow_config is not None:
            return self.flow_config.fingerprint()
        return 'invalid-' + hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return label(self.settings)


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of the sweep, in a stable order (duplicates once)."""
    keys = list(spec.axes)
    if spec.sampling == 'grid':
        combos = [dict(zip(keys, values)) for values in itertools.product(*(spec.axes[k] for k in keys))]
    else:
        combos = _random(spec, keys)
    points, seen = [], set()
    for combo in combos:
        p = make_point(spec, combo)
        if p.key not in seen:
            seen.add(p.key)
            points.append(p)
    return points


def _random(spec: SweepSpec, keys: list[str]) -> list[dict]:
    rng = random.Random(spec.seed)
    if all(isinstance(spec.axes[k], list) for k in keys):  # a finite grid: draw without replacement
        grid = list(itertools.product(*(spec.axes[k] for k in keys)))
        picked = rng.sample(range(len(grid)), min(spec.n, len(grid)))
        return [dict(zip(keys, grid[i])) for i in sorted(picked)]
    out = []
    for _ in range(spec.n):
        out.append({k: _draw(rng, spec.axes[k]) for k in keys})
    return out


def _draw(rng: random.Random, axis):
    if isinstance(axis, list):
        return rng.choice(axis)
    assert isinstance(axis, Range)
    if axis.log:
        v = math.exp(rng.uniform(math.log(axis.low), math.log(axis.high)))
    else:
        v = rng.uniform(axis.low, axis.high)
    return int(round(v)) if axis.integer else round(v, 6)


def make_point(spec: SweepSpec, settings: dict) -> Point:
    config = copy.deepcopy(spec.base)
    params = {**config.pop('model_params', {}), **spec.model_params}
    for key, value in settings.items():
        head, *rest = key.split('.')
        if head == 'model_params':
            params[rest[0]] = value
        elif head == 'layers':
            layers = config.setdefault('layers', {})
            layers.setdefault(rest[0], {})[rest[1]] = value
        else:
            config[head] = value
    error = None
    if params:
        config['model_params'] = params  # checked against the built-in's build() with the rest of the config
    point = Point(settings=dict(settings), config=config, model_params=params, error=error)
    if error is None:
        from flow.infra.errors import BadInput

        try:
            point.flow_config = flow_config(config)
        except BadInput as e:
            point.error = str(e)
    return point


def flow_config(config: dict):
    """The point's FlowConfig, or BadInput naming what is wrong (as build-bitstream reports it)."""
    from flow.config import load_config
    from flow.infra.errors import BadInput

    try:
        cfg = load_config(None, **config)
    except ValueError as e:
        raise BadInput(str(e)) from None
    cfg.input_files()  # a model or data file that is not there: bad input
    return cfg