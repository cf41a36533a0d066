"""Ablations: one base config, a list of overrides, one training run each, one comparison table.

The config file is an ordinary training config plus `[[ablations]]` tables, each with a `name` and the keys it
changes, for example `{ name = "adamw", optimizer = "adamw" }` or `{ name = "focal", loss = "focal" }`.
"""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

from .config import read_config
from .train import run

COLUMNS = ("name", "changes", "val_auc", "val_auc_ci", "sensitivity", "specificity", "ece_after", "test_auc")


def ablate(config: Path, out: Path) -> str:
    base = read_config(config)
    raw = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    variants = [{"name": "base"}] + list(raw.get("ablations", []))
    rows = []
    for variant in variants:
        changes = {k: v for k, v in variant.items() if k != "name"}
        res = run(base.override(**changes), Path(out) / variant["name"])
        v = res["validation"]
        rows.append({"name": variant["name"], "changes": ", ".join(f"{k}={val}" for k, val in changes.items()) or "-",
                     "val_auc": v["auc"]["value"], "val_auc_ci": "-".join(str(c) for c in v["auc"]["ci95"]),
                     "sensitivity": v["sensitivity"]["value"], "specificity": v["specificity"]["value"],
                     "ece_after": round(res["ece_after"], 4),
                     "test_auc": (res["test"] or {}).get("auc", {}).get("value")})
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    table = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    table += "".join("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |\n" for r in rows)
    (Path(out) / "ablation.md").write_text(table)
    return table
