"""Merges (skip connections): Add, Subtract, Multiply, Average, Maximum, Minimum and Concatenate of
two tensors -> hls4ml's Merge / Concatenate, exact by default (the result type holds every result)."""

from __future__ import annotations

from flow.export.registry import UnsupportedModel, _no_override, _result, exporter
from flow.runtime.ref_merge import MERGE_OPS, MULTIPLY, Concatenate, Merge, range_type, result_range

MERGE_CLASSES = {'Add': 'add', 'Subtract': 'subtract', 'Multiply': MULTIPLY, 'Average': 'average',
                 'Maximum': 'maximum', 'Minimum': 'minimum'}
assert set(MERGE_CLASSES.values()) == {*MERGE_OPS, MULTIPLY}


def _two_inputs(layer, in_t) -> list[tuple]:
    """The per-sample shapes of the two tensors a merge reads; refuses any other number."""
    where = f"layer '{layer.name}' ({type(layer).__name__})"
    if not isinstance(in_t, tuple) or len(in_t) != 2:
        n = len(in_t) if isinstance(in_t, tuple) else 1
        raise UnsupportedModel(f'{where} merges {n} tensors; hls4ml 1.3.0 merges two: chain two-input '
                               f'{type(layer).__name__} layers')
    return [tuple(int(d) for d in s[1:]) for s in layer.input_shape]


@exporter(*MERGE_CLASSES)
def export_merge(layer, in_t, ov):
    """hls4ml's Merge: the exact elementwise op, one cast to the result (default: the exact type)."""
    _no_override(layer, ov, 'accum', 'a merge computes at full precision and casts once to its result')
    shapes = _two_inputs(layer, in_t)
    if shapes[0] != shapes[1]:
        raise UnsupportedModel(f"layer '{layer.name}' ({type(layer).__name__}) merges tensors of shapes {shapes[0]} and "
                               f"{shapes[1]}; hls4ml's streamed merge takes equal shapes (no broadcasting): bring both "
                               'branches to one shape')
    op = MERGE_CLASSES[type(layer).__name__]
    return Merge(name=layer.name, out_type=_result(ov) or range_type(*result_range(op, *in_t)), op=op)


@exporter('Concatenate')
def export_concatenate(layer, in_t, ov):
    """hls4ml's Concatenate along the layer's axis; default result: a type holding both inputs' values."""
    _no_override(layer, ov, 'accum', 'a concatenation copies its inputs')
    shapes = _two_inputs(layer, in_t)
    rank = len(shapes[0])
    if rank > 3:
        raise UnsupportedModel(f"layer '{layer.name}' (Concatenate) joins rank-{rank} tensors; hls4ml 1.3.0 concatenates "
                               'tensors of rank 3 or less')
    axis = int(layer.get_config()['axis'])
    axis = axis - rank - 1 if axis > 0 else axis  # numpy's axis over (samples, ...), counted from the end
    frac = max(t.frac for t in in_t)
    lo = min(t.min_code << (frac - t.frac) for t in in_t)
    hi = max(t.max_code << (frac - t.frac) for t in in_t)
    return Concatenate(name=layer.name, out_type=_result(ov) or range_type(lo, hi, frac), axis=axis)
