"""The exporter registry (one exporter per Keras class, registered by each family module with
``@exporter``, as hls4ml's converters register ``@keras_handler``), per-layer overrides and refusals."""

from __future__ import annotations

from dataclasses import dataclass

from flow.infra.errors import BadInput
from flow.export.quantizers import _config
from flow.runtime.fixed import FixedType

# Keras class name -> exporter(layer, in_type, overrides) -> a reference layer, a list of them, or []
EXPORTERS: dict = {}
# Keras class name -> rewrite(layer, reference layer) -> the Keras layer hls4ml converts instead, or None
DEPLOY_REWRITES: dict = {}


def exporter(*keras_classes: str):
    """Register the decorated function as the exporter of these Keras classes."""
    def deco(fn):
        for cls in keras_classes:
            EXPORTERS[cls] = fn
        return fn

    return deco


def deploy_rewrite(*keras_classes: str):
    """Register the decorated function as the deploy rewrite of these Keras classes: given a layer and
    the reference layer its exporter made, the Keras layer that hls4ml must convert so that it builds
    that reference (e.g. a QDense whose kernel has zero blocks -> a BlockSparseQDense), or None to
    keep the layer (``flow.export.model.deployed_model``)."""
    def deco(fn):
        for cls in keras_classes:
            DEPLOY_REWRITES[cls] = fn
        return fn

    return deco


class UnsupportedModel(BadInput):
    pass


@dataclass
class Overrides:
    """Per-layer precision the user asked for (hls4ml precision strings), or None for exact."""

    accum: str | None = None
    result: str | None = None
    table_size: int | None = None  # table activations only; default: hls4ml's
    table_t: str | None = None
    # dense layers: look for zero blocks in the quantized kernel (flow/export/found.py); False keeps it dense
    sparse: bool = True
    block_shape: tuple[int, int] | None = None  # forces this block shape (kept: the blocks with a non-zero)
    # unquantized layers: the types of the float kernel and bias, and the model-wide default for them and the result
    weight: str | None = None
    bias: str | None = None
    default: str = 'ap_fixed<16,6>'


HLS4ML_DENSE_STRATEGIES = ('latency', 'resource')  # a layer given one of them stays hls4ml's own Dense


def layer_overrides(cfg) -> dict[str, Overrides]:
    """The per-layer settings of a FlowConfig that change the reference. ``sparse``: the layer's own,
    else False where the layer asks for an hls4ml Dense strategy (latency/resource), else the
    model-wide ``sparse`` (``to_integer_model`` gives unnamed layers that one)."""
    fields = ('accum', 'result', 'table_size', 'table_t', 'weight', 'bias')
    out = {}
    # every named layer, also those with only a ReuseFactor or strategy: a name the model lacks is refused
    for name, lc in cfg.layers.items():
        sparse = lc.sparse if lc.sparse is not None else (
            False if lc.strategy in HLS4ML_DENSE_STRATEGIES else cfg.sparse)
        out[name] = Overrides(**{f: getattr(lc, f) for f in fields}, sparse=sparse, default=cfg.default_precision,
                              block_shape=tuple(lc.block_shape) if lc.block_shape else None)
    return out


def _quantizer_name(q) -> str:
    return _config(q)[0]


def _no_override(layer, ov, field: str, why: str):
    if getattr(ov, field):
        raise UnsupportedModel(f"layer '{layer.name}': setting {field!r} does not apply ({why}); remove it")


def _result(ov) -> FixedType | None:
    return FixedType.parse(ov.result) if ov.result else None


def _has_input_layer(model) -> bool:
    return bool(model.layers) and type(model.layers[0]).__name__ == 'InputLayer'


def _compute_layers(model) -> list:
    return model.layers[1:] if _has_input_layer(model) else model.layers


def input_layer_name(model) -> str:
    return model.layers[0].name if _has_input_layer(model) else model.input.name.split(':')[0]


def keras_inbound(model) -> dict[str, tuple[str, ...]]:
    """Each compute layer's name -> the layers whose outputs it reads (the input layer's name for the
    model input), from the functional model's config; a Sequential model is a chain."""
    layers = model.get_config().get('layers', [])
    if not any('inbound_nodes' in c for c in layers):  # Sequential
        names = [input_layer_name(model)] + [layer.name for layer in _compute_layers(model)]
        return {b: (a,) for a, b in zip(names, names[1:])}
    out = {}
    for c in layers:
        nodes = c['inbound_nodes']
        if len(nodes) > 1:
            raise UnsupportedModel(f"layer '{c['name']}' is called {len(nodes)} times (a shared layer); hls4ml builds one "
                                   'node per layer: give every call a layer of its own')
        if nodes:
            out[c['name']] = tuple(t[0] for t in nodes[0])
    return out


def rebuild(model, call, inp, x):
    """A functional model with ``model``'s graph: input ``inp``, ``x`` standing for the model input,
    and ``call(layer, inputs)`` making each layer's output from its input tensor (a list for a merge)."""
    import tensorflow as tf

    inbound = keras_inbound(model)
    out = {input_layer_name(model): x}
    for layer in _compute_layers(model):
        xs = [out[name] for name in inbound[layer.name]]
        out[layer.name] = call(layer, xs[0] if len(xs) == 1 else xs)
    return tf.keras.Model(inp, out[_compute_layers(model)[-1].name], name=model.name)
