#!/usr/bin/python3
"""Tabulates an eta sweep (launch/eta_sweep.sh): per eta, the learned controller and the baselines
on the same held-out tokens, mean +- standard deviation over seeds, and draws the front as a PNG:
switch rate against KL and against the accuracy ratio (retention), with every baseline's front
(random switching at the controller's per-layer rates, the fixed mask, the greedy cache swept over
its decay, the segment oracle where the data have domains, plain top-k). The table and summary.json
need only the standard library; the picture needs matplotlib (Debian: python3-matplotlib).

    /usr/bin/python3 launch/summarize_sweep.py [SWEEP_DIR] [--png FILE] [--default-eta ETA]
"""
import argparse
import json
import pathlib
import re
import statistics
import sys

MEASURES = ("switch_rate", "kl", "retention", "top1_agreement", "nll_gap", "experts_loaded_per_switch")


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = statistics.fmean(values)
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, deviation


def load(directory):
    runs = {}
    for path in sorted(pathlib.Path(directory).glob("eta-*-seed-*/eval.json")):
        match = re.match(r"eta-(.+)-seed-(\d+)", path.parent.name)
        runs.setdefault(float(match.group(1)), []).append(json.loads(path.read_text()))
    return runs


def policy_views(report):
    """(name, figures) of every policy in one eval report."""
    views = [("controller", report)]
    for name in ("random", "fixed", "greedy_cache", "segment_oracle", "topk"):
        if name in report.get("baselines", {}):
            views.append((name, report["baselines"][name]))
    return views


def table(runs):
    header = (f"{'eta':>6} {'policy':<15} {'switch %':>14} {'KL':>17} {'retention %':>14} {'agreement %':>14}"
              f" {'NLL gap':>17} {'loaded/switch':>13} {'seeds':>5}")
    print(header)
    print("-" * len(header))
    rows = []
    for eta in sorted(runs):
        reports = runs[eta]
        for name, _ in policy_views(reports[0]):
            picked = [dict(policy_views(r))[name] for r in reports if name in dict(policy_views(r))]
            figures = {m: spread([p.get(m) for p in picked]) for m in MEASURES}
            def cell(measure, scale=1.0, width=8, digits=2):
                mean, deviation = figures[measure]
                if mean is None:
                    return f"{'-':>{width + 8}}"
                return f"{scale * mean:>{width}.{digits}f} +- {scale * deviation:<{5 if digits == 2 else 6}.{digits}f}"
            print(f"{eta:>6g} {name:<15} {cell('switch_rate', 100, 6)} {cell('kl', 1, 8, 4)} {cell('retention', 100, 6)}"
                  f" {cell('top1_agreement', 100, 6)} {cell('nll_gap', 1, 8, 4)} {figures['experts_loaded_per_switch'][0] or 0:>13.2f}"
                  f" {len(picked):>5}")
            rows.append({"eta": eta, "policy": name, **{m: figures[m] for m in MEASURES}, "seeds": len(picked)})
        cache_kl = spread([r.get("greedy_cache_kl_at_controller_rate") for r in reports])
        if cache_kl[0] is not None:
            print(f"{'':>6} {'cache KL at the controller rate':<31} {cache_kl[0]:.4f} +- {cache_kl[1]:.4f}")
        print()
    return rows


def checks(runs, default_eta):
    """The issue's acceptance figures that a sweep alone decides, printed as plain statements."""
    lines = []
    controller = {eta: [r["switch_rate"] for r in reports] for eta, reports in runs.items()}
    if 0.0 in controller and default_eta in controller and default_eta != 0.0:
        zero, default = statistics.fmean(controller[0.0]), statistics.fmean(controller[default_eta])
        ratio = zero / default if default > 0 else float("inf")
        lines.append(f"eta 0 switches {100 * zero:.2f}%, eta {default_eta:g} {100 * default:.2f}%: ratio {ratio:.2f}")
    ordered = sorted(controller)
    monotone = True
    for low, high in zip(ordered, ordered[1:]):
        low_mean, low_dev = spread(controller[low])
        high_mean, high_dev = spread(controller[high])
        if high_mean > low_mean + low_dev + high_dev:
            monotone = False
            lines.append(f"not monotone: eta {high:g} switches {100 * high_mean:.2f}% > eta {low:g} {100 * low_mean:.2f}%")
    lines.append(f"switch rate falls with eta within its spread: {'yes' if monotone else 'no'}")
    if default_eta in runs:
        reports = runs[default_eta]
        kl = statistics.fmean([r["kl"] for r in reports])
        random_kl = statistics.fmean([r["baselines"]["random"]["kl"] for r in reports])
        fixed_kl = statistics.fmean([r["baselines"]["fixed"]["kl"] for r in reports])
        lines.append(f"eta {default_eta:g}: controller KL {kl:.4f}, random at its rate {random_kl:.4f} "
                     f"({100 * (1 - kl / random_kl):.1f}% below), fixed {fixed_kl:.4f}")
        cache = [r.get("greedy_cache_kl_at_controller_rate") for r in reports]
        if all(c is not None for c in cache):
            lines.append(f"eta {default_eta:g}: greedy cache's front at the controller's rate: KL {statistics.fmean(cache):.4f}")
    for line in lines:
        print(line)
    return lines


