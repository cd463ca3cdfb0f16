"""Comparison table (Markdown) and bar chart (SVG) from a compare-pytorch.sh run.

    python3 scripts/compare_table.py DIR [DIR...] [--svg FILE]

Each DIR (one round) holds pytorch.jsonl, openblas.jsonl and burn.jsonl (the reference JSON
lines) and machine.txt. With several rounds, each cell is the median over the rounds with its
range, and the ratio is the median of the per-round ratios (each round's PyTorch and burn ran
within minutes of each other; the machine's speed can drift between rounds). Standard library
only.
"""
import argparse
import json
from pathlib import Path

ORDER = ["vae", "realnvp", "realnvp_sample", "realnvp_log_prob", "gan", "wgan_gp",
         "latent_ode", "diffusion", "diffusion_sample", "wavenet", "wavenet_sample",
         "sgemm_2048"]
WHY_MISSING = {"wgan_gp": "n/a: needs double backward, which burn 0.22 lacks"}


def load(path):
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip().startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path, nargs="+")
    ap.add_argument("--svg", type=Path)
    args = ap.parse_args()
    if len(args.dir) > 1:
        return rounds(args.dir, args.svg)
    args.dir = args.dir[0]
    torch = load(args.dir / "pytorch.jsonl")
    blas = load(args.dir / "openblas.jsonl")
    burn = load(args.dir / "burn.jsonl")
    threads = max((r["threads"] for r in burn), default=2)
    pt = {}
    for r in torch:  # the faster of repeated lines (run_all.py times sgemm twice)
        if r["threads"] == threads and r["steps_per_s"] > pt.get(r["workload"], r)["steps_per_s"] - 1e-9:
            pt[r["workload"]] = r
    frameworks = sorted({r["framework"] for r in burn})
    ours = {(r["workload"], r["framework"]): r for r in burn}
    gflops = lambda r: r["steps_per_s"] * r["flops_per_step"] / 1e9
    # The machine's limit: the best 2048³ sgemm anything reached in this run (OpenBLAS with
    # either kernel set, PyTorch's matmul, burn's).
    sgemms = [r for r in blas + torch + burn if r["workload"] == "sgemm_2048"]
    peak = max((gflops(r) for r in sgemms), default=float("nan"))
    peak_name = max(sgemms, key=gflops)["framework"] if sgemms else "none"

    if (args.dir / "machine.txt").exists():
        print((args.dir / "machine.txt").read_text().strip().replace("\n", "; "))
    print(f"threads: {threads}; sgemm peak {peak:.0f} GFLOP/s ({peak_name}, 2048^3)\n")
    head = ["workload", "PyTorch steps/s"] + [f"{f} steps/s (× PyTorch)" for f in frameworks]
    head += ["best burn GFLOP/s (% of peak)", "PyTorch GFLOP/s (% of peak)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    chart = []
    for w in ORDER:
        p = pt.get(w)
        if p is None and not any((w, f) in ours for f in frameworks):
            continue
        cells = [f"`{w}`", f"{p['steps_per_s']:.2f}" if p else "–"]
        best = None
        for f in frameworks:
            r = ours.get((w, f))
            if r is None:
                cells.append(WHY_MISSING.get(w, "–"))
                continue
            ratio = r["steps_per_s"] / p["steps_per_s"] if p else float("nan")
            cells.append(f"{r['steps_per_s']:.2f} (**{ratio:.2f}×**)" if p else f"{r['steps_per_s']:.2f}")
            chart.append((w, f, ratio))
            if best is None or r["steps_per_s"] > best["steps_per_s"]:
                best = r
        cells.append(f"{gflops(best):.1f} ({100 * gflops(best) / peak:.0f} %)" if best else "–")
        cells.append(f"{gflops(p):.1f} ({100 * gflops(p) / peak:.0f} %)" if p else "–")
        print("| " + " | ".join(cells) + " |")
    if args.svg:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg(chart, frameworks))
        print(f"\nchart: {args.svg}")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def rounds(dirs, svg_path):
    """The table over several rounds: medians, ranges and per-round ratios."""
    per = []  # per round: ({workload: PyTorch steps/s}, {(workload, framework): steps/s})
    for d in dirs:
        burn = load(d / "burn.jsonl")
        threads = max((r["threads"] for r in burn), default=2)
        pt = {}
        for r in load(d / "pytorch.jsonl"):
            if r["threads"] == threads:
                pt[r["workload"]] = max(pt.get(r["workload"], 0.0), r["steps_per_s"])
        per.append((pt, {(r["workload"], r["framework"]): r["steps_per_s"] for r in burn}))
    frameworks = sorted({f for _, ours in per for _, f in ours})
    if (dirs[0] / "machine.txt").exists():
        print((dirs[0] / "machine.txt").read_text().strip().replace("\n", "; "))
    print(f"rounds: {len(dirs)} ({', '.join(str(d) for d in dirs)})\n")
    span = lambda xs: f"{median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"
    head = ["workload", "PyTorch steps/s"]
    for f in frameworks:
        head += [f"{f} steps/s", f"{f} × PyTorch, per round: median (range)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    chart = []
    for w in ORDER:
        pts = [pt[w] for pt, _ in per if w in pt]
        if not pts and not any((w, f) in ours for _, ours in per for f in frameworks):
            continue
        cells = [f"`{w}`", span(pts) if pts else "–"]
        for f in frameworks:
            xs = [ours[(w, f)] for _, ours in per if (w, f) in ours]
            ratios = [ours[(w, f)] / pt[w] for pt, ours in per if (w, f) in ours and w in pt]
            if not xs:
                cells += [WHY_MISSING.get(w, "–"), "–"]
                continue
            cells.append(span(xs))
            if ratios:
                cells.append(f"**{median(ratios):.2f}×** ({min(ratios):.2f}–{max(ratios):.2f})")
                chart.append((w, f, median(ratios)))
            else:
                cells.append("–")
        print("| " + " | ".join(cells) + " |")
    if svg_path:
        svg_path.parent.mkdir(parents=True, exist_ok=True)
        svg_path.write_text(svg(chart, frameworks))
        print(f"\nchart: {svg_path}")


def svg(chart, frameworks):
    """Horizontal bars of burn / PyTorch steps/s, one group per workload."""
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    rows = [(w, f, r) for w, f, r in chart if r == r]
    workloads = [w for w in ORDER if any(x[0] == w for x in rows)]
    bar, gap, left, width = 14, 10, 150, 420
    top = 40
    height = top + len(workloads) * (len(frameworks) * bar + gap) + 40
    vmax = max([2.0] + [r for _, _, r in rows])
    x = lambda v: left + width * v / vmax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 150}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<text x="{left}" y="20" font-size="14">steps/s relative to PyTorch CPU (same machine, same run)</text>']
    y = top
    for w in workloads:
        out.append(f'<text x="{left - 8}" y="{y + bar * len(frameworks) / 2 + 4}" text-anchor="end">{w}</text>')
        for i, f in enumerate(frameworks):
            r = next((r for ww, ff, r in rows if ww == w and ff == f), None)
            if r is not None:
                c = colours[i % len(colours)]
                out.append(f'<rect x="{left}" y="{y}" width="{x(r) - left:.1f}" height="{bar - 2}" fill="{c}"/>')
                out.append(f'<text x="{x(r) + 4:.1f}" y="{y + bar - 4}">{r:.2f}×</text>')
            y += bar
        y += gap
    for v, label in [(1.0, "1.0× (parity)"), (1.5, "1.5× (target)")]:
        out.append(f'<line x1="{x(v):.1f}" y1="{top - 6}" x2="{x(v):.1f}" y2="{y}" stroke="#333" '
                   'stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x(v):.1f}" y="{y + 14}" text-anchor="middle">{label}</text>')
    for i, f in enumerate(frameworks):
        c = colours[i % len(colours)]
        out.append(f'<rect x="{left + width + 20}" y="{top + i * 18}" width="12" height="12" fill="{c}"/>')
        out.append(f'<text x="{left + width + 36}" y="{top + i * 18 + 10}">{f}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
