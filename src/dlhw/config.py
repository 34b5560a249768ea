"""Experiment configs: YAML -> validated, frozen dataclasses.

Every value is checked once, here, against a declarative table of rules
(`SCHEMA`). Any mistake is a `ConfigError` with one line that names the
file, the key path, the rule and the value:

    configs/x.yaml: 'train.learning_rate' must be a float > 0. Got -0.1 instead.

Inside the library, configs are trusted.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlhw.errors import ConfigError

# --------------------------------------------------------------------------- rules


class Rule:
    """One constraint; `check(value, where)` returns the clean value or raises."""

    text = "a value"

    def check(self, value: Any, where: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def fail(self, value: Any, where: str, text: str | None = None) -> ConfigError:
        return ConfigError(f"{where} must be {text or self.text}. Got {value!r} instead.")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_float(v: Any) -> float | None:
    """YAML 1.1 reads `1e-3` as a string; accept numeric strings like that."""
    if _is_number(v):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Float(Rule):
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    @property
    def text(self) -> str:  # type: ignore[override]
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        if self.lo is not None and self.hi is not None:
            lb, rb = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"a float in {lb}{self.lo:g}, {self.hi:g}{rb}"
        return "a float" + (" " + " and ".join(parts) if parts else "")

    def check(self, value: Any, where: str) -> float:
        v = _as_float(value)
        if v is None:
            raise self.fail(value, where)
        if not math.isfinite(v):
            raise self.fail(value, where, f"a finite number ({self.text})")
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            raise self.fail(value, where)
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            raise self.fail(value, where)
        return v


@dataclass(frozen=True)
class Int(Rule):
    lo: int | None = None
    hi: int | None = None

    @property
    def text(self) -> str:  # type: ignore[override]
        if self.lo is not None and self.hi is not None:
            return f"an integer in [{self.lo}, {self.hi}]"
        if self.lo is not None:
            return f"an integer >= {self.lo}"
        return "an integer"

    def check(self, value: Any, where: str) -> int:
        if not (isinstance(value, int) and not isinstance(value, bool)):
            raise self.fail(value, where)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise self.fail(value, where)
        return int(value)


@dataclass(frozen=True)
class Choice(Rule):
    options: tuple[str, ...] = ()

    @property
    def text(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(repr(o) for o in self.options)

    def check(self, value: Any, where: str) -> str:
        if value not in self.options:
            raise self.fail(value, where)
        return value


@dataclass(frozen=True)
class Bool(Rule):
    text = "true or false"

    def check(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(value, where)
        return value


@dataclass(frozen=True)
class Str(Rule):
    text = "a non-empty string"

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(value, where)
        return value


@dataclass(frozen=True)
class Optional(Rule):
    inner: Rule = field(default_factory=Str)

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"{self.inner.text} or null"

    def check(self, value: Any, where: str) -> Any:
        return None if value is None else self.inner.check(value, where)


@dataclass(frozen=True)
class ListOf(Rule):
    """A non-empty list without duplicates; a scalar is taken as a 1-list."""

    item: Rule = field(default_factory=Str)
    unique: bool = True

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"a non-empty list, each {self.item.text}"

    def check(self, value: Any, where: str) -> tuple:
        if isinstance(value, dict) or value is None or value == []:
            raise self.fail(value, where)
        items = value if isinstance(value, list) else [value]
        out = tuple(self.item.check(v, f"{where[:-1]}[{i}]'") for i, v in enumerate(items))
        if self.unique and len(set(out)) != len(out):
            dup = next(v for i, v in enumerate(out) if v in out[:i])
            raise ConfigError(f"{where} must not repeat a value. Got {dup!r} twice in {list(value)!r}.")
        return out


@dataclass(frozen=True)
class Classes(Rule):
    """`data.classes`: class names or indices, or null for all."""

    text = "a non-empty list of class names or indices (or null)"

    def check(self, value: Any, where: str) -> tuple | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(value, where)
        for i, v in enumerate(items):
            if not (isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)):
                raise self.fail(v, f"{where[:-1]}[{i}]'", "a class name or an index >= 0")
        if len(set(items)) != len(items):
            raise ConfigError(f"{where} must not repeat a class. Got {items!r}.")
        return tuple(items)


# --------------------------------------------------------------------------- schema

DATASETS = ("fashion-mnist", "mnist", "xor")
MODELS = ("softmax", "mlp", "linear", "logistic")


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion-mnist"  # fashion-mnist | mnist | xor
    dir: str | None = None  # folder holding the IDX files (else the usual places)
    val_fraction: float = 0.2  # held out of the training set, stratified; 0 = none
    split_seed: int = 0  # seeds the validation split
    preprocess: str = "scale"  # scale (x/255) | standardize | none
    classes: tuple | None = None  # subset of classes by name or index; 2 -> binary task

    def __post_init__(self) -> None:
        _check_fields(self, "data")


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "softmax"  # softmax | mlp | linear | logistic
    hidden: tuple[int, ...] = (256, 128)  # mlp: hidden layer widths
    activation: str = "relu"  # mlp: relu | leaky_relu | sigmoid | tanh
    leaky_slope: float = 0.01  # mlp: slope of leaky_relu for x < 0
    init: str = "he"  # mlp: he | xavier
    batch_norm: bool = False  # mlp: batch normalisation after each hidden affine layer
    dropout: float = 0.0  # mlp: drop probability (bernoulli) or variance (gaussian)
    dropout_kind: str = "bernoulli"  # mlp: bernoulli | gaussian (multiplicative N(1, p/(1-p)))

    def __post_init__(self) -> None:
        _check_fields(self, "model")


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64  # mini-batch size; the last partial batch is kept
    learning_rate: float = 0.1  # constant step size
    epochs: int = 20  # passes over the training set
    alpha: float = 1e-4  # L2: loss = mean loss + alpha/2 * ||W||^2, biases not penalised
    seed: int = 0  # seeds shuffling (per epoch) and initialisation
    dtype: str = "float32"  # float32 | float64
    optimizer: str = "sgd"  # sgd | momentum | newton (linear only)
    momentum: float = 0.9  # momentum coefficient (optimizer: momentum)
    eval_every: int | None = None  # also evaluate every N iterations (curves); null = per epoch
    average: str = "none"  # none: the last iterate | epoch: the mean of the iterates of the current epoch

    def __post_init__(self) -> None:
        _check_fields(self, "train")


@dataclass(frozen=True)
class GridConfig:
    batch_size: tuple[int, ...] = ()  # values to try (missing axis -> train value)
    learning_rate: tuple[float, ...] = ()
    epochs: tuple[int, ...] = ()
    alpha: tuple[float, ...] = ()
    seeds: tuple[int, ...] = (0,)  # shuffle seeds (default: train.seed); selection on the mean over seeds
    select_by: str = "val_ce"  # val_ce (lowest) | val_accuracy (highest)
    retrain_on: str = "train+val"  # train+val | train
    retrain_epochs: str = "same"  # same (homework's rule) | same_steps (same number of SGD steps)
    # more axes, any config key: (("model.hidden", ((128,), (256, 128))), ...), written `model.hidden: [...]`
    axes: tuple[tuple[str, tuple], ...] = ()

    def __post_init__(self) -> None:
        _check_fields(self, "grid")  # an empty axis () is filled from `train` by Config

    @property
    def size(self) -> int:
        return math.prod(len(v) for _, v in self.axes) * len(self.batch_size) * len(self.learning_rate) \
            * len(self.epochs) * len(self.alpha)

    @property
    def axis_keys(self) -> tuple[str, ...]:
        """The extra axes' dotted keys, in the order given."""
        return tuple(k for k, _ in self.axes)

    def variants(self) -> list[dict[str, Any]]:
        """Every combination of the extra axes' values ({} alone when there are none), in grid order."""
        return [dict(zip(self.axis_keys, combo)) for combo in itertools.product(*(v for _, v in self.axes))]


