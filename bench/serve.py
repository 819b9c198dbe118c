"""`vcap serve` against `vcap caption` one process per video: requests/s and p50/p95 latency at several
concurrencies, on 10 s clips made from the shipped samples (one per kind of footage, 320x240, 25 fps).

The model is a small one trained here on the samples (efficientnet-lite0 ImageNet features, 16 frames, as
samples/demo.sh does): what the figures measure is the cost of a request, not caption quality.

Beside the rows, where a served request's time goes at each concurrency, from the server's /health before and
after (seconds per stage) and the client's latencies: the captioning thread waiting for decoded frames, the
decoders' own seconds, the backbone, the captioner, and the rest of the latency (HTTP, upload, queueing); and
the decode-only limit on the same clips (PyAV decoding every frame, FFmpeg's threads, nothing else).

    python bench/serve.py [--concurrency 1 4 16] [--workers N] [--out DIR]      # about 3-5 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx2 as httpx

from timed import decode_only  # noqa: E402  (bench/timed.py)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
KINDS = ("bikes", "bunny", "carphone", "tree")


def vcap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcap", *map(str, args)], capture_output=True, text=True)


def make_clip(kind: str, out: Path, seconds: float = 10.0, fps: float = 25.0, size=(320, 240)) -> Path:
    """The sample clips of one kind, one after another and looped, to `seconds` of 320x240 video."""
    frames = []
    for path in sorted((SAMPLES / "videos").glob(f"{kind}_*.mp4")):
        capture = cv2.VideoCapture(str(path))
        while (frame := capture.read())[0]:
            frames.append(cv2.resize(frame[1], size))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(int(seconds * fps)):
        writer.write(frames[i % len(frames)])
    writer.release()
    return out


def train_model(root: Path) -> Path:
    """The bench's model, trained into `root` unless a run before left it there (--out)."""
    if (root / "model" / "last.pt").exists():
        return root / "model" / "last.pt"
    for args in (("extract", SAMPLES / "videos", root / "feats", "--frames", "16", "--backbone", "efficientnet-lite0"),
                 ("train", root / "feats", SAMPLES / "labels.json", "--out", root / "model", "--overwrite",
                  "--val-fraction", "0.125", "--hidden", "128", "--embed-dim", "64", "--batch-size", "8",
                  "--lr", "3e-3", "--min-count", "1", "--epochs", "20", "--patience", "0", "--frame-stride", "1")):
        done = vcap(*args)
        if done.returncode:
            sys.exit(f"bench: vcap {args[0]} failed:\n{done.stderr}")
    return root / "model" / "last.pt"


def timed(calls, concurrency: int) -> tuple[float, list[float], list[str]]:
    """Run the calls `concurrency` at a time: (wall seconds, each call's latency, each call's caption)."""
    def one(call):
        start = time.perf_counter()
        caption = call()
        return time.perf_counter() - start, caption

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, calls))
    return time.perf_counter() - start, [r[0] for r in results], [r[1] for r in results]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> str:
    """The CPU model and logical core count, as /proc/cpuinfo gives them, and the load average now."""
    info = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in (info.read_text().splitlines() if info.exists() else [])
              if line.startswith("model name")]
    cpu = f"{models[0]}, {len(models)} logical cores" if models else "CPU model unknown"
    return f"{cpu}; load average {os.getloadavg()[0]:.1f}"


STAGES = ("decode_wait", "decode", "backbone", "captioner")


