"""Prints a markdown table of the criterion results under a CRITERION_HOME directory (the
`new/estimates.json` and `new/benchmark.json` of every benchmark), for docs/benchmarks.md.
Standard library only.

    python3 criterion_summary.py DIR
"""

import json
import pathlib
import sys


def fmt_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_rate(per_s: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_s >= scale:
            return f"{per_s / scale:.3g} {unit}"
    return f"{per_s:.3g}"


def main() -> None:
    root = pathlib.Path(sys.argv[1])
    rows = []
    for meta_path in sorted(root.glob("**/new/benchmark.json")):
        meta = json.loads(meta_path.read_text())
        est = json.loads((meta_path.parent / "estimates.json").read_text())
        mean = est["mean"]
        ns, lo, hi = mean["point_estimate"], mean["confidence_interval"]["lower_bound"], mean["confidence_interval"]["upper_bound"]
        elements = (meta.get("throughput") or {}).get("Elements")
        rate = f"{fmt_rate(elements / ns * 1e9)} quotes/s" if elements else "—"
        rows.append((meta["group_id"], meta["function_id"] or "", ns, lo, hi, rate))
    if not rows:
        raise SystemExit(f"no criterion results under {root}")
    print("| group | benchmark | mean time | 95% interval | throughput |")
    print("|---|---|---:|---:|---:|")
    for group, name, ns, lo, hi, rate in rows:
        print(f"| {group} | {name} | {fmt_time(ns)} | {fmt_time(lo)} – {fmt_time(hi)} | {rate} |")


if __name__ == "__main__":
    main()
