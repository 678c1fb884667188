"""The recipe probes of book/differences.md: a short training loop on the cached pooled features.

It is how the cpu preset was chosen (each probe: one setting, a few epochs, val R-sum per epoch),
before the training package had the settings it probes. It imports the package as it was at commit
15ffc8d, so run it against that tree, one thread per probe:

    git archive 15ffc8d lib | tar -x -C /tmp/p15
    PYTHONPATH=/tmp/p15/lib DUALPATH_CACHE=cache taskset -c 0 python scripts/recipe_probe.py \
        --epochs 3 --lr 1e-3 --rank 0 --img 1 --txt 1 --scale 32 --dropout 0.5

It prints one JSON line per epoch: mean losses and train accuracies, val R-sum, R@1 (i2t, t2i),
seconds of training and of validation. The settings it found are Config keys of today's package
(optimizer, schedule, epoch_unit, classifier_scale, ...); the book's run uses those, not this loop.
"""
import argparse, json, math, time, sys
import torch, torch.nn.functional as F
from dualpath.config import preset
from dualpath.train import prepare, build_model
from dualpath.data.text import encode_ids
from dualpath.losses import ranking_loss
from dualpath.embed import text_embeddings, image_embeddings_from_inputs
from dualpath.evaluate import evaluate_embeddings
from dualpath.models import param_groups

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--bs", type=int, default=128)
ap.add_argument("--lr", type=float, default=2e-4)
ap.add_argument("--cls_mult", type=float, default=1.0)
ap.add_argument("--emb_mult", type=float, default=1.0)
ap.add_argument("--rank", type=float, default=1.0)
ap.add_argument("--img", type=float, default=0.0)
ap.add_argument("--txt", type=float, default=0.0)
ap.add_argument("--mode", default="hardest")
ap.add_argument("--margin", type=float, default=0.2)
ap.add_argument("--dropout", type=float, default=0.75)
ap.add_argument("--scale", type=float, default=0.0, help=">0: cosine classifier with this scale")
ap.add_argument("--width", type=float, default=0.25)
ap.add_argument("--blocks", default="1,1,1,1")
ap.add_argument("--fdim", type=int, default=1024)
ap.add_argument("--rankfeat", default="act")
ap.add_argument("--cosine", type=int, default=0)
ap.add_argument("--warm", type=float, default=0.0)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--wd", type=float, default=0.0)
ap.add_argument("--clip", type=float, default=0.0)
ap.add_argument("--img_in_drop", type=float, default=0.0, help="dropout on the pooled image feature")
ap.add_argument("--txt_in_drop", type=float, default=0.0, help="dropout on the BN'd word vectors")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--unit", default="captions")
ap.add_argument("--save", default="")
ap.add_argument("--load", default="")
ap.add_argument("--total", type=int, default=0, help="epochs the cosine schedule spans (0: --epochs)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
cfg = preset("cpu", progress=False, dropout=a.dropout, text_width=a.width,
             text_blocks=[int(x) for x in a.blocks.split(",")], feature_dim=a.fdim)
prep = prepare(cfg, log=lambda *x: None)
tr, va = prep.splits["train"], prep.splits["val"]
model = build_model(cfg, len(prep.vocab), tr.corpus.n_classes, prep.embedding_init, backbone=prep.backbone)
if a.load:
    state = torch.load(a.load, weights_only=True)
    state = state.get("model", state)   # a run's checkpoint (e.g. best_stage1.pt) or a probe's --save
    # strict=False: today's runs have no classifier bias, which the 15ffc8d model declares
    print(model.load_state_dict(state, strict=False))
if a.txt_in_drop:
    _emb = model.text_cnn.embed
    model.text_cnn.embed = lambda ids: F.dropout(_emb(ids), a.txt_in_drop, training=model.training)
groups = param_groups(model)
pg = []
for name, ps in groups.items():
    if name == "backbone": continue
    m = a.cls_mult if name.startswith("classifier") else a.emb_mult if name == "embedding" else 1.0
    pg.append({"params": ps, "lr": a.lr * m, "mult": m, "weight_decay": 0.0 if name.startswith("bn") else a.wd})
opt = torch.optim.AdamW(pg, lr=a.lr, weight_decay=0)
for p in model.backbone.parameters(): p.requires_grad_(False)
pooled = tr.features.pooled.float()   # [views, n, C]
cap_img = torch.as_tensor(tr.corpus.caption_image)
labels_all = torch.as_tensor(tr.corpus.image_label)
gen = torch.Generator().manual_seed(a.seed)
n_caps = len(tr.caption_ids)
W = model.classifier

def logits(x):
    if a.scale > 0:
        return a.scale * F.normalize(x, dim=1) @ F.normalize(W.weight, dim=1).t()
    return W(x)

def validate():
    model.eval()
    txt = text_embeddings(model.text_cnn, va.caption_ids, cfg.max_len, "center")
    views = [va.features.pooled[v].float() for v in range(2)]
    img = image_embeddings_from_inputs(model.image_head, views)
    return evaluate_embeddings(img, txt, va.corpus.caption_image, "1k")

steps_per_epoch = n_caps // a.bs if a.unit == "captions" else tr.corpus.n_images // a.bs
total = steps_per_epoch * (a.total or a.epochs)
step = 0
for ep in range(a.epochs):
    t0 = time.time()
    model.train(); model.backbone.eval()
    if a.unit == "captions":
        order = torch.randperm(n_caps, generator=gen)
    else:
        order = torch.tensor([tr.caps_of[i][int(torch.randint(5, (1,), generator=gen))] for i in torch.randperm(tr.corpus.n_images, generator=gen)])
    views = torch.randint(pooled.shape[0], (n_caps,), generator=gen)
    sums = {}
    for b in range(steps_per_epoch):
        caps = order[b * a.bs:(b + 1) * a.bs]
        imgs = cap_img[caps]
        x = pooled[views[caps], imgs]
        ids = encode_ids([tr.caption_ids[c] for c in caps.tolist()], cfg.max_len, "random", gen)
        lab = labels_all[imgs]
        x = F.dropout(x, a.img_in_drop) if a.img_in_drop else x
        fi = model.image_branch(x); ft = model.text_branch(ids)
        lr_now = a.lr
        if a.cosine:
            frac = step / total
            lr_now = a.lr * 0.5 * (1 + math.cos(math.pi * frac))
        if a.warm and step < a.warm * steps_per_epoch:
            lr_now *= (step + 1) / (a.warm * steps_per_epoch)
        for g in opt.param_groups: g["lr"] = lr_now * g["mult"]
        loss = 0
        lr_ = torch.zeros(())
        if a.rank:
            lr_ = ranking_loss(fi[a.rankfeat], ft[a.rankfeat], margin=a.margin, mode=a.mode, labels=imgs)
            loss = loss + a.rank * lr_
        li = lt = torch.zeros(()); ai = at = 0.0
        if a.img or a.txt:
            gi, gt = logits(fi["drop"]), logits(ft["drop"])
            li = F.cross_entropy(gi, lab); lt = F.cross_entropy(gt, lab)
            loss = loss + a.img * li + a.txt * lt
            ai = (gi.argmax(1) == lab).float().mean().item(); at = (gt.argmax(1) == lab).float().mean().item()
        opt.zero_grad(); loss.backward()
        if a.clip: torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step(); step += 1
        for k, v in (("rank", lr_.item()), ("img", li.item()), ("txt", lt.item()), ("acc_i", ai), ("acc_t", at)):
            sums[k] = sums.get(k, 0) + v
    tt = time.time() - t0
    v = validate()
    print(json.dumps({"ep": ep + 1, **{k: round(s / steps_per_epoch, 3) for k, s in sums.items()},
                      "val": round(v["rsum"], 1), "r1": [round(v["i2t_r1"], 1), round(v["t2i_r1"], 1)],
                      "s": round(tt), "vs": round(time.time() - t0 - tt)}), flush=True)
if a.save:
    torch.save(model.state_dict(), a.save)
