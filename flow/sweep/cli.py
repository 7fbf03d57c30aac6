"""``build-bitstream sweep SWEEP.yaml``: run a design-space sweep on Ray (see flow/sweep/spec.py).

Exit codes: 0 every point done (3, a vendor tool missing, counts as done for the steps before it);
1 some point failed or was bad input (each recorded in the results with its own exit code, the
others ran); 2 bad input for the sweep itself (its file, --out, --report without results);
130 interrupted (finished points and steps are kept: rerun the same command to continue).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from flow.infra.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, BadInput
from flow.infra.progress import console


@click.command(context_settings={'max_content_width': 110})
@click.argument('sweep_file', required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option('--out', type=click.Path(file_okay=False, path_type=Path),
              help='Sweep folder: points/<key>/ build folders, results.csv/json, plots [default: build/sweeps/<name>].')
@click.option('--address', help='Join a running Ray cluster (host:port or auto) instead of starting a local one; '
                                 'every node must see the sweep folder at the same path.')
@click.option('--num-cpus', type=int, help='Cores of the local Ray [default: all].')
@click.option('--report', 'report_dir', type=click.Path(file_okay=False, exists=True, path_type=Path),
              help='Redraw the results table and plots of the sweep in this folder; runs nothing.')
@click.option('--no-plots', is_flag=True, help='Write the tables only.')
@click.option('--verbose', is_flag=True, help='Show TensorFlow/Keras log lines and warnings (in each point\'s sweep.log).')
def sweep(sweep_file, out, address, num_cpus, report_dir, no_plots, verbose):
    """Run every point of SWEEP_FILE (a base flow config and the axes to vary) as a Ray task on its own
    resumable build folder; write results.csv/.json with every setting and figure, the Pareto fronts
    (accuracy vs stored bits, vs multipliers) and plots. A rerun reuses finished points."""
    from flow.infra import quiet

    quiet.set_verbose(verbose)
    try:
        if report_dir is not None:
            if sweep_file is not None:
                raise BadInput('--report redraws an existing sweep: give the folder only, not a sweep file')
            from flow.sweep import report

            report(report_dir, plots=not no_plots)
            return
        if sweep_file is None:
            raise BadInput('missing SWEEP_FILE (or --report DIR); see build-bitstream sweep --help')
        if not sweep_file.is_file():
            raise BadInput(f'sweep file {sweep_file} does not exist')
        from flow.sweep.runner import SweepInterrupted, run_sweep
        from flow.sweep.status import DONE_CODES
        from flow.sweep.spec import SweepSpec

        spec = SweepSpec.load(sweep_file)
        out = out or Path('build') / 'sweeps' / spec.name
        try:
            result = run_sweep(spec, out, address=address, num_cpus=num_cpus, plots=not no_plots)
        except SweepInterrupted:
            console.print(f'[yellow bold]interrupted[/]: finished points are kept in {Path(out).resolve()}; '
                          'rerun the same command to continue', soft_wrap=True)
            sys.exit(EXIT_INTERRUPTED)
    except BadInput as e:
        console.print(f'[red bold]bad input:[/] {escape(str(e))}', highlight=False, soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)
    bad = [r for r in result.rows if r['exit_code'] not in DONE_CODES]
    if bad:
        console.print(f'[red bold]{len(bad)} of {len(result.rows)} points did not finish[/] (see results.csv: exit_code, error)')
        sys.exit(EXIT_FAILED)
    console.print(f'[bold green]finished[/]: {len(result.rows)} points in {Path(out).resolve()}')
