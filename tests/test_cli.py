"""The command line's own promises: one spelling per option, usage errors on one line naming the option."""
from __future__ import annotations

import argparse

import pytest

from bengali_kit.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from bengali_kit.cli import SUBCOMMANDS, build_parser, main
from bengali_kit.errors import one_line

#: Commands that show a progress bar.
WITH_PROGRESS = ("synth", "preprocess", "train", "predict", "evaluate")


def _options(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s for action in sub.choices[command]._actions for s in action.option_strings}


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_one_spelling_for_no_progress(command):
    opts = _options(command)
    assert "--quiet" not in opts and "-q" not in opts
    if command in WITH_PROGRESS:
        assert "--no-progress" in opts


@pytest.mark.parametrize("command, options", [
    ("preprocess", ("--size", "--out", "--workers", "--split", "--force", "--interpolation")),
    ("synth", ("--train-rows", "--test-rows", "--seed", "--files", "--holdout-fonts", "--overwrite")),
])
def test_help_exits_cleanly_and_lists_the_options(command, options, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert [option for option in options if option not in text] == []


def test_usage_errors_are_one_line_naming_the_option(capsys):
    for argv, fragment in [
        (["predict", "--data", "d", "--checkpoint", "c.pt", "--batch-size", "0"],
         "argument --batch-size: must be an integer >= 1, got '0'"),
        (["evaluate", "--data", "d", "--checkpoint", "c.pt", "--worst", "-2"],
         "argument --worst: must be an integer >= 0, got '-2'"),
        (["predict", "--data", "d"], "the following arguments are required: --checkpoint"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and fragment in err and err.count("\n") == 1, err


@pytest.mark.parametrize("parse, good, bad", [
    (non_negative_int, {"0": 0, "7": 7}, ["-1", "1.5", "x", ""]),
    (positive_int, {"1": 1, "64": 64}, ["0", "-3", "2.0"]),
    (positive_float, {"1e-3": 1e-3, "2": 2.0}, ["0", "-1", "nan", "inf", "x"]),
    (non_negative_float, {"0": 0.0, "0.5": 0.5}, ["-0.1", "nan"]),
])
def test_argument_types(parse, good, bad):
    for text, value in good.items():
        assert parse(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text).replace("(", "\\(")):
            parse(text)


def test_long_messages_are_cut_at_a_sentence_and_kept_on_one_line():
    text = ("First sentence about the problem. " * 6 + "\n\tSecond line with advice.\n" + "x" * 50)
    line = one_line(text, limit=120)
    assert "\n" not in line and "\t" not in line and len(line) <= 122
    assert line.endswith("problem. …")  # after a whole sentence, marked as cut
    assert one_line("Short.\nDetail line.\n") == "Short; Detail line."
    assert one_line("\x1b[1mbold\x1b[0m and a raw byte \x0f") == "bold and a raw byte \\x0f"
