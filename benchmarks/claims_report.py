"""The numbers of docs/claims.md from the claims studies: per point its mean accuracy over seeds
with the 95% interval, MACs, the ratio to its baseline's MACs, the mean last-epoch accuracy and the
mean gain over the last three epochs (the last minus the first of them: is it still learning?); the two claims as non-inferiority
readings; and each ablation's Dy-ResNet18 against the main study's (Welch's t).

    python -m benchmarks.claims_report [--runs-dir runs] [--ablation-of claims_glyphs]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from dynsweep import stats
from dynsweep.analysis.study import load

STUDIES = ("claims_glyphs", "claims_digits")
ABLATIONS = ("claims_ablation_lr", "claims_ablation_reduction", "claims_ablation_mobile_lr")
MARGIN = 0.01
"""The second claim's margin: one point of top-1 accuracy."""


def seed_curves(row: pd.Series) -> list[list[float]]:
    """Each finished seed's validation accuracy per epoch, from its ``metrics.csv``."""
    curves = []
    for path in sorted(Path(row["dir"]).glob("seed_*/lightning_logs/version_*/metrics.csv")):
        metrics = pd.read_csv(path)
        curves.append(metrics["val_acc1"].dropna().tolist())
    return curves


def points(runs: Path, study: str) -> pd.DataFrame:
    """One row per trained point of ``study``."""
    frame = load(f"sqlite:///{runs / study}.db", study)
    frame = frame[frame["state"] == "COMPLETE"]
    rows = []
    for _, row in frame.iterrows():
        interval = stats.mean_interval(row["seed_values"])
        curves = [c for c in seed_curves(row) if len(c) >= 3]
        last = [c[-1] for c in curves]
        gain = [c[-1] - c[-3] for c in curves]
        rows.append(
            {
                "study": study,
                "arch": row["arch"],
                "label": row["label"],
                "kind": row["kind"],
                "MMACs": row["macs"] / 1e6,
                "n": interval.n,
                "acc": interval.mean,
                "low": interval.low,
                "high": interval.high,
                "last_epoch": sum(last) / len(last) if last else math.nan,
                "gain_last3": sum(gain) / len(gain) if gain else math.nan,
                "seed_values": row["seed_values"],
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    base = table[table["kind"] == "baseline"].set_index("arch")["MMACs"]
    table["macs_ratio"] = table["MMACs"] / table["arch"].map(base)
    return table


def reading(difference: stats.Difference, margin: float) -> str:
    """A difference against ``-margin``: supported when its whole interval is above, refuted when
    its whole interval is below, else the data cannot tell."""
    if not difference.known:
        return "no interval"
    if difference.low > -margin:
        return "supported"
    if difference.high < -margin:
        return "refuted"
    return "cannot tell"


def claims(table: pd.DataFrame) -> pd.DataFrame:
    """Per study and architecture: Dy - Fix (claim 1: > 0) and Dy - baseline (claim 2: > -1 point)."""
    rows = []
    for (study, arch), group in table.groupby(["study", "arch"], sort=False):
        by_kind = {kind: g.iloc[0] for kind, g in group.groupby("kind")}
        for other, margin, claim in (("fix", 0.0, "Dy > Fix"), ("baseline", MARGIN, "Dy >= baseline - 1 pt")):
            if "dy" not in by_kind or other not in by_kind:
                continue
            d = stats.compare_means(by_kind["dy"]["seed_values"], by_kind[other]["seed_values"])
            rows.append(
                {
                    "study": study,
                    "arch": arch,
                    "claim": claim,
                    "dy_minus_other": d.estimate,
                    "low": d.low,
                    "high": d.high,
                    "p_value": d.p_value,
                    "macs_ratio": by_kind["dy"]["MMACs"] / by_kind[other]["MMACs"],
                    "reading": reading(d, margin),
                }
            )
    return pd.DataFrame(rows)


def ablations(runs: Path, reference: pd.DataFrame) -> pd.DataFrame:
    """Each ablation study's point minus the reference study's point of the same preset (Welch's t:
    different seeds)."""
    rows = []
    for study in ABLATIONS:
        if not (runs / f"{study}.db").exists():
            continue
        table = points(runs, study)
        if table.empty:
            continue
        row = table.iloc[0]
        ref = reference[reference["label"] == row["label"]]
        if ref.empty:
            continue
        d = stats.compare_means(row["seed_values"], ref.iloc[0]["seed_values"])
        rows.append(
            {
                "ablation": study,
                "preset": row["label"],
                "acc": row["acc"],
                "n": row["n"],
                "reference_acc": ref.iloc[0]["acc"],
                "difference": d.estimate,
                "low": d.low,
                "high": d.high,
                "p_value": d.p_value,
                "gain_last3": row["gain_last3"],
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--ablation-of", default="claims_glyphs")
    args = parser.parse_args()
    tables = [points(args.runs_dir, s) for s in STUDIES if (args.runs_dir / f"{s}.db").exists()]
    table = pd.concat(tables, ignore_index=True)
    shown = table.drop(columns="seed_values")
    print("## Points (acc: best epoch per seed, as the sweep records it; gain_last3: the last epoch minus the")
    print("first of the last three)")
    print(shown.to_markdown(index=False, floatfmt=".4f"))
    print("\n## Claims (Welch's t on the seeds; reading against 0 for Dy > Fix, against -0.01 for the second)")
    print(claims(table).to_markdown(index=False, floatfmt=".4f"))
    found = ablations(args.runs_dir, table[table["study"] == args.ablation_of])
    if not found.empty:
        print(f"\n## Ablations (the preset minus its point in {args.ablation_of}, Welch's t)")
        print(found.to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
