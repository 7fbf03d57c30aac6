"""Flow configuration: one pydantic model, loadable from YAML or JSON, overridable from the CLI.

Example (YAML)::

    model: digits_mlp            # built-in name, or a saved .h5/.keras file with our layers
    model_params: {drop_rate: 0.5}   # a built-in's build() parameters (its defaults otherwise)
    data: digits                 # a built-in dataset (digits, fashion_mnist) or an .npz file;
                                 # default: the built-in model's dataset, random vectors for a user model
    board: pynq-z2
    input_precision: ap_fixed<6,2>
    reuse_factor: 1              # default for every dense layer
    layers:
      fc1: {reuse_factor: 8}
      logits: {reuse_factor: 10, strategy: resource, accum: ap_fixed<24,8>}
      fc2: {reuse_factor: 1, strategy: distributed_arithmetic}   # hls4ml/da4ml shift-and-add, no DSPs
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Union, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from flow.infra.build_dir import sha256
from flow.infra.errors import BadInput
from flow.runtime.fixed import FixedType


class LayerConfig(BaseModel):
    model_config = ConfigDict(extra='forbid')

    reuse_factor: int | None = Field(None, ge=1)
    # latency/resource: hls4ml's own Dense only; distributed_arithmetic: any dense layer (ReuseFactor 1)
    strategy: Literal['latency', 'resource', 'distributed_arithmetic'] | None = None
    accum: str | None = None  # default: the exact accumulator computed from the weights
    result: str | None = None  # default: the accumulator type (no rounding)
    table_size: int | None = Field(None, ge=1)  # sigmoid/tanh/softmax lookup tables; default: hls4ml's (1024)
    table_t: str | None = None  # default: hls4ml's (ap_fixed<18,8>; softmax ap_fixed<18,8,AP_RND,AP_SAT>)
    # a QDense: look for zero blocks in its quantized kernel and deploy it block-sparse when that stores
    # fewer bits (flow/export/found.py); default: the model-wide ``sparse`` (false with strategy latency/resource)
    sparse: bool | None = None
    block_shape: tuple[int, int] | None = None  # force this (in, out) block; kept: the blocks with a non-zero
    # unquantized Keras layers (Dense, Conv2D): the types their float kernel and bias are cast to;
    # default: the model-wide default_precision (hls4ml's convention, ap_fixed<16,6>)
    weight: str | None = None
    bias: str | None = None  # default: the weight type

    @field_validator('block_shape')
    @classmethod
    def _block(cls, v):
        if v is not None and min(v) < 1:
            raise ValueError(f'block_shape {list(v)}: both sides must be at least 1')
        return v

    @field_validator('accum', 'result', 'table_t', 'weight', 'bias')
    @classmethod
    def _fixed(cls, v):
        if v is not None:
            FixedType.parse(v)
        return v


class FlowConfig(BaseModel):
    model_config = ConfigDict(extra='forbid')

    model: str = 'digits_mlp'
    model_params: dict = {}  # a built-in model's build() parameters (keras_models.check_params)
    # a built-in dataset name or an .npz file ('data:' in a config, --data); None: the built-in
    # model's own dataset, or random golden vectors on the input grid for a user model
    dataset: str | None = Field(None, validation_alias=AliasChoices('data', 'dataset'))
    board: str = 'pynq-z2'
    project_name: str = Field('sparsenet', pattern=r'^[A-Za-z][A-Za-z0-9]*$')  # '_' breaks hls4ml's report paths
    seed: int = 0
    epochs: int = Field(40, ge=0)
    batch_size: int = 32
    learning_rate: float = 3e-3  # Adam's; the peak of warmup_cosine
    # training recipes (flow/training.py), each a setting:
    # warmup_cosine: linear warm-up over warmup_epochs, then a half cosine to 0; constant: learning_rate throughout
    lr_schedule: Literal['constant', 'warmup_cosine'] = 'warmup_cosine'
    warmup_epochs: float = Field(1.0, ge=0)
    # knowledge distillation from the float model of the same architecture, trained once with the same
    # recipe and cached (classifiers with logits outputs): alpha * CE + (1 - alpha) * T^2 * KL(teacher || student).
    # Off by default: over 3 seeds it cost every method measured here accuracy (the Fashion-MNIST MLPs
    # 0.1-0.9 points, the CNN 0.4: bench_fashion_methods, bench_fashion_cnn --distill)
    distill: bool = False
    distill_temperature: float = Field(4.0, gt=0)
    distill_alpha: float = Field(0.5, ge=0, le=1)
    input_precision: str = 'ap_fixed<16,6>'  # a built-in model brings its own
    # unquantized Keras layers (Dense, Conv2D): their weights, biases and results, as hls4ml's model-wide
    # default precision (per layer: weight, bias, result); quantized layers take their quantizers' types
    default_precision: str = 'ap_fixed<16,6>'
    # auto: io_stream when a layer needs it (convolutions, pooling) or when io_parallel's registers would
    # not fit the board (flow.plan.resolve_io_type), else io_parallel
    io_type: Literal['auto', 'io_parallel', 'io_stream'] = 'auto'
    clock_period_ns: float | None = None  # default: the board's PL clock
    reuse_factor: int = Field(1, ge=1)
    strategy: Literal['latency', 'resource', 'distributed_arithmetic'] = 'latency'
    layers: dict[str, LayerConfig] = {}
    sparse: bool = True  # QDense kernels with zero blocks (other tools' pruning) deploy block-sparse; false: dense
    n_golden: int = Field(256, ge=1)
    # the rtl step: da4ml Verilog, Verilator on the golden vectors, yosys; auto: for networks up to
    # flow.rtl.logic.AUTO_WEIGHT_BITS stored weight bits (a bigger one takes tens of minutes here);
    # engines: only the layers' time-multiplexed engines, not the fully parallel da4ml network
    rtl: Union[bool, Literal['auto', 'engines']] = 'auto'
    hls_cosim: bool = False  # also run Vitis HLS C/RTL co-simulation of the accelerator (slow)
    output: Literal['model', 'logits'] = 'model'  # logits: deploy without the model's final softmax

    @field_validator('input_precision', 'default_precision')
    @classmethod
    def _fixed(cls, v):
        FixedType.parse(v)
        return v

    @model_validator(mode='after')
    def _model_params(self):
        """A built-in's parameters, checked and without those at their defaults (the same model, the
        same fingerprint); a model file has none."""
        if not self.model_params:
            return self
        from keras_models import BUILTIN, check_params

        if self.model not in BUILTIN:
            raise ValueError(f'model_params apply to built-in models ({", ".join(sorted(BUILTIN))}); {self.model!r} is a '
                             'model file: remove model_params')
        try:
            self.model_params = check_params(self.model, self.model_params)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        return self

    def input_files(self) -> dict[str, Path]:
        """Settings that name a file: steps depend on the file's content, not on its path."""
        from keras_models import BUILTIN

        from flow.data.datasets import DATASETS

        files = {}
        if self.model not in BUILTIN:
            files['model'] = (Path(self.model), f'nor a built-in model ({", ".join(sorted(BUILTIN))})')
        if self.dataset is not None and self.dataset not in DATASETS:
            files['dataset'] = (Path(self.dataset), f'nor a built-in dataset ({", ".join(sorted(DATASETS))})')
        for key, (path, known) in files.items():
            if not path.is_file():
                raise BadInput(f'{"data" if key == "dataset" else key} {str(path)!r} is not a file {known}')
        return {key: path for key, (path, _) in files.items()}

    @classmethod
    def load(cls, path: Path | None, **overrides) -> FlowConfig:
        data = {}
        if path is not None:
            path = Path(path)
            text = path.read_text()
            try:
                data = json.loads(text) if path.suffix == '.json' else yaml.safe_load(text) or {}
            except (json.JSONDecodeError, yaml.YAMLError) as e:
                where = getattr(e, 'problem_mark', None)
                at = f' at line {where.line + 1}, column {where.column + 1}' if where else ''
                raise BadInput(f'{path}: not valid {"JSON" if path.suffix == ".json" else "YAML"}{at} '
                               f'({getattr(e, "problem", None) or e}); fix the file') from e
            if not isinstance(data, dict):
                raise ValueError(f'{path}: expected a mapping of settings')
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(_with_builtin_defaults(data))

    def fingerprint(self, fields: set[str] | None = None, digests: dict[str, str] | None = None) -> str:
        """Hash of the given settings (all by default): a step reruns when one it depends on changes.
        A setting that names a file counts by the file's content (``digests``, from input_digests)."""
        data = self.model_dump(include=fields) if fields is not None else self.model_dump()
        digests = self.input_digests() if digests is None else digests
        data.update({k: 'sha256:' + d for k, d in digests.items() if k in data})
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def input_digests(self) -> dict[str, str]:
        return {key: sha256(path) for key, path in self.input_files().items()}

    def layer(self, name: str) -> LayerConfig:
        return self.layers.get(name, LayerConfig())

    def reuse_for(self, name: str) -> int:
        return self.layer(name).reuse_factor or self.reuse_factor

    def strategy_for(self, name: str) -> str:
        return self.layer(name).strategy or self.strategy


