"""yosys ``synth_xilinx`` of da4ml's Verilog: LUT, FF, CARRY, DSP, BRAM and logic depth.

No place and route exists here for these families, so the logic depth (the longest path in
cells from a port or register to a port or register, LUTs, MUXFs and carry chains counted alike,
computed on the netlist: yosys' ``ltp -noff`` runs through mapped Xilinx flip-flops) is the first
indication of timing, not a timing report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from flow.infra import processes
from flow.rtl import tools

CELL_GROUPS = {  # yosys cell name prefix -> (resource, count per cell); a RAMB36 is two BRAM18
    'LUT': ('lut', 1), 'FD': ('ff', 1), 'CARRY': ('carry', 1), 'DSP48': ('dsp', 1), 'MUXF': ('muxf', 1),
    'RAMB18': ('bram18', 1), 'RAMB36': ('bram18', 2),
}
RESOURCES = ('lut', 'ff', 'carry', 'dsp', 'bram18', 'muxf', 'logic_depth')


class SynthFailed(RuntimeError):
    pass


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts of yosys' ``stat`` grouped into resources."""
    out = {group: 0 for group, _ in CELL_GROUPS.values()}
    for cell, count in re.findall(r'^\s+([A-Z][A-Z0-9_]*)\s+(\d+)\s*$', text, re.M):
        for prefix, (group, per_cell) in CELL_GROUPS.items():
            if cell.startswith(prefix):
                out[group] += per_cell * int(count)
                break
    return out


REGISTERS = ('FD', 'RAMB', 'SRL')  # cells whose outputs start a path (and whose inputs end one)


DSP_INPUT_REGISTERS = {'A': 'AREG', 'B': 'BREG', 'C': 'CREG', 'D': 'DREG'}  # DSP48 port -> its register's parameter


def _param(cell: dict, name: str) -> int:
    v = str(cell.get('parameters', {}).get(name, '0'))
    return int(v, 2 if set(v) <= {'0', '1'} else 10)


def _is_register(cell: dict) -> bool:
    kind = cell['type']
    if kind.startswith('DSP48'):  # a DSP with its product or output register is a path boundary
        return bool(_param(cell, 'MREG') or _param(cell, 'PREG'))
    return kind.startswith(REGISTERS)


def _cut_inputs(cell: dict) -> set[str]:
    """Input ports whose paths end in a register inside the cell: yosys absorbs a DSP48's input
    registers (A, B, C, D), and the path from such a register through the multiplier starts there."""
    if not cell['type'].startswith('DSP48'):
        return set()
    return {port for port, reg in DSP_INPUT_REGISTERS.items() if _param(cell, reg)}


def _cell_depths(cells) -> dict[int, int]:
    """Net bit -> the longest chain of combinational cells ending in it (from a register or port)."""
    driver: dict[int, list[int]] = {}  # net bit -> the input bits of the combinational cell driving it
    for cell in cells:
        if _is_register(cell):
            continue
        dirs, cut = cell.get('port_directions', {}), _cut_inputs(cell)
        ins = [b for port, bits in cell['connections'].items() if dirs.get(port) == 'input' and port not in cut
               for b in bits if isinstance(b, int)]
        for port, bits in cell['connections'].items():
            if dirs.get(port) == 'output':
                for b in bits:
                    if isinstance(b, int):
                        driver[b] = ins
    depth: dict[int, int] = {}
    open_: set[int] = set()  # expanded, inputs not all done: the current path's bits
    for start in driver:
        stack = [start]
        while stack:  # iterative depth-first: deep carry chains would overflow Python's recursion
            b = stack[-1]
            if b in depth:
                stack.pop()
            elif b in open_:  # its inputs are done
                depth[b] = 1 + max((depth.get(i, 0) for i in driver[b]), default=0)
                open_.discard(b)
                stack.pop()
            else:
                open_.add(b)
                for i in driver[b]:
                    if i in driver and i not in depth:
                        if i in open_:  # an input on the current path: the depth would be infinite
                            raise SynthFailed(f'combinational loop in the netlist through net bit {i}: no logic depth')
                        stack.append(i)
    return depth


def logic_depth(netlist: dict, top: str) -> int:
    """Longest chain of combinational cells between registers/ports in a yosys JSON netlist."""
    return max(_cell_depths(netlist['modules'][top]['cells'].values()).values(), default=0)


def register_depths(netlist: dict, top: str) -> dict[str, int]:
    """Named register (its output net's name) -> the longest chain of combinational cells into its
    data input: in a pipeline, the logic depth of the stage that register ends."""
    module = netlist['modules'][top]
    cells = list(module['cells'].values())
    depth = _cell_depths(cells)
    into = {}  # register output bit -> depth at its D input
    for cell in cells:
        if cell['type'].startswith('FD'):
            d = [b for b in cell['connections'].get('D', ()) if isinstance(b, int)]
            for q in cell['connections'].get('Q', ()):
                if isinstance(q, int):
                    into[q] = max((depth.get(b, 0) for b in d), default=0)
    out = {}
    for name, net in module.get('netnames', {}).items():
        got = [into[b] for b in net['bits'] if isinstance(b, int) and b in into]
        if got and not net.get('hide_name'):
            out[name] = max(got)
    return out