def draw(runs, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"no PNG: matplotlib is missing (Debian: apt-get install python3-matplotlib)", file=sys.stderr)
        return False
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    etas = sorted(runs)
    for axis, measure, label in ((axes[0], "kl", "KL(teacher || student) per token"),
                                 (axes[1], "retention", "accuracy ratio (student / teacher)")):
        def point(name, pick, reports, **style):
            xs = spread([100 * pick(r)["switch_rate"] for r in reports])
            ys = spread([pick(r)[measure] for r in reports])
            axis.errorbar(xs[0], ys[0], xerr=xs[1], yerr=ys[1], label=name, capsize=3, **style)
            return xs[0], ys[0]
        controller = [point(None, lambda r: r, runs[eta], fmt="o", color="C0") for eta in etas]
        axis.plot([c[0] for c in controller], [c[1] for c in controller], "-", color="C0", label="controller (eta sweep)")
        for (x, y), eta in zip(controller, etas):
            axis.annotate(f"eta {eta:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="C0")
        randoms = [point(None, lambda r: r["baselines"]["random"], runs[eta], fmt="s", color="C1") for eta in etas]
        axis.plot([c[0] for c in randoms], [c[1] for c in randoms], "--", color="C1", label="random at the controller's rates")
        every = [r for eta in etas for r in runs[eta]]
        point("fixed mask", lambda r: r["baselines"]["fixed"], every, fmt="^", color="C2")
        point("plain top-k", lambda r: r["baselines"]["topk"], every, fmt="*", color="k", markersize=10)
        if all("segment_oracle" in r["baselines"] for r in every):
            point("segment oracle", lambda r: r["baselines"]["segment_oracle"], every, fmt="D", color="C4")
        front = every[0]["baselines"].get("greedy_cache_front", [])
        if front:
            xs, ys = [], []
            for index in range(len(front)):
                xs.append(statistics.fmean([100 * r["baselines"]["greedy_cache_front"][index]["switch_rate"] for r in every]))
                ys.append(statistics.fmean([r["baselines"]["greedy_cache_front"][index][measure] for r in every]))
            order = sorted(range(len(xs)), key=lambda i: xs[i])
            axis.plot([xs[i] for i in order], [ys[i] for i in order], "v-", color="C3", label="greedy cache (decay sweep)")
        axis.set_xlabel("switch rate, % of (token, layer) pairs")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    k_hat = runs[etas[0]][0].get("k_hat")
    figure.suptitle(f"Switching against fidelity, k_hat = {k_hat}, mean +- sd over seeds")
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    print(f"front: {png}")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="runs/eta-sweep")
    parser.add_argument("--png", help="where the picture goes (default: DIRECTORY/front.png)")
    parser.add_argument("--default-eta", type=float, default=0.02, help="the eta the checks compare eta = 0 with")
    arguments = parser.parse_args()
    runs = load(arguments.directory)
    if not runs:
        sys.exit(f"no eval.json under {arguments.directory}")
    rows = table(runs)
    lines = checks(runs, arguments.default_eta)
    directory = pathlib.Path(arguments.directory)
    (directory / "summary.json").write_text(json.dumps({"rows": rows, "checks": lines}, indent=1))
    draw(runs, arguments.png or directory / "front.png")


if __name__ == "__main__":
    main()
