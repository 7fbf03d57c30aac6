"""A layer's time-multiplexed engine as the rtl step builds it: the Verilog its kind generates from
the static structure its HLS kernel is generated from, and the facts the reports show. Every engine
has the same ports (flow/rtl/engine.header: start/ready, done, x latched), so one testbench
(flow/rtl/engine_sim.py) and one synthesis run them all.

Each kind's emitter registers its builder with ``@engine_for(<reference class>)`` (as the exporters
register with ``@exporter``); flow/rtl/engines.py imports them all, and its ``rtl_engine`` finds a
layer's by its class (a subclass, such as the block-sparse convolution, inherits its parent's). The
reference (flow/runtime, numpy only: it runs on the board) never imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class EngineDesign:
    rf: int  # the ReuseFactor
    organisation: str  # what the report calls its organisation ('gather', 'sst (8, 2), 16 decoders', ...)
    verilog: Callable[[str], str] = field(repr=False)  # module name -> the module's text
    multipliers: int = 0  # live multipliers (an SST engine has none in its datapath)
    padding: int = 0  # stored slots that compute nothing
    time_multiplexed_outputs: int = 0
    estimate: dict | None = None  # {'lut', 'ff'} of the kind's logic estimate, from the same structure
    interval: int = 0  # cycles from one input vector to the next (0: rf; an LSTM's: its time steps')

    @property
    def cycles(self) -> int:
        return self.interval or self.rf

    def facts(self) -> dict:
        """The engine's row in rtl_resources.json (yosys adds the measured columns)."""
        return {'organisation': self.organisation, 'reuse_factor': self.rf, 'multipliers': self.multipliers,
                'padding': self.padding, 'time_multiplexed_outputs': self.time_multiplexed_outputs,
                'estimate': self.estimate or {}}


# reference layer class -> builder(layer, rf, in_type, in_shape) -> EngineDesign
BUILDERS: dict[type, Callable] = {}


def engine_for(*kinds: type):
    """Register the decorated function as the engine builder of these reference layer classes."""
    def deco(fn):
        for kind in kinds:
            if kind in BUILDERS:
                raise ValueError(f'{kind.__name__} has an engine builder already: {BUILDERS[kind].__qualname__}')
            BUILDERS[kind] = fn
        return fn

    return deco

