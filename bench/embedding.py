"""Embedding backends: speed against torch and the quality gate, on real texts, in ONE run.

For each text set, the backends embed the same texts chunk by chunk in turn (torch, onnx, onnx-int8, then
the next chunk), so that the drifting load of a shared machine hits them alike. Printed per set and backend:
texts/s, the ratio to torch (wall clock, and process CPU time, which is less load-sensitive), the mean and
minimum cosine of each vector to torch's, and the top-10 neighbour overlap (each text's ten nearest texts of
the set, by cosine, against torch's ten). Then the peak RSS of a fresh process per backend that loads it and
embeds the demo catalog.

Quality gate (issue 16): mean cosine >= 0.99 and top-10 overlap >= 0.9 on every set.

Text sets: ``movielens`` (title + "(year). Genres: ..." of the 1,682 MovieLens-100k items in ../shared, as
ingest composes them), ``demo`` (the 360 items of the bundled demo catalog, title + description) and
``neardup`` (1,000 generated ~40-word descriptions of bench/sync.py, drawn from a 150-word vocabulary: near
duplicates whose neighbours are the hardest to keep).

    .venv/bin/python bench/embedding.py [--backends torch,onnx,onnx-int8] [--sets movielens,demo,neardup]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(ROOT / "bench"))

from nearrec.config import Settings  # noqa: E402
from nearrec.embedding import Embedder, load_embedder  # noqa: E402
from nearrec.ingest.values import compose_text  # noqa: E402

MOVIELENS = ROOT.parent / "shared" / "datasets" / "movielens-100k" / "items.csv"
DEMO = ROOT / "platform" / "nearrec" / "demo" / "items.csv"
CHUNK = 256
GATE_COSINE, GATE_OVERLAP = 0.99, 0.9


def text_sets(names: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in names:
        if name == "movielens":
            with open(MOVIELENS, encoding="utf-8") as f:
                out[name] = [compose_text([r["title"], r["text"]]) for r in csv.DictReader(f)]
        elif name == "demo":
            with open(DEMO, encoding="utf-8") as f:
                out[name] = [compose_text([r["title"], r["description"]]) for r in csv.DictReader(f)]
        elif name == "neardup":
            from sync import documents

            out[name] = [d["description"] for d in documents(1000)]
        else:
            raise SystemExit(f"unknown text set {name!r}")
    return out


def neighbours(vectors: npt.NDArray[np.float32], k: int = 10) -> npt.NDArray[np.int64]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def quality(ref: npt.NDArray[np.float32], got: npt.NDArray[np.float32]) -> tuple[float, float, float]:
    """Mean and minimum cosine of matching rows, and the mean top-10 neighbour overlap."""
    cosine = np.sum(ref * got, axis=1)
    a, b = neighbours(ref), neighbours(got)
    overlap = np.mean(
        [len(set(x) & set(y)) / a.shape[1] for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    )
    return float(cosine.mean()), float(cosine.min()), float(overlap)


def settings_for(backend: str, data_dir: Path) -> Settings:
    return Settings(embedding_backend=backend, embedding_model="", data_dir=data_dir, _env_file=None)  # type: ignore[call-arg,arg-type]


def speed_and_quality(embedders: dict[str, Embedder], sets: dict[str, list[str]]) -> dict[str, bool]:
    """Print the table; return whether each backend passes the gate on every set."""
    passed = dict.fromkeys(embedders, True)
    print(f"{'set':10} {'backend':10} {'texts/s':>8} {'x torch':>8} {'x CPU':>6} {'cos mean':>9} "
          f"{'cos min':>8} {'top-10':>7}  gate")  # fmt: skip
    for name, texts in sets.items():
        wall = dict.fromkeys(embedders, 0.0)
        cpu = dict.fromkeys(embedders, 0.0)
        parts: dict[str, list[npt.NDArray[np.float32]]] = {b: [] for b in embedders}
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            for backend, embedder in embedders.items():
                w, c = time.perf_counter(), time.process_time()
                parts[backend].append(embedder.embed(chunk))
                wall[backend] += time.perf_counter() - w
                cpu[backend] += time.process_time() - c
        ref = np.concatenate(parts["torch"])
        for backend in embedders:
            mean, low, overlap = quality(ref, np.concatenate(parts[backend]))
            ok = mean >= GATE_COSINE and overlap >= GATE_OVERLAP
            passed[backend] = passed[backend] and ok
            print(
                f"{name:10} {backend:10} {len(texts) / wall[backend]:8.1f} {wall['torch'] / wall[backend]:8.2f} "
                f"{cpu['torch'] / cpu[backend]:6.2f} {mean:9.4f} {low:8.4f} {overlap:7.3f}  {'pass' if ok else 'FAIL'}",
                flush=True,
            )
    return passed


def peak_rss(backend: str, data_dir: Path) -> float:
    """Peak RSS (MB) of a fresh process that loads ``backend`` and embeds the demo catalog."""
    code = (
        "import sys, json; sys.path[:0] = [sys.argv[3], sys.argv[4]]\n"
        "from pathlib import Path\n"
        "from embedding import settings_for, text_sets\n"
        "from nearrec.embedding import load_embedder\n"
        "e = load_embedder(settings_for(sys.argv[1], Path(sys.argv[2])))\n"
        "e.embed(text_sets(['demo'])['demo'])\n"
        "status = Path('/proc/self/status').read_text().splitlines()\n"
        "print(json.dumps([int(l.split()[1]) / 1024 for l in status if l.startswith('VmHWM:')][0]))\n"
    )
    args = [sys.executable, "-c", code, backend, str(data_dir), str(ROOT / "bench"), str(ROOT / "platform")]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--sets", default="movielens,demo,neardup")
    parser.add_argument("--data-dir", type=Path, help="keep the built ONNX files here (default: a temp dir)")
    a = parser.parse_args()
    backends = ["torch"] + [b for b in a.backends.split(",") if b and b != "torch"]
    with tempfile.TemporaryDirectory(prefix="nearrec-bench-embedding-") as tmp:
        data_dir = a.data_dir or Path(tmp)
        embedders: dict[str, Embedder] = {}
        for backend in backends:
            started = time.perf_counter()
            embedders[backend] = load_embedder(settings_for(backend, data_dir))
            embedders[backend].embed(["warm up the model"] * 8)
            print(f"{backend}: {embedders[backend].model_id} ready in {time.perf_counter() - started:.1f}s")
        sets = text_sets(a.sets.split(","))
        print(", ".join(f"{k}: {len(v):,} texts" for k, v in sets.items()), flush=True)
        passed = speed_and_quality(embedders, sets)
        embedders.clear()
        for backend in backends:
            print(
                f"peak RSS {backend:10} {peak_rss(backend, data_dir):8.0f} MB  (load + embed the demo catalog)"
            )
    verdicts = ", ".join(f"{b} {'pass' if ok else 'FAIL'}" for b, ok in passed.items())
    print(f"quality gate (cos mean >= {GATE_COSINE}, top-10 >= {GATE_OVERLAP} on every set): {verdicts}")
    print(f"load average: {os.getloadavg()[0]:.2f}  (2 cores; figures are noisy when this is high)")


if __name__ == "__main__":
    main()
