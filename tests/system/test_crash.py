"""Crash safety: a build killed at any moment, or stopped by a write error, never costs the index.

``test_sigkill_at_random_moments`` runs real builds (``python -c``, the hash
embedder, model "hash") in subprocesses and SIGKILLs them at random moments,
half of them aimed at the save (data files, manifest, cleanup; ``os.fsync``,
``os.replace`` and ``os.unlink`` are slowed in the child so each step of the
save lasts long enough to be hit).
After every kill the folder must load with checksums and answer exactly as the
previous index or the new one did. The next build must remove the leftovers.

Set ``QA_CRASH_KILLS`` for more kills (default 24) and ``QA_CRASH_SEED`` to
replay a run.
"""

from __future__ import annotations

import json
import os
import queue
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qa.answer.bot import Bot
from qa.index.build import BuildError, build_index
from qa.embed.factory import get_embedder
from qa.index.format import MANIFEST
from qa.index.reader import load_index, read_manifest

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("QA_CRASH_KILLS", "24"))
SEED = int(os.environ.get("QA_CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))

WORDS = (
    "harbour council budget storm bridge school election tariff vaccine museum river drought railway "
    "festival senator strike reactor satellite orchard glacier airport refinery library tunnel coalition "
    "ferry wildfire telescope vineyard stadium pipeline monsoon embassy canal pharmacy quarry parliament"
).split()
QUESTIONS = [
    "What happened to the harbour after the storm?",
    "How did the council vote on the budget?",
    "Why did the railway strike begin?",
    "Who opened the new museum?",
    "What did the senator say about the tariff?",
]

CHILD = r"""
import os, sys, time
import faiss, bm25s, langchain_text_splitters, numpy  # imported before READY so kills hit the build
from qa.index.build import build_index

slow = float(os.environ["QA_CRASH_SLOW"])
_fsync, _unlink, _replace = os.fsync, os.unlink, os.replace

def fsync(fd):
    time.sleep(slow)
    _fsync(fd)

def unlink(*args, **kwargs):
    time.sleep(slow)
    _unlink(*args, **kwargs)

def replace(*args, **kwargs):
    time.sleep(slow * 5)
    _replace(*args, **kwargs)

os.fsync, os.unlink, os.replace = fsync, unlink, replace

def progress(stage, done, total):
    if done == 0 or done == total:
        print(stage, done, total, flush=True)

print("READY", flush=True)
build_index([sys.argv[1]], sys.argv[2], model="hash", progress=progress)
print("DONE", flush=True)
"""


def write_article(folder: Path, i: int) -> None:
    rng = random.Random(i)
    topic = WORDS[i % len(WORDS)]
    sentences = [f"Report {i} on the {topic}."]
    for _ in range(10):
        words = rng.sample(WORDS, 6)
        sentences.append(
            f"The {words[0]} near the {words[1]} was {rng.choice(['closed', 'opened', 'rebuilt', 'sold'])} "
            f"after {rng.randint(2, 900)} people asked about the {words[2]}, the {words[3]} and the {words[4]}."
        )
    text = f"{topic.title()} Update Number {i}\n\n" + " ".join(sentences) + "\n"
    (folder / f"article_{i:04d}.txt").write_text(text, encoding="utf-8")


def set_state(folder: Path, state: str) -> None:
    """State "A": articles 0-149; state "B": those plus 150-219."""
    for i in range(150, 220):
        path = folder / f"article_{i:04d}.txt"
        if state == "B":
            write_article(folder, i)
        elif path.exists():
            path.unlink()


def answers(index_dir: Path) -> list[dict]:
    bot = Bot.load(index_dir, embedder=get_embedder("hash"))
    return [{**bot.ask(q).to_json(), "seconds": 0} for q in QUESTIONS]


def article_ids(index_dir: Path) -> frozenset[str]:
    return frozenset(load_index(index_dir).articles)


class Child:
    """A build in a subprocess whose stdout lines are collected with their arrival time."""

    def __init__(self, articles: Path, index_dir: Path, slow: float) -> None:
        env = {**os.environ, "QA_CRASH_SLOW": str(slow), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(articles), str(index_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line.strip()))
        self.lines.put((time.perf_counter(), "EOF"))

    def wait_for(self, prefix: str, timeout: float = 60) -> float | None:
        """Arrival time of the first line starting with ``prefix`` (None if the child ended first)."""
        deadline = time.perf_counter() + timeout
        while True:
            at, line = self.lines.get(timeout=max(0.01, deadline - time.perf_counter()))
            if line.startswith(prefix):
                return at
            if line == "EOF":
                return None

    def kill(self) -> bool:
        """SIGKILL the child; True if it was still running."""
        alive = self.proc.poll() is None
        if alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stderr.close()
        return alive and self.proc.returncode == -signal.SIGKILL


def top_names(manifest) -> set[str]:
    """The top-level names a manifest refers to: its segment folders and deletion lists."""
    return {s.folder for s in manifest.segments} | {s.deletions for s in manifest.segments if s.deletions}


def phase_of(index_dir: Path, old_build: str, old_names: set[str], existed: set[str]) -> str:
    """Where the kill landed, from what this build left behind (leftovers of earlier kills aside)."""
    manifest = read_manifest(index_dir)
    present = {p.name for p in index_dir.iterdir()}
    if manifest.build_id == old_build:
        new = present - existed
        if any(name.endswith(".tmp") for name in new):
            return "writing the manifest"
        return "writing data files" if new else "before the save (load, chunk, embed)"
    stale = old_names - top_names(manifest)  # segments and lists the new manifest no longer names
    return "cleanup after the commit" if present & stale else "after the commit"


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path: Path):
    rng = random.Random(SEED)
    articles = tmp_path / "articles"
    articles.mkdir()
    for i in range(150):
        write_article(articles, i)
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    (index_dir / ".gitignore").write_text("*\n!.gitignore\n")

    expected: dict[str, tuple[frozenset[str], list[dict]]] = {}
    for state in ("B", "A"):  # reference indexes, built the ordinary way
        set_state(articles, state)
        ref = tmp_path / f"ref-{state}"
        build_index([articles], ref, model="hash")
        expected[state] = (article_ids(ref), answers(ref))
    assert expected["A"][0] < expected["B"][0] and expected["A"][1] != expected["B"][1]
    build_index([articles], index_dir, model="hash")  # the live index starts in state A
    current = "A"

    # Calibrate: one uninterrupted build A -> B, timing the whole build and the save.
    set_state(articles, "B")
    child = Child(articles, index_dir, slow=0.01)
    ready = child.wait_for("READY")
    save_at = child.wait_for("save 0")
    done_at = child.wait_for("DONE")
    child.kill()
    assert ready and save_at and done_at, "the calibration build finished"
    build_seconds, save_seconds = done_at - ready, done_at - save_at
    assert article_ids(index_dir) == expected["B"][0]
    current = "B"

    phases: dict[str, int] = {}
    killed = finished = 0
    attempts = 0
    while killed < KILLS:
        attempts += 1
        assert attempts <= KILLS * 3, f"only {killed} of {attempts} builds could be killed mid-way"
        target = "A" if current == "B" else "B"
        set_state(articles, target)
        old = read_manifest(index_dir)
        old_names = top_names(old)
        existed = {p.name for p in index_dir.iterdir()}
        child = Child(articles, index_dir, slow=0.01)
        start = child.wait_for("READY")
        if attempts % 2:  # anywhere in the build
            time.sleep(rng.uniform(0, build_seconds))
        else:  # inside the save: data files, fsyncs, manifest, cleanup
            start = child.wait_for("save 0") or start
            time.sleep(rng.uniform(0, save_seconds))
        if not child.kill():
            finished += 1
        else:
            killed += 1
            phase = phase_of(index_dir, old.build_id, old_names, existed)
            phases[phase] = phases.get(phase, 0) + 1

        # The folder holds the previous index or the new one, complete, never anything else.
        ids = article_ids(index_dir)
        state = next((s for s, (want, _) in expected.items() if want == ids), None)
        assert state in (current, target), f"kill {killed}: the index holds neither state (seed {SEED})"
        assert answers(index_dir) == expected[state][1], f"kill {killed}: answers changed (seed {SEED})"
        current = state

    # The next build completes and removes every leftover; the .gitignore stays.
    target = "A" if current == "B" else "B"
    set_state(articles, target)
    build_index([articles], index_dir, model="hash")
    manifest = read_manifest(index_dir)
    names = {p.relative_to(index_dir).as_posix() for p in index_dir.rglob("*") if p.is_file()}
    assert names == set(manifest.files) | {MANIFEST, ".lock", ".gitignore"}
    assert answers(index_dir) == expected[target][1]

    torn = sum(n for phase, n in phases.items() if phase in ("writing data files", "writing the manifest", "cleanup after the commit"))
    print(
        f"\ncrash safety (seed {SEED}): {killed}/{killed} SIGKILLs survived, {finished} builds finished first; "
        f"build {build_seconds:.2f}s, save {save_seconds:.2f}s; kills by phase: {json.dumps(phases)}"
    )
    assert torn >= 1, f"no kill landed inside the save (phases {phases}, seed {SEED})"


# --- write errors ----------------------------------------------------------------------------


def _one_line_build_error(exc: pytest.ExceptionInfo[BuildError], *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.fixture
def live(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    """A served index of 40 articles, its articles folder (now holding 60) and its answers."""
    articles = tmp_path / "articles"
    articles.mkdir()
    for i in range(40):
        write_article(articles, i)
    index_dir = tmp_path / "index"
    build_index([articles], index_dir, model="hash")
    for i in range(40, 60):
        write_article(articles, i)
    return articles, index_dir, answers(index_dir)


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("limit", [2_000, 28_000])
def test_a_file_size_limit_stops_the_build_and_the_old_index_serves(live, limit: int):
    """``qa build`` under RLIMIT_FSIZE: writes fail like on a full disk, at the first file or a later one.

    The new segment (20 articles) has articles.jsonl of about 27 kB, then chunks.jsonl of about 29 kB.
    """
    articles, index_dir, before = live
    old = read_manifest(index_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "qa.app.cli", "build", str(articles), "--index", str(index_dir), "--model", "hash"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_file_size(limit),
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("qa: error: could not write the index") and "File too large" in lines[0]
    assert "previous index is unchanged" in lines[0]
    assert read_manifest(index_dir).build_id == old.build_id
    assert answers(index_dir) == before
    names = {p.relative_to(index_dir).as_posix() for p in index_dir.rglob("*") if p.is_file()}
    assert names == set(old.files) | {MANIFEST, ".lock"}, "the failed build removed its own files"


def _can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    probe = Path(f"/tmp/qa-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=True)
    probe.rmdir()
    return ok


CAN_MOUNT = _can_mount()


def _pages(n: int) -> int:
    return -(-n // 4096) * 4096


@pytest.mark.slow
@pytest.mark.skipif(not CAN_MOUNT, reason="needs root and permission to mount a tmpfs")
@pytest.mark.parametrize("fails_in", ["articles.jsonl", "dense.faiss"])
def test_a_full_disk_stops_the_build_and_the_old_index_serves(tmp_path: Path, fails_in: str):
    """A tmpfs sized so the new segment runs out of space in its first file, or in its FAISS file."""
    articles = tmp_path / "articles"
    articles.mkdir()
    for i in range(40):
        write_article(articles, i)
    old_ref, new_ref = tmp_path / "old-ref", tmp_path / "new-ref"
    build_index([articles], old_ref, model="hash")
    shutil.copytree(old_ref, new_ref)
    for i in range(40, 400):
        write_article(articles, i)
    build_index([articles], new_ref, model="hash")  # the same update, where there is room: measures its new segment
    (segment,) = top_names(read_manifest(new_ref)) - top_names(read_manifest(old_ref))
    old_bytes = sum(_pages(p.stat().st_size) for p in old_ref.rglob("*") if p.is_file()) + 2 * 4096
    new_sizes = {p.name.split(".")[0]: p.stat().st_size for p in (new_ref / segment).iterdir() if p.is_file()}
    if fails_in.startswith("dense"):
        room = sum(_pages(new_sizes[k]) for k in ("articles", "chunks", "vectors")) + new_sizes["dense"] // 2
    else:
        room = new_sizes["articles"] // 2
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={_pages(old_bytes + room)}", "tmpfs", str(mount)], check=True)
    try:
        index_dir = mount / "index"
        shutil.copytree(old_ref, index_dir)
        before = answers(index_dir)
        old = read_manifest(index_dir)
        with pytest.raises(BuildError) as caught:
            build_index([articles], index_dir, model="hash")
        _one_line_build_error(caught, "(No space left on device); the previous index is unchanged")
        cause = caught.value.__context__  # FAISS reports a failed write as RuntimeError, Python as OSError
        assert isinstance(cause, RuntimeError if fails_in.startswith("dense") else OSError), repr(cause)
        assert read_manifest(index_dir).build_id == old.build_id
        assert answers(index_dir) == before
        names = {p.relative_to(index_dir).as_posix() for p in index_dir.rglob("*") if p.is_file()}
        assert names == set(old.files) | {MANIFEST, ".lock"}, "the failed build gave its space back"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_read_only_index_folder_stops_the_build_and_the_old_index_serves(live, tmp_path: Path):
    articles, index_dir, before = live
    old = read_manifest(index_dir)
    if os.geteuid() != 0:
        mode = index_dir.stat().st_mode
        index_dir.chmod(0o555)
        try:
            with pytest.raises(BuildError) as caught:
                build_index([articles], index_dir, model="hash")
        finally:
            index_dir.chmod(mode)
        _one_line_build_error(caught, str(index_dir), "Permission denied")
    else:
        if not CAN_MOUNT:
            pytest.skip("root ignores permissions and may not remount read-only here")
        subprocess.run(["mount", "--bind", str(index_dir), str(index_dir)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(index_dir)], check=True)
            with pytest.raises(BuildError) as caught:
                build_index([articles], index_dir, model="hash")
            assert answers(index_dir) == before, "the read-only index still serves"
        finally:
            subprocess.run(["umount", "-l", str(index_dir)], check=False)
        _one_line_build_error(caught, str(index_dir), "Read-only file system")
    assert read_manifest(index_dir).build_id == old.build_id
    assert answers(index_dir) == before
