"""`router calibrate`: the threshold for a cloud share, from recorded or fresh scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from router.cli import main
from router.commands.calibrate import policy_snippet, threshold_for_share


def test_threshold_is_the_share_quantile() -> None:
    scores = np.arange(100) / 100
    t = threshold_for_share(scores, 0.3)
    assert t == pytest.approx(0.693)
    assert np.mean(scores >= t) == pytest.approx(0.3)


def test_snippet_is_a_score_rule() -> None:
    doc = yaml.safe_load(policy_snippet(0.42))
    assert doc == {
        "routes": [{"name": "hard-prompts", "match": {"score": {"gte": 0.42}}, "target": "cloud"}],
        "default": {"target": "local"},
    }


def test_calibrate_on_records_and_prompts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [{"request_id": f"r{i}", "score": i / 10} for i in range(10)]
    lines += [{"id": "p1", "prompt": "What is 2 + 2?"}, {"id": "p2", "prompt": "hi"}]
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["calibrate", "--in", str(src), "--cloud-share", "0.25"]) == 0
    out = capsys.readouterr().out
    threshold = float(out.splitlines()[0].split(":")[1])
    snippet = yaml.safe_load(
        "\n".join(line for line in out.splitlines()[1:] if not line.startswith("#"))
    )
    assert snippet["routes"][0]["match"]["score"]["gte"] == pytest.approx(threshold, abs=1e-4)
    assert 0.0 < threshold < 1.0


def test_calibrate_rejects_a_bad_share(tmp_path: Path) -> None:
    src = tmp_path / "r.jsonl"
    src.write_text('{"score": 0.5}\n')
    assert main(["calibrate", "--in", str(src), "--cloud-share", "1.5"]) == 2
    src.write_text('{"id": "x"}\n')
    assert main(["calibrate", "--in", str(src), "--cloud-share", "0.5"]) == 2
