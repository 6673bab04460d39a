"""OCR benchmark: accuracy, speed and memory of the shipped model on fresh captchas.

    .venv/bin/python benchmarks/ocr.py [--n 1000]

Test images are made by `capgate.ocr.synth` with fixed seeds that training never uses:
set B is 4 characters of digits + uppercase, set A is 4-6 characters of digits + upper +
lower case. Images are read one at a time (one onnxruntime thread), as the server does.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from capgate.ocr import synth
from capgate.ocr.engine import DEFAULT_MODEL, OcrEngine

SETS = {
    "B": (12_345, synth.CHARSET_B, 4, 4),
    "A": (23_456, synth.CHARSET_A, 4, 6),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000, help="images per set")
    args = parser.parse_args()

    engine = OcrEngine(threads=1)
    print(f"model: {DEFAULT_MODEL.name}, {DEFAULT_MODEL.stat().st_size / 1e6:.2f} MB")
    print("| set | images | exact | case-insensitive | images/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for name, (seed, charset, lo, hi) in SETS.items():
        samples = synth.generate(seed, args.n, charset, lo, hi)
        engine.read(samples[0][0])  # warm-up
        latencies = []
        exact = nocase = 0
        started = time.perf_counter()
        for png, label in samples:
            t0 = time.perf_counter()
            text = engine.read(png).text
            latencies.append((time.perf_counter() - t0) * 1000)
            exact += text == label
            nocase += text.lower() == label.lower()
        elapsed = time.perf_counter() - started
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"| {name} | {args.n} | {exact / args.n:.1%} | {nocase / args.n:.1%}"
            f" | {args.n / elapsed:.0f} | {statistics.median(latencies):.2f} | {p99:.2f} |"
        )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
