"""Which TrainTask serves which ``avatarsync train <task>``, and recipe loading."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, apply_overrides, load_config, read_yaml
from ..errors import InputError
from .config import TrainConfig

if TYPE_CHECKING:  # the loop imports torch: `avatarsync --help` and `train --help` do without it
    from .loop import TrainResult

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
    try:
        data = read_yaml(path)
    except ConfigError as e:
        hint = ("fix the YAML at that line (indentation, a closing bracket or quote)" if "YAML" in str(e) else
                "give a recipe YAML file: the ones shipped are in recipes/ (e.g. "
                f"recipes/{name}_tiny.yaml or recipes/mouth_real.yaml)")
        raise InputError(str(e), hint) from None
    recipe_task = data.pop("task", name)
    if recipe_task != name:
        raise InputError(f"recipe {path} is for task {recipe_task!r}, not {name!r}",
                         f"run `avatarsync train {recipe_task} --config {path}`")
    try:
        data = apply_overrides(data, list(overrides))
    except ConfigError as e:
        raise InputError(f"override: {e}", "write overrides as dotted.key=value, e.g. train.steps=100") from None
    train_data = data.pop("train", None) or {}
    try:
        train_cfg = load_config(TrainConfig, train_data, where="train")
        task_cfg = load_config(cls.Config, data, where=name)
    except ConfigError as e:
        raise InputError(f"recipe {path}: {e}", _misplaced_hint(overrides, cls.Config)) from None
    return task_cfg, train_cfg


def _misplaced_hint(overrides: list[str] | tuple[str, ...], task_config: type) -> str:
    """Name the override that belongs to the other section (a loop setting given at the top, or a task's
    setting under train.), else the general hint."""
    from dataclasses import fields

    loop, task = {f.name for f in fields(TrainConfig)}, {f.name for f in fields(task_config)}
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        head, _, rest = key.partition(".")
        if head in loop and head not in task:
            return f"{key} is a training-loop setting: write train.{text.strip()}"
        if head == "train" and rest and rest.split(".")[0] in task and rest.split(".")[0] not in loop:
            return f"{rest.split('.')[0]} is a setting of the task, not of the loop: write {text.strip()[6:]}"
    return "fix the key or value; see the recipe files in recipes/"


def run_training(name: str, path: str | Path, overrides: list[str] | tuple[str, ...] = (), progress: bool = True) -> "TrainResult":
    task_cfg, train_cfg = load_recipe(name, path, overrides)
    task = task_class(name)(task_cfg)
    from .loop import fit

    return fit(task, train_cfg, task_config=task_cfg, progress=progress)
