"""yosys ``synth_xilinx`` of da4ml's Verilog: LUT, FF, CARRY, DSP, BRAM and logic depth.

No place and route exists here for these families, so the logic depth (``ltp -noff``: the
longest path in cells between inputs and outputs, LUTs and carry chains counted alike) is the
first indication of timing, not a timing report.
"""

from __future__ import annotations

import re
from pathlib import Path

from flow import processes
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


def parse_ltp(text: str) -> int:
    m = re.search(r'length=(\d+)', text)
    if not m:
        raise SynthFailed(f'yosys ltp printed no path length:\n{text[-2000:]}')
    return int(m.group(1))


def synthesize(design: Path, top: str, family: str) -> dict[str, int]:
    """Synthesize da4ml's project in ``design`` (src/<top>.v + its static modules) for ``family``."""
    src = design / 'src'
    # lookup_table.v fails to elaborate without table files, and the RTL level builds no tables (logic.py)
    files = [src / f'{top}.v', *sorted(p for p in (src / 'static').glob('*.v') if p.name != 'lookup_table.v')]
    reports = design / 'synth'
    reports.mkdir(exist_ok=True)
    script = '\n'.join([
        'read_verilog -sv ' + ' '.join(str(f.resolve()) for f in files),
        f'synth_xilinx -family {family} -top {top} -flatten -noiopad',
        f'tee -q -o {(reports / "stat.txt").resolve()} stat',
        f'tee -q -o {(reports / "ltp.txt").resolve()} ltp -noff',
        '',
    ])
    (reports / 'synth.ys').write_text(script)
    res = processes.run([tools.yosys(), '-q', '-l', str((reports / 'yosys.log').resolve()), '-s',
                         str((reports / 'synth.ys').resolve())], cwd=design, capture_output=True, text=True)
    if res.returncode != 0:
        raise SynthFailed(f'yosys failed on {top} (exit {res.returncode}; log: {reports / "yosys.log"}):\n'
                          f'{(res.stderr or res.stdout)[-2000:]}')
    counts = parse_stat((reports / 'stat.txt').read_text())
    counts['logic_depth'] = parse_ltp((reports / 'ltp.txt').read_text())
    return counts
