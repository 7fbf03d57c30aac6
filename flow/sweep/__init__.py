"""Design-space sweeps: many flow configs (a grid or a seeded random draw over settings and a
built-in model's parameters), each run as a Ray task on its own resumable build folder, with a
results table, Pareto fronts and plots.

    from flow.sweep import run_sweep
    result = run_sweep('sweeps/digits_small.yaml', 'build/sweeps/digits_small')
    result.rows  # one dict per point

``spec`` (the YAML), ``points`` (expansion), ``runner`` (Ray), ``results`` (table, fronts), ``plots``.
"""

from flow.sweep.spec import SweepSpec


def run_sweep(spec, out, address=None, num_cpus=None, plots=True):
    """See flow.sweep.runner.run_sweep."""
    from flow.sweep.runner import run_sweep as _run

    return _run(spec, out, address=address, num_cpus=num_cpus, plots=plots)


def report(out, plots=True):
    """Rewrite the results table and plots of the sweep in ``out`` from its build folders; runs nothing."""
    from flow.sweep.results import write

    return write(out, plots=plots)


__all__ = ['SweepSpec', 'run_sweep', 'report']