def load_config(path: Path | None = None, **overrides) -> FlowConfig:
    """``FlowConfig.load`` for a user: every problem (a setting's value, an unknown board) as BadInput
    in one line, settings named by their place (``layers.fc1.reuse_factor: ...``)."""
    from pydantic import ValidationError

    from flow.infra.boards import get_board

    try:
        cfg = FlowConfig.load(path, **overrides)
        get_board(cfg.board)
    except ValidationError as e:
        raise BadInput('; '.join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg'].removeprefix('Value error, ')}"
                                 for err in e.errors())) from None
    except KeyError as e:
        raise BadInput(e.args[0] if e.args else str(e)) from None
    return cfg


def _with_builtin_defaults(data: dict) -> dict:
    """A built-in model's FLOW_DEFAULTS under the user's settings (per layer, key by key)."""
    from keras_models import BUILTIN, get

    name = data.get('model', FlowConfig.model_fields['model'].default)
    if name not in BUILTIN:
        return data
    module = get(name)
    defaults = {'dataset': module.DATASET, **getattr(module, 'FLOW_DEFAULTS', {})}
    if 'data' in data:  # the alias the user wrote replaces the default too
        data = dict(data)
        data['dataset'] = data.pop('data')
    merged = {**defaults, **data}
    layers = {k: dict(v) for k, v in defaults.get('layers', {}).items()}
    for k, v in data.get('layers', {}).items():
        layers[k] = {**layers.get(k, {}), **v}
    merged['layers'] = layers
    return merged
