"""Which TrainTask serves which ``avatarsync train <task>``, and recipe loading."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..config import ConfigError, apply_overrides, from_dict, merge_dicts, read_yaml, to_dict
from ..errors import InputError
from .config import TrainConfig
from .loop import TrainResult, fit

# task name -> (module, task class); the class has a ``Config`` dataclass attribute and
# is built as ``TaskClass(config)``.
TASKS: dict[str, tuple[str, str]] = {
    "tokenizer": ("avatarsync.tokenizers.task", "TokenizerTask"),
    "fkg": ("avatarsync.fkg.task", "FKGTask"),
    "interp": ("avatarsync.interpolation.task", "InterpTask"),
    "decoder": ("avatarsync.fkg.decoder_task", "DecoderTask"),
    "mouth": ("avatarsync.mouth.task", "MouthTask"),
}
TASK_NAMES = tuple(TASKS)


def task_class(name: str) -> Any:
    if name not in TASKS:
        raise InputError(f"unknown training task {name!r}", f"use one of {', '.join(TASK_NAMES)}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(module), cls)


def load_recipe(name: str, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Any, TrainConfig]:
    """Recipe YAML -> (task config, train config). ``train:`` is the loop's section; the rest is the task's."""
    cls = task_class(name)
    data = read_yaml(path)
    recipe_task = data.pop("task", name)
    if recipe_task != name:
        raise InputError(f"recipe {path} is for task {recipe_task!r}, not {name!r}",
                         f"run `avatarsync train {recipe_task} --config {path}`")
    data = apply_overrides(data, list(overrides))
    train_data = {**to_dict(TrainConfig()), **data.pop("train", {})}
    try:
        train_cfg = from_dict(TrainConfig, train_data, "train")
        task_defaults = to_dict(cls.Config())
        task_cfg = from_dict(cls.Config, merge_dicts(task_defaults, data), name)
    except ConfigError as e:
        raise InputError(f"recipe {path}: {e}", "fix the key or value; see the recipe files in recipes/") from None
    return task_cfg, train_cfg


def run_training(name: str, path: str | Path, overrides: list[str] | tuple[str, ...] = (), progress: bool = True) -> TrainResult:
    task_cfg, train_cfg = load_recipe(name, path, overrides)
    task = task_class(name)(task_cfg)
    return fit(task, train_cfg, task_config=task_cfg, progress=progress)
