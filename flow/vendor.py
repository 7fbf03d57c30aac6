"""Vendor tool runs (Vitis HLS, Vivado): checked return codes, the log lines that matter."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from flow.progress import console

ERROR_LINE = re.compile(r'^(ERROR|CRITICAL WARNING|FATAL)', re.MULTILINE)


class ToolFailed(RuntimeError):
    pass


def run_tool(cmd: list[str], cwd: Path, log: Path, what: str) -> None:
    """Run a vendor tool, log to ``log``, raise with the first error lines on failure."""
    with console.status(f'{what} (log: {log})'), open(log, 'w') as out:
        res = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
    text = log.read_text(errors='replace')
    errors = [l for l in text.splitlines() if ERROR_LINE.match(l)]
    if res.returncode or any(l.startswith(('ERROR', 'FATAL')) for l in errors):
        excerpt = '\n'.join(errors[:20] or text.splitlines()[-20:])
        raise ToolFailed(f'{what} failed (exit {res.returncode}); see {log}:\n{excerpt}')


def hls_command(tool: str, tcl: str) -> list[str]:
    if Path(tool).name == 'vitis-run':  # Vitis 2024.x unified CLI
        return [tool, '--mode', 'hls', '--tcl', tcl]
    return [tool, '-f', tcl]  # Vitis HLS 2023.x


def run_hls_synth(ctx, tool: str) -> dict:
    from hls4ml.report import parse_vivado_report

    hls = ctx.root / 'hls'
    (hls / 'build_opt.tcl').write_text(
        'array set opt {\n reset 1\n csim 0\n synth 1\n cosim 0\n validation 0\n export 1\n vsynth 0\n fifo_opt 0\n}\n'
    )
    run_tool(hls_command(tool, 'build_prj.tcl'), hls, hls / 'vitis_hls_build.log', 'Vitis HLS synthesis')
    report = parse_vivado_report(str(hls)) or {}
    out = ctx.stage / 'hls_report'
    from flow.build_dir import write_json

    write_json(out / 'csynth.json', report)
    return {'csynth': report.get('CSynthesisReport', {})}


def run_vivado_bitstream(ctx, tool: str) -> dict:
    raise ToolFailed('the Vivado block design scripts are not generated yet (issue 3); no bitstream can be built')
