"""yosys ``synth_xilinx`` of da4ml's Verilog: LUT, FF, CARRY, DSP, BRAM and logic depth.

No place and route exists here for these families, so the logic depth (``ltp -noff``: the
longest path in cells between inputs and outputs, LUTs and carry chains counted alike) is the
first indication of timing, not a timing report.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from flow import processes
from flow.rtl import tools

CELL_GROUPS = {  # yosys cell name prefix -> resource
    'LUT': 'lut', 'FD': 'ff', 'CARRY': 'carry', 'DSP48': 'dsp', 'MUXF': 'muxf', 'RAMB18': 'bram18', 'RAMB36': 'bram36',
}
RESOURCES = ('lut', 'ff', 'carry', 'dsp', 'bram18', 'muxf', 'logic_depth')


class SynthFailed(RuntimeError):
    pass


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts of yosys' ``stat`` grouped into resources (a RAMB36 counts as two BRAM18)."""
    out = {k: 0 for k in ('lut', 'ff', 'carry', 'dsp', 'muxf', 'bram18')}
    for cell, count in re.findall(r'^\s+([A-Z][A-Z0-9_]*)\s+(\d+)\s*$', text, re.M):
        for prefix, group in CELL_GROUPS.items():
            if cell.startswith(prefix):
                if group == 'bram36':
                    out['bram18'] += 2 * int(count)
                else:
                    out[group] += int(count)
                break
    return out


def parse_ltp(text: str) -> int:
    m = re.search(r'length=(\d+)', text)
    if not m:
        raise SynthFailed(f'yosys ltp printed no path length:\n{text[-2000:]}')
    return int(m.group(1))


def synthesize(design: Path, top: str, family: str, timeout: float | None = None) -> dict[str, int]:
    """Synthesize da4ml's project in ``design`` (src/<top>.v + its static modules) for ``family``."""
    src = design / 'src'
    files = [src / f'{top}.v', *sorted(p for p in (src / 'static').glob('*.v') if p.name != 'lookup_table.v')]
    memfiles = src / 'memfiles'
    if memfiles.is_dir() and any(memfiles.iterdir()):
        files.append(src / 'static' / 'lookup_table.v')  # reads its tables with $readmemh, from the cwd
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
    cwd = memfiles if memfiles.is_dir() else design
    try:
        res = processes.run([tools.yosys(), '-q', '-l', str((reports / 'yosys.log').resolve()), '-s',
                             str((reports / 'synth.ys').resolve())], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SynthFailed(f'yosys did not finish synthesizing {top} in {timeout:.0f} s (log: {reports / "yosys.log"})') from e
    if res.returncode != 0:
        raise SynthFailed(f'yosys failed on {top} (exit {res.returncode}; log: {reports / "yosys.log"}):\n'
                          f'{(res.stderr or res.stdout)[-2000:]}')
    counts = parse_stat((reports / 'stat.txt').read_text())
    counts['logic_depth'] = parse_ltp((reports / 'ltp.txt').read_text())
    return counts
