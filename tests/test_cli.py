import argparse

import pytest

from avatarsync.cli import COMMANDS, build_parser, main


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


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
