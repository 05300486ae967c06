"""The `reid` command line, through Typer's CliRunner: exit codes and what it prints."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from reid.cli.main import app

TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"

runner = CliRunner()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "synth", "train", "evaluate", "conditions", "benchmark"):
        assert command in result.output


def test_synth_train_evaluate(tmp_path):
    data = tmp_path / "data"
    result = runner.invoke(
        app,
        [
            "synth",
            str(data),
            "--individuals",
            "3",
            "--images-per",
            "6",
            "--size",
            "48",
            "--dates",
            "2",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 18 photos" in result.output and (data / "manifest.csv").is_file()
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(TINY_CONFIG),
            "--data",
            str(data),
            "--out",
            str(run),
            "--set",
            "train.epochs=1",
            "--set",
            "data.input_size=32",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "model:" in result.output and (run / "model.pt").is_file()
    result = runner.invoke(
        app,
        ["evaluate", str(run), "--data", str(data / "manifest.csv"), "--quiet", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "| accuracy |" in result.output and (run / "eval" / "confusion.png").is_file()


def test_user_mistakes_exit_nonzero_with_one_sentence(tmp_path):
    cases = [
        (
            ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")],
            "does not exist",
        ),
        (
            [
                "train",
                "--data",
                str(tmp_path),
                "--out",
                str(tmp_path / "r"),
                "--set",
                "train.lr=fast",
            ],
            "expects float",
        ),
        (["evaluate", str(tmp_path / "norun"), "--data", str(tmp_path)], "No model checkpoint"),
        (["synth", str(tmp_path / "s"), "--size", "8"], ""),
    ]
    for args, text in cases:
        result = runner.invoke(app, args)
        assert result.exit_code != 0, args
        output = _plain(result.output)
        assert text in output, output
        assert "Traceback" not in output


def test_console_script_exit_codes(tmp_path):
    import subprocess
    import sys

    code = "import sys; sys.argv = ['reid'] + sys.argv[1:]; from cli.main import main; main()"
    ok = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "enroll" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-c", code, "evaluate", str(tmp_path), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "No model checkpoint" in bad.stderr
