"""Loading a user's saved model file, with a clear error for every way it can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

from flow.infra.errors import BadInput

SUFFIXES = ('.h5', '.hdf5', '.keras')


def load_user_model(path: Path):
    """The Keras model in ``path`` (.h5 or .keras, with QKeras and our layers)."""
    from keras_models.layers import load_model

    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise BadInput(f'model file {path} is not a Keras model file ({", ".join(SUFFIXES)}); save it with model.save()')
    if path.suffix != '.keras':
        _check_block_masks(path)
    try:
        if _has_pruning_wrappers(path):
            return _load_stripped(path)
        return load_model(path)
    except BadInput:
        raise
    except Exception as e:  # h5py/Keras raise many types for a file that is not a model
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(f'cannot load {path} as a Keras model ({first}); save it with model.save() '
                       'and load it with keras_models.layers.load_model to check') from e


def _check_block_masks(path: Path) -> None:
    """A block-sparse layer's block_shape must match the block mask saved with it: Keras would fail
    with a bare shape mismatch while loading the weights."""
    import h5py

    try:
        f = h5py.File(path, 'r')
    except OSError as e:
        raise BadInput(f'{path} is not an HDF5 model file ({e}); save the model with model.save()') from e
    with f:
        if 'model_config' not in f.attrs or 'model_weights' not in f:
            raise BadInput(f'{path} holds no Keras model (no model_config/model_weights); save it with model.save()')
        config = json.loads(f.attrs['model_config'])
        for layer in config.get('config', {}).get('layers', []):
            if layer.get('class_name') != 'BlockSparseQDense':
                continue
            name, c = layer['config']['name'], layer['config']
            group = f['model_weights'].get(name)
            shapes = {}
            if group is not None:
                group.visititems(lambda n, o: shapes.update({n.rsplit('/', 1)[-1].split(':')[0]: o.shape}) if hasattr(o, 'shape') else None)
            if 'kernel' not in shapes or 'block_mask' not in shapes:
                continue
            (n_in, n_out), (mi, mo) = shapes['kernel'], shapes['block_mask']
            bi, bo = c['block_shape']
            if (n_in // bi, n_out // bo) != (mi, mo) or n_in % bi or n_out % bo:
                saved = (n_in // mi, n_out // mo)
                raise BadInput(
                    f"layer '{name}': block_shape {bi}x{bo} in the model config does not match its saved block mask "
                    f'({mi}x{mo} blocks of {saved[0]}x{saved[1]} over the {n_in}x{n_out} kernel); '
                    f'restore block_shape=[{saved[0]}, {saved[1]}] (the mask was trained with it)'
                )


PRUNE_WRAPPER = 'PruneLowMagnitude'  # TFMOT's prune_low_magnitude wraps each pruned layer in one


def _model_config_text(path: Path) -> str:
    """The saved model's config (JSON text; '' when it cannot be read: loading then says why)."""
    try:
        if path.suffix == '.keras':
            import zipfile

            with zipfile.ZipFile(path) as z:
                return z.read('config.json').decode()
        import h5py

        with h5py.File(path, 'r') as f:
            text = f.attrs.get('model_config', '')
            return text.decode() if isinstance(text, bytes) else str(text)
    except Exception:  # noqa: BLE001  (not a model file: load_model reports it)
        return ''


def _has_pruning_wrappers(path: Path) -> bool:
    return f'"{PRUNE_WRAPPER}"' in _model_config_text(path)


def _load_stripped(path: Path):
    """A model saved with TFMOT's pruning wrappers still in it (saved before ``strip_pruning``): loaded in
    TFMOT's ``prune_scope``, each wrapper's masks applied to its weights (what the pruned model computes),
    then ``strip_pruning``; the zeros it leaves are found by the export (flow/export/found.py)."""
    from keras_models.layers import load_model

    from flow.infra.progress import console

    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as e:
        raise BadInput(f'{path} holds TFMOT pruning wrappers ({PRUNE_WRAPPER}), but tensorflow-model-optimization is not '
                       'installed; install it, or save the model after tfmot.sparsity.keras.strip_pruning(model)') from e
    with tfmot.sparsity.keras.prune_scope():
        model = load_model(path)
    wrapped = [layer for layer in model.layers if type(layer).__name__ == PRUNE_WRAPPER]
    for wrapper in wrapped:
        for weight, mask, _ in getattr(wrapper, 'pruning_vars', ()):
            weight.assign(weight * mask)
    model = tfmot.sparsity.keras.strip_pruning(model)
    console.print(f"[yellow]note:[/] stripped TFMOT pruning wrappers from {path} "
                  f"({', '.join(w.layer.name for w in wrapped)}; their masks applied to the weights)", soft_wrap=True)
    return model
