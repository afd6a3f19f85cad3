"""Fine-tune the reader on news: the bot's own candidates for RealTime QA 2024-2026 questions (``training.reader.news``).

    HF_HUB_OFFLINE=1 python -m training.reader.finetune --base /tmp/reader-train/model --out /tmp/reader-news

Starts from a trained reader (``training.reader.train``'s ``model`` folder). Each step reads a few news groups
(a question and its candidate sentences from its week's 8 best chunks: those holding a gold answer are
positives, the rest hard negatives; unanswerable runs target "no answer") and, so the reading learnt from
SQuAD, NQ and SelQA is kept, one general group for every ``--replay`` news groups. Loss per group: minus the
log of the softmax mass on its positives over [candidates..., a constant 0 "no answer" logit]. The held-out
weeks (``training.reader.news.held_out_weeks``) are never read, so the blend can be chosen on them. Then export,
quantize and measure as ``training.reader.train`` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import torch

from benchmarks.harness import WEEK_STRIDE, read_questions
from training.reader import data as D
from training.reader import export
from training.reader import news as N
from training.reader.train import MAX_LENGTH, candidates, encode, lr_factor

log = logging.getLogger("training.reader.finetune")
LOSS = (export.LOSS + "; then fine-tuned on news: minus the log of the softmax mass on every candidate holding a "
        "gold answer over [the bot's candidates from 8 BM25 chunks (up to 7 hard negatives), no-answer], with one "
        "general group replayed per 3 news groups")


def _general(groups: list[D.Group], negatives: int = 5) -> list[tuple[str, list[str], tuple[int, ...]]]:
    out = []
    for g in groups:
        cands, has_pos = candidates(g, negatives)
        out.append((g.question, cands, (0,) if has_pos else ()))
    return out


def group_loss(scores: torch.Tensor, sizes: list[int], positives: list[tuple[int, ...]]) -> torch.Tensor:
    """Mean over groups of -log(softmax mass of the positives) over [candidates..., no-answer = 0]."""
    losses, k = [], 0
    zero = torch.zeros(1)
    for n, pos in zip(sizes, positives):
        row = torch.cat([scores[k:k + n], zero])
        k += n
        target = row[list(pos)] if pos else row[-1:]
        losses.append(torch.logsumexp(row, 0) - torch.logsumexp(target, 0))
    return torch.stack(losses).mean()


def finetune(args: argparse.Namespace) -> dict:
    """The training loop; returns a summary (counts, steps, seconds)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    data = Path(args.shared) / "rtqa-2024-2026"
    news = N.build_groups(data, Path(args.work), N.held_out_weeks(read_questions(data), args.hold_out_stride))
    answerable = [g for g in news if g.answerable]
    unanswerable = [g for g in news if not g.answerable]
    random.Random(args.seed).shuffle(unanswerable)
    news = answerable + unanswerable[:int(args.unanswerable_share * len(answerable))]
    news_items = [(g.question, list(g.sentences[:len(g.positives) + args.negatives]), g.positives) for g in news]
    general = _general(list(D.training_groups(Path(args.shared), news_articles=False))) if args.replay else []
    rng = random.Random(args.seed)
    order: list[tuple[str, int]] = []
    for _ in range(args.epochs):
        epoch = [("news", i) for i in range(len(news_items))]
        rng.shuffle(epoch)
        for n, item in enumerate(epoch):
            order.append(item)
            if args.replay and (n + 1) % args.replay == 0:
                order.append(("general", rng.randrange(len(general))))
    batches = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
    if args.max_steps:
        batches = batches[:args.max_steps]
    tok = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForSequenceClassification.from_pretrained(args.base, num_labels=1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    model.train()
    started, losses = time.time(), []
    for step, batch in enumerate(batches):
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(step, len(batches))
        items = [(news_items if kind == "news" else general)[i] for kind, i in batch]
        enc = encode(tok, [(cands, bool(pos)) for _, cands, pos in items], [q for q, _, _ in items])
        scores = model(**enc).logits.squeeze(-1)
        loss = group_loss(scores, [len(c) for _, c, _ in items], [p for _, _, p in items])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % args.log_every == 0 or step + 1 == len(batches):
            log.info("step %d/%d loss %.4f %.2fs/step", step + 1, len(batches), sum(losses) / len(losses),
                     (time.time() - started) / (step + 1))
            losses = []
    out = Path(args.out)
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return {"news_groups": len(news), "news_answerable": len(answerable),
            "news_unanswerable": len(news) - len(answerable),
            "general_replayed": sum(kind == "general" for kind, _ in order), "steps": len(batches),
            "epochs": args.epochs, "hold_out_stride": args.hold_out_stride,
            "train_seconds": round(time.time() - started, 1)}


def parser() -> argparse.ArgumentParser:
    """The command's options (``training.reader.train --news`` runs this stage with their defaults)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default="/work/shared")
    p.add_argument("--base", default="/tmp/reader-train/model", help="the first stage's model folder (training.reader.train --out)")
    p.add_argument("--work", default="/tmp/rtqa-news", help="cache of the news groups and week indexes")
    p.add_argument("--out", default="/tmp/reader-news")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--replay", type=int, default=3, help="one general group per this many news groups; 0: none")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--negatives", type=int, default=7, help="hard negatives per news group, best-ranked first")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 when another job shares the cores)")
    p.add_argument("--unanswerable-share", type=float, default=0.5,
                   help="unanswerable news groups kept, as a share of the answerable ones")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--no-measure", action="store_true")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (smoke test)")
    p.add_argument("--hold-out-stride", type=int, default=WEEK_STRIDE,
                   help=f"leave out every N-th week, the weeks calibrate --stride N reads (default {WEEK_STRIDE})")
    return p


def main() -> None:
    args = parser().parse_args()
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=[logging.FileHandler(out / "train.log"), logging.StreamHandler()])
    for name in ("qa", "faiss"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    summary = finetune(args)
    print("[finetune]", json.dumps(summary), flush=True)
    from training.reader import evaluate
    onnx_path, fp32_path = export.export(out / "model", out)
    results = {} if args.no_measure else evaluate.evaluate_all(Path(args.shared), onnx_path, fp32_path)
    (out / "eval.json").write_text(json.dumps(results, indent=1))
    base_card = Path(args.base).parent / "reader.json"
    base = json.loads(base_card.read_text()) if base_card.exists() else {}
    export.write_sidecar(out, onnx_path, base.get("training", {}), results, seed=args.seed, max_length=MAX_LENGTH,
                         seconds=round(base.get("seconds", 0) + time.time() - t0, 1), loss=LOSS,
                         extra={"news_finetune": {**summary, "base_sha256": base.get("sha256", "")}})
    print("[eval]", json.dumps(results, indent=1))
    print(f"[done] total {(time.time() - t0) / 60:.1f} min; outputs in {out}", flush=True)


if __name__ == "__main__":
    main()
