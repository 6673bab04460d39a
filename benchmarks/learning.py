"""The learning loop's benchmark (issue 17, docs/learning.md): a real site capgate has
never seen, learned from the answers an upstream provider is paid for.

A gateway with `learning = true` and one upstream provider that answers from the set's
labels (tests/label_provider.py: a real HTTP server speaking Anti-Captcha's API, priced
--price a task) gets the set's captchas in order, each with the site's websiteURL:

1. **learning**: captchas until the upstream has answered --upstream-max of them (what the
   operator paid for), then the gateway's own training job runs; it waits for a promotion,
   at most until --minutes after the start, or until the job turns its candidate down;
2. **measuring**: the next --measure captchas. It prints the share the clients got right
   (case-insensitive), the share that still went upstream, the audits, and the upstream
   spend saved (local answers at the upstream price, less what the audits cost).

    .venv/bin/python benchmarks/learning.py --set cloud4d [--mirror]

Needs torch (training/README.md) and ../shared/data/realworld. Figures: RESULTS.md.
"""

from __future__ import annotations

import sys

# benchmarks/http.py would stand in for the standard library's `http`: keep this folder off
# the import path.
sys.path[:] = [p for p in sys.path if not p.endswith("benchmarks")]

import argparse
import base64
import csv
import io
import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
REALWORLD = ROOT.parent / "shared" / "data" / "realworld"
KEY = "0123456789abcdef0123456789abcdef"
UPSTREAM_KEY = "benchmark-upstream-key-0123456789"
ADMIN = "benchmark-admin-key-0123456789abcdef"
SITE_URL = "https://captcha.site.example/login"
SITE = "captcha.site.example"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str) -> None:
    for _ in range(1200):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


