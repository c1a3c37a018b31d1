#!/usr/bin/python3
"""Tabulates an eta sweep (launch/eta_sweep.sh): per eta, the learned controller and the baselines
on the same held-out tokens, mean +- standard deviation over seeds. Standard library only."""
import json
import pathlib
import re
import statistics
import sys


def spread(values):
    mean = statistics.fmean(values)
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, deviation


def main(directory):
    runs = {}
    for path in sorted(pathlib.Path(directory).glob("eta-*-seed-*/eval.json")):
        match = re.match(r"eta-(.+)-seed-(\d+)", path.parent.name)
        runs.setdefault(float(match.group(1)), []).append(json.loads(path.read_text()))
    if not runs:
        sys.exit(f"no eval.json under {directory}")
    header = f"{'eta':>6} {'policy':<13} {'switch rate %':>16} {'retention %':>16} {'KL':>18} {'seeds':>5}"
    print(header)
    print("-" * len(header))
    rows = []
    for eta in sorted(runs):
        reports = runs[eta]
        policies = [("controller", lambda r: r)] + [
            (name, lambda r, name=name: r["baselines"][name]) for name in ("random", "fixed", "greedy_cache", "topk")]
        for name, pick in policies:
            switch = spread([100 * pick(r)["switch_rate"] for r in reports])
            retention = spread([100 * pick(r)["retention"] for r in reports])
            kl = spread([pick(r)["kl"] for r in reports])
            print(f"{eta:>6g} {name:<13} {switch[0]:>8.2f} +- {switch[1]:<5.2f} {retention[0]:>8.2f} +- {retention[1]:<5.2f}"
                  f" {kl[0]:>9.4f} +- {kl[1]:<6.4f} {len(reports):>5}")
            rows.append({"eta": eta, "policy": name, "switch_rate": switch, "retention": retention, "kl": kl})
        print()
    (pathlib.Path(directory) / "summary.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/eta-sweep")
