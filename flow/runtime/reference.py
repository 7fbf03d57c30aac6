"""The integer reference model: "the software" every hardware result is checked against.

Reference layers on int64 codes in topological order, saved as ``reference.json`` + ``reference.npz``:
a chain, or a graph where a layer names the layers it reads (``RefLayer.inputs``: skip connections).
numpy only: the board runtime ships this package and runs the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ref_activations, ref_block_sparse, ref_sst  # noqa: F401  (register their layer kinds)
from . import ref_conv, ref_depthwise, ref_lstm, ref_merge, ref_pool  # noqa: F401
from .fixed import FixedType
from .ref_layers import LAYER_KINDS, Input, RefLayer

FORMAT_VERSION = 1


@dataclass
class IntegerModel:
    layers: list[RefLayer]

    @property
    def input(self) -> Input:
        return self.layers[0]

    @property
    def in_type(self) -> FixedType:
        return self.layers[0].out_type

    @property
    def out_type(self) -> FixedType:
        return self.layers[-1].out_type

    def sources(self) -> dict[str, tuple[str, ...]]:
        """The layers each layer reads (its ``inputs``, else the layer before it); the input reads none."""
        out = {self.layers[0].name: ()}
        for prev, layer in zip(self.layers, self.layers[1:]):
            out[layer.name] = tuple(layer.inputs) or (prev.name,)
        return out

    def _gather(self, values: dict, sources: tuple):
        """What ``forward`` takes from its sources' ``values``: one, or a tuple for a merge."""
        return values[sources[0]] if len(sources) == 1 else tuple(values[s] for s in sources)

    def in_types(self) -> dict[str, FixedType | tuple]:
        """The type (a tuple of types for a merge) each layer's input has; the input layer's own."""
        types = {layer.name: layer.out_type for layer in self.layers}
        return {name: self._gather(types, src) if src else self.in_type for name, src in self.sources().items()}

    def trace(self, x_codes) -> dict[str, np.ndarray]:
        """Outputs (codes) of every layer, keyed by layer name, in order."""
        out, in_types = {}, self.in_types()
        for layer, src in zip(self.layers, self.sources().values()):
            out[layer.name] = layer.forward(self._gather(out, src) if src else x_codes, in_types[layer.name])
        return out

    def sizes(self) -> dict[str, int]:
        """Output size of every layer (one all-zero input through the model)."""
        zeros = np.zeros((1, *self.input.shape), dtype=np.int64)
        return {name: int(np.prod(v.shape[1:])) for name, v in self.trace(zeros).items()}

    def predict_codes(self, x_codes, batch: int = 512) -> np.ndarray:
        """The output codes, ``batch`` samples at a time (a trace holds every layer's output: a
        convolution's windows of a whole test set would not fit in memory)."""
        x_codes = np.asarray(x_codes)
        if len(x_codes) <= batch:
            return list(self.trace(x_codes).values())[-1]
        return np.concatenate([self.predict_codes(x_codes[i: i + batch], batch) for i in range(0, len(x_codes), batch)])

    def predict(self, x_float) -> np.ndarray:
        """Float in, float out: inputs must already lie on the input grid (exactly)."""
        codes = self.in_type.from_float_exact(x_float, 'input')
        return self.out_type.to_float(self.predict_codes(codes))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        arrays = {}
        for layer in self.layers:
            arrays.update({f'{layer.name}/{k}': v for k, v in layer.arrays().items()})
        np.savez(folder / 'reference.npz', **arrays)
        doc = {'format_version': FORMAT_VERSION, 'layers': [layer.to_json() for layer in self.layers]}
        (folder / 'reference.json').write_text(json.dumps(doc, indent=1))

    @classmethod
    def load(cls, folder: Path) -> IntegerModel:
        folder = Path(folder)
        doc = json.loads((folder / 'reference.json').read_text())
        if doc.get('format_version') != FORMAT_VERSION:
            raise ValueError(f'{folder}/reference.json has format {doc.get("format_version")}, expected {FORMAT_VERSION}')
        with np.load(folder / 'reference.npz') as npz:
            arrays = {k: npz[k] for k in npz.files}
        layers = []
        for d in doc['layers']:
            prefix = d['name'] + '/'
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            layers.append(LAYER_KINDS[d['kind']].from_json(d, own))
        return cls(layers)


def first_mismatch(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]):
    """First (layer, sample, element, expected, actual) where two traces differ, or None.

    Compares exact integer codes; layers missing from ``actual`` are skipped."""
    for name, exp in expected.items():
        if name not in actual:
            continue
        act = np.asarray(actual[name])
        if act.size != exp.size:  # never compare a reshaped array of another size
            raise ValueError(f'layer {name!r}: expected {exp.shape} values, got an array of shape {act.shape}')
        act = act.reshape(exp.shape)  # C-simulation traces are flat per sample
        diff = np.argwhere(act != exp)
        if len(diff):
            s, *e = (int(i) for i in diff[0])
            return name, s, tuple(e), int(exp[(s, *e)]), int(act[(s, *e)])
    return None


class Mismatch(RuntimeError):
    pass


def describe(where: str, m, im: IntegerModel | None = None, layers=()) -> str:
    """The first mismatch in words; with the model (or the ``layers`` compared), where the element
    sits in its layer (an LSTM's time step and unit)."""
    layer, sample, element, exp, act = m
    ref = {l.name: l for l in (im.layers if im is not None else layers)}.get(layer)
    loc = ref.locate(tuple(int(i) for i in np.atleast_1d(element))) if ref is not None else ''
    at = f'element {element}' + (f' ({loc})' if loc else '')
    return f'{where}: first difference in layer {layer!r}, sample {sample}, {at}: expected code {exp}, got {act}'
