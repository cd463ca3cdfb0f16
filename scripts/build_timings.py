#!/usr/bin/env python3
"""Where a cold build's time goes: compile seconds per group of crates.

    cargo build --release --timings            # writes target/cargo-timings/cargo-timing.html
    python3 scripts/build_timings.py target/cargo-timings/cargo-timing.html [--units N] [--save out.json]

Takes cargo's timings HTML (or a JSON list saved with --save) and prints the seconds each unit
compiled for, summed per group (the GPU stack, ndarray, flex, burn's shared crates, turso,
neurogen, the rest); the sum is CPU time, not wall time (cargo runs units in parallel).
"""
import json
import re
import sys

GPU = ("cubecl", "cubek", "burn-cubecl", "burn-wgpu", "wgpu", "naga", "ash", "gpu-", "spirv",
       "metal", "khronos", "renderdoc", "glow", "pliron", "rspirv", "web-sys", "js-sys")


def group(name):
    if name in ("burn-ndarray", "ndarray", "matrixmultiply", "burn-cpu"):
        return "ndarray"
    if name == "burn-flex" or name.startswith("gemm") or name in ("pulp", "seq-macro", "dyn-stack", "raw-cpuid"):
        return "flex"
    if name.startswith(GPU):
        return "gpu (cubecl, wgpu, naga)"
    if name.startswith("turso") or name == "branches":
        return "turso (cubecl's autotune cache)"
    if name.startswith("neurogen"):
        return "neurogen"
    if name.startswith("burn"):
        return "burn, shared"
    return "other"


def units(path):
    text = open(path).read()
    if path.endswith(".json"):
        return json.loads(text)
    m = re.search(r"const UNIT_DATA = (\[.*?\]);\n", text, re.S)
    if not m:
        sys.exit(f"{path}: no UNIT_DATA (is it cargo's --timings HTML?)")
    return [{"name": u["name"], "target": u["target"], "duration": u["duration"]}
            for u in json.loads(m.group(1))]


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    top = int(args[args.index("--units") + 1]) if "--units" in args else 8
    save = args[args.index("--save") + 1] if "--save" in args else None
    us = units(args[0])
    if save:
        json.dump(us, open(save, "w"), indent=0)
    total = sum(u["duration"] for u in us)
    per = {}
    for u in us:
        g = group(u["name"])
        per[g] = per.get(g, 0.0) + u["duration"]
    print(f"{len(us)} units, {total:.0f} s of compile time")
    for g, t in sorted(per.items(), key=lambda x: -x[1]):
        print(f"  {g:34s} {t:7.0f} s  {100 * t / total:3.0f} %")
    by_crate = {}
    for u in us:
        by_crate[u["name"]] = by_crate.get(u["name"], 0.0) + u["duration"]
    print(f"largest {top} crates:")
    for n, t in sorted(by_crate.items(), key=lambda x: -x[1])[:top]:
        print(f"  {n:34s} {t:7.0f} s")


if __name__ == "__main__":
    main()
