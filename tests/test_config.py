from dataclasses import dataclass, field

import pytest

from avatarsync.config import ConfigError, apply_overrides, load_config, save_config


@dataclass
class Inner:
    width: int = 8
    kind: str = "a"


@dataclass
class Outer:
    lr: float = 1e-3
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    path: str | None = None
    flag: bool = False


def test_defaults_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.01\ninner:\n  width: 16\n")
    cfg = load_config(Outer, p, ["inner.kind=b", "flag=true", "tags=[x, y]", "path=/tmp/z"])
    assert cfg.lr == 0.01 and cfg.inner.width == 16 and cfg.inner.kind == "b"
    assert cfg.flag is True and cfg.tags == ["x", "y"] and cfg.path == "/tmp/z"
    assert isinstance(cfg.inner, Inner)


def test_unknown_key_and_bad_type_are_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  widht: 3\n")
    with pytest.raises(ConfigError, match="widht"):
        load_config(Outer, p)
    with pytest.raises(ConfigError, match="inner.width"):
        load_config(Outer, None, ["inner.width=abc"])


def test_save_then_load_round_trip(tmp_path):
    cfg = load_config(Outer, None, ["inner.width=5", "tags=[q]"])
    save_config(cfg, tmp_path / "o.yaml")
    assert load_config(Outer, tmp_path / "o.yaml") == cfg


def test_override_creates_nested_and_rejects_malformed():
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    with pytest.raises(ConfigError):
        apply_overrides({}, ["novalue"])
