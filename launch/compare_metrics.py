#!/usr/bin/env python3
"""Compares the first steps of two training runs (metrics.jsonl), e.g. the same controller training
on the CPU and on a GPU (launch/gpu_check.sh): the switch rates must be equal (the same decisions),
the rewards, KL and per-layer losses within a relative tolerance. Prints one line saying how they
compare; exit status 0 when they agree, 1 when not, 2 when a file cannot be read.

    python3 launch/compare_metrics.py CPU/metrics.jsonl GPU/metrics.jsonl [--tolerance 1e-4]
"""
import argparse
import json
import sys


def read(path):
    with open(path) as stream:
        return {line["step"]: line for line in map(json.loads, filter(str.strip, stream))}


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-30) if a != b else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("expected")
    parser.add_argument("actual")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    options = parser.parse_args()
    try:
        expected, actual = read(options.expected), read(options.actual)
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot compare: {error}")
        return 2
    steps = sorted(set(expected) & set(actual))
    if not steps:
        print(f"cannot compare: no step in both {options.expected} and {options.actual}")
        return 2
    problems, worst = [], 0.0
    for step in steps:
        e, a = expected[step], actual[step]
        if e["switch_rate_per_layer"] != a["switch_rate_per_layer"]:
            problems.append(f"step {step}: switch rates {a['switch_rate_per_layer']} vs {e['switch_rate_per_layer']}")
        pairs = [("reward", a["reward"], e["reward"]), ("kl", a["kl"], e["kl"])]
        for layer, (la, le) in enumerate(zip(a["losses_per_layer"], e["losses_per_layer"])):
            pairs += [(f"layer {layer} {key}", la[key], le[key]) for key in ("q", "termination", "selection")]
        for name, value, reference in pairs:
            difference = relative(value, reference)
            worst = max(worst, difference)
            # A tiny absolute floor: a loss that is 0 up to rounding has no meaningful relative error.
            if abs(value - reference) > options.tolerance * abs(reference) + 1e-9:
                problems.append(f"step {step}: {name} {value} vs {reference} (relative {difference:.2g})")
    if problems:
        print(f"{len(problems)} difference(s) in {len(steps)} steps; first: {problems[0]}")
        return 1
    print(f"same switch rates in all {len(steps)} steps; rewards, KL and losses within {worst:.2g} relative")
    return 0


if __name__ == "__main__":
    sys.exit(main())