@dataclass(frozen=True)
class OutputConfig:
    dir: str | None = None  # run folder; default results/<name>

    def __post_init__(self) -> None:
        _check_fields(self, "output")


@dataclass(frozen=True)
class Config:
    """An experiment's settings, validated when built or changed in Python by the YAML file's rules:
    `Config(name="x", train={"epochs": 5})`, `cfg.replace(train={"epochs": 3})`."""

    name: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: GridConfig | None = None
    output: OutputConfig = field(default_factory=OutputConfig)
    source: str = field(default="<defaults>", compare=False)  # where it was loaded from

    def __post_init__(self) -> None:
        """Validated like a YAML file: sections may be given as dicts; the same rules, the same messages."""
        at = _at(self.source)
        name = Str().check(_plain(self.name), f"{at}'name'")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"{at}'name' must be a plain folder name without '/'. Got {name!r} instead.")
        for sec, (cls, rules) in SCHEMA.items():
            body = getattr(self, sec)
            if isinstance(body, dict):
                body = cls(**_section(sec, body, self.source))
            elif not isinstance(body, cls) and not (body is None and sec == "grid"):
                raise ConfigError(f"{at}'{sec}' must be a mapping with keys {', '.join(rules)}. "
                                  f"Got {body!r} instead.")
            object.__setattr__(self, sec, body)
        if self.grid is not None:  # a missing axis takes the train value
            fill = {a: (getattr(self.train, a),) for a in GRID_AXES if not getattr(self.grid, a)}
            if fill:
                object.__setattr__(self, "grid", dataclasses.replace(self.grid, **fill))
        _check_combinations(self, self.source)
        if self.grid is not None and self.grid.axes:
            _check_variants(self)

    def variant(self, values: dict[str, Any]) -> "Config":
        """This config with dotted keys set (`{"model.hidden": (256, 128)}`), without its grid: what
        `dlhw train` runs for one value of each extra axis."""
        by_sec: dict[str, dict] = {}
        for key, value in values.items():
            sec, name = key.split(".", 1)
            by_sec.setdefault(sec, {})[name] = value
        changed = {sec: dataclasses.replace(getattr(self, sec), **kv) for sec, kv in by_sec.items()}
        return dataclasses.replace(self, grid=None, **changed)

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir) if self.output.dir else Path("results") / self.name

    def to_dict(self) -> dict:
        """Plain YAML-able dict (lists, not tuples); `source` left out."""
        d = dataclasses.asdict(self)
        d.pop("source")
        if d["grid"] is not None:
            axes = d["grid"].pop("axes")
            d["grid"] = {k: list(v) for k, v in axes} | d["grid"]
        return _listify(d)

    def replace(self, **sections: Any) -> "Config":
        """A copy with some fields changed, validated: `cfg.replace(train={'epochs': 3})`."""
        kw = {}
        for sec, changes in sections.items():
            if sec not in TOP_LEVEL:
                raise ConfigError(f"unknown key {sec!r}{_hint(sec, TOP_LEVEL)}. Allowed: {', '.join(TOP_LEVEL)}.")
            cur = getattr(self, sec)
            if isinstance(changes, dict) and sec == "grid":
                changes = _grid_body(changes, "")
                if cur is not None and "axes" in changes:  # the axes given change; the others stay
                    changes["axes"] = tuple((dict(cur.axes) | dict(changes["axes"])).items())
            if isinstance(changes, dict) and sec in SCHEMA:
                _known_keys(sec, {k: v for k, v in changes.items() if not (sec == "grid" and k == "axes")}, "")
                changes = SCHEMA[sec][0](**changes) if cur is None else dataclasses.replace(cur, **changes)
            kw[sec] = changes
        return dataclasses.replace(self, **kw)


