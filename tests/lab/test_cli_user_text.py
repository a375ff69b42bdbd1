"""User text through the CLI: rich markup and terminal escapes in names print as themselves, never crash."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gradientflow.cli import app
from gradientflow.cli.app import user_text

from .helpers import tiny_toml

WIDE = {"COLUMNS": "300"}
NAME = "odd [/x] [bold]name\x1b[2J"


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE)


def test_user_text_escapes_markup_and_shows_control_characters() -> None:
    assert user_text("[/x]") == "\\[/x]"
    assert user_text("a\x1b[31mb") == "a\\x1b[31mb"  # "[31m" is no markup tag: rich prints it as is
    assert user_text("line\nnext", keep_newlines=True) == "line\nnext"
    assert user_text("line\nnext") == "line\\nnext"


def test_markup_and_escapes_in_names_print_intact_in_run_runs_and_show(tmp_path: Path) -> None:
    spec = tmp_path / "odd.toml"
    text = tiny_toml("placeholder", steps=10, every=5, sweep='"model.norm" = ["none", "batch"]')
    spec.write_text(text.replace('name = "placeholder"', f'name = "{NAME.replace(chr(27), chr(92) + "u001b")}"'))
    db = tmp_path / "odd.db"
    result = invoke("run", spec, "--db", db)
    assert result.exit_code == 0, result.output
    assert "odd [/x] [bold]name\\x1b[2J[model.norm=batch]: finished" in result.output  # label kept, escape shown
    assert "\x1b" not in result.output
    listing = invoke("runs", "--db", db)
    assert listing.exit_code == 0, listing.output
    assert "MarkupError" not in listing.output
    run_id = next(line.split()[0] for line in result.output.splitlines() if ": finished" in line)
    shown = invoke("show", run_id, "--db", db)
    assert shown.exit_code == 0, shown.output
    assert "odd [/x] [bold]name\\x1b[2J[model.norm=" in shown.output and "\x1b" not in shown.output


def test_markup_in_an_error_message_is_printed_not_parsed(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "x"\n[model]\nactivation = "[/x]"\n')
    result = invoke("run", spec, "--db", tmp_path / "x.db")
    assert result.exit_code == 2, result.output
    assert "`model.activation`: '[/x]' is not one of" in result.output
