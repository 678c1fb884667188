"""Why does the deep text CNN learn less than the shallow one? A short Stage I on real features,
logging what each residual block of the text CNN does.

Every ``--every`` steps it records, per block of the text CNN: the RMS of its output over word
positions and over padding positions, the RMS of its residual branch (before the sum), the norm of
the gradient of its weights; and, at the max pool, the share of channels whose maximum falls on a
padding position. At the end: the validation R-sum (one centred offset, as the trainer's per-epoch
validation) and the branches' train accuracies. One JSON line per record, so runs compare with jq.

    python benchmarks/probe_text_depth.py --blocks 1,1,1,1 --steps 300
    python benchmarks/probe_text_depth.py --blocks 3,4,6,1 --steps 300 --set text_zero_init=true

The config is the ``cpu-short`` preset (the ablation chapter's budget) with the overrides given.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from dualpath.config import preset
from dualpath.evaluate import evaluate_corpus
from dualpath.train import phases_of, prepare
from dualpath.train.inputs import embed_split, image_source
from dualpath.train.optim import lr_at, make_optimizer, set_lr
from dualpath.train.__main__ import parse_set
from dualpath.train import new_model
from dualpath.train.step import EpochPlan, Forward, train_step


class BlockRecorder:
    """Forward hooks on every bottleneck of a text CNN: output RMS over words / padding, branch RMS."""

    def __init__(self, text_cnn):
        self.blocks = [(f"s{si + 1}b{bi + 1}", block) for si, stage in enumerate(text_cnn.stages)
                       for bi, block in enumerate(stage)]
        self.mask = None          # [B, L] True at word positions, set before each forward
        self.stats: dict[str, dict] = {}
        self.active = False
        for name, block in self.blocks:
            block.register_forward_hook(self._hook(name, block))
            block.bn3.register_forward_hook(self._branch_hook(name))

    def _positions(self, length: int) -> torch.Tensor:
        mask = self.mask
        while mask.shape[1] > length:        # strided blocks keep positions 0, s, 2s, ...
            mask = mask[:, ::2]
        return mask

    def _hook(self, name, block):
        def hook(module, inputs, out):
            if not self.active:
                return
            words = self._positions(out.shape[1])
            x = out.detach()
            w = x[words]
            p = x[~words]
            self.stats.setdefault(name, {})
            self.stats[name]["rms_words"] = float(w.pow(2).mean().sqrt()) if len(w) else float("nan")
            self.stats[name]["rms_pad"] = float(p.pow(2).mean().sqrt()) if len(p) else float("nan")
        return hook

    def _branch_hook(self, name):
        def hook(module, inputs, out):
            if self.active:
                self.stats.setdefault(name, {})["rms_branch"] = float(out.detach().pow(2).mean().sqrt())
        return hook

    def grad_norms(self) -> dict[str, float]:
        out = {}
        for name, block in self.blocks:
            grads = [p.grad for p in block.parameters() if p.grad is not None]
            out[name] = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) if grads else 0.0
        return out


def pool_on_padding(text_cnn, ids: torch.Tensor) -> float:
    """Share of (caption, channel) maxima of the pooled map that lie on a padding position."""
    with torch.no_grad():
        x = text_cnn.stages(text_cnn.embed(ids))
        words = ids != 0
        while words.shape[1] > x.shape[1]:
            words = words[:, ::2]
        arg = x.argmax(dim=1)                                 # [B, C]
        return float((~words.gather(1, arg)).float().mean())


def block_table(records: Path, labels: dict[str, str]) -> "pd.DataFrame":
    """Per block, at initialisation (the first record of each probe): the gradient norm of its
    weights and the RMS of its output over word positions, one column pair per probe in ``labels``
    (probe label -> column name). What book/tables/text_depth_blocks.csv holds."""
    import pandas as pd

    first = {}
    for line in Path(records).read_text().splitlines():
        rec = json.loads(line)
        if rec["label"] in labels and not rec.get("final") and rec["label"] not in first:
            first[rec["label"]] = rec
    blocks = next(iter(first.values()))["blocks"]
    table = pd.DataFrame({"block": list(blocks)})
    for label, name in labels.items():
        b = first[label]["blocks"]
        table[f"gradient norm, {name}"] = [round(b[k]["grad"], 2) for k in blocks]
        table[f"output RMS at words, {name}"] = [round(b[k]["rms_words"], 2) for k in blocks]
    return table


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", default="1,1,1,1")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=300, help="Stage I steps (an epoch is 234 at batch 128)")
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="cpu-short")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default="")
    ap.add_argument("--table", nargs=2, metavar=("RECORDS", "CSV"),
                    help="write the per-block table of the 3-4-6-1 probes in RECORDS (JSON lines) to CSV and exit")
    args = ap.parse_args(argv)
    if args.table:
        block_table(Path(args.table[0]), {"3,4,6,1 w0.25": "gamma 1 (the paper's)",
                                          "3,4,6,1 w0.25 text_zero_init=true": "gamma 0"}
                    ).to_csv(args.table[1], index=False)
        return
    cfg = preset(args.preset, text_blocks=[int(b) for b in args.blocks.split(",")], text_width=args.width,
                 seed=args.seed, progress=False, **parse_set(args.set))
    torch.manual_seed(cfg.seed)
    data = prepare(cfg, log=lambda *a: None)
    model = new_model(data, cfg)
    phase = phases_of(cfg)[0]
    split = data.splits["train"]
    source = image_source(0, cfg, model.backbone, torch.device("cpu"))
    source.configure(model.backbone)
    opt = make_optimizer(cfg, model, phase.lr)
    gen = torch.Generator().manual_seed(cfg.seed * 7919)
    forward = Forward(model, source, True)
    recorder = BlockRecorder(model.text_cnn)
    # the schedule the trainer would run over the phase, so a short probe sees the same LRs
    steps_per_epoch = len(EpochPlan(split, cfg, torch.Generator().manual_seed(0)))
    total = phase.epochs * steps_per_epoch
    label = args.label or f"{args.blocks} w{args.width} {' '.join(args.set)}".strip()
    model.train()
    model.backbone.eval()
    step, t0, sums, n = 0, time.perf_counter(), {}, 0
    epoch = 0
    while step < args.steps:
        plan = EpochPlan(split, cfg, gen, key=(cfg.seed, 0, epoch))
        for k, batch in enumerate(source.batches(plan)):
            if step >= args.steps:
                break
            set_lr(opt, lr_at(phase.lr, step, total, steps_per_epoch, schedule=cfg.schedule,
                              lr_steps=phase.lr_steps, warmup=round(cfg.warmup_epochs * steps_per_epoch)))
            log_now = step % args.every == 0 or step == args.steps - 1
            if log_now:
                captions = split.draw_captions(batch.index, torch.Generator().manual_seed(step))
                ids = split.encode(captions, cfg.train_shift, torch.Generator().manual_seed(step))
                recorder.mask = ids != 0
                recorder.active = True
                with torch.no_grad():
                    model.text_cnn(ids)
                recorder.active = False
                pad_share = pool_on_padding(model.text_cnn, ids)
            stats = train_step(forward, model, source, split, batch, phase, cfg, gen, opt,
                               grad_norms=True)
            for key, v in stats.items():
                sums[key] = sums.get(key, 0.0) + v
            n += 1
            if log_now:
                grads = recorder.grad_norms()
                print(json.dumps({"label": label, "step": step, **{k: round(v / n, 4) for k, v in sums.items()},
                                  "pool_on_padding": round(pad_share, 3),
                                  "blocks": {name: {**{k: round(v, 3) for k, v in recorder.stats[name].items()},
                                                    "grad": round(grads[name], 4)}
                                             for name, _ in recorder.blocks}}), flush=True)
                sums, n = {}, 0
            step += 1
        epoch += 1
    train_s = time.perf_counter() - t0
    img, txt = embed_split(model, source, data.splits["val"], cfg.max_len, cfg.val_shift)
    val = evaluate_corpus(img, txt, data.splits["val"].corpus, "1k")
    print(json.dumps({"label": label, "final": True, "steps": args.steps, "val_rsum": round(val["rsum"], 1),
                      "train_s": round(train_s, 1)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