def _at(src: str) -> str:
    """The message prefix naming where a config came from ('' for one built in Python)."""
    return "" if not src or src.startswith("<") else f"{src}: "


def _plain(x: Any) -> Any:
    """What YAML would have given: tuples -> lists, numpy scalars and arrays -> Python values."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if type(x).__module__ == "numpy" and hasattr(x, "tolist"):
        return _plain(x.tolist())
    return x


def _check_fields(obj: Any, sec: str) -> None:
    """A section dataclass built or changed in Python: every field through its rule (clean values kept)."""
    rules = SCHEMA[sec][1]
    for f in dataclasses.fields(obj):
        value = _plain(getattr(obj, f.name))
        if sec == "grid" and f.name in GRID_AXES and value == []:
            continue  # filled from `train` by Config
        if sec == "grid" and f.name == "axes":
            object.__setattr__(obj, "axes", _check_axes(value, ""))
            continue
        object.__setattr__(obj, f.name, rules[f.name].check(value, f"'{sec}.{f.name}'"))


def _known_keys(sec: str, body: dict, src: str) -> None:
    rules = SCHEMA[sec][1]
    for key in body:
        if key not in rules:
            raise ConfigError(f"{_at(src)}unknown key '{sec}.{key}'{_hint(str(key), rules)}. "
                              f"Allowed in '{sec}': {', '.join(rules)}.")


def _section(sec: str, body: Any, src: str) -> dict:
    """A raw section mapping -> clean values, or a ConfigError naming `src`, the key, the rule and the value."""
    rules = SCHEMA[sec][1]
    if not isinstance(body, dict):
        raise ConfigError(f"{_at(src)}'{sec}' must be a mapping with keys {', '.join(rules)}. "
                          f"Got {body!r} instead.")
    if sec == "grid":
        body = _grid_body(body, src)
    axes = body.pop("axes", None) if sec == "grid" else None
    _known_keys(sec, body, src)
    out = {key: rules[key].check(_plain(value), f"{_at(src)}'{sec}.{key}'") for key, value in body.items()}
    return out | {"axes": axes} if axes else out


# --------------------------------------------------------------------------- grid axes over any key

# keys a grid cannot vary, and why
FIXED_IN_GRID = {
    "data.name": "a grid searches one data set; run one grid per data set",
    "data.dir": "it says where the files are, not how to train",
    "data.val_fraction": "every setting must be scored on the same validation split",
    "data.split_seed": "every setting must be scored on the same validation split",
    "data.classes": "settings on other classes solve another task and their scores do not compare",
    "train.dtype": "a grid prepares its data in one precision; run one grid per dtype",
    "train.seed": "shuffle seeds are 'grid.seeds' (selection on the mean over them)",
    "train.eval_every": "it changes curves, not the grid's rows",
}
_SHORT = {f"train.{a}": a for a in ("batch_size", "learning_rate", "epochs", "alpha")}


def _grid_body(body: dict, src: str) -> dict:
    """A grid mapping with its dotted keys gathered into `axes` (("model.hidden", values), ...);
    `train.batch_size` and the like are the short axes under their long names."""
    out, axes = {}, []
    for key, value in body.items():
        key = str(key)
        if key in _SHORT:
            if _SHORT[key] in body:
                raise ConfigError(f"{_at(src)}'grid.{key}' and 'grid.{_SHORT[key]}' are the same axis; give one.")
            out[_SHORT[key]] = value
        elif "." in key:
            axes.append((key, value))
        else:
            out[key] = value
    if axes:
        out["axes"] = _check_axes(axes, src)
    return out


def _check_axes(axes: Any, src: str) -> tuple[tuple[str, tuple], ...]:
    """(dotted key, values) pairs: a known, variable key; a non-empty list of values, each valid for that key."""
    at = _at(src)
    out = []
    for pair in axes:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ConfigError(f"{at}'grid.axes' must be (dotted key, values) pairs. Got {pair!r} instead.")
        key, values = pair
        sec, _, name = key.partition(".")
        if sec not in ("data", "model", "train"):
            raise ConfigError(f"{at}'grid.{key}': a grid axis is a key of data, model or train"
                              f"{_hint(key, _axis_keys())}. Got section {sec!r}.")
        rules = SCHEMA[sec][1]
        if name not in rules:
            raise ConfigError(f"{at}unknown grid axis 'grid.{key}'{_hint(key, _axis_keys())}. "
                              f"Keys of '{sec}': {', '.join(rules)}.")
        if key in FIXED_IN_GRID:
            raise ConfigError(f"{at}'grid.{key}' cannot vary inside one grid: {FIXED_IN_GRID[key]}.")
        if key in (k for k, _ in out):
            raise ConfigError(f"{at}'grid.{key}' is given twice.")
        where = f"{at}'grid.{key}'"
        values = _plain(values)
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where} must be a non-empty list of values for '{key}'. Got {values!r} instead.")
        rule = rules[name]
        clean = []
        for i, v in enumerate(values):
            if isinstance(rule, ListOf) and not isinstance(v, (list, tuple)):
                raise ConfigError(f"{at}'grid.{key}[{i}]' must be a list (each value of this axis is one "
                                  f"{key}), e.g. [[128], [256, 128]]. Got {v!r} instead.")
            c = rule.check(list(v) if isinstance(v, tuple) else v, f"{at}'grid.{key}[{i}]'")
            if c in clean:
                raise ConfigError(f"{where} must not repeat a value. Got {v!r} twice.")
            clean.append(c)
        out.append((key, tuple(clean)))
    return tuple(out)


def _axis_keys() -> list[str]:
    return [f"{sec}.{k}" for sec in ("data", "model", "train") for k in SCHEMA[sec][1]]


def _check_variants(cfg: "Config") -> None:
    """Every value of every extra axis must make a valid config with the rest (e.g. 'train.optimizer'
    newton only for model.kind linear); a failure names the axis value."""
    at = _at(cfg.source)
    plain = dataclasses.replace(cfg, grid=None, source="<grid>")  # messages without the file's name
    for key, values in cfg.grid.axes:
        for i, v in enumerate(values):
            try:
                _check_combinations(plain.variant({key: v}), "")
            except ConfigError as e:
                raise ConfigError(f"{at}'grid.{key}[{i}]' = {_show(v)}: {e.message}") from None
    for values in cfg.grid.variants():
        try:
            _check_combinations(plain.variant(values), "")
        except ConfigError as e:
            raise ConfigError(f"{at}grid values {', '.join(f'{k}={_show(v)}' for k, v in values.items())}: "
                              f"{e.message}") from None


def _show(v: Any) -> str:
    return "[" + ", ".join(map(str, v)) + "]" if isinstance(v, tuple) else str(v)


def _listify(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _listify(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_listify(v) for v in x]
    return x


def _pos_float_list() -> ListOf:
    return ListOf(Float(0.0, lo_open=True))


SCHEMA: dict[str, tuple[type, dict[str, Rule]]] = {
    "data": (DataConfig, {
        "name": Choice(DATASETS),
        "dir": Optional(Str()),
        "val_fraction": Float(0.0, 1.0, hi_open=True),
        "split_seed": Int(0),
        "preprocess": Choice(("scale", "standardize", "none")),
        "classes": Classes(),
    }),
    "model": (ModelConfig, {
        "kind": Choice(MODELS),
        "hidden": ListOf(Int(1), unique=False),
        "activation": Choice(("relu", "leaky_relu", "sigmoid", "tanh")),
        "leaky_slope": Float(0.0, 1.0, hi_open=True),
        "init": Choice(("he", "xavier")),
        "batch_norm": Bool(),
        "dropout": Float(0.0, 1.0, hi_open=True),
        "dropout_kind": Choice(("bernoulli", "gaussian")),
    }),
    "train": (TrainConfig, {
        "batch_size": Int(1),
        "learning_rate": Float(0.0, lo_open=True),
        "epochs": Int(1),
        "alpha": Float(0.0),
        "seed": Int(0),
        "dtype": Choice(("float32", "float64")),
        "optimizer": Choice(("sgd", "momentum", "newton")),
        "momentum": Float(0.0, 1.0, hi_open=True),
        "eval_every": Optional(Int(1)),
        "average": Choice(("none", "epoch")),
    }),
    "grid": (GridConfig, {
        "batch_size": ListOf(Int(1)),
        "learning_rate": _pos_float_list(),
        "epochs": ListOf(Int(1)),
        "alpha": ListOf(Float(0.0)),
        "seeds": ListOf(Int(0)),
        "select_by": Choice(("val_ce", "val_accuracy")),
        "retrain_on": Choice(("train+val", "train")),
        "retrain_epochs": Choice(("same", "same_steps")),
    }),
    "output": (OutputConfig, {"dir": Optional(Str())}),
}
TOP_LEVEL = ("name", *SCHEMA)
GRID_AXES = ("batch_size", "learning_rate", "epochs", "alpha")


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read, override (`--set a.b=value`) and validate a YAML config file."""
    p = Path(path)
    src = str(path)
    if not p.exists():
        raise ConfigError(f"{src}: config file not found.")
    if p.is_dir():
        raise ConfigError(f"{src}: is a folder; give a YAML config file (e.g. configs/softmax.yaml).")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{src}: cannot read config file ({e}).") from None
    raw = parse_yaml(text, src)
    raw = apply_overrides(raw, overrides, src)
    return from_dict(raw, src, default_name=p.stem)


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key: let PyYAML report it
            continue
    return loader.construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, first: int, line: int):
        super().__init__(key)
        self.key, self.first, self.line = key, first, line


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def parse_yaml(text: str, src: str) -> dict:
    """YAML text -> mapping, or a ConfigError with the line of a syntax error or a repeated key."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise ConfigError(f"{src}: line {e.line}: key {e.key!r} is given twice in the same section "
                          f"(first at line {e.first}); keep one.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{src}: invalid YAML{at}: {problem}.") from None
    if raw is None:
        raise ConfigError(f"{src}: the config file is empty; expected a mapping with keys {', '.join(TOP_LEVEL)}.")
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: the top level must be a mapping of keys ({', '.join(TOP_LEVEL)}). "
                          f"Got a {type(raw).__name__} instead.")
    return raw


def apply_overrides(raw: dict, overrides: tuple[str, ...] | list[str], src: str) -> dict:
    """Apply `KEY=VALUE` strings (dotted key, YAML value) to a copy of `raw`."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=5.")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML.") from None
        _set(out, key, value, f"--set {item!r}", text.strip())
    return out


