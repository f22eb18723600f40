"""``shiftpool correlate``: a run on synthetic run folders, and bad input refused in one line.

Each bad command line must exit with 2, print exactly one line on stderr naming what is wrong,
and compute nothing (the correlations and the writing of files are made to fail the test).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from harness.test_correlate import MODELS, write_run

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    out = tmp_path / "compare"
    for method, (msb, metrics) in MODELS.items():
        write_run(out / method, method, msb, metrics)
    return out


@pytest.fixture
def nothing_computed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Correlating or writing fails the test; runs in an empty folder."""
    module = sys.modules["shiftpool.harness.correlate"]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started although the input was bad")

    monkeypatch.setattr(module, "correlation_rows", refuse)
    monkeypatch.setattr(module, "atomic_write_set", refuse)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_correlate_prints_the_table_and_writes_the_report(run: Run, runs: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    status, stdout, stderr = run("correlate", runs, "--out-dir", out, "--resamples", "200",
                                 "--permutations", "200", "--no-figures", "--no-layers",
                                 "--metrics", "C-Cons,s_cons")
    assert status == 0, stderr
    assert stdout.splitlines()[0].startswith("| group | x | y | n | pearson |")
    assert "| all | MSB | C-Cons | 5 |" in stdout
    assert f"wrote html: {out / 'correlation.html'}" in stdout
    assert stderr.startswith("correlate: 5 models")
    saved = json.loads((out / "correlation.json").read_text())
    assert [c["y"] for c in saved["correlations"]] == ["c_cons", "s_cons"]
    assert saved["settings"]["permutations"] == 200


def test_options_from_a_config_file_and_a_glob(run: Run, runs: Path, tmp_path: Path) -> None:
    config = tmp_path / "correlate.yaml"
    config.write_text(f"glob: ['{runs}/*']\nout_dir: {tmp_path / 'out'}\nresamples: 150\n"
                      "interval: percentile\nfigures: false\nlayers: false\n")
    status, _, stderr = run("correlate", "--config", config, "--permutations", "100")
    assert status == 0, stderr
    saved = json.loads((tmp_path / "out" / "correlation.json").read_text())
    assert saved["settings"] | {"seed": 0} == {"resamples": 150, "permutations": 100,
                                               "confidence": 0.95, "interval": "percentile",
                                               "seed": 0, "min_models": 3}
    assert len(saved["runs"]) == 5


def test_help(run: Run) -> None:
    with pytest.raises(SystemExit) as done:
        run("correlate", "--help")
    assert done.value.code == 0


BAD = [
    (("correlate",), "correlate needs run folders"),
    (("correlate", "nowhere"), "'nowhere' not found"),
    (("correlate", "--glob", "nowhere*"), "--glob 'nowhere*' matches nothing"),
    (("correlate", "{runs}", "--resamples", "10"), "--resamples"),
    (("correlate", "{runs}", "--resamples", "x"), "--resamples"),
    (("correlate", "{runs}", "--permutations", "0"), "--permutations"),
    (("correlate", "{runs}", "--confidence", "1.5"), "confidence"),
    (("correlate", "{runs}", "--interval", "normal"), "normal"),
    (("correlate", "{runs}", "--seed", "-1"), "--seed"),
    (("correlate", "{runs}", "--metrics", "nosuch"), "no run measured 'nosuch'"),
    (("correlate", "{runs}", "--protocol", "aps"), "no evaluation under the aps protocol"),
    (("correlate", "{runs}", "--out-dir", "{file}"), "is a file, not a folder"),
    (("correlate", "{runs}", "--nosuch"), "unrecognized arguments: --nosuch"),
    (("correlate", "{runs}", "--config", "{config}"), "unknown key(s) nosuch"),
    (("correlate", "{empty}"), "no evaluated runs found"),
    (("correlate", "{no_msb}"), "have no MSB in their tips evaluation"),
    (("correlate", "{runs}/max", "{runs}/aps"), "at least 3 models with MSB, found 2"),
]


@pytest.mark.parametrize(("argv", "named"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(run: Run, runs: Path, nothing_computed: Path,
                                          argv: tuple[str, ...], named: str) -> None:
    places = {"runs": str(runs), "file": str(nothing_computed / "a.txt"),
              "config": str(nothing_computed / "c.yaml"), "empty": str(nothing_computed / "empty"),
              "no_msb": str(nothing_computed / "no_msb")}
    (nothing_computed / "a.txt").write_text("x")
    (nothing_computed / "empty").mkdir()
    (nothing_computed / "c.yaml").write_text("nosuch: 1\n")
    write_run(nothing_computed / "no_msb" / "max", "max", None, {"acc": 0.9})
    status, stdout, stderr = run(*(a.format(**places) for a in argv))
    assert status == 2
    assert stdout == ""
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert named in stderr, stderr
