"""Every kind's engine emitter (importing them registers their builders, ``engine_design.engine_for``),
and the lookup the rtl step iterates with."""

from __future__ import annotations

from . import engine, lstm_engine, sst_engine  # noqa: F401  (each registers its kinds' builder)
from .engine_design import BUILDERS, EngineDesign


def rtl_engine(layer, rf: int, in_type, in_shape: tuple = ()) -> EngineDesign | None:
    """The engine of ``layer``'s HLS kernel at ReuseFactor ``rf`` on inputs of ``in_type`` (one sample
    of ``in_shape``), by its class or the nearest registered parent's; None: its kind has none
    (hls4ml's own templates)."""
    builder = next((BUILDERS[c] for c in type(layer).__mro__ if c in BUILDERS), None)
    return builder(layer, rf, in_type, tuple(in_shape)) if builder else None