def set_values(raw: dict, values: dict[str, Any]) -> dict:
    """Apply `{"train.epochs": 5}` (dotted keys, Python values) to a copy of `raw`, each checked like --set."""
    out = copy.deepcopy(raw)
    for key, value in values.items():
        _set(out, key, _plain(value), f"{key}={value!r}", None)
    return out


def _set(out: dict, key: str, value: Any, label: str, typed: str | None) -> None:
    """out[section][key] = value after the checks of the key and of the value (judged where it was given)."""
    parts = key.split(".")
    if parts[0] == "grid" and len(parts) == 3:  # an axis over any key: grid.model.hidden=[[128], [256]]
        sub = f"{parts[1]}.{parts[2]}"
        _grid_body({sub: value}, label)
        if not isinstance(out.get("grid"), dict):
            out["grid"] = {}
        out["grid"][_SHORT.get(sub, sub)] = value
        return
    if parts[0] not in TOP_LEVEL:
        raise ConfigError(f"{label}: unknown key {parts[0]!r}{_hint(parts[0], TOP_LEVEL)}. "
                          f"Allowed: {', '.join(TOP_LEVEL)}.")
    if len(parts) > 2 or (parts[0] == "name") != (len(parts) == 1):
        allowed = "name" if parts[0] == "name" else f"{parts[0]}.<key>"
        raise ConfigError(f"{label}: key must be {allowed}.")
    if len(parts) == 1:
        _check_override(Str(), value, typed, label, "name")
        out["name"] = value
        return
    sec, sub = parts
    rules = SCHEMA[sec][1]
    if sub not in rules:
        raise ConfigError(f"{label}: unknown key '{sec}.{sub}'{_hint(sub, rules)}. "
                          f"Allowed in '{sec}': {', '.join(rules)}.")
    _check_override(rules[sub], value, typed, label, key)
    if not isinstance(out.get(sec), dict):
        out[sec] = {}
    out[sec][sub] = value


