"""``build-bitstream``: run the flow's named steps on a model.

Exit codes: 0 all requested steps done; 1 a step failed (a tool, a compiler, a mismatch);
2 bad input: usage, config, board, a model file that cannot be read or deployed, a build folder
that is not writable, corrupt or in use; 3 stopped before a step whose vendor tool (Vitis HLS,
Vivado) is not installed: not a failure, the build folder holds everything up to that step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from flow.infra.progress import console
from flow.infra.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TOOL_MISSING, BadInput
from flow.steps import STEPS, ToolMissing, run_flow, step_names



def _steps_help() -> str:
    return '\n'.join(f'  {s.name:17s} {s.doc}' for s in STEPS)


@click.command(context_settings={'max_content_width': 110})
@click.option('--build-dir', required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help='A build folder with its plan (after the plan step).')
@click.option('--board', help='The board to fit [default: the build\'s].')
@click.option('--write', type=click.Path(dir_okay=False, path_type=Path), help='Also write the config to this file.')
def autofit_command(build_dir, board, write):
    """The ReuseFactor per layer that fits the board with the lowest interval, on the estimate (no
    training, no tool); printed as a config to pass back with --config. Exit 1 if nothing fits."""
    from flow.autofit import run
    from flow.infra.errors import BadInput
    from flow.infra.progress import console

    try:
        sys.exit(run(build_dir, board, write, console))
    except (BadInput, KeyError) as e:
        _bad_input(e.args[0] if isinstance(e, KeyError) and e.args else e)


class _WithSubcommands(click.Command):
    """``build-bitstream sweep ...`` and ``build-bitstream autofit ...`` run those commands; everything
    else is the flow as before."""

    def main(self, args=None, prog_name=None, **extra):
        args = list(sys.argv[1:] if args is None else args)
        name = prog_name or 'build-bitstream'
        if args and args[0] == 'sweep':
            from flow.sweep.cli import sweep

            return sweep.main(args[1:], prog_name=f'{name} sweep', **extra)
        if args and args[0] == 'autofit':
            return autofit_command.main(args[1:], prog_name=f'{name} autofit', **extra)
        return super().main(args, prog_name=prog_name, **extra)


@click.command(cls=_WithSubcommands, context_settings={'max_content_width': 110},
               epilog='\b\nSteps, in order:\n' + _steps_help() + '\n\nDesign-space sweeps (many configs on Ray, results '
                      'table, Pareto fronts, plots): build-bitstream sweep SWEEP.yaml [--out DIR] (build-bitstream sweep --help).'
                      '\n\nThe ReuseFactors that fit a board: build-bitstream autofit --build-dir DIR [--board B] '
                      '(build-bitstream autofit --help).')
@click.option('--model', help='Built-in model name (see --list-models) or a saved .h5/.keras model with our layers.')
@click.option('--data', help='Training/golden data: a built-in dataset (digits, fashion_mnist) or an .npz file with '
                              'x_train, y_train, x_test, y_test (or x, y; or x alone: golden inputs only); y integer '
                              'class labels or float targets (regression: error reported, no accuracy). Default: the '
                              'built-in model\'s dataset; random golden vectors for a user model.')
@click.option('--config', 'config_path', type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='YAML/JSON flow config (per-layer precision, ReuseFactor, strategy).')
@click.option('--build-dir', type=click.Path(file_okay=False, path_type=Path), help='Build folder [default: build/<model>].')
@click.option('--board', help='Target board (pynq-z1, pynq-z2, zcu104, ultra96v2, kv260; PYNQ $BOARD names accepted).')
@click.option('--from-step', type=click.Choice(step_names()), help='Rerun from this step (earlier steps must be done).')
@click.option('--to-step', type=click.Choice(step_names()), help='Stop after this step.')
@click.option('--seed', type=int)
@click.option('--epochs', type=int)
@click.option('--reuse-factor', type=int, help='Default ReuseFactor for every dense, convolution and LSTM layer.')
@click.option('--n-golden', type=int, help='Number of golden test vectors.')
@click.option('--verbose', is_flag=True, help='Show TensorFlow/Keras log lines and warnings.')
@click.option('--list-boards', is_flag=True, help='List the known boards and exit.')
@click.option('--list-models', is_flag=True, help='List the built-in models and exit.')
def main(model, data, config_path, build_dir, board, from_step, to_step, seed, epochs, reuse_factor, n_golden, verbose, list_boards, list_models):
    """Train (or load), convert, verify bit-exactly and build a block-sparse network for a PYNQ board."""
    from flow.infra import quiet
    from flow.config import load_config
    from flow.infra.boards import all_boards

    quiet.set_verbose(verbose)

    if list_boards:
        for b in all_boards().values():
            click.echo(f'{b.name:10s} {b.part:22s} {b.ps:18s} aliases: {", ".join(b.aliases)}')
        return
    if list_models:
        from keras_models import BUILTIN

        click.echo('\n'.join(BUILTIN))
        return
    try:
        cfg = load_config(config_path, model=model, data=data, board=board, seed=seed, epochs=epochs,
                          reuse_factor=reuse_factor, n_golden=n_golden)
    except (ValueError, OSError) as e:
        _bad_input(e)
    if build_dir is None:
        build_dir = Path('build') / Path(cfg.model).stem
    try:
        run_flow(cfg, build_dir, from_step=from_step, to_step=to_step)
    except ToolMissing as e:
        console.print(f'[yellow bold]stopped:[/] {escape(str(e))}', highlight=False, soft_wrap=True)
        packages = sorted((Path(build_dir) / 'package').glob('*.tar.gz'))
        if packages:
            console.print(f'deployment package without bitstream (golden vectors, driver, notebook): {packages[0].resolve()}',
                          soft_wrap=True)
        sys.exit(EXIT_TOOL_MISSING)
    except BadInput as e:
        _bad_input(e)
    except KeyboardInterrupt:
        console.print(f'[yellow bold]interrupted[/]: completed steps are kept in {Path(build_dir).resolve()}; '
                      'rerun the same command to continue', soft_wrap=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # a step failed: one clear report, completed steps are kept
        console.print(f'[red bold]failed:[/] {type(e).__name__}: {escape(str(e))}', highlight=False, soft_wrap=True)
        console.print(f'build folder: {Path(build_dir).resolve()} (completed steps are kept; see manifest.json)')
        sys.exit(EXIT_FAILED)
    console.print(f'[bold green]finished[/]: {Path(build_dir).resolve()}')


def _bad_input(message) -> None:
    console.print(f'[red bold]bad input:[/] {escape(str(message))}', highlight=False, soft_wrap=True)  # one line, even in a log
    sys.exit(EXIT_BAD_INPUT)


if __name__ == '__main__':
    main()