def samples_of(folder: Path) -> list[tuple[bytes, str]]:
    with (folder / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [((folder / "images" / r["file"]).read_bytes(), r["label"]) for r in rows]


def mirrored(source: Path, folder: Path) -> Path:
    """A copy of a labelled set with each captcha flipped left to right and its label
    reversed to match: a site the shipped generalist never saw (it trained on cloud4d,
    henan4d and tjsp5 as drawn), for measuring the loop from it on a trained-on set."""
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    rows = ["file,label"]
    for number, (image, label) in enumerate(samples_of(source)):
        flipped = Image.open(io.BytesIO(image)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flipped.save(folder / "images" / f"{number}.png")
        rows.append(f"{number}.png,{label[::-1]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


class Gateway:
    """The label upstream and a capgate that learns from it, in their own processes."""

    def __init__(self, args: argparse.Namespace, work: Path, labels: Path) -> None:
        self.upstream_port, self.port = free_port(), free_port()
        self.upstream = f"http://127.0.0.1:{self.upstream_port}"
        self.base = f"http://127.0.0.1:{self.port}"
        script = ROOT / "tests" / "label_provider.py"
        self.provider = subprocess.Popen(
            [sys.executable, str(script), str(self.upstream_port), UPSTREAM_KEY]
        )
        wait_ready(f"{self.upstream}/_stats")
        httpx.post(
            f"{self.upstream}/_labels", json={"folder": str(labels)}, timeout=120
        ).raise_for_status()
        config = work / "capgate.toml"
        config.write_text(
            "[[providers]]\n"
            f'name = "upstream"\nkind = "anticaptcha"\nurl = "{self.upstream}"\n'
            'key_env = "BENCH_UPSTREAM_KEY"\nfirst_wait_seconds = 0.01\n'
            f'poll_interval_seconds = 0.02\n[providers.prices]\nImageToText = "{args.price}"\n'
        )
        env = {
            **os.environ,
            "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
            "CAPGATE_BOOTSTRAP_KEY": KEY,
            "CAPGATE_BOOTSTRAP_BALANCE": "100000",
            "CAPGATE_ADMIN_KEY": ADMIN,
            "CAPGATE_LOG_LEVEL": "warning",
            "CAPGATE_OCR_MIN_CONFIDENCE": str(args.min_confidence),
            "CAPGATE_LEARNING": "true",
            "CAPGATE_LEARNING_MIN_LABELS": str(args.min_labels),
            "CAPGATE_LEARNING_EPOCHS": str(args.epochs),
            "CAPGATE_LEARNING_THREADS": str(args.threads),
            "CAPGATE_LEARNING_CHECK_SECONDS": "2",
            "CAPGATE_MODEL_POLL_SECONDS": "1",
        }
        self.log = work / "server.log"
        with self.log.open("wb") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "capgate", "serve", "--port", str(self.port),
                 "--data", str(work / "data"), "--config", str(config)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_ready(f"{self.base}/healthz")
        self.http = httpx.Client(base_url=self.base, timeout=60)

    def solve(self, image: bytes) -> str:
        task = {
            "type": "ImageToTextTask",
            "body": base64.b64encode(image).decode(),
            "websiteURL": SITE_URL,
        }
        created = self.http.post("/createTask", json={"clientKey": KEY, "task": task}).json()
        assert created["errorId"] == 0, created
        while True:
            answer = self.http.post(
                "/getTaskResult", json={"clientKey": KEY, "taskId": created["taskId"]}
            ).json()
            if answer.get("status") == "ready":
                return str(answer["solution"]["text"])
            if answer["errorId"]:
                return ""
            time.sleep(0.02)

    def solve_all(self, samples: list[tuple[bytes, str]]) -> int:
        """Send them all (8 at a time); how many answers were right."""
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(self.solve, [image for image, _ in samples]))
        return sum(
            a.lower() == label.lower() for a, (_, label) in zip(answers, samples, strict=True)
        )

    def site(self) -> dict[str, Any]:
        overview = self.http.get(
            "/admin/overview", headers={"authorization": f"Bearer {ADMIN}"}
        ).json()
        for view in overview["sites"]:
            if view["site"] == SITE:
                return dict(view)
        return {}

    def upstream_answered(self) -> int:
        return int(httpx.get(f"{self.upstream}/_stats").json()["answered"])

    def stop(self) -> None:
        for process in (self.server, self.provider):
            process.terminate()
            process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="cloud4d", help="a set of ../shared/data/realworld")
    parser.add_argument("--upstream-max", type=int, default=700, help="paid answers to learn from")
    parser.add_argument("--measure", type=int, default=1000, help="captchas measured after")
    parser.add_argument("--minutes", type=float, default=10.0, help="time to learn it in")
    parser.add_argument("--min-labels", type=int, default=680, help="learning_min_labels")
    parser.add_argument("--epochs", type=int, default=20, help="learning_epochs")
    parser.add_argument("--threads", type=int, default=2, help="learning_threads")
    parser.add_argument("--min-confidence", type=float, default=0.9, help="ocr_min_confidence")
    parser.add_argument("--price", default="0.001", help="the upstream's price per captcha, USD")
    parser.add_argument(
        "--mirror", action="store_true", help="flip the captchas (and labels): a new style"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="capgate-bench-learning-") as tmp:
        labels = REALWORLD / args.set
        if args.mirror:
            labels = mirrored(labels, Path(tmp) / "mirrored")
        samples = samples_of(labels)
        started = time.monotonic()
        gateway = Gateway(args, Path(tmp), labels)
        try:
            sent = 0
            right_learning = 0
            while (paid := gateway.upstream_answered()) < args.upstream_max and sent < len(samples):
                # Each captcha costs at most one upstream answer: never more than the limit.
                batch = samples[sent : sent + min(50, args.upstream_max - paid)]
                right_learning += gateway.solve_all(batch)
                sent += len(batch)
            paid = gateway.upstream_answered()
            print(
                f"learning: {sent} captchas sent, {paid} answered upstream, right"
                f" {right_learning / sent:.1%}, at {time.monotonic() - started:.0f} s"
            )
            deadline = started + args.minutes * 60
            while time.monotonic() < deadline:
                view = gateway.site()
                # Promoted, or the job turned its candidate down (it would train again
                # only at 1.5x the labels, which this run never pays for): done waiting.
                decided = [e for e in view.get("history", []) if e["kind"] == "rejected"]
                if view.get("model_version") is not None or decided:
                    break
                time.sleep(2)
            view = gateway.site() or {"upstream": 0, "saved": 0, "audits": 0, "by_model": 0}
            promoted_at = time.monotonic() - started
            print(
                f"model: version {view.get('model_version')} at {promoted_at:.0f} s;"
                f" history {json.dumps(view.get('history', [])[:2])}"
            )
            print(
                f"held out: kept over its threshold {view.get('threshold_coverage')}, with"
                f" agreement {view.get('agreement_coverage')}"
            )
            before, paid_before = view, gateway.upstream_answered()
            measured = samples[sent : sent + args.measure]
            right = gateway.solve_all(measured)
            time.sleep(3)  # the last audits
            after = gateway.site()
            upstream = after["upstream"] - before["upstream"]
            # Every answer not from upstream was local (the site's counters count local
            # answers only once the site has a model).
            local = len(measured) - upstream
            by_model = after["by_model"] - before["by_model"]
            audits = after["audits"] - before["audits"]
            price_micros = round(float(args.price) * 1_000_000)
            # Before a model, the site's counters leave local answers out: count them here.
            counted = after["local"] - before["local"]
            saved = (
                after["saved"]
                - before["saved"]
                + (local - counted) * price_micros
                - audits * price_micros
            )
            n = len(measured)
            print(
                f"measured {n} captchas: right {right / n:.1%}; went upstream"
                f" {upstream / n:.1%} ({upstream}); local {local / n:.1%} (by the site model"
                f" {by_model}); audits {audits}; upstream calls"
                f" {gateway.upstream_answered() - paid_before}; spend saved"
                f" {saved / 1_000_000:.3f} USD of {n * price_micros / 1_000_000:.3f}"
                f" ({saved / max(1, n * price_micros):.1%})"
            )
            for event in gateway.site().get("history", [])[:3]:
                print(f"history: {event['kind']} v{event['version']}: {event['reason']}")
            print(f"whole run {time.monotonic() - started:.0f} s")
        finally:
            gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
