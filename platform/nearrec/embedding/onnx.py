"""The onnxruntime embedders (``NEARREC_EMBEDDING_BACKEND=onnx`` or ``onnx-int8``).

The ONNX file is built once from the local sentence-transformers model (:mod:`nearrec.embedding.onnx_build`,
in a child process: this process never imports torch) and cached under ``<data_dir>/models/``, keyed by the
model fingerprint, the backend's tag (the backend and the revision of its recipe), the int8 layout for this
CPU and the onnxruntime version. Builders race safely: each writes a private temporary file and renames it
into place.

Texts are tokenised with the model's own ``tokenizer.json`` (truncated at the model's ``max_seq_length``),
sorted by length and padded per batch to the longest text of the batch only, as sentence-transformers does.
Batches run single-threaded, several at once ("lanes", one per CPU by default): the int8 graph has hundreds
of small operators, and one batch per core beats every core on each operator of one batch (which makes the
cores meet after each operator, and wait for any core another process holds).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from nearrec.embedding.base import Vectors, l2_normalise
from nearrec.errors import ConfigError

log = logging.getLogger(__name__)
ONNX_BACKENDS = ("onnx", "onnx-int8")
# What the model id and the cache file say: a backend whose recipe changes (its vectors move) gets a new
# revision, so that collections of the old recipe refuse the new vectors. onnx-int8 revision 1 (int8
# attention only, dynamic per-tensor activations) was replaced by the smoothed per-token recipe.
BACKEND_TAGS = {"onnx": "onnx", "onnx-int8": "onnx-int8.2"}
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
DEFAULT_MAX_SEQ_LENGTH = 256
DEFAULT_BATCH_TOKENS = 512
"""Tokens per forward pass (texts x padded length). The int8 model's time per token is flat from ~256 to
~1,024 tokens a batch and rises beyond (measured on texts of 7 to 50 words: batches of 64 texts of 49
tokens took ~15-20% more CPU per text); its activations, and so the memory, grow with the batch."""


def backend_tag(backend: str) -> str:
    """The backend's name in model ids and cache files (``onnx``, ``onnx-int8.2``)."""
    return BACKEND_TAGS.get(backend, backend)


def int8_kernels(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``u8s8`` where the CPU multiplies u8 x s8 without saturating (VNNI, ARM), else ``u8u8``.

    On x86 without VNNI, onnxruntime's u8 x s8 kernel sums pairs of products in 16 bits (``vpmaddubsw``) and
    can saturate; the u8 x u8 kernel cannot. Both give the same integers, so the same vectors.
    """
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "u8s8"
    try:
        flags = {
            f for line in cpuinfo.read_text().splitlines() if line.startswith("flags") for f in line.split()
        }
    except OSError:
        return "u8u8"
    return "u8s8" if flags & VNNI_FLAGS else "u8u8"


def onnx_model_file(cache_dir: Path, fingerprint: str, backend: str, kernels: str | None = None) -> Path:
    """Where the ONNX file of ``fingerprint`` for ``backend`` is cached (int8: per integer layout)."""
    import onnxruntime

    safe = fingerprint.replace("/", "_")
    tag = backend_tag(backend)
    if backend == "onnx-int8":
        tag += f"-{kernels or int8_kernels()}"
    return cache_dir / f"{safe}.{tag}.ort-{onnxruntime.__version__}.onnx"


def ensure_onnx_model(model_dir: Path, fingerprint: str, backend: str, cache_dir: Path) -> Path:
    """The cached ONNX file, built first (a few seconds to a minute) when it is missing."""
    kernels = int8_kernels()
    path = onnx_model_file(cache_dir, fingerprint, backend, kernels)
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    log.warning("building the %s model of %s in %s (once)", backend, fingerprint, cache_dir)
    command = [
        sys.executable,
        "-m",
        "nearrec.embedding.onnx_build",
        str(model_dir),
        backend,
        str(partial),
        kernels,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"cannot build the {backend} model of {model_dir}: {detail}")
    partial.replace(path)
    return path


class OnnxEmbedder:
    """Embeds with onnxruntime on the CPU: ``threads`` batches at once (default: the CPUs this process may
    use), each run by one thread. Concurrent :meth:`embed` calls share those lanes."""

    def __init__(
        self,
        model_dir: Path,
        onnx_file: Path,
        model_id: str,
        *,
        batch_size: int = 64,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1  # parallel across batches (lanes), not within one
        options.inter_op_num_threads = 1
        try:
            self._session: Any = ort.InferenceSession(
                str(onnx_file), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer: Any = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:
            raise ConfigError(f"cannot load the onnx embedding model {onnx_file}: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_seq_length(model_dir))
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._dim = int(self._session.get_outputs()[0].shape[-1])
        self._id = model_id
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.lanes = threads or usable_cpus()
        self._pool = (
            ThreadPoolExecutor(self.lanes, thread_name_prefix="nearrec-embed") if self.lanes > 1 else None
        )

    @property
    def model_id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([t.strip() for t in texts])
        lengths = np.array([len(e.ids) for e in encodings])

        def run(rows: Any) -> None:
            ids = np.zeros((len(rows), int(lengths[rows].max())), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, : lengths[i]] = encodings[i].ids
                mask[r, : lengths[i]] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            out[rows] = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]

        chunks = length_batches(lengths, self.batch_size, self.batch_tokens, self.lanes)
        if self._pool is None or len(chunks) == 1:
            for rows in chunks:
                run(rows)
        else:
            list(self._pool.map(run, chunks))  # in order: the first error is raised
        return l2_normalise(out)


def length_batches(lengths: Any, batch_size: int, batch_tokens: int, lanes: int = 1) -> list[Any]:
    """Row indices of ``lengths`` (tokens per text) grouped into batches of similar length, longest first
    (a text too long fails at once). Each batch is padded to its longest text only and holds at most
    ``batch_tokens`` tokens so padded (at least one text) and ``batch_size`` texts; with several lanes, at
    most a lane's share of the texts, so that every lane gets a batch."""
    n = len(lengths)
    order = np.argsort(-np.asarray(lengths), kind="stable")
    most = max(1, min(batch_size, -(-n // max(1, lanes))))
    batches = []
    start = 0
    while start < n:
        size = min(most, max(1, batch_tokens // max(1, int(lengths[order[start]]))))
        batches.append(order[start : start + size])
        start += size
    return batches


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def max_seq_length(model_dir: Path) -> int:
    """The model's ``max_seq_length`` (sentence_bert_config.json), as sentence-transformers truncates."""
    try:
        config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(config.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH)
    except (OSError, ValueError, TypeError):
        return DEFAULT_MAX_SEQ_LENGTH
