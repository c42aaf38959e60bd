#!/usr/bin/env python3
"""Plots the speed benchmark's JSON (bench/speed_bench.cc) as a PNG: images/s of the original
design's Python loop, imgproc with and without network latency and the codec limit, with the
issue's ratios and their targets.

  python3 bench/plot.py build/release/bench/speed.json docs/speed.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def number(section, key):
    value = section.get(key) if isinstance(section, dict) else None
    return value if isinstance(value, (int, float)) else 0.0


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        r = json.load(f)
    w = r["workload"]
    latency = f"{w['host_latency_ms']} ms host + {w['imgbb_latency_ms']} ms ImgBB"
    bars = [
        ("original design\n(Python, sequential)\n" + latency, number(r["baseline"], "images_per_s"),
         "#9e9e9e"),
        ("imgproc\n" + latency, number(r["e2e_latency"], "images_per_s"), "#1f77b4"),
        ("imgproc\nno latency", number(r["e2e_no_latency"], "images_per_s"), "#4a9bd6"),
        ("codec limit\nCompressToJpeg alone,\nall cores", number(r["codec"]["2mp"], "images_per_s"),
         "#2ca02c"),
    ]
    fig, (ax, text) = plt.subplots(
        1, 2, figsize=(12, 5.5), gridspec_kw={"width_ratios": [1.6, 1]}
    )
    labels = [b[0] for b in bars]
    values = [b[1] for b in bars]
    ax.bar(range(len(bars)), values, color=[b[2] for b in bars])
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("images/s (2 MP photos, 7 JPEG : 1 PNG)")
    for i, v in enumerate(values):
        ax.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=10,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_ylim(0, max(values + [1]) * 1.25)
    # The three ratios that compare bars, written under their bar's value.
    ratios = r["ratios"]

    def ratio(key, text):
        value = ratios.get(key, {}).get("value")
        return None if value is None else text.format(value)

    notes = {
        1: [ratio("speedup", "x{:.1f} the original"),
            ratio("network_hidden", "{:.2f} of the no-latency speed")],
        3: [ratio("overhead", "imgproc uses x{:.2f} its CPU/image")],
    }
    for i, texts in notes.items():
        text_lines = [t for t in texts if t]
        if text_lines:
            ax.annotate("\n".join(text_lines), (i, values[i]), ha="center", va="bottom",
                        fontsize=8, color="#444444", xytext=(0, 16), textcoords="offset points")
    title = f"imgproc speed, {r['cores']} cores"
    if r.get("quick"):
        title += " (--quick smoke run)"
    ax.set_title(title)

    text.axis("off")
    lines = ["issue 6 targets"]
    order = ["overhead", "network_hidden", "speedup", "peak_rss_mb", "peak_rss_mixed_mb",
             "status_p99_ms", "accept_10k_s"]
    for key in order + [k for k in r["ratios"] if k not in order]:
        if key not in r["ratios"]:
            continue
        t = r["ratios"][key]
        value = t["value"]
        shown = "n/a" if value is None else f"{value:.3g}"
        op = "<=" if t["at_most"] else ">="
        verdict = "PASS" if t["pass"] else "FAIL"
        lines.append(f"{verdict}  {key}: {shown} {t['unit']}  (target {op} {t['target']:g})")
        lines.append(f"      {t['what']}")
    status = r.get("status_load", {})
    lines.append("")
    lines.append(
        f"(a) {w['rows']} rows x {w['images_per_row']} images; (c) {w['baseline_rows']} rows;"
    )
    lines.append(
        f"(e) status of {w['status_products']} products: "
        f"{number(status, 'requests_per_s'):.0f} req/s"
    )
    for name, load in (("plain", status), ("gzip", status.get("gzip", {}))):
        floor = load.get("floor", {}) if isinstance(load, dict) else {}
        if floor:
            lines.append(
                f"    {name}: p99 {number(load, 'p99_ms'):.2f} ms; a server that only sends "
                f"the same bytes: {number(floor, 'p99_ms'):.2f} ms"
            )
    unfinished = r.get("status_unfinished_load", {})
    if number(unfinished, "requests_per_s"):
        lines.append(
            f"    one in progress: {number(unfinished, 'requests_per_s'):.0f} req/s, "
            f"p99 {number(unfinished, 'p99_ms'):.2f} ms"
        )
    text.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=7.5,
              transform=text.transAxes)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)
    print(f"plot: {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
