#!/usr/bin/env python3
"""Prints `make demo`'s closing table (Markdown) from the JSON reports voxq wrote in OUT:
autoquant/autoquant.json (deployable sizes, choice), eval_{fp32,int8,autoquant,openvino-autoquant}.json
(EER, minDCF) and bench.json (p50 latency, all engines timed interleaved in one run)."""
import json
import sys
from pathlib import Path


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"demo_table: {path}: {e}")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: demo_table.py OUT_DIR")
    out = Path(sys.argv[1])
    aq = load(out / "autoquant" / "autoquant.json")
    bench = load(out / "bench.json")
    sens = aq["sensitivity"]
    size = {
        "fp32": sens["fp32"]["deployable_bytes"],
        "int8": sens["all_int8"]["deployable_bytes"],
        "autoquant": aq["chosen_row"]["deployable_bytes"],
        "openvino-autoquant": aq["chosen_row"]["deployable_bytes"],
    }
    # bench.json names each model by its config name; `models` maps that name to its file,
    # which lies in engines/<fp32|int8|autoquant|openvino-autoquant>/
    folder = {name: Path(path).parent.name for name, path in bench["models"]}
    p50 = {folder.get(row["model"]): row["p50_ms"] for row in bench["rows"]}
    kept = ", ".join(aq.get("kept_float") or []) or "none"
    label = {
        "fp32": "fp32",
        "int8": "all int8",
        "autoquant": f"autoquant (float: {kept})",
        "openvino-autoquant": "autoquant groups on OpenVINO (openvino placement)",
    }
    print(f"CAM++, {load(out / 'eval_fp32.json')['trials']} demo trials; budget: {aq['budget_text']}; "
          "p50: 3 s of speech, one thread, engines timed interleaved in one run")
    print()
    print("| model | EER | minDCF | deployable | p50 latency | speed-up vs fp32 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("fp32", "int8", "autoquant", "openvino-autoquant"):
        ev = load(out / f"eval_{name}.json")["all"]
        lat = p50.get(name)
        base = p50.get("fp32")
        speed = f"{base / lat:.2f}x" if lat and base else "n/a"
        lat_s = f"{lat:.1f} ms" if lat else "n/a"
        print(f"| {label[name]} | {100 * ev['eer']:.3f}% | {ev['min_dcf']:.4f} | "
              f"{size[name] / 2**20:.2f} MiB | {lat_s} | {speed} |")
    print()
    print(aq.get("verdict", ""))


if __name__ == "__main__":
    main()
