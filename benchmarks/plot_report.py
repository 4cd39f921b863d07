#!/usr/bin/python3
"""The chart of a vae_bench report: for every row (op, shape, precision), each implementation's time
over ours, one panel per group, on a log scale where 1 is ours and right of it means ours is faster.

Usage: benchmarks/plot_report.py REPORT_JSON [OUT_PNG]   (default: the JSON's name with .png)
Needs only matplotlib (Debian's python3-matplotlib here, the GPU machine's python3 there).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display on either machine
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402


def rows_by_group(results):
    """{group: ([row labels in first-seen order], {impl: {label: ratio}})} for rows with a ratio."""
    groups = {}
    for r in results:
        if r.get("impl") == "ours" or r.get("ratio_to_ours") is None:
            continue
        labels, impls = groups.setdefault(r["group"], ([], {}))
        label = f"{r['op']} | {r['shape']} | {r['precision']}"
        if label not in labels:
            labels.append(label)
        impls.setdefault(r["impl"], {})[label] = r["ratio_to_ours"]
    return groups


def plot(report, out_png):
    groups = rows_by_group(report.get("results", []))
    if not groups:
        raise SystemExit("plot_report: no rows with a ratio to ours in the report")
    heights = [max(2.0, 0.22 * len(labels) * max(1, len(impls)) ** 0.5 + 1) for labels, impls in groups.values()]
    figure, axes = plt.subplots(len(groups), 1, figsize=(11, sum(heights)), squeeze=False,
                                gridspec_kw={"height_ratios": heights})
    for axis, (group, (labels, impls)) in zip(axes[:, 0], groups.items()):
        width = 0.8 / len(impls)
        for k, (impl, ratios) in enumerate(impls.items()):
            positions = [i + k * width for i, label in enumerate(labels) if label in ratios]
            values = [ratios[label] for label in labels if label in ratios]
            # From 1 (ours) to the ratio: right where ours is faster, left where it is slower.
            axis.barh(positions, [v - 1.0 for v in values], left=1.0, height=width, label=impl)
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_yticks([i + 0.4 - width / 2 for i in range(len(labels))])
        axis.set_yticklabels(labels, fontsize=6)
        axis.invert_yaxis()
        axis.set_title(f"{group}: time over ours (right of 1: ours is faster)", fontsize=9)
        axis.legend(fontsize=7, loc="lower right")
    figure.suptitle(f"{report.get('device', '?')}, commit {str(report.get('commit', '?'))[:12]}", fontsize=10)
    figure.tight_layout()
    figure.savefig(out_png, dpi=130)


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.strip().split("\n\n")[1])
    path = sys.argv[1]
    out_png = sys.argv[2] if len(sys.argv) == 3 else os.path.splitext(path)[0] + ".png"
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"plot_report: {path}: {e}")
    plot(report, out_png)
    print(f"plot_report: wrote {out_png}")


if __name__ == "__main__":
    main()
