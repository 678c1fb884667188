"""One configuration object for every run, and its presets (``PRESETS``, described in ``PRESET_NOTES``).

A ``Config`` is saved with each run and inside each checkpoint, so a run can always be
rebuilt from its directory. ``Config.from_dict`` rejects unknown keys and wrong types with
a message that names the key, because a silently ignored typo would train the wrong model.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError

#: Negatives of the ranking loss: paired with each anchor (SPEC 3.3: mined, or random of another
#: class for CUHK-PEDES) or taken from the batch (VSE++'s hardest, or the sum over all).
PAIRED_NEGATIVES = ("paper", "random")
#: Where a paired mode's negative rows sit: 'half' replaces the second half of each batch (SPEC 3.3,
#: so a batch trains batch_size / 2 positive pairs); 'extra' appends them (batch_size positive pairs,
#: as many as an in-batch mode sees, at twice the rows per step).
PAIRED_ROWS = ("half", "extra")
IN_BATCH_NEGATIVES = ("hardest", "sum")
NEGATIVE_MODES = (*PAIRED_NEGATIVES, *IN_BATCH_NEGATIVES)
TRAIN_IMAGES = ("cached", "pixels")
SHIFT_POLICIES = ("random", "left", "center")
TEST_SHIFT_POLICIES = ("all", "left", "center")
#: The recipes: which phases a run trains, with which losses (train/recipes.py defines each).
RECIPE_NAMES = ("paper", "instance", "ranking", "joint", "both")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine")
EPOCH_UNITS = ("images", "captions")

# Keys added after runs were first named by ``Config.digest``: while they hold these defaults
# (today's behaviour) they are left out of the digest, so existing run names stay valid.
LATER_KEYS = {"optimizer": "sgd", "schedule": "step", "warmup_epochs": 0.0, "grad_clip": 0.0,
              "epoch_unit": "images", "classifier_scale": 0.0,
              "stage1_negatives": "", "rank_features": "act",
              "image_input_dropout": 0.0, "text_input_dropout": 0.0,
              "train_images": "cached", "vocab_needs_vector": False,
              "loader_workers": 0, "channels_last": False, "compile": False,
              "text_zero_init": False, "text_pool": "all", "amp_cpu": False,
              "paired_rows": "half", "recipe": "paper"}


@dataclass
class Config:
    # --- data ---------------------------------------------------------------------------
    dataset: str = "flickr8k"
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    protocol: str = "1k"
    # --- text ---------------------------------------------------------------------------
    max_len: int = 32                 # L: words kept per caption (SPEC 1.2: 32 Flickr/COCO, 56 CUHK)
    min_count: int = 1                # a train word enters the vocabulary from this many uses
    lowercase: bool = True            # GloVe is lower-case; the paper matched word2vec case-sensitively
    word_vectors: str = "glove50"     # 'glove50' (PyPI, offline) | 'word2vec' (GoogleNews, a local file) | 'random' | path to a word2vec/GloVe file
    vocab_needs_vector: bool = False  # True: the vocabulary keeps only train words with a word vector, as written (the official dictionary, SPEC 1.2)
    train_shift: str = "random"       # position shift while training (SPEC 3.4)
    test_shift: str = "all"           # test-time offsets: 'all' averages every admissible one (SPEC 1.4)
    val_shift: str = "center"         # per-epoch validation: one offset, so validation stays cheap
    # --- model --------------------------------------------------------------------------
    backbone: str = "efficientnet_lite0"
    backbone_weights: str = "imagenet"   # 'imagenet' | 'none' | path to a state_dict file
    image_size: int = 224
    text_width: float = 0.25          # multiplier on the paper's text-CNN channel widths
    text_blocks: list[int] = field(default_factory=lambda: [3, 4, 6, 1])
    text_zero_init: bool = False      # the last BN of each residual branch starts at gamma 0 (not in the paper)
    text_pool: str = "all"            # 'all': max over every position (the paper) | 'words': only where a word is in reach
    embed_dim: int = 0                # 0: the word-vector dimension (300 when random)
    feature_dim: int = 2048           # the shared embedding size of both branches
    dropout: float = 0.75             # SPEC 1.1: Flickr30k 0.75
    image_input_dropout: float = 0.0  # dropout on the pooled backbone feature the image head reads (not in the paper)
    text_input_dropout: float = 0.0   # dropout on the BN'd word vectors the text CNN reads (not in the paper)
    shared_classifier: bool = True    # the paper's W_share; False is an ablation
    classifier_bias: bool = True
    classifier_scale: float = 0.0     # 0: the paper's linear W_share; s > 0: logits = s * cos(f, w_c)
    bn_momentum: float = 0.05         # MatConvNet moment-update rate (SPEC 3.1)
    # --- optimisation (SPEC 3.1: effective LR = lr * multiplier) ------------------------------
    batch_size: int = 32
    lr: float = 0.1
    lr_mult_new: float = 0.1          # text CNN, image head
    lr_mult_bn: float = 0.2
    lr_mult_classifier: float = 0.01  # W_share: 0.1 * 0.01 = the paper's "0.001"
    lr_mult_embedding: float = 1e-3   # word-vector layer, nearly frozen
    lr_mult_backbone: float = 0.02    # fine-tuned backbone blocks in stage II
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"            # 'sgd' (Nesterov, the paper's) | 'adam' | 'adamw'; same LR groups
    schedule: str = "step"            # 'step': x0.1 at each stage*_lr_steps epoch | 'cosine' to 0 per phase
    warmup_epochs: float = 0.0        # linear warm-up over this many epochs of steps, in each phase
    grad_clip: float = 0.0            # clip the total gradient norm to this; 0 = off
    epoch_unit: str = "images"        # 'images': one random caption per train image | 'captions': each once
    # --- the phases -----------------------------------------------------------------------
    recipe: str = "paper"             # 'paper': Stage I then Stage II | 'instance' | 'ranking' | 'joint' | 'both' (train/recipes.py)
    # --- stage I: instance loss only, backbone frozen -------------------------------------------
    stage1_epochs: int = 40
    stage1_lr_steps: list[int] = field(default_factory=list)   # epochs at which lr drops 10x
    # --- stage II: ranking + instance loss, top backbone blocks fine-tuned ----------------------
    stage2_epochs: int = 10
    stage2_lr_steps: list[int] = field(default_factory=lambda: [7])
    stage2_lr: float = 0.1
    lambda_rank: float = 2.0          # SPEC 2: Flickr30k / COCO scripts use 2 : 1 : 0.1
    lambda_img: float = 1.0
    lambda_txt: float = 0.1
    margin: float = 1.0
    negatives: str = "paper"          # 'paper': mined among n_candidates (SPEC 3.3) | 'random': a random caption of another class, no mining (CUHK) | 'hardest' / 'sum': in-batch (VSE++)
    paired_rows: str = "half"         # a paired mode's negatives: 'half' replace the batch's second half (SPEC 3.3) | 'extra' appended after batch_size positive pairs
    rank_features: str = "act"        # what the ranking loss compares: 'act' post-ReLU (official code) | 'feat' pre-ReLU (as tested)
    stage1_negatives: str = ""        # negatives of a ranking term in phase 1 (ranking / joint recipes); '': `negatives`
    n_candidates: int = 256           # captions scored to mine each hard negative (SPEC 3.3)
    finetune_blocks: int = 2          # top backbone blocks trained in stage II; -1 = all (images, GPU)
    # --- features cache --------------------------------------------------------------------
    train_views: int = 4              # cached augmented views per train image (0: plain, 1: flip, rest: crops)
    train_images: str = "cached"      # 'cached': train on the cached views | 'pixels': decode each image with a fresh crop and flip every time (SPEC 3.4; a GPU's job)
    loader_workers: int = 0           # processes that decode and augment the pixel path's images ahead of the step; 0: in the training process
    # --- run -------------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"              # 'auto' | 'cpu' | 'cuda'
    amp: bool = True                  # bf16 autocast on a CUDA GPU with bf16 units (compute capability 8.0+; float32 on a T4)
    amp_cpu: bool = False             # bf16 autocast of the training step on the CPU too (pays with AVX-512 BF16 / AMX)
    channels_last: bool = False       # the backbone's convolutions and images in NHWC (faster with autocast on recent GPUs)
    compile: bool = False             # torch.compile the backbone of a phase that decodes images
    num_threads: int = 0              # torch threads; 0 = all cores
    progress: bool = True             # tqdm bars; the book build turns them off
    subset: str = ""                  # '' | 'mini': use the mini_* splits (tests, smoke runs)

    # ---------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.recipe in RECIPE_NAMES, "recipe", f"one of {RECIPE_NAMES}"),
            (self.negatives in NEGATIVE_MODES, "negatives", f"one of {NEGATIVE_MODES}"),
            (self.paired_rows in PAIRED_ROWS, "paired_rows", f"one of {PAIRED_ROWS}"),
            (self.rank_features in ("act", "feat"), "rank_features", "'act' (post-ReLU) or 'feat' (pre-ReLU)"),
            (self.stage1_negatives in ("", *NEGATIVE_MODES), "stage1_negatives",
             f"'' (same as negatives) or one of {NEGATIVE_MODES}"),
            (self.train_shift in SHIFT_POLICIES, "train_shift", f"one of {SHIFT_POLICIES}"),
            (self.test_shift in TEST_SHIFT_POLICIES, "test_shift", f"one of {TEST_SHIFT_POLICIES}"),
            (self.val_shift in TEST_SHIFT_POLICIES, "val_shift", f"one of {TEST_SHIFT_POLICIES}"),
            (self.max_len >= 4, "max_len", "at least 4"),
            (self.batch_size >= 4 and self.batch_size % 2 == 0, "batch_size", "an even number >= 4"),
            (0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)"),
            (0.0 <= self.image_input_dropout < 1.0, "image_input_dropout", "in [0, 1)"),
            (0.0 <= self.text_input_dropout < 1.0, "text_input_dropout", "in [0, 1)"),
            (self.text_width > 0, "text_width", "positive"),
            (self.text_pool in ("all", "words"), "text_pool", "'all' (every position, the paper) or 'words'"),
            (len(self.text_blocks) == 4 and all(b >= 1 for b in self.text_blocks),
             "text_blocks", "four positive block counts, e.g. [3, 4, 6, 1]"),
            (self.stage1_epochs >= 0, "stage1_epochs", ">= 0"),
            (self.stage2_epochs >= 0, "stage2_epochs", ">= 0"),
            (all(s >= 0 for s in self.stage1_lr_steps), "stage1_lr_steps", "epochs >= 0"),
            (all(s >= 0 for s in self.stage2_lr_steps), "stage2_lr_steps", "epochs >= 0"),
            (self.lr > 0, "lr", "> 0"),
            (self.stage2_lr > 0, "stage2_lr", "> 0"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (0.0 <= self.momentum < 1.0, "momentum", "in [0, 1)"),
            (self.margin >= 0, "margin", ">= 0"),
            (self.n_candidates >= 1, "n_candidates", ">= 1"),
            (self.finetune_blocks >= -1, "finetune_blocks", "-1 (all) or >= 0"),
            (self.train_views >= 1, "train_views", ">= 1"),
            (self.loader_workers >= 0, "loader_workers", ">= 0 (0: decode in the training process)"),
            (self.train_images in TRAIN_IMAGES, "train_images", f"one of {TRAIN_IMAGES}"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}"),
            (self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}"),
            (self.warmup_epochs >= 0, "warmup_epochs", ">= 0 (0 = no warm-up)"),
            (self.grad_clip >= 0, "grad_clip", ">= 0 (0 = off)"),
            (self.classifier_scale >= 0, "classifier_scale", ">= 0 (0 = the paper's linear classifier)"),
            (self.epoch_unit in EPOCH_UNITS, "epoch_unit", f"one of {EPOCH_UNITS}"),
            (self.subset in ("", "mini"), "subset", "'' or 'mini'"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             "device", "'auto', 'cpu' or 'cuda[:n]'"),
        ]
        for ok, key, want in checks:
            if not ok:
                raise ConfigError(f"config key {key!r} = {getattr(self, key)!r} is invalid: "
                                  f"expected {want}")
        from .evaluate import PROTOCOLS   # evaluate owns the protocols; imported here to check early

        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"config key 'protocol' = {self.protocol!r} is invalid: expected one of {PROTOCOLS}")
        if (self.protocol == "cuhk") != (default_protocol(self.dataset) == "cuhk"):
            raise ConfigError(f"config key 'protocol' = {self.protocol!r} does not fit dataset "
                              f"{self.dataset!r}: CUHK-PEDES is evaluated by identity, with protocol "
                              f"'cuhk'; the other datasets by image")

    def role_splits(self) -> dict[str, str]:
        """The split each role (train / val / test) reads: ``mini_*`` with ``subset='mini'``."""
        pre = "mini_" if self.subset == "mini" else ""
        return {"train": pre + self.train_split, "val": pre + self.val_split, "test": pre + self.test_split}

    # --- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> "Config":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            close = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
            hint = "; ".join(f"did you mean {c[0]!r} for {k!r}?" for k, c in close.items() if c)
            raise ConfigError(f"{source}: unknown key(s) {unknown}" + (f"; {hint}" if hint else "")
                              + f"; valid keys are {sorted(known)}")
        hints = typing.get_type_hints(cls)
        clean = {k: _coerce(k, v, hints[k], source) for k, v in values.items()}
        return cls(**clean)

    def replace(self, **changes) -> "Config":
        return Config.from_dict({**self.to_dict(), **changes})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "config") -> "Config":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{source}: not valid JSON ({e})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a JSON object of config keys")
        return cls.from_dict(values, source=source)

    def digest(self, keys: typing.Iterable[str] | None = None) -> str:
        """Short stable hash of the config (or of some keys), for run and cache names."""
        d = self.to_dict()
        if keys is not None:
            d = {k: d[k] for k in keys}
        else:
            d = {k: v for k, v in d.items() if k not in LATER_KEYS or v != LATER_KEYS[k]}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def _coerce(key: str, value, hint, source: str):
    """Accept a value of the declared type; ints are welcome where floats are declared."""
    origin = typing.get_origin(hint)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(_is(v, item) for v in value):
            raise ConfigError(f"{source}: key {key!r} must be a list of {item.__name__}, "
                              f"got {value!r}")
        return [item(v) for v in value]
    if not _is(value, hint):
        raise ConfigError(f"{source}: key {key!r} must be {hint.__name__}, got "
                          f"{type(value).__name__} {value!r}")
    return hint(value)


def _is(value, typ) -> bool:
    if typ is bool:
        return isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typ)


# The presets. The comments say what each is for; what was measured to choose their settings is
# told in book/differences.md (the CPU presets) and book/paper_scale.md (the GPU ones).

# What an earlier CPU recipe of this book (the `ablation` preset's) changed from the paper's, so
# that something moves in a 2-core CPU's budget: a 1-1-1-1 text CNN, the new layers at the global
# rate, VSE++'s hardest in-batch negative with margin 0.2.
CPU_DEPARTURES = dict(text_blocks=[1, 1, 1, 1], lr_mult_new=1.0, lr_mult_bn=1.0, negatives="hardest",
                      margin=0.2)

# What every official recipe shares (SPEC 1.2, 3.1-3.4); the rest are Config's defaults (the
# paper's SGD multipliers, margin 1, batch 32, the 256-candidate mining). Every epoch decodes
# every image, so 8 loader workers do that beside the GPU's step.
PAPER_COMMON = dict(backbone="resnet50", text_width=1.0, text_blocks=[3, 4, 6, 1],
                    word_vectors="word2vec", lowercase=False, vocab_needs_vector=True,
                    train_images="pixels", finetune_blocks=-1, train_views=1, loader_workers=8,
                    stage1_lr_steps=[], lr=0.1, stage2_lr=0.1, negatives="paper", n_candidates=256)

# The book's recipe, chosen on the validation split by the probes of book/differences.md.
CPU_RECIPE = dict(feature_dim=1024, train_views=2, finetune_blocks=0, text_blocks=[1, 1, 1, 1],
            dropout=0.5, classifier_scale=32.0, classifier_bias=False,
            optimizer="adam", lr=1e-3, stage2_lr=5e-4, schedule="cosine", weight_decay=0.0,
            lr_mult_new=1.0, lr_mult_bn=1.0, lr_mult_classifier=1.0, lr_mult_embedding=1.0,
            epoch_unit="captions", batch_size=128, negatives="hardest", stage1_negatives="sum",
            margin=0.2, rank_features="feat", image_input_dropout=0.3,
            lambda_rank=1.0, lambda_img=0.0, lambda_txt=0.0,
            stage1_epochs=5, stage1_lr_steps=[], stage2_epochs=15, stage2_lr_steps=[])

PRESETS: dict[str, dict] = {
    # The book's run, on a 2-core CPU in at most 30 minutes: CPU_RECIPE with the paper's 3-4-6-1
    # text CNN at half its width, its residual branches starting from gamma 0, in bfloat16 autocast.
    "cpu": dict(CPU_RECIPE, text_width=0.5, text_blocks=[3, 4, 6, 1], text_zero_init=True, amp_cpu=True),
    # The book's run before issue #24 and the ablation chapter's recipe: CPU_RECIPE as it stands, a
    # quarter-width 1-1-1-1 text CNN over GloVe-50 on cached EfficientNet-Lite0 features, float32.
    "cpu-narrow": CPU_RECIPE,
    # The ablation chapter's budget (grids/ablations.yaml): cpu-narrow's 5 Stage I epochs and the
    # fewest Stage II epochs that reach 85% of its validation R-sum; and a quarter of each phase,
    # the budget curve's low end.
    "cpu-short": dict(stage1_epochs=5, stage2_epochs=8),
    "cpu-quarter": dict(stage1_epochs=1, stage2_epochs=4),
    # The first ablation sweep's budget (grids/ablations_short.yaml, the chapter's appendix): the
    # paper's SGD and loss weights except CPU_DEPARTURES, the backbone frozen, short enough for 16 arms
    # x 3 seeds in about two hours on two cores, too short for the model to learn.
    "ablation": dict(feature_dim=1024, train_views=2, stage1_epochs=2, stage2_epochs=3,
                     stage2_lr_steps=[], finetune_blocks=0, **CPU_DEPARTURES),
    # The official recipes (SPEC 1-4) for a GPU, one per dataset. Flickr30k: the official split
    # (Flickr8k's test / dev ids).
    "paper": dict(PAPER_COMMON, dataset="flickr30k_official", dropout=0.75,
                  stage1_epochs=240, stage2_epochs=60, stage2_lr_steps=[40],
                  lambda_rank=2.0, lambda_img=1.0, lambda_txt=0.1),
    # MSCOCO: Karpathy's split (MATLAB's rng(1) draw cannot be redone in Python); no classifier bias;
    # Stage I 75 epochs, where the official Stage II started.
    "paper-coco": dict(PAPER_COMMON, dataset="coco", protocol="coco-5k", dropout=0.5, classifier_bias=False,
                       stage1_epochs=75, stage2_epochs=21, stage2_lr_steps=[15, 20],
                       lambda_rank=2.0, lambda_img=1.0, lambda_txt=0.1),
    # CUHK-PEDES: a class is a person; 56 words; no mining (a random caption of another identity);
    # Stage I 150 epochs, where the official Stage II started; evaluated by identity.
    "paper-cuhk": dict(PAPER_COMMON, dataset="cuhk_pedes", protocol="cuhk", max_len=56, dropout=0.8,
                       negatives="random", stage1_epochs=150, stage2_epochs=61, stage2_lr_steps=[40],
                       lambda_rank=2.0, lambda_img=1.0, lambda_txt=0.5),
    # The book's recipe at the paper's network size, end to end on one GPU (what a Colab GPU runtime
    # trains); its epochs are a size for a free Colab session, not a tuned schedule.
    "gpu": dict(CPU_RECIPE, text_width=1.0, text_blocks=[3, 4, 6, 1], text_zero_init=True, feature_dim=2048,
                train_views=4, finetune_blocks=-1, stage1_epochs=10, stage2_epochs=30, loader_workers=8,
                amp=True, channels_last=True, device="auto"),
    # The paper's Flickr30k schedule, optimiser and losses (SPEC 1-3) on this book's data and backbone
    # (GloVe-50: word2vec is not on PyPI), for one GPU; never seen to learn.
    "paper-flickr8k": dict(text_width=1.0, text_blocks=[3, 4, 6, 1], dropout=0.75, train_views=4,
                           finetune_blocks=-1, stage1_epochs=240, stage1_lr_steps=[], stage2_epochs=60,
                           stage2_lr_steps=[40], lr=0.1, stage2_lr=0.1, negatives="paper", n_candidates=256,
                           lambda_rank=2.0, lambda_img=1.0, lambda_txt=0.1, loader_workers=8, amp=True,
                           channels_last=True, device="auto"),
    # The mini splits, for tests and `smoke` notebook runs: seconds, not minutes.
    "smoke": dict(subset="mini", text_width=0.125, feature_dim=256, stage1_epochs=2,
                  stage2_epochs=1, stage2_lr_steps=[], train_views=2, n_candidates=32,
                  test_shift="center", finetune_blocks=1, batch_size=16),
}


# What each preset is for and the SPEC sections it follows: `python -m dualpath.train --list-presets`
# prints this, and the README lists the same (a test keeps them together).
PRESET_NOTES: dict[str, tuple[str, str]] = {
    "cpu": ("the book's run, on a 2-core CPU in at most 30 minutes: the paper's 3-4-6-1 text CNN at half its width", "SPEC 1-3 with measured departures (the book's page on differences)"),
    "cpu-narrow": ("the book's earlier run and the ablation chapter's recipe: a quarter-width 1-1-1-1 text CNN, float32", "SPEC 1-3 with the cpu preset's departures"),
    "cpu-short": ("the ablation chapter's budget: the cpu-narrow recipe with 8 of its 15 Stage II epochs", "SPEC 1-3 with the cpu preset's departures"),
    "cpu-quarter": ("the cpu-narrow recipe at a quarter of its epochs (the ablation chapter's budget curve)", "SPEC 1-3 with the cpu preset's departures"),
    "ablation": ("the first ablation sweep's short budget (the chapter's appendix), on a CPU", "SPEC 1-3 with the cpu departures of an earlier recipe"),
    "paper": ("the paper's Flickr30k model, on a GPU (the official split)", "SPEC 1, 2, 3, 4 (split_Flickr30k.m)"),
    "paper-coco": ("the paper's MSCOCO model, on a GPU (Karpathy's split)", "SPEC 1, 2, 3, 4"),
    "paper-cuhk": ("the paper's CUHK-PEDES model, on a GPU (identities as classes, no mining)", "SPEC 1, 2, 3, 4, 5"),
    "gpu": ("the book's recipe at the paper's network size, end to end on one GPU (what a Colab GPU runtime trains)", "SPEC 1-3 with the cpu preset's departures, at the paper's text-CNN width and depth"),
    "paper-flickr8k": ("the paper's schedule, optimiser and losses on this book's data, end to end on one GPU; never seen to learn", "SPEC 1-3 on Flickr8k with EfficientNet-Lite0 and GloVe-50"),
    "smoke": ("seconds on the mini splits: tests and smoke notebook runs", "nothing (a plumbing check)"),
}


def describe_preset(name: str) -> str:
    """One line: what the preset is for, its dataset, backbone and epochs, and the SPEC it follows."""
    purpose, spec = PRESET_NOTES[name]
    cfg = preset(name)
    return (f"{name}: {purpose}; {cfg.dataset}, {cfg.backbone}, {cfg.stage1_epochs} + {cfg.stage2_epochs} "
            f"epochs; follows {spec}")


def default_protocol(dataset: str) -> str:
    """The evaluation protocol a dataset is reported with: by identity on CUHK-PEDES, else ``1k``
    (on COCO's 5,000 test images that is the 5K protocol; ``coco-1k`` averages five folds)."""
    return "cuhk" if dataset == "cuhk_pedes" else "1k"


def resolve_preset(name: str, *, smoke: bool = False) -> str:
    """The preset a name stands for: ``'smoke'`` with the smoke switch on (the mini splits, in
    seconds: how tests and smoke runs of the pages and the arms run); ``'auto'``: ``'gpu'`` where
    CUDA is present, else ``'cpu'``; any other name as it is."""
    if smoke:
        return "smoke"
    if name != "auto":
        return name
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def preset(name: str, overrides: Mapping[str, Any] | None = None, *, smoke: bool = False,
           **settings: Any) -> Config:
    """The Config of a named preset, as every front door makes it: ``python -m dualpath.train``,
    a notebook page (``dualpath_book.page``) and a sweep arm (``dualpath_book.ablation``).

    ``settings`` are the keys a caller sets as its own parameters (``preset('cpu', seed=1)``; a
    page's dataset and seed, an arm's recipe, seed and device); ``overrides`` are config keys a
    user adds (``--set``, a page's or an arm's ``overrides``). A key may not be both: an override
    would silently replace the parameter the caller shows. ``smoke`` and ``'auto'``: see
    :func:`resolve_preset`; a ``cpu-*`` preset is the cpu-narrow recipe at another budget.
    """
    name = resolve_preset(name, smoke=smoke)
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    overrides = dict(overrides or {})
    both = sorted(set(overrides) & set(settings))
    if both:
        raise ConfigError(f"override(s) {both} set what the caller sets itself; pass "
                          f"{'it' if len(both) == 1 else 'them'} as a parameter, not as an override")
    base = CPU_RECIPE if name.startswith("cpu-") else {}   # the cpu-narrow recipe at another budget
    return Config.from_dict({**base, **PRESETS[name], **settings, **overrides}, source=f"preset {name!r}")