def breakdown(concurrency: int, before: dict, after: dict, wall: float, latencies: list[float]) -> str:
    """A markdown row: per request, the server's seconds per stage (a /health difference), the rest of the mean
    latency, the wall per request, and which part bounds the requests/s: the largest share of the wall."""
    requests = after["requests"] - before["requests"]
    per = {k: (after["seconds"][k] - before["seconds"][k]) / requests for k in STAGES}
    latency = sum(latencies) / len(latencies)
    worked = per["decode_wait"] + per["backbone"] + per["captioner"]  # the captioning thread's own seconds
    parts = {"decode wait": per["decode_wait"], "backbone": per["backbone"], "captioner": per["captioner"],
             "outside the stages": wall / requests - worked}
    bound = max(parts, key=parts.get)
    return (f"| {concurrency} | {requests} | {latency:.3f} | {per['decode_wait']:.3f} | {per['decode']:.3f} | "
            f"{per['backbone']:.3f} | {per['captioner']:.3f} | {latency - worked:.3f} | {wall / requests:.3f} | "
            f"{bound} ({parts[bound] * requests / wall:.0%}) |")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, default=None, help="vcap serve --workers [default: vcap's]")
    parser.add_argument("--out", type=Path, default=None, help="work folder, its model reused by the next run "
                        "[default: a temp folder]")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="vcap-bench-serve-"))
    root.mkdir(parents=True, exist_ok=True)
    model = train_model(root)
    clips = [make_clip(kind, root / f"{kind}_10s.mp4") for kind in KINDS]
    print(f"model: {model} (efficientnet-lite0, 16 frames, hidden 128); clips: {len(clips)} x 10 s 320x240 25 fps")
    print(f"machine: {machine()}")
    decode_only(clips[0])  # the page cache and the libraries warm
    limit = statistics.median(decode_only(clip) for clip in clips for _ in range(3))
    print(f"decode-only limit (PyAV, every frame, thread_type AUTO, median of {3 * len(clips)}): {limit:.3f} s a "
          f"clip = {1 / limit:.1f} requests/s")

    port = free_port()
    log = open(root / "serve.log", "w")
    started = time.perf_counter()
    workers = ["--workers", str(args.workers)] if args.workers is not None else []
    server = subprocess.Popen([sys.executable, "-m", "vcap", "serve", "--model", str(model), "--port", str(port),
                               *workers], stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
    while True:
        try:
            if client.get("/health").status_code == 200:
                break
        except httpx.TransportError:
            if server.poll() is not None:
                sys.exit(f"bench: vcap serve exited; see {root / 'serve.log'}")
            time.sleep(0.2)
    print(f"vcap serve ready in {time.perf_counter() - started:.1f} s (torch, both models, the worker)")

    def served(clip: Path):
        def call():
            response = client.post("/caption", files={"video": (clip.name, clip.read_bytes(), "video/mp4")})
            response.raise_for_status()
            return response.json()["videos"][0]["caption"]
        return call

    def process(clip: Path):
        def call():
            done = vcap("caption", clip, "--model", model, "--json")
            if done.returncode:
                raise RuntimeError(done.stderr)
            return json.loads(done.stdout)["videos"][0]["caption"]  # the captions.json entries
        return call

    rows, captions, split = [], {}, []
    served(clips[0])()  # the first request of a fresh process pays one-off costs (allocator, decoder)
    for concurrency in args.concurrency:
        for name, make, requests in (("vcap serve", served, max(8, 2 * concurrency)),
                                     ("vcap caption, a process each", process, max(4, concurrency))):
            chosen = [clips[i % len(clips)] for i in range(requests)]
            before = client.get("/health").json()
            wall, latencies, said = timed([make(c) for c in chosen], concurrency)
            if make is served:
                split.append(breakdown(concurrency, before, client.get("/health").json(), wall, latencies))
            for clip, text in zip(chosen, said):
                captions.setdefault((name, clip.name), text)
            rows.append((concurrency, name, requests, requests / wall, percentile(latencies, 0.5),
                         percentile(latencies, 0.95)))
            print(f"  c={concurrency} {name}: {requests} requests in {wall:.1f} s", flush=True)
    health = client.get("/health").json()
    print(f"machine at the end: {machine()}")
    server.send_signal(signal.SIGINT)
    server.wait(30)

    same = all(captions[("vcap serve", c.name)] == captions[("vcap caption, a process each", c.name)]
               for c in clips if ("vcap caption, a process each", c.name) in captions)
    print(f"\nserver: {health['videos']} videos in {health['batches']} batches; same captions as vcap caption: {same}")
    print("\n| concurrency | how | requests | requests/s | p50 latency (s) | p95 latency (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for concurrency, name, requests, rate, p50, p95 in rows:
        print(f"| {concurrency} | {name} | {requests} | {rate:.2f} | {p50:.2f} | {p95:.2f} |")
    for concurrency in args.concurrency:
        serve_rate, process_rate = (r[3] for r in rows if r[0] == concurrency)
        print(f"c={concurrency}: vcap serve {serve_rate / process_rate:.1f}x the requests/s")
    print("\nvcap serve, seconds per request: the captioning thread waiting for decoded frames, the decoders' own "
          "seconds, the backbone, the captioner; the rest of the mean latency (HTTP, upload, queueing); the wall per "
          "request; what bounds the requests/s (its share of the wall)")
    print("\n| concurrency | requests | mean latency | decode wait | decoders | backbone | captioner | rest of latency "
          "| wall per request | bound |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(split))


if __name__ == "__main__":
    main()
