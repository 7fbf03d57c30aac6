"""Board descriptions from ``boards/*.yaml``: part, PS type, PL clock, HP width, capacity."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

BOARDS_DIR = Path(__file__).resolve().parents[2] / 'boards'
YOSYS_FAMILIES = {'xc7': 'xc7', 'xczu': 'xcup', 'xck26': 'xcup'}  # part prefix -> synth_xilinx family

# Rules of thumb for pipelining fully parallel logic (not a timing report: no place and route here).
# Per synth_xilinx family: ns per da4ml adder level (a 12-20 bit sum: a LUT, a carry chain and their
# routing) and ns per cell of yosys' logic depth (LUTs and carry cells counted alike, routing
# included), for the slowest speed grade the boards carry (-1 7-series, -1/-2LV UltraScale+). The
# two agree: an adder level measured about 5 cells deep on xc7 (a LUT, four CARRY4; the default
# model's stages of 4 levels: 16-19 cells) and about 3 expected on xcup (CARRY8; not measured here).
ADDER_NS = {'xc7': 2.0, 'xcup': 1.25}
CELL_NS = {'xc7': 0.4, 'xcup': 0.4}
REGISTER_NS = 1.0  # clock-to-out, setup and clock uncertainty taken off every stage's period


class Resources(BaseModel):
    lut: int
    ff: int
    bram18: int
    dsp: int
    uram: int


class Board(BaseModel):
    model_config = ConfigDict(extra='forbid')

    name: str
    aliases: list[str] = []
    part: str
    board_part: str
    ps: Literal['processing_system7', 'zynq_ultra_ps_e']
    pl_clock_mhz: float
    hp_port_width: int
    resources: Resources
    resources_source: str
    board_connections: str | None = None  # Vivado board_connections (Kria SOM + carrier)

    @property
    def clock_period_ns(self) -> float:
        return 1000.0 / self.pl_clock_mhz

    @property
    def yosys_family(self) -> str:
        """yosys ``synth_xilinx -family``: 7-series (Zynq-7000) or UltraScale+ (Zynq MPSoC, Kria)."""
        for prefix, family in YOSYS_FAMILIES.items():
            if self.part.lower().startswith(prefix):
                return family
        raise ValueError(f'board {self.name}: no yosys family known for part {self.part} (add it to YOSYS_FAMILIES)')


    @property
    def stage_ns(self) -> float:
        """The time a pipeline stage's logic has: the clock period less the register overhead."""
        return self.clock_period_ns - REGISTER_NS

    @property
    def adder_levels_per_stage(self) -> int:
        """da4ml's latency cutoff (its unit: one adder level) for a stage to meet the board clock."""
        return max(1, int(self.stage_ns // ADDER_NS[self.yosys_family]))

    @property
    def logic_depth_budget(self) -> int:
        """The logic depth (yosys cells) a stage can plausibly have at the board clock."""
        return max(1, int(self.stage_ns // CELL_NS[self.yosys_family]))


def all_boards() -> dict[str, Board]:
    boards = {}
    for path in sorted(BOARDS_DIR.glob('*.yaml')):
        board = Board.model_validate(yaml.safe_load(path.read_text()))
        boards[board.name] = board
    return boards


def get_board(name: str) -> Board:
    """Case-insensitive lookup by name or by the name PYNQ puts in $BOARD."""
    key = name.strip().lower()
    for board in all_boards().values():
        if key == board.name or key in (a.lower() for a in board.aliases):
            return board
    known = ', '.join(f"{b.name} ({', '.join(b.aliases)})" for b in all_boards().values())
    raise KeyError(f'unknown board {name!r}; known boards: {known}')
