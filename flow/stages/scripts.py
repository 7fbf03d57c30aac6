"""Vitis HLS and Vivado Tcl scripts for one board, filled from boards/tcl/*.tcl.in."""

from __future__ import annotations

from pathlib import Path

from flow.stages.accel import fill, top_name
from flow.infra.boards import BOARDS_DIR, Board
from flow.runtime.stream import StreamFormat

TCL_DIR = BOARDS_DIR / 'tcl'
IP_VENDOR, IP_LIBRARY, IP_VERSION = 'sparseflow', 'hls4ml', '1.0'

# Per PS type: cell name, register master, data slave, PL clock, DMA register base.
PS_PORTS = {
    'processing_system7': dict(PS='processing_system7_0', PS_MASTER='M_AXI_GP0', PS_HP='S_AXI_HP0', PS_CLK='FCLK_CLK0',
                               DMA_BASE='0x40400000'),
    'zynq_ultra_ps_e': dict(PS='zynq_ultra_ps_e_0', PS_MASTER='M_AXI_HPM0_FPD', PS_HP='S_AXI_HP0_FPD', PS_CLK='pl_clk0',
                            DMA_BASE='0xA0000000'),
}


def ip_vlnv(project: str) -> str:
    return f'{IP_VENDOR}:{IP_LIBRARY}:{top_name(project)}:{IP_VERSION}'


def accel_cell(project: str) -> str:
    return f'{top_name(project)}_0'


def values(project: str, board: Board, fmt: StreamFormat, clock_ns: float) -> dict:
    v = dict(
        PROJECT=project, TOP=top_name(project), OVERLAY=project, ACCEL=accel_cell(project), IP_VLNV=ip_vlnv(project),
        IP_VENDOR=IP_VENDOR, IP_LIBRARY=IP_LIBRARY, IP_VERSION=IP_VERSION, BOARD=board.name, PART=board.part,
        BOARD_PART=board.board_part, CLOCK_NS=f'{clock_ns:g}', PL_MHZ=f'{board.pl_clock_mhz:g}', HP_WIDTH=board.hp_port_width,
        WORD_BITS=fmt.word_bits, **PS_PORTS[board.ps],
    )
    # the board store item to install when Vivado lacks the board files (*kv260* also gets the KV260's carrier)
    v['BOARD_ITEM'] = board.board_part.split(':')[1].removesuffix('_som')
    v['BOARD_CONNECTIONS'] = (f'set_property board_connections {{{board.board_connections}}} [current_project]'
                              if board.board_connections else '# (no board connections needed)')
    v['PS_BLOCK'] = fill(TCL_DIR / f'ps_{board.ps}.tcl.in', v)
    return v


def write_scripts(hls_dir: Path, project: str, board: Board, fmt: StreamFormat, clock_ns: float) -> list[Path]:
    v = values(project, board, fmt, clock_ns)
    paths = []
    for name in ('build_hls.tcl', 'build_vivado.tcl'):
        path = Path(hls_dir) / name
        path.write_text(fill(TCL_DIR / f'{name}.in', v))
        paths.append(path)
    return paths
