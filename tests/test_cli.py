import argparse

import pytest

from avatarsync.cli import COMMANDS, build_parser, main


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


# the commands README documents (written out here, not read from the parser, so a lost one fails)
DOCUMENTED = ("speak", "phonemes", "prepare", "evaluate", "train", "bundle", "serve", "synth-data")


def test_every_documented_command_has_its_own_help(capsys):
    assert set(DOCUMENTED) <= set(COMMANDS)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    top = capsys.readouterr().out
    assert e.value.code == 0
    for name in DOCUMENTED:
        assert name in top
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0 and f"avatarsync {name}" in capsys.readouterr().out


def test_every_option_has_help_text():
    parser = build_parser()
    missing = []
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            if not (action.help and action.help.strip()):
                missing.append(f"{name or 'avatarsync'} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"


def test_user_error_is_a_message_not_a_traceback(tmp_path, capsys):
    code = main(["synth-data", "--out", str(tmp_path / "c"), "--clips", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error:" in err and "--clips" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, words", [
    (["train", "fkg", "--config", "no-such-recipe.yaml"], ["not found", "recipes/"]),
    (["train", "fkg", "--config", "{bad}"], ["not valid YAML", "line"]),
    (["train", "fkg", "--config", "recipes/fkg_tiny.yaml", "steps=3"], ["steps", "write train.steps=3"]),
    (["train", "fkg", "--config", "recipes/fkg_tiny.yaml", "train.size=tiny"], ["size", "write size=tiny"]),
])
def test_train_errors_are_error_and_hint_lines_with_exit_2(argv, words, tmp_path, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    if argv[3] == "{bad}":
        bad = tmp_path / "bad.yaml"
        bad.write_text("a: [1, 2\n")
        argv = [*argv[:3], str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\nhint: " in err and "Traceback" not in err
    assert all(w in err for w in words), err


def test_bundle_without_flags_keeps_the_shipped_bundles_speak_defaults(tmp_path, monkeypatch):
    from avatarsync import cli
    from avatarsync.config import from_dict, read_yaml
    from avatarsync.pipeline import DEFAULT_BUNDLE, BundleInfo

    seen = {}
    monkeypatch.setattr("avatarsync.bundle.make_bundle", lambda out, *a, **k: seen.update(info=a[3]) or out)
    parts = ["--tokenizer", "t", "--fkg", "f", "--interp", "i", "--out", str(tmp_path / "b")]
    assert cli.main(["bundle", *parts]) == 0
    shipped = from_dict(BundleInfo, read_yaml(DEFAULT_BUNDLE / "pipeline.yaml"), "pipeline.yaml")
    got = seen["info"]
    assert (got.guidance, got.keyframe_decode, got.paste_region, got.render) == (
        shipped.guidance, shipped.keyframe_decode, shipped.paste_region, shipped.render) == (2.0, "expected", "mouth", "auto")
    assert cli.main(["bundle", *parts, "--guidance", "1", "--paste-region", "face"]) == 0
    assert (seen["info"].guidance, seen["info"].paste_region) == (1.0, "face")
