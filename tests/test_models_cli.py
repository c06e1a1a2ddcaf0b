"""`dynsweep models`: every model and preset with parameters and MACs, as a table or JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from dynsweep.cli import main
from dynsweep.cost import count
from dynsweep.models import build_model, list_models


def test_models_json_lists_params_macs_and_ratio(capsys) -> None:
    assert main(["models", "--filter", "*resnet18", "--input-size", "64", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["resnet18", "dy_resnet18", "fix_resnet18"]
    for name, row in rows.items():
        report = count(build_model(name), (3, 64, 64))
        assert (row["params"], row["macs"], row["input_size"]) == (report.params, report.macs, [3, 64, 64])
    assert rows["resnet18"]["baseline"] is None and rows["resnet18"]["macs_ratio"] is None
    assert rows["dy_resnet18"]["baseline"] == "resnet18"
    assert rows["dy_resnet18"]["macs_ratio"] == rows["dy_resnet18"]["macs"] / rows["resnet18"]["macs"]


def test_models_table_has_every_model(capsys) -> None:
    assert main(["models", "--input-size", "32", "48", "--small-input"]) == 0
    out = capsys.readouterr().out
    assert "MACs at 32 x 48" in out
    names = [line.split()[0] for line in out.splitlines()[3:]]
    assert sorted(names) == list_models()


def test_models_ratio_for_preset_without_its_baseline_in_the_filter(capsys) -> None:
    assert main(["models", "--filter", "dy_shufflenet_v2", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert 0.57 <= row["macs_ratio"] <= 0.63


def test_models_errors(capsys) -> None:
    assert main(["models", "--filter", "nothing*"]) == 1
    assert "no model matches" in capsys.readouterr().err
    assert main(["models", "--input-size", "1", "2", "3"]) == 2


def test_python_dash_m_dynsweep_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dynsweep", "models", "--filter", "mobilenet_v3_small", "--input-size", "32"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "mobilenet_v3_small" in result.stdout