def synthesize(design: Path, top: str, family: str, depth_into: tuple[str, ...] = ()) -> dict:
    """Synthesize da4ml's project in ``design`` (src/<top>.v, a pipeline's stage modules, its static
    modules) for ``family``; ``depth_into``: see ``synthesize_files``."""
    src = design / 'src'
    # lookup_table.v fails to elaborate without table files, and the RTL level builds no tables (logic.py)
    files = [src / f'{top}.v', *sorted(src.glob(f'{top}_stage*.v')),
             *sorted(p for p in (src / 'static').glob('*.v') if p.name != 'lookup_table.v')]
    return synthesize_files(files, top, family, design / 'synth', depth_into)


def cache_dir() -> Path:
    """Where yosys results are kept by content ($SPARSE_FLOW_CACHE, else ~/.cache/sparse-fpga-flow)."""
    return Path(os.environ.get('SPARSE_FLOW_CACHE') or Path.home() / '.cache' / 'sparse-fpga-flow') / 'yosys'


DEPTH_RULES = 2  # the logic depth's rules (_cell_depths): a change invalidates the cached counts

# yosys' proc_rom turns a case table of constants into a ROM, and synth_xilinx's memory_dff then merges
# the counter that addresses it into the ROM's read port: the ROM is mapped on the counter's next-state
# logic, 4-6x the LUTs of a LUT6/MUXF ROM (a 256x4 weight ROM: 75-100 LUTs and 4 FFs instead of the 16
# LUTs Vivado maps the same case table to). memory_map first makes every ROM logic on its own
# address (`proc -norom` gives about the same LUTs, 3% fewer on an SST engine, but its case trees took
# 6.9 GB and 3x the time there). Our Verilog has no RAMs (da4ml's and the engines'), so nothing else is mapped differently.
SYNTH = 'hierarchy -check -top {top}\nproc\nmemory_map\nsynth_xilinx -family {family} -top {top} -flatten -noiopad'


def _cache_key(files: list[Path], synth: str, depth_into: tuple[str, ...]) -> str:
    """The same Verilog, yosys commands (``SYNTH``: the top, the family) and yosys give the same
    netlist: a rerun (a sweep's points, a ReuseFactor changed elsewhere in the model) reads yosys'
    earlier result instead of running it again."""
    h = hashlib.sha256(f'{tools.yosys_version()}\n{synth}\n{" ".join(depth_into)}\ndepth {DEPTH_RULES}\n'.encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:32]


def synthesize_files(files: list[Path], top: str, family: str, reports: Path, depth_into: tuple[str, ...] = ()) -> dict:
    """yosys on Verilog ``files`` (module ``top``); reports and the script go to ``reports``. Results
    are cached by content (``cache_dir``); a cached result is yosys' own, from an identical run.
    ``depth_into``: registers (by name) whose input logic depth is reported too (``depth_into``: name -> cells)."""
    design = reports.parent
    reports.mkdir(exist_ok=True)
    depth_into = tuple(depth_into)
    synth = SYNTH.format(family=family, top=top)  # the yosys commands, the top and the family: part of the key
    cached = cache_dir() / _cache_key(files, synth, depth_into)
    if (cached / 'counts.json').is_file():
        shutil.copy(cached / 'stat.txt', reports / 'stat.txt')
        (reports / 'cached_from.txt').write_text(f'yosys results of an identical design, from {cached}\n')
        return json.loads((cached / 'counts.json').read_text())
    (reports / 'cached_from.txt').unlink(missing_ok=True)  # a report folder reused for a new design
    script = '\n'.join([
        'read_verilog -sv ' + ' '.join(str(f.resolve()) for f in files),
        synth,
        f'tee -q -o {(reports / "stat.txt").resolve()} stat',
        f'write_json {(reports / "netlist.json").resolve()}',
        '',
    ])
    (reports / 'synth.ys').write_text(script)
    res = processes.run([tools.yosys(), '-q', '-l', str((reports / 'yosys.log').resolve()), '-s',
                         str((reports / 'synth.ys').resolve())], cwd=design, capture_output=True, text=True)
    if res.returncode != 0:
        raise SynthFailed(f'yosys failed on {top} (exit {res.returncode}; log: {reports / "yosys.log"}):\n'
                          f'{(res.stderr or res.stdout)[-2000:]}')
    counts = parse_stat((reports / 'stat.txt').read_text())
    netlist = reports / 'netlist.json'
    net = json.loads(netlist.read_text())
    counts['logic_depth'] = logic_depth(net, top)
    if depth_into:
        depths = register_depths(net, top)
        counts['depth_into'] = {name: depths.get(name, 0) for name in depth_into}  # 0: no logic (or optimized away)
    netlist.unlink()  # large, and everything needed is in the counts
    try:  # a cache that cannot be written costs time, not results
        tmp = cached.with_name(cached.name + f'.tmp{os.getpid()}')
        tmp.mkdir(parents=True, exist_ok=True)
        shutil.copy(reports / 'stat.txt', tmp / 'stat.txt')
        (tmp / 'counts.json').write_text(json.dumps(counts))
        tmp.rename(cached)  # whole or not at all (another run may have stored it meanwhile)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts
