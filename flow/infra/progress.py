"""Progress display (rich) shared by the steps."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def print_table(table, out: Console | None = None) -> None:
    """Print a rich table at its natural width: never squeezed to the terminal (or to the 80
    columns rich assumes for a pipe or CI log), so no number is ever cut or wrapped."""
    out = out or console
    for column in table.columns:
        column.no_wrap = True
    width = Measurement.get(out, out.options.update(width=10_000), table).maximum
    if width <= out.width:
        out.print(table)
    else:  # Console.print clamps to the console's width: render on a wide twin of it
        Console(file=out.file, width=width, force_terminal=out.is_terminal, color_system=out.color_system).print(table)


def bar(description: str, total: int) -> Progress:
    return Progress(
        TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(), TextColumn('{task.fields[info]}'),
        TimeElapsedColumn(), console=console, transient=False,
    )


class KerasProgress:
    """A Keras callback showing epochs with the current loss and accuracy."""

    def __init__(self, epochs: int, description: str):
        import tensorflow as tf

        self.epochs, self.description = epochs, description
        outer = self

        class _Callback(tf.keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                info = ' '.join(f'{k}={v:.4f}' for k, v in logs.items())
                outer.progress.update(outer.task, advance=1, info=info)

        self.callback = _Callback()

    def __enter__(self):
        self.progress = bar(self.description, self.epochs)
        self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=self.epochs, info='')
        return self.callback

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)
