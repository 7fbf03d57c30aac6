"""The per-layer plan: every decision about how each layer is built, made once.

``make_plan`` resolves, for every layer of the integer reference, its ReuseFactor and hls4ml
strategy, and for the model the accelerator's io_type, from the config and the facts each kind
carries (``RefLayer.strategies``, ``reuse_factors``, ``io_types``), refusing any setting a layer
cannot take with one line naming the layer and what it takes. The train step runs it before any
training (the masks, hence the kept weights, are fixed when a model is built), the plan step saves
it (``plan/plan.json``), and convert, estimate and rtl read it instead of resolving again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from flow.config import FlowConfig
from flow.infra.errors import BadInput
from flow.runtime.ref_layers import DA, IO_TYPES
from flow.runtime.reference import IntegerModel

PLAN_FILE = 'plan.json'
PARALLEL_FF_SHARE = 4  # auto: io_parallel while its layer outputs (registers) take at most 1/4 of the board's FFs


@dataclass(frozen=True)
class LayerPlan:
    name: str
    kind: str
    reuse_factor: int | None = None  # None: the kind takes no ReuseFactor
    # the hls4ml strategy: latency/resource for hls4ml's own templates, distributed_arithmetic (hls4ml's
    # DA Dense, built from the layer's weights), or None: the kind's own template (or no strategy at all)
    strategy: str | None = None
    reuse_factors: str = ''  # the valid ReuseFactors, in words (the plan table)

    @property
    def da(self) -> bool:
        return self.strategy == DA


@dataclass(frozen=True)
class Plan:
    io_type: str
    layers: dict[str, LayerPlan]
    default_reuse_factor: int = 1  # hls4ml's model-wide ReuseFactor, for the nodes with none of their own (BatchNorm)
    # hls4ml's PipelineStyle for the network's top: 'dataflow' whenever a layer loops over its own cycles
    # (a ReuseFactor above 1, or our templates' pipelined loops), which a top-level PIPELINE would unroll
    pipeline_style: str = 'auto'

    def __getitem__(self, name: str) -> LayerPlan:
        return self.layers[name]

    def to_json(self) -> dict:
        return {'io_type': self.io_type, 'default_reuse_factor': self.default_reuse_factor,
                'pipeline_style': self.pipeline_style, 'layers': [asdict(p) for p in self.layers.values()]}

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        return cls(d['io_type'], {p['name']: LayerPlan(**p) for p in d['layers']}, d['default_reuse_factor'],
                   d['pipeline_style'])

    def save(self, folder: Path) -> Path:
        path = Path(folder) / PLAN_FILE
        path.write_text(json.dumps(self.to_json(), indent=1) + '\n')
        return path

    @classmethod
    def load(cls, folder: Path) -> Plan:
        return cls.from_json(json.loads((Path(folder) / PLAN_FILE).read_text()))


def make_plan(im: IntegerModel, cfg: FlowConfig, board) -> Plan:
    """The plan of every layer; BadInput for any setting a layer cannot take."""
    layers = {layer.name: _layer_plan(layer, cfg) for layer in im.layers}
    loops = any(p.reuse_factor is not None and (p.reuse_factor > 1 or p.strategy is None) for p in layers.values())
    return Plan(resolve_io_type(im, cfg, board), layers, cfg.reuse_factor, 'dataflow' if loops else 'auto')


def _layer_plan(layer, cfg: FlowConfig) -> LayerPlan:
    lc = cfg.layers.get(layer.name)
    where = f"layer '{layer.name}' ({layer.kind})"
    if lc is not None and lc.strategy and lc.strategy not in layer.strategies:
        what = f'strategy {" or ".join(layer.strategies)} only' if layer.strategies else 'no strategy'
        raise BadInput(f'{where}: strategy {lc.strategy} does not apply, it takes {what}; remove strategy for that layer')
    # the model-wide strategy applies to the layers that can take it; the others use their own template
    strategy = cfg.strategy_for(layer.name)
    strategy = strategy if strategy in layer.strategies else None
    valid = layer.reuse_factors(strategy)
    if valid is None:
        if lc is not None and lc.reuse_factor:
            raise BadInput(f'{where}: reuse_factor applies to dense, convolution and LSTM layers only; remove it for '
                           'that layer')
        return LayerPlan(layer.name, layer.kind)
    rf = cfg.reuse_for(layer.name)
    from_model = '' if lc is not None and lc.reuse_factor else ' (the model-wide reuse_factor)'
    if strategy == DA:
        if rf != 1:
            raise BadInput(f"layer '{layer.name}': strategy {DA} needs ReuseFactor 1, it has {rf}{from_model}; set "
                           f'reuse_factor: 1 for that layer (layers: {{{layer.name}: {{reuse_factor: 1}}}}) or choose '
                           'strategy latency/resource')
        if lc is not None and lc.accum:
            raise BadInput(f"layer '{layer.name}': strategy {DA} adds exactly and has no accumulator type; remove "
                           f'accum: {lc.accum} for that layer')
    if rf not in valid.values:
        raise BadInput(f'{where}: ReuseFactor {rf}{from_model} is not one it can be built with: {valid.describe()} '
                       f'({valid.why}); set reuse_factor for that layer (layers: {{{layer.name}: {{reuse_factor: N}}}})')
    return LayerPlan(layer.name, layer.kind, rf, strategy, valid.describe())


def check_io_type(im: IntegerModel, cfg: FlowConfig) -> None:
    """Refuse an io_type a layer has no implementation in (each reference kind lists its ``io_types``)."""
    if cfg.io_type != 'auto':
        for layer in im.layers:
            if cfg.io_type not in layer.io_types:
                raise BadInput(f"layer '{layer.name}' ({layer.kind}) is built in {' or '.join(layer.io_types)} only, the config "
                               f"says io_type: {cfg.io_type}; set io_type: {layer.io_types[0]} (or auto)")
        return
    only = {t: [l.name for l in im.layers if l.io_types == (t,)] for t in IO_TYPES}
    if all(only.values()):
        raise BadInput(f'the model has layers built in io_stream only ({", ".join(only["io_stream"])}) and in io_parallel only '
                       f'({", ".join(only["io_parallel"])}); one accelerator needs one io_type: drop one kind')


def resolve_io_type(im: IntegerModel, cfg: FlowConfig, board) -> str:
    """The io_type the accelerator is built in: the config's, or for 'auto' the one every layer has
    (io_stream for convolutions and pooling, io_parallel for an LSTM), and when both would do,
    io_parallel unless the layer outputs it keeps in registers exceed 1/4 of the board's flip-flops
    (a large MLP streams instead)."""
    check_io_type(im, cfg)
    if cfg.io_type != 'auto':
        return cfg.io_type
    possible = [t for t in IO_TYPES if all(t in layer.io_types for layer in im.layers)]
    if len(possible) == 1:
        return possible[0]
    sizes = im.sizes()
    register_bits = sum(sizes[layer.name] * layer.out_type.width for layer in im.layers)
    return 'io_stream' if register_bits * PARALLEL_FF_SHARE > board.resources.ff else 'io_parallel'


def print_plan(plan: Plan, console) -> None:
    from rich.table import Table

    from flow.infra.progress import print_table

    t = Table(title=f'Plan: how each layer is built ({plan.io_type})')
    for col in ('layer', 'kind', 'ReuseFactor', 'strategy', 'valid ReuseFactors'):
        t.add_column(col, justify='left' if col in ('layer', 'kind', 'strategy') else 'right')
    for p in plan.layers.values():
        t.add_row(p.name, p.kind, '-' if p.reuse_factor is None else str(p.reuse_factor),
                  p.strategy or ('template' if p.reuse_factor is not None else '-'), p.reuse_factors or '-')
    print_table(t, console)
