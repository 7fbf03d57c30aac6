"""Vendor tool runs (Vitis HLS, Vivado): checked return codes, the log lines that matter, and
report parsing into JSON. Both scripts are generated at the convert step (flow/stages/scripts.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from flow.infra import processes
from flow.infra.build_dir import write_json
from flow.infra.progress import console

ERROR_LINE = re.compile(r'^(ERROR|CRITICAL WARNING|FATAL)')


class ToolFailed(RuntimeError):
    pass


def run_tool(cmd: list[str], cwd: Path, log: Path, what: str, env: dict | None = None) -> None:
    """Run a vendor tool with its output in ``log``; raise with the first error lines on failure."""
    with console.status(f'{what} (log: {log})'), open(log, 'w') as out:
        res = processes.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, **(env or {})})
    text = log.read_text(errors='replace')
    errors = [l for l in text.splitlines() if ERROR_LINE.match(l)]
    if res.returncode or any(l.startswith(('ERROR', 'FATAL')) for l in errors):
        excerpt = '\n'.join(errors[:20] or text.splitlines()[-20:])
        raise ToolFailed(f'{what} failed (exit {res.returncode}); see {log}:\n{excerpt}')


def hls_command(tool: str, tcl: str) -> list[str]:
    if Path(tool).name == 'vitis-run':  # Vitis 2024.x unified command line
        return [tool, '--mode', 'hls', '--tcl', tcl]
    return [tool, '-f', tcl]  # Vitis HLS 2023.x


def parse_csynth(xml_path: Path) -> dict:
    """Latency, interval, clock and resources from Vitis HLS's <top>_csynth.xml."""
    root = ET.parse(xml_path).getroot()
    perf = root.find('./PerformanceEstimates')
    text = lambda node, path: node.find(path).text if node is not None and node.find(path) is not None else None  # noqa: E731
    report = {
        'target_clock_ns': text(root, './UserAssignments/TargetClockPeriod'),
        'estimated_clock_ns': text(perf, './SummaryOfTimingAnalysis/EstimatedClockPeriod'),
        'latency_best': text(perf, './SummaryOfOverallLatency/Best-caseLatency'),
        'latency_worst': text(perf, './SummaryOfOverallLatency/Worst-caseLatency'),
        'interval_min': text(perf, './SummaryOfOverallLatency/Interval-min'),
        'interval_max': text(perf, './SummaryOfOverallLatency/Interval-max'),
    }
    area = root.find('./AreaEstimates')
    if area is not None:
        report['resources'] = {c.tag: c.text for c in area.find('./Resources') or []}
        report['available'] = {c.tag: c.text for c in area.find('./AvailableResources') or []}
    return report


UTIL_ROWS = {
    'Slice LUTs': 'lut', 'CLB LUTs': 'lut', 'Slice Registers': 'ff', 'CLB Registers': 'ff',
    'Block RAM Tile': 'bram36', 'DSPs': 'dsp', 'URAM': 'uram',
}


def parse_utilization(rpt: Path) -> dict:
    """Used/available per resource from Vivado's report_utilization text table."""
    util = {}
    for line in Path(rpt).read_text(errors='replace').splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) >= 4 and cells[0] in UTIL_ROWS and UTIL_ROWS[cells[0]] not in util:
            nums = [c for c in cells[1:] if re.fullmatch(r'[\d.]+', c)]
            if len(nums) >= 2:
                util[UTIL_ROWS[cells[0]]] = {'used': float(nums[0]), 'available': float(nums[-2])}
    return util


def parse_timing(rpt: Path) -> dict:
    """Worst negative slack from Vivado's report_timing_summary (the Design Timing Summary table)."""
    lines = Path(rpt).read_text(errors='replace').splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith('WNS(ns)'):
            values = lines[i + 2].split()
            return {'wns_ns': float(values[0]), 'tns_ns': float(values[1]), 'met': float(values[0]) >= 0}
    return {}


def run_hls_synth(ctx, tool: str) -> dict:
    from flow.stages.accel import top_name

    hls, top = ctx.root / 'hls', top_name(ctx.config.project_name)
    steps = 'csim synth cosim export' if ctx.config.hls_cosim else 'csim synth export'
    run_tool(hls_command(tool, 'build_hls.tcl'), hls, hls / 'vitis_hls.log', f'Vitis HLS ({steps})', env={'HLS_STEPS': steps})
    xml = hls / f'{top}_prj' / 'solution1' / 'syn' / 'report' / f'{top}_csynth.xml'
    ip = hls / f'{top}_prj' / 'solution1' / 'impl' / 'ip'
    if not xml.is_file() or not ip.is_dir():
        raise ToolFailed(f'Vitis HLS finished but {xml if not xml.is_file() else ip} is missing; see {hls / "vitis_hls.log"}')
    report = parse_csynth(xml)
    write_json(ctx.stage / 'hls_report' / 'csynth.json', report)
    shutil.copy(xml, ctx.stage / 'hls_report' / xml.name)
    return report


def run_vivado_bitstream(ctx, tool: str) -> dict:
    project = ctx.config.project_name
    hls = ctx.root / 'hls'
    run_tool([tool, '-mode', 'batch', '-source', 'build_vivado.tcl'], hls, hls / 'vivado.log', 'Vivado (block design to bitstream)')
    built, out = hls / 'bitstream', ctx.stage / 'bitstream'
    for name in (f'{project}.bit', f'{project}.hwh', 'utilization.rpt', 'timing.rpt'):
        if not (built / name).is_file():
            raise ToolFailed(f'Vivado finished but {built / name} is missing; see {hls / "vivado.log"}')
        shutil.copy(built / name, out / name)
    report = {'utilization': parse_utilization(out / 'utilization.rpt'), 'timing': parse_timing(out / 'timing.rpt')}
    write_json(out / 'implementation.json', report)
    if report['timing'] and not report['timing']['met']:
        console.print(f"[yellow]timing not met: WNS {report['timing']['wns_ns']} ns[/]")
    return report
