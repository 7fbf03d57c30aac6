"""The sweep file (YAML): a base flow config, the axes a point varies, how points are drawn.

Example::

    name: digits_small
    base:                          # a flow config (flow.yaml): model, data, board, any setting
      model: digits_mlp
      epochs: 5
      rtl: false
    model_params: {}               # the built-in model's build() parameters shared by every point
    axes:                          # what a point varies: FlowConfig fields, dotted per-layer keys,
      model_params.drop_rate: [0.5, 0.75]   # and the built-in's parameters
      model_params.weight_bits: [3, 4]
      layers.fc1.reuse_factor: [8, 16]
      seed: {low: 0, high: 9, integer: true}   # a range: random sampling only
    sampling: grid                 # grid: every combination; random: n points drawn with seed;
    n: 8                           # optuna: n trials chosen by Optuna's multi-objective TPE on Ray Tune
    seed: 0
    objectives: {acc_hw: max, stored_bits: min}   # optuna: the figures it trades off (results columns)
    steps: estimate                # each point runs train .. this step (default estimate)
    resources: {num_cpus: 1, memory_gb: 2}   # what each point's Ray task declares
    point_timeout_min: 30          # a point still running after this is stopped and recorded as failed
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flow.infra.errors import BadInput


class Range(BaseModel):
    """A continuous (or integer) range for random sampling: uniform, or log-uniform."""

    model_config = ConfigDict(extra='forbid')
    low: float
    high: float
    integer: bool = False
    log: bool = False

    @model_validator(mode='after')
    def _order(self):
        if self.high < self.low:
            raise ValueError(f'high {self.high} is below low {self.low}')
        if self.log and self.low <= 0:
            raise ValueError('log ranges need low > 0')
        return self


Axis = Union[list, Range]


class Resources(BaseModel):
    model_config = ConfigDict(extra='forbid')
    num_cpus: float = Field(1, gt=0)
    memory_gb: float = Field(2.0, gt=0)  # a point trains with TensorFlow and compiles with g++


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra='forbid')

    name: str = 'sweep'
    base: dict = {}
    model_params: dict = {}
    axes: dict[str, Axis] = {}
    sampling: Literal['grid', 'random', 'optuna'] = 'grid'
    n: int | None = Field(None, ge=1)  # random: how many points; optuna: how many trials in all
    seed: int = 0  # random: the draw; optuna: the sampler's seed
    objectives: dict[str, Literal['max', 'min']] = {'acc_hw': 'max', 'stored_bits': 'min'}  # optuna only
    steps: str = 'estimate'  # the last step each point runs
    resources: Resources = Resources()
    point_timeout_min: float | None = Field(None, gt=0)  # None: a point may run as long as it needs

    @field_validator('axes')
    @classmethod
    def _axes(cls, axes):
        from flow.config import FlowConfig

        fields = set(FlowConfig.model_fields) | {'data', 'model_params'}
        for key, values in axes.items():
            head, *rest = key.split('.')
            if head not in fields:
                raise ValueError(f'axis {key!r}: {head!r} is neither a flow setting ({", ".join(sorted(fields))}) nor model_params')
            if head == 'layers' and len(rest) != 2:
                raise ValueError(f'axis {key!r}: per-layer axes are layers.<layer>.<setting>')
            if head == 'model_params' and len(rest) != 1:
                raise ValueError(f'axis {key!r}: a model parameter is model_params.<name>')
            if head not in ('layers', 'model_params') and rest:
                raise ValueError(f'axis {key!r}: {head} has no sub-settings')
            if isinstance(values, list) and not values:
                raise ValueError(f'axis {key!r} has no values')
        return axes

    @field_validator('steps')
    @classmethod
    def _steps(cls, v):
        from flow.steps import step_names

        if v not in step_names():
            raise ValueError(f'unknown step {v!r}; steps: {", ".join(step_names())}')
        return v

    @model_validator(mode='after')
    def _sampling(self):
        if self.sampling == 'grid':
            ranges = [k for k, v in self.axes.items() if isinstance(v, Range)]
            if ranges:
                raise ValueError(f'grid sampling needs a list of values on every axis; {", ".join(ranges)} '
                                 'is a range (use sampling: random)')
        elif self.n is None:
            raise ValueError(f'{self.sampling} sampling needs n (how many {"points" if self.sampling == "random" else "trials"})')
        if self.sampling == 'optuna':
            from flow.sweep.results import FIGURES

            unknown = [k for k in self.objectives if k not in FIGURES]
            if unknown or not self.objectives:
                raise ValueError(f'objectives {unknown or "(none)"}: name one or more results columns to trade off, e.g. '
                                 '{acc_hw: max, stored_bits: min}; columns: ' + ', '.join(FIGURES))
            if not self.axes:
                raise ValueError('optuna sampling needs axes to search over')
        if not isinstance(self.base, dict):
            raise ValueError('base must be a mapping of flow settings')
        return self

    @classmethod
    def load(cls, path: Path) -> SweepSpec:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise BadInput(f'sweep file {path}: {e.strerror}') from e
        except yaml.YAMLError as e:
            raise BadInput(f'{path}: not valid YAML ({getattr(e, "problem", None) or e}); fix the file') from e
        if not isinstance(data, dict):
            raise BadInput(f'{path}: expected a mapping (base, axes, sampling, ...)')
        spec = cls.parse(data)
        return spec.resolve_paths(path.parent)

    @classmethod
    def parse(cls, data: dict) -> SweepSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            errors = '; '.join(f"{'.'.join(map(str, err['loc'])) or 'sweep'}: {err['msg']}" for err in e.errors())
            raise BadInput(f'sweep file: {errors}') from None

    def resolve_paths(self, folder: Path) -> SweepSpec:
        """A model or data file named relative to the sweep file, made absolute (workers run elsewhere)."""
        base = dict(self.base)
        for key in ('model', 'data', 'dataset'):
            value = base.get(key)
            if isinstance(value, str) and not Path(value).is_absolute() and (Path(folder) / value).is_file():
                base[key] = str((Path(folder) / value).resolve())
        return self.model_copy(update={'base': base})
