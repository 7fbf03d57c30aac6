"""The per-layer plan: kind, ReuseFactor, strategy and the accelerator's io_type, resolved once
and checked before training; convert, estimate and rtl read it."""

from __future__ import annotations

from flow.config import FlowConfig
from flow.infra.errors import BadInput
from flow.runtime.ref_layers import IO_TYPES
from flow.runtime.reference import IntegerModel

DENSE_KINDS = ('dense', 'dense_po2', 'block_sparse_dense', 'sst_dense', 'block_sparse_lstm', 'conv2d',
               'block_sparse_conv2d')  # ReuseFactor and accumulator
HLS4ML_DENSE = ('dense', 'dense_po2', 'conv2d')  # hls4ml's own Dense and Conv2D: Strategy
# Strategy 'distributed_arithmetic' (hls4ml 1.3.0 + da4ml: a multiplier-free shift-and-add graph of
# the constant kernel, zeros cost nothing; ReuseFactor 1): these kinds are then built by hls4ml's own
# Dense with the kernel zeros included (flow.hls swaps our IR layers for it: DENSE_EQUIVALENTS).
DA = 'distributed_arithmetic'
DA_KINDS = ('dense', 'dense_po2', 'block_sparse_dense')


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


PARALLEL_FF_SHARE = 4  # auto: io_parallel while its layer outputs (registers) take at most 1/4 of the board's FFs


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


def uses_da(layer, cfg: FlowConfig) -> bool:
    return layer.kind in DA_KINDS and cfg.strategy_for(layer.name) == DA


def check_strategies(im: IntegerModel, cfg: FlowConfig) -> None:
    """Refuse a strategy a layer cannot have (BadInput, naming the layer and the fix); called when
    the model is loaded (before training) and again before conversion."""
    for layer in im.layers:
        lc = cfg.layers.get(layer.name)
        if lc is not None and lc.reuse_factor and layer.kind not in DENSE_KINDS:
            raise BadInput(f"layer '{layer.name}' ({layer.kind}): reuse_factor applies to dense, convolution and LSTM "
                           'layers only; remove it for that layer')
        if lc is not None and lc.strategy == DA and layer.kind not in DA_KINDS:
            raise BadInput(f"layer '{layer.name}' ({layer.kind}): strategy {DA} applies to dense layers only "
                           f'({", ".join(DA_KINDS)}); remove strategy for that layer')
        if not uses_da(layer, cfg):
            continue
        rf = cfg.reuse_for(layer.name)
        if rf != 1:
            where = '' if lc is not None and lc.reuse_factor else ' (the model-wide reuse_factor)'
            raise BadInput(f"layer '{layer.name}': strategy {DA} needs ReuseFactor 1, it has {rf}{where}; set "
                           f'reuse_factor: 1 for that layer (layers: {{{layer.name}: {{reuse_factor: 1}}}}) or choose '
                           'strategy latency/resource')
        if lc is not None and lc.accum:
            raise BadInput(f"layer '{layer.name}': strategy {DA} adds exactly and has no accumulator type; remove "
                           f'accum: {lc.accum} for that layer')


