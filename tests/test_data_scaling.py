"""benchmarks/data_scaling.py: it picks the data-scaling runs out of real_accuracy.py's results and fits them."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data_scaling.py"


def _load():
    """The script as a module."""
    spec = importlib.util.spec_from_file_location("data_scaling_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _record(argv: list[str], name: str, weighted: float) -> str:
    """One line as real_accuracy.py appends it (argv, row name, best.pt's scores)."""
    scores = {"grapheme_root": weighted - 0.03, "vowel_diacritic": weighted + 0.02,
              "consonant_diacritic": weighted + 0.04, "weighted": weighted}
    return json.dumps({"time": "2026-12-06 20:00", "argv": argv, "name": name, "scores": scores, "seconds": 1.0,
                       "epoch": 5, "run": "/x"})


def _argv(row: str, per_triple: int, seed: int = 0) -> tuple[list[str], str]:
    """The queue's command line of a data-scaling point, and the row name real_accuracy.py gives it."""
    epochs = str(195 // per_triple)
    extra = ["--train-per-triple", str(per_triple)] if per_triple != 39 else []
    if row == "(a)":
        return ["--epochs", epochs, "--only", "a", "--plain-size", "96", *extra, "--seed", str(seed)], "(a) plain"
    return (["--epochs", epochs, "--only", "b", "--set", "image_size=96", "--tag", "recipe96", *extra,
             "--seed", str(seed)], "(b) recipe-recipe96")


# error = A · n^-alpha per row: what the fit must give back
LAWS = {"(a)": (0.9, 0.5), "(b)": (0.3, 0.25)}


def _results(tmp_path: Path) -> Path:
    lines = []
    for row, (amplitude, alpha) in LAWS.items():
        for n in (5, 15, 39):
            argv, name = _argv(row, n)
            lines.append(_record(argv, name, 1 - amplitude * n ** -alpha))
    # a second seed at 39 for (b), 0.002 either side of the law: the point is their mean
    argv, name = _argv("(b)", 39, seed=1)
    truth = 1 - 0.3 * 39 ** -0.25
    lines.append(_record(argv, name, truth + 0.002))
    lines[5] = _record(*_argv("(b)", 39), truth - 0.002)
    # runs that are not data-scaling points
    lines += [
        _record(["--budget", "3500", "--only", "d", "--tag", "p96", "--seed", "0"], "(d) recipe-p96", 0.93),
        _record(["--unseen", "--epochs", "5", "--only", "b", "--set", "image_size=96", "--tag", "recipe96"],
                "(b) recipe-recipe96", 0.10),
        _record(["--split", "5", "--epochs", "5", "--only", "b", "--tag", "recipe96"], "(b) recipe-recipe96", 0.10),
        _record(["--epochs", "2", "--only", "b", "--set", "image_size=96", "--tag", "recipe96"],
                "(b) recipe-recipe96", 0.10),  # other work: 2 epochs of 39
        _record(["--epochs", "5", "--only", "a", "--seed", "0"], "(a) plain", 0.10),  # 64 px
        _record(["--epochs", "5", "--only", "b", "--tag", "mix25", "--seed", "0"], "(b) recipe-mix25", 0.10),
        json.dumps({"time": "2026-12-06 20:00", "argv": ["--unseen", "--blend", "x,y"], "blend": {}}),
        "",
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_points_are_the_equal_work_rows_of_the_standard_split(tmp_path):
    ds = _load()
    points = ds.load_points(_results(tmp_path))
    assert set(points) == {"(a)", "(b)"}
    assert {row: sorted(by_n) for row, by_n in points.items()} == {"(a)": [5, 15, 39], "(b)": [5, 15, 39]}
    assert sorted(points["(b)"][39]) == [0, 1]
    assert all(0.5 < r < 1 for by_n in points.values() for seeds in by_n.values() for r in seeds.values())


def test_fit_gives_back_each_rows_power_law_and_reads_it_at_155(tmp_path):
    ds = _load()
    text, fits = ds.table(ds.load_points(_results(tmp_path)))
    for row, (amplitude, alpha) in LAWS.items():
        assert fits[row][1] == pytest.approx(alpha, abs=0.01)
        assert fits[row][0] == pytest.approx(amplitude, rel=0.05)
        line = next(x for x in text.splitlines() if x.startswith(f"| {row} |"))
        *_, reading, miss = line.strip(" |").split("|")
        assert float(reading) == pytest.approx(1 - amplitude * 155 ** -alpha, abs=1e-3)
        assert float(miss) < 1e-3  # every point lies on its law
    # the two seeds at 39 average to the law, so the table shows the law's value there
    assert f"{1 - 0.3 * 39 ** -0.25:.4f}" in text
    assert "gain (b) - (a)" in text and "(b) 5: 1, 15: 1, 39: 2" in text
    assert "warning" not in text


# (a) at 15 below (a) at 5, as one seed of a plain run that left its plateau late
FALLING = {5: 0.7481, 15: 0.6513, 39: 0.8475}


def _falling_results(tmp_path: Path) -> Path:
    """A results file holding only the (a) row of FALLING."""
    results = tmp_path / "results.jsonl"
    results.write_text("".join(_record(*_argv("(a)", n), r) + "\n" for n, r in FALLING.items()))
    return results


def test_a_row_whose_recall_falls_with_more_data_is_flagged(tmp_path):
    ds = _load()
    text, fits = ds.table(ds.load_points(_falling_results(tmp_path)))
    assert "warning: (a) falls from 0.7481 at 5 to 0.6513 at 15" in text
    line = next(x for x in text.splitlines() if x.startswith("| (a) |"))
    assert float(line.strip(" |").split("|")[-1]) > 0.05  # the fit misses a point by more than its spread
    assert ds.falls(FALLING) == [(5, 15)] and ds.falls({5: 0.7, 15: 0.8, 39: 0.9}) == []


def test_fit_refuses_what_is_not_a_power_law():
    ds = _load()
    with pytest.raises(ValueError):
        ds.fit_power_law([39], [0.1])
    with pytest.raises(ValueError):
        ds.fit_power_law([5, 39], [0.1, -0.02])  # pretraining's gain turned negative: no power law


def test_main_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    ds = _load()
    out = tmp_path / "figs" / "scaling.png"
    assert ds.main(["--results", str(_results(tmp_path)), "--plot", str(out)]) == 0
    assert "| (a) |" in capsys.readouterr().out
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 200 and image.std() > 0


def test_bad_inputs_name_the_file(tmp_path):
    ds = _load()
    with pytest.raises(SystemExit, match="missing.jsonl: no such file"):
        ds.main(["--results", str(tmp_path / "missing.jsonl")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_record(*_argv("(a)", 5), 0.5) + "\n{not json\n")
    with pytest.raises(SystemExit, match=r"bad.jsonl:2: not a JSON line"):
        ds.main(["--results", str(bad)])


def test_a_point_from_another_machine_joins_its_row(tmp_path, capsys):
    ds = _load()
    results = tmp_path / "results.jsonl"
    results.write_text(_record(*_argv("(b)", 39, seed=1), 0.8956) + "\n")
    assert ds.main(["--results", str(results), "--point", "b:39:0:0.8992"]) == 0
    assert "| (b) | 0.8974 |" in capsys.readouterr().out  # the mean of the two seeds
    with pytest.raises(SystemExit, match="expected ROW:N:SEED:RECALL"):
        ds.main(["--results", str(results), "--point", "b:39:0.8992"])
    with pytest.raises(SystemExit, match="ROW is a or b"):
        ds.main(["--results", str(results), "--point", "d:39:0:0.93"])


def test_records_are_read_with_real_accuracys_own_command_line(tmp_path):
    """`--opt=value` and abbreviated options count as real_accuracy.py counts them; a command it refuses is no row."""
    ds = _load()
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join([
        _record(["--epochs=13", "--only", "b", "--set", "image_size=96", "--tag", "recipe96",
                 "--train-per-triple=15", "--seed=1"], "(b) recipe-recipe96", 0.85),
        _record(["--epochs", "13", "--only", "a", "--plain-size", "96", "--train-per", "15"], "(a) plain", 0.70),
        _record(["--epochs", "13", "--only", "a", "--plain-size", "96", "--train-per-triple", "15",
                 "--split", "17"], "(a) plain", 0.10),  # not a --split real_accuracy.py accepts
    ]) + "\n")
    assert ds.load_points(results) == {"(b)": {15: {1: 0.85}}, "(a)": {15: {0: 0.70}}}


def test_sizes_keeps_only_the_points_asked_for(tmp_path, capsys):
    ds = _load()
    results = _falling_results(tmp_path)
    assert ds.main(["--results", str(results), "--sizes", "5,39"]) == 0
    out = capsys.readouterr().out
    assert "15 per triple" not in out and "0.6513" not in out and "warning" not in out
    # two points: the law runs through both, and reads 0.8911 at 155 (the README's two-end reading of (a))
    assert "| (a) | 0.7481 | 0.8475 | 0.24 | 0.8911 | 0.0000 |" in out
    with pytest.raises(SystemExit):
        ds.main(["--results", str(results), "--sizes", "five"])