def _check_override(rule: Rule, value: Any, typed: str | None, label: str, key: str) -> None:
    """An override is judged where the user gave it, showing what they typed."""
    try:
        rule.check(value, f"{label}: '{key}'")
    except ConfigError as e:
        if typed is not None and typed != str(value):  # e.g. yes -> True, 1e-3 -> '1e-3', [1, 2] -> [1, 2]
            raise ConfigError(f"{e.message[:-1]} (YAML reads {typed!r} as {value!r}).") from None
        raise


def from_dict(raw: dict, src: str = "<dict>", default_name: str = "run") -> Config:
    """Validate a raw mapping (as read from YAML) into a Config."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{_at(src)}unknown key {key!r}{_hint(str(key), TOP_LEVEL)}. "
                              f"Allowed at the top level: {', '.join(TOP_LEVEL)}.")
    name = raw.get("name", default_name)
    name = Str().check(_plain(name), f"{_at(src)}'name'")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"{_at(src)}'name' must be a plain folder name without '/'. Got {name!r} instead.")

    sections: dict[str, Any] = {}
    for sec in SCHEMA:
        if sec not in raw or (raw[sec] is None and sec == "grid"):
            continue
        sections[sec] = _section(sec, raw[sec], src)

    train = TrainConfig(**sections.get("train", {}))
    grid = None
    if "grid" in sections:
        g = dict(sections["grid"])
        for axis in ("batch_size", "learning_rate", "epochs", "alpha"):
            g.setdefault(axis, (getattr(train, axis),))
        g.setdefault("seeds", (train.seed,))  # as `dlhw train` would shuffle
        grid = GridConfig(**g)
    cfg = Config(
        name=name,
        data=DataConfig(**sections.get("data", {})),
        model=ModelConfig(**sections.get("model", {})),
        train=train,
        grid=grid,
        output=OutputConfig(**sections.get("output", {})),
        source=src,
    )  # Config checks the rules that involve more than one key
    return cfg


def _check_combinations(cfg: Config, src: str) -> None:
    """Rules that involve more than one key."""
    at = _at(src)
    if cfg.grid is not None and cfg.data.val_fraction == 0:
        raise ConfigError(f"{at}a 'grid' needs a validation set to select on; "
                          f"'data.val_fraction' must be > 0. Got 0 instead.")
    if cfg.train.optimizer == "newton" and cfg.model.kind != "linear":
        raise ConfigError(f"{at}'train.optimizer' newton is only available for model.kind 'linear'. "
                          f"Got model.kind {cfg.model.kind!r}; use 'sgd' or 'momentum'.")
    if cfg.data.name == "xor" and cfg.model.kind not in ("linear", "logistic", "mlp"):
        raise ConfigError(f"{at}data.name 'xor' has 2 inputs and binary targets; "
                          f"'model.kind' must be linear, logistic or mlp. Got {cfg.model.kind!r} instead.")
    if cfg.model.kind == "logistic" and cfg.data.name != "xor" and (
            cfg.data.classes is None or len(cfg.data.classes) > 2):
        raise ConfigError(f"{at}model.kind 'logistic' is binary; 'data.classes' must list 1 or 2 classes. "
                          f"Got {None if cfg.data.classes is None else list(cfg.data.classes)!r} instead.")


def _hint(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text (what `config.yaml` in a run folder holds)."""
    return yaml.dump(cfg.to_dict(), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists: `hidden: [256, 128]`."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))

