"""Progress display (rich) shared by the steps."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


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
