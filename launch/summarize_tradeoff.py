#!/usr/bin/python3
"""Tabulates launch/communication_tradeoff.sh: per communication cost, the controller trained with the
co-selection placement beside the reference (no placement, cost 0) on the same held-out tokens and
seeds: switch rate, retention, KL (mean +- standard deviation over seeds), the remote ranks a held
mask spans relative to the sequence's home rank, and the retention difference to the reference in
points (paired by seed). Runs trained with a locality bias (controller.selection_locality_bias) form
their own rows. Where `temoe bench dispatch` ran on a run's masks (bench.json), the table adds the
option/token ratios of remote bytes per token, messages per layer and replayed exchange time in
teacher-forced steps, the replayed time ratio in decode steps and the decode steps' skipped counts
exchanges (means over seeds). Standard library only.

"remote ranks / mask" is `temoe eval`'s `remote_ranks_per_mask`, measured on the held masks. Runs
evaluated before eval reported it fall back to what k_hat, the experts E and the run's placement
allow: the fewest and most ranks other than the home rank that a mask of k_hat experts can touch
(exact with ep_size 2 and k_hat > E/2, bounds otherwise)."""
import configparser
import json
import math
import pathlib
import re
import statistics
import sys


def spread(values):
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def run_config(run):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(run / "config.cfg")
    return parser


