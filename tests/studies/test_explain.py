"""The explain study end to end (tiny mode, through the real entry point) and its verdicts on a stored copy."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gradientflow.spec import expand
from gradientflow.store import Store
from gradientflow.studies.explain import compute_findings, study

pytestmark = pytest.mark.slow

ENTRY = [sys.executable, "-c", "from gradientflow.cli import main; main()"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    output = tmp_path_factory.mktemp("explain")
    done = subprocess.run(
        [*ENTRY, "explain", "--mode", "tiny", "-o", str(output)], capture_output=True, text=True, timeout=300
    )
    return output, done


def test_cli_writes_the_page_and_the_verdict_table(tiny_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    output, done = tiny_run
    assert done.returncode == 0, done.stderr
    assert (output / "explain.db").exists()
    page = (output / "index.html").read_text(encoding="utf-8")
    assert "vanishing gradients" in page
    for claim_id in range(1, 10):  # one card per claim, in order, each with its figure
        card = page.split(f'id="claim-{claim_id}"')[1].split("</section>")[0]
        assert f'id="figure-claim-{claim_id}"' in card
    assert page.index('id="claim-1"') < page.index('id="claim-9"') < page.index('id="runs"')
    assert page.count('class="run-group"') == len(study("tiny"))
    for verdict_word in ("supported", "mixed"):
        assert verdict_word in done.stdout
    assert "If you have m gradients" in done.stdout


def test_rerun_reuses_every_stored_run(tiny_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    output, _ = tiny_run
    again = subprocess.run(
        [*ENTRY, "explain", "--tiny", "-o", str(output)], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    total = len({r.run_id for e in study("tiny") for r in expand(e.spec)})
    assert f"{total} runs ({total} reused" in again.stdout


def _plain_run_ids() -> list[str]:
    vanishing = next(e for e in study("tiny") if e.key == "vanishing")
    return [r.run_id for r in expand(vanishing.spec) if r.spec.model.norm == "none"]


def test_verdict_follows_the_stored_numbers(
    tiny_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    output, _ = tiny_run
    copy = tmp_path / "copy.db"
    shutil.copy(output / "explain.db", copy)
    with Store(copy, readonly=True) as store:
        before = {f.claim_id: f for f in compute_findings(store, study("tiny"))}
    assert before[1].verdict == "supported"
    plain = _plain_run_ids()
    with sqlite3.connect(copy) as connection:  # the first layer's gradient of every plain net: huge
        marks = ", ".join("?" * len(plain))
        changed = connection.execute(
            f"UPDATE layer_stats SET grad_rms = 1000.0 WHERE layer = 'act1' AND run_id IN ({marks})", plain
        ).rowcount
    assert changed > 0
    with Store(copy, readonly=True) as store:
        after = {f.claim_id: f for f in compute_findings(store, study("tiny"))}
    assert after[1].verdict != "supported"
    assert after[1].measurements["grad ratio, sigmoid depth 10, no BN, init"] > 1
    assert after[1].summary != before[1].summary
    assert after[8].verdict != before[8].verdict  # claim 8 reads the same tanh ratios
    assert after[6].verdict == before[6].verdict  # untouched runs, untouched verdicts


def test_help_lists_the_modes() -> None:
    done = subprocess.run(
        [*ENTRY, "explain", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", **__import__("os").environ},
    )
    assert done.returncode == 0
    assert "full|quick|tiny" in done.stdout.replace(" ", "") or "[full|quick|tiny]" in done.stdout


def test_an_unknown_mode_is_refused_with_the_choices(tmp_path: Path) -> None:
    done = subprocess.run(
        [*ENTRY, "explain", "--mode", "huge", "-o", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "huge" in done.stderr and "quick" in done.stderr
    assert not (tmp_path / "explain.db").exists()
