"""The exporter registry (one exporter per Keras class, registered by each family module with
``@exporter``, as hls4ml's converters register ``@keras_handler``), per-layer overrides and refusals."""

from __future__ import annotations

from dataclasses import dataclass

from flow.infra.errors import BadInput
from flow.export.quantizers import _config
from flow.runtime.fixed import FixedType

# Keras class name -> exporter(layer, in_type, overrides) -> a reference layer, a list of them, or []
EXPORTERS: dict = {}


def exporter(*keras_classes: str):
    """Register the decorated function as the exporter of these Keras classes."""
    def deco(fn):
        for cls in keras_classes:
            EXPORTERS[cls] = fn
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


def layer_overrides(cfg) -> dict[str, Overrides]:
    """The per-layer settings of a FlowConfig that change the reference."""
    fields = ('accum', 'result', 'table_size', 'table_t')
    # every named layer, also those with only a ReuseFactor or strategy: a name the model lacks is refused
    return {name: Overrides(**{f: getattr(lc, f) for f in fields}) for name, lc in cfg.layers.items()}


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