def owners_of(config, experts, world):
    """The run's expert owners: its placement file, else contiguous blocks over ep_size ranks."""
    placement = config.get("parallel", "placement", fallback="").strip()
    if placement:
        return json.loads(pathlib.Path(placement).read_text())["owners"]
    ep_size = config.getint("parallel", "ep_size", fallback=0)
    if ep_size == 0:  # temoe's rule: the largest divisor of E that divides the world size
        ep_size = max(x for x in range(1, world + 1) if experts % x == 0 and world % x == 0)
    return [e * ep_size // experts for e in range(experts)]


def remote_rank_bounds(owners, k_hat):
    """Fewest and most ranks other than the home rank a mask of k_hat experts spans, over home ranks."""
    ranks = sorted(set(owners))
    low, high = math.inf, 0
    for home in ranks:
        others = sorted((owners.count(r) for r in ranks if r != home), reverse=True)
        left, needed = k_hat - owners.count(home), 0
        while left > 0:
            left -= others[needed]
            needed += 1
        low = min(low, needed)
        high = max(high, min(len(others), k_hat))
    return low, high


def train_remote_bytes(run):
    """Mean over training steps of the measured expert-exchange bytes per routed token (teacher and
    student rollouts together) from metrics.jsonl's `dispatch` object; None when absent."""
    values = []
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            dispatch = json.loads(line).get("dispatch")
            if dispatch:
                values.append(dispatch["remote_bytes_per_token"])
    return sum(values) / len(values) if values else None


def bench_ratios(runs):
    """Means over the runs that have a bench.json: option/token ratios (teacher-forced remote bytes,
    messages, replayed time; decode replayed time) and the decode steps' skipped counts exchanges."""
    reports = [json.loads((run / "bench.json").read_text()) for run in runs if (run / "bench.json").exists()]
    if not reports:
        return {}
    picks = {"bytes": lambda r: r["option_over_token"]["teacher_forced"]["remote_bytes_per_token"],
             "messages": lambda r: r["option_over_token"]["teacher_forced"]["messages_per_step"],
             "time": lambda r: r["option_over_token"]["teacher_forced"]["replay_seconds_per_layer"],
             "decode_time": lambda r: r["option_over_token"]["decode"]["replay_seconds_per_layer"],
             "decode_skipped": lambda r: r["option"]["decode"]["counts_exchange_skipped_fraction"]}
    return {key: statistics.fmean(pick(r) for r in reports) for key, pick in picks.items()}


def main(directory, world):
    directory = pathlib.Path(directory)
    groups = {}  # (cost, bias, placed) -> {seed: (eval report, run directory)}
    for path in sorted(directory.glob("*-seed-*/eval.json")):
        name = path.parent.name
        match = (re.fullmatch(r"reference-seed-(\d+)", name)
                 or re.fullmatch(r"placed-cost-([^-]+)-bias-([^-]+)-seed-(\d+)", name)
                 or re.fullmatch(r"placed-cost-([^-]+)-seed-(\d+)", name))
        if not match:
            continue
        if name.startswith("reference"):
            key = (0.0, 0.0, False)
        else:
            key = (float(match.group(1)), float(match.group(2)) if "-bias-" in name else 0.0, True)
        groups.setdefault(key, {})[int(match.groups()[-1])] = (json.loads(path.read_text()), path.parent)
    reference = groups.get((0.0, 0.0, False))
    if not reference:
        sys.exit(f"no reference-seed-*/eval.json under {directory}")

    for quality in sorted(directory.glob("placement-ep*.quality.json")):
        q = json.loads(quality.read_text())
        print(f"placement (ep {q['ep_size']}, sets of {q['set_size']} experts from the router): ranks per set "
              f"{q['contiguous']['mean_ranks_spanned']:.3f} contiguous -> {q['placed']['mean_ranks_spanned']:.3f} placed")
    benched = any((run / "bench.json").exists() for runs in groups.values() for _, run in runs.values())
    header = (f"{'cost':>7} {'bias':>5} {'placement':>9} {'seeds':>5} {'switch rate %':>15} {'retention %':>15}"
              f" {'KL':>17} {'remote ranks/mask':>17} {'train remote B/tok':>18} {'d retention pts':>16} {'loss<=2':>8}")
    if benched:
        header += f" {'bytes x':>7} {'msgs x':>7} {'time x':>7} {'dec time x':>10} {'dec skip %':>10}"
    print(header)
    print("-" * len(header))
    rows = []
    for (cost, bias, placed) in sorted(groups, key=lambda key: (key[2], key[0], key[1])):
        runs = groups[(cost, bias, placed)]
        reports = [report for report, _ in runs.values()]
        switch = spread([100 * r["switch_rate"] for r in reports])
        retention = spread([100 * r["retention"] for r in reports])
        kl = spread([r["kl"] for r in reports])
        bounds = set()
        for report, run in runs.values():
            config = run_config(run)
            model = json.loads((pathlib.Path(config.get("model", "dir")) / "config.json").read_text())
            experts = model.get("num_local_experts", model.get("num_experts"))
            bounds.add(remote_rank_bounds(owners_of(config, experts, world), int(report["k_hat"])))
        low = min(b[0] for b in bounds)
        high = max(b[1] for b in bounds)
        remote = f"{low} (exact)" if low == high else f"{low}..{high} (bounds)"
        evaluated = [r["remote_ranks_per_mask"] for r in reports if "remote_ranks_per_mask" in r]
        if len(evaluated) == len(reports):  # temoe eval measures it on the held masks themselves
            remote = f"{sum(evaluated) / len(evaluated):.3f}"
        measured = [b for b in (train_remote_bytes(run) for _, run in runs.values()) if b is not None]
        traffic = f"{sum(measured) / len(measured):.1f}" if measured else "-"
        paired = [100 * (runs[s][0]["retention"] - reference[s][0]["retention"]) for s in runs if s in reference]
        delta = spread(paired) if paired else (math.nan, math.nan)
        # The acceptance bound is on what retention loses: a rise counts as within.
        within = "yes" if paired and delta[0] >= -2 else ("no" if paired else "-")
        line = (f"{cost:>7g} {bias:>5g} {'yes' if placed else 'no':>9} {len(reports):>5} {switch[0]:>7.2f} +- {switch[1]:<4.2f}"
                f" {retention[0]:>7.2f} +- {retention[1]:<4.2f} {kl[0]:>7.4f} +- {kl[1]:<6.4f} {remote:>17} {traffic:>18}"
                f" {delta[0]:>+8.2f} +- {delta[1]:<4.2f} {within:>8}")
        bench = bench_ratios([run for _, run in runs.values()])
        if benched:
            line += (" " + " ".join(f"{bench[k]:>{w}.3f}" if k in bench else f"{'-':>{w}}"
                                    for k, w in (("bytes", 7), ("messages", 7), ("time", 7), ("decode_time", 10)))
                     + (f" {100 * bench['decode_skipped']:>10.1f}" if "decode_skipped" in bench else f" {'-':>10}"))
        print(line)
        rows.append({"cost": cost, "selection_locality_bias": bias, "placement": placed, "seeds": sorted(runs),
                     "option_over_token": bench, "switch_rate": switch,
                     "retention": retention, "kl": kl, "remote_ranks_per_mask": [low, high],
                     "train_remote_bytes_per_token": sum(measured) / len(measured) if measured else None,
                     "retention_difference_points": delta})
    (directory / "summary.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/communication-tradeoff",
         int(sys.argv[2]) if len(sys.argv) > 2 else 2)
