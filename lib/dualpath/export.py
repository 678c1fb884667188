"""Export a trained run for deployment: both encoders as ONNX, the tokenizer as JSON.

    python -m dualpath.export runs/book/cpu-efficientnet_lite0-seed0 exported/
    python -m dualpath.export RUN_DIR OUT --half-weights     # float16 weights, float32 arithmetic

writes into ``OUT``:

``text_encoder.onnx``
    ``ids`` int64 ``[batch, max_len]`` -> ``embedding`` float32 ``[batch, d]``: the test-time text
    embedding (SPEC 1.4) that the evaluator ranks with. Each row holds a caption's in-vocabulary
    word ids from position 0 (``Vocabulary.encode`` truncated to ``max_len``), zero-padded. The graph
    places the words at the offsets of the run's ``test_shift`` itself (``all``: every admissible
    offset, their pre-ReLU features summed), then L2-normalises, as :func:`dualpath.embed.text_embeddings`.
``image_head.onnx``
    ``pooled`` float32 ``[batch, views, C]`` -> ``embedding`` ``[batch, d]``: the image head over
    pooled backbone features, summed over the views and L2-normalised; the test-time image embedding
    when the views are the whole image and its mirror (:func:`dualpath.embed.image_embeddings_from_inputs`).
    The backbone is not exported: it is the ImageNet network the run names (fine-tuned top blocks
    included, where the recipe trains them).
``tokenizer.json``
    the vocabulary (``words[i]`` has id ``i + 1``, 0 pads) and the tokenizer's rules: lowercase or
    not, the exact characters that split words (Python's ``\\s`` spelled out, so another language's
    regex engine splits the same way), unknown words dropped, at most ``max_len`` words kept.
``model.json``
    what was exported from where: the run, its checkpoint, the commit of this checkout, the run's test
    metrics, the inputs and outputs, and the sha256 of every file. The ONNX files carry the same
    commit and metrics in their metadata.

:func:`check_parity` runs the ONNX text encoder under onnxruntime beside PyTorch on captions and
reports the largest absolute difference and whether the top-k image rankings agree.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint as ckpt_io
from .data.text import _SPLIT, PAD, Vocabulary
from .errors import DataError, DualPathError
from .io import atomic_path, write_json_atomic
from .models import build_model
from .models.mode import eval_mode

OPSET = 18
TEXT_FILE, IMAGE_FILE, TOKENIZER_FILE, META_FILE = ("text_encoder.onnx", "image_head.onnx", "tokenizer.json",
                                                     "model.json")
# What --half-weights stores in float16: the weight matrices of at least this many elements (biases and
# BN stay float32), except the word embeddings, whose rounding errors pass through every layer. On the
# book's run (benchmarks/bench_export_parity.py, 5,000 test captions, against PyTorch's top images):
# all matrices in float16 kept the same top-10 for 97.2% of the captions (top-5: 99.1%); the word
# embeddings in float32 (0.7 MB more) 98.1% (99.3%); the first two stages too (1.4 MB more) 98.5%,
# too heavy for the Try it page's 25 MB; the last stage in float32 (7 MB more) gained nothing.
HALF_MIN_ELEMENTS = 1024
FLOAT32_KEPT = ("text_cnn.embedding.",)


# ----------------------------------------------------------------------------- the exported graphs
class TestTimeText(nn.Module):
    """Left-aligned word ids [B, L] -> the evaluator's test-time text embedding [B, d].

    ``all`` places each sentence at every admissible offset 0..L-n (one zero row for an empty one)
    and sums the rows' pre-ReLU features; ``left`` / ``center`` place it once, at 0 / (L-n)//2. The
    placements are rotations of the left-aligned row: the positions past the sentence are padding,
    so rotating by k puts the sentence at offset k while k <= L-n. For ``all`` every rotation is
    computed and the inadmissible ones are masked out, which keeps the graph free of shapes that
    depend on the input's values.
    """

    def __init__(self, text_cnn: nn.Module, length: int, policy: str):
        super().__init__()
        self.text_cnn, self.length, self.policy = text_cnn, length, policy
        k = torch.arange(length)
        # rotation[k, j] = the source position of output position j when the sentence starts at k
        self.register_buffer("rotation", (k[None, :] - k[:, None]) % length, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = (ids != 0).sum(dim=1)                                  # words in each sentence
        length = self.length
        if self.policy == "all":
            rows = ids[:, self.rotation]                           # [B, L offsets, L]
            k = torch.arange(length, device=ids.device)[None, :]
            keep = (k <= length - n[:, None]) & ((k == 0) | (n[:, None] > 0))
            feat = self.text_cnn(rows.reshape(-1, length))["feat"].reshape(ids.shape[0], length, -1)
            summed = (feat * keep[:, :, None].to(feat.dtype)).sum(dim=1)
        else:
            start = (length - n) // 2 if self.policy == "center" else torch.zeros_like(n)
            source = (torch.arange(length, device=ids.device)[None, :] - start[:, None]) % length
            summed = self.text_cnn(torch.gather(ids, 1, source))["feat"]
        return F.normalize(summed, dim=1)


class TestTimeImage(nn.Module):
    """Pooled backbone features [B, views, C] -> the image head's features summed over views, L2-normalised."""

    def __init__(self, image_head: nn.Module):
        super().__init__()
        self.image_head = image_head

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        b, v, c = pooled.shape
        feat = self.image_head(pooled.reshape(b * v, c))["feat"].reshape(b, v, -1)
        return F.normalize(feat.sum(dim=1), dim=1)


# ----------------------------------------------------------------------------- tokenizer rules
def split_characters() -> str:
    """Every character on which ``dualpath.data.text.tokenize`` splits words, in code-point order."""
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if _SPLIT.fullmatch(c))


def tokenizer_rules(vocab: Vocabulary, length: int) -> dict:
    """The vocabulary and the rules that turn a caption into the text encoder's ``ids`` row."""
    return {
        "lowercase": vocab.lowercase,
        # a run of these characters separates words; empty words are dropped
        "split_characters": split_characters(),
        "unknown_words": "dropped",
        "max_words": length,
        "pad": PAD, "pad_id": 0,
        "words": list(vocab.words),      # words[i] has id i + 1
        "how": "lowercase the caption (if lowercase), split it on runs of split_characters, drop empty "
               "and unknown words, keep the first max_words ids, fill the row of max_words with pad_id",
    }


def encode_row(vocab: Vocabulary, caption: str, length: int) -> list[int]:
    """The ``ids`` row of one caption: its in-vocabulary ids, truncated and zero-padded to ``length``."""
    ids = vocab.encode(caption)[:length]
    return ids + [0] * (length - len(ids))


# ----------------------------------------------------------------------------- export
@dataclass
class Exported:
    """A loaded run, ready to export: its model (eval mode), vocabulary, config and provenance."""

    model: nn.Module
    vocab: Vocabulary
    cfg: object
    run_dir: Path
    checkpoint: Path
    phase: str
    metrics: dict


@dataclass
class RunFiles:
    """The files of a finished run that an export reads."""

    run_dir: Path
    phase: str               # the recipe's last phase, whose best checkpoint is the model
    checkpoint: Path
    metrics_file: Path


def load_run_files(run_dir: str | Path) -> RunFiles:
    """Name the files of a finished run directory, failing clearly when one is missing."""
    from .train.recipes import phases_of
    from .train.rundir import read_run_config

    run_dir = Path(run_dir)
    phase = phases_of(read_run_config(run_dir))[-1].name
    files = RunFiles(run_dir, phase, run_dir / f"best_{phase}.pt", run_dir / "metrics.json")
    if not files.metrics_file.is_file():
        raise DataError(f"{run_dir} has no metrics.json: the run has not finished; finish it "
                        f"(python -m dualpath.train ... --run-dir {run_dir}) before exporting")
    return files


def load_run(run_dir: str | Path) -> Exported:
    """The final phase's best checkpoint of a finished run directory, with the run's test metrics."""
    files = load_run_files(run_dir)
    ckpt = ckpt_io.load(files.checkpoint)
    cfg = ckpt_io.config_of(ckpt, files.checkpoint)
    vocab = Vocabulary.from_dict(ckpt["vocab"])
    emb = ckpt["model"]["text_cnn.embedding.weight"]
    model = build_model(cfg, len(vocab), int(ckpt["n_classes"]), embed_dim=int(emb.shape[1]))
    ckpt_io.load_weights(model, ckpt["model"], files.checkpoint)
    metrics = json.loads(files.metrics_file.read_text())
    return Exported(model.eval(), vocab, cfg, files.run_dir, files.checkpoint, files.phase, metrics.get("final", {}))


def git_commit(folder: str | Path) -> str:
    """HEAD of the checkout holding ``folder`` (``-dirty`` when tracked files changed), or ``unknown``."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _onnx_export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, dynamic: dict,
                 metadata: dict[str, str], half_weights: bool) -> None:
    """``module(example)`` as an ONNX file; ``dynamic`` names the input's axes of any size."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp, eval_mode(module), torch.no_grad():
        raw = Path(tmp) / "model.onnx"
        dims = {input_name: {axis: torch.export.Dim(name, min=1) for axis, name in dynamic.items()}}
        program = torch.onnx.export(module, (example,), input_names=[input_name], output_names=["embedding"],
                                    dynamic_shapes=dims, opset_version=OPSET, dynamo=True, verbose=False)
        program.optimize()
        program.save(str(raw))
        model = onnx.load(str(raw))
    if half_weights:
        _store_weights_in_half(model)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp_path:
        onnx.save(model, str(tmp_path))


def _store_weights_in_half(model) -> None:
    """Large float32 weight matrices become float16 followed by a Cast back to float32 (see
    ``HALF_MIN_ELEMENTS``): the file nearly halves, the arithmetic stays float32 (onnxruntime folds the
    casts when it loads the model)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    casts = []
    for init in graph.initializer:
        if (init.data_type != onnx.TensorProto.FLOAT or len(init.dims) < 2 or int(np.prod(init.dims)) < HALF_MIN_ELEMENTS
                or init.name.startswith(FLOAT32_KEPT)):
            continue
        name = init.name
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name + "_f16")
        init.CopyFrom(half)
        casts.append(helper.make_node("Cast", [name + "_f16"], [name], to=onnx.TensorProto.FLOAT,
                                      name=f"{name}_to_float"))
    nodes = casts + list(graph.node)   # Casts first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)


def export(run_dir: str | Path, out: str | Path, *, half_weights: bool = False) -> dict:
    """Write the files of the module docstring into ``out``; returns what ``model.json`` says."""
    run = load_run(run_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg, length = run.cfg, run.cfg.max_len
    commit = git_commit(run.run_dir if run.run_dir.exists() else Path.cwd())
    metrics = {k: round(float(v), 2) for k, v in run.metrics.items() if isinstance(v, (int, float))}
    metadata = {"commit": commit, "run": run.run_dir.name, "phase": run.phase,
                "test_metrics": json.dumps(metrics, sort_keys=True), "test_shift": cfg.test_shift,
                "weights": "float16" if half_weights else "float32"}
    text = TestTimeText(run.model.text_cnn, length, cfg.test_shift)
    example_ids = torch.tensor([encode_row(run.vocab, "a dog runs on the grass", length)] * 2)
    _onnx_export(text, example_ids, out / TEXT_FILE, "ids", {0: "batch"}, metadata, half_weights)
    in_dim = run.model.image_head.in_dim
    _onnx_export(TestTimeImage(run.model.image_head), torch.randn(2, 2, in_dim), out / IMAGE_FILE, "pooled",
                 {0: "batch", 1: "views"}, metadata, half_weights)
    write_json_atomic(out / TOKENIZER_FILE, tokenizer_rules(run.vocab, length))
    meta = {
        **{k: v for k, v in metadata.items() if k != "test_metrics"},
        "test_metrics": metrics, "checkpoint": run.checkpoint.name, "max_len": length,
        "embedding_dim": cfg.feature_dim, "pooled_dim": in_dim, "backbone": cfg.backbone,
        "dataset": cfg.dataset, "vocabulary_size": len(run.vocab.words), "opset": OPSET,
        "inputs": {TEXT_FILE: "ids int64 [batch, max_len]: left-aligned word ids, 0-padded (tokenizer.json)",
                   IMAGE_FILE: "pooled float32 [batch, views, pooled_dim]: pooled backbone features of "
                               "each view (test time: the image and its mirror)"},
        "outputs": "embedding float32 [batch, embedding_dim], L2-normalised; similarity = dot product",
        "files": {name: _sha256(out / name) for name in (TEXT_FILE, IMAGE_FILE, TOKENIZER_FILE)},
    }
    write_json_atomic(out / META_FILE, meta)
    return meta


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- parity
@dataclass
class Parity:
    """onnxruntime against PyTorch on the same captions."""

    n_captions: int
    max_abs_diff: float          # over every embedding coordinate
    k: int
    topk_identical: int          # captions whose top-k images are the same list in both
    first_differing: list[int]   # up to 10 caption indices whose top-k lists differ

    @property
    def ok(self) -> bool:
        return self.topk_identical == self.n_captions


def onnx_session(path: str | Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_text_embeddings(session, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run the exported text encoder on ``ids`` rows [n, max_len], ``batch_size`` rows at a time."""
    parts = [session.run(["embedding"], {"ids": rows[a:a + batch_size]})[0]
             for a in range(0, len(rows), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best columns of each row, best first; equal scores keep the earlier column
    first, like ``dualpath.search.Index``."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def caption_rows(vocab: Vocabulary, captions: Sequence[str], length: int) -> np.ndarray:
    """The text encoder's ``ids`` input for ``captions``: int64 [n, length]."""
    return np.array([encode_row(vocab, c, length) for c in captions], dtype=np.int64).reshape(-1, length)


def compare(reference: np.ndarray, got: np.ndarray, image_emb: np.ndarray, k: int = 10,
            got_image_emb: np.ndarray | None = None) -> Parity:
    """Two sets of caption embeddings [n, d]: their largest difference, and for how many captions the
    top-``k`` images among ``image_emb`` [m, d] are the same list (``got`` ranks ``got_image_emb``
    instead where given, e.g. the images as a page stores them)."""
    theirs = image_emb if got_image_emb is None else got_image_emb
    same = np.all(topk(reference @ image_emb.T, k) == topk(got @ theirs.T, k), axis=1)
    return Parity(len(reference), float(np.abs(got - reference).max()), k, int(same.sum()),
                  np.flatnonzero(~same)[:10].tolist())


def check_parity(text_file: str | Path, text_cnn: nn.Module, vocab: Vocabulary, cfg, captions: Sequence[str],
                 image_emb: torch.Tensor, k: int = 10, threads: int = 0) -> Parity:
    """Embed ``captions`` with the ONNX text encoder (onnxruntime) and with PyTorch as the evaluator
    does; compare the embeddings and each caption's top-``k`` images among ``image_emb``."""
    from .embed import text_embeddings

    reference = text_embeddings(text_cnn, vocab.encode_all(captions), cfg.max_len, cfg.test_shift).numpy()
    got = onnx_text_embeddings(onnx_session(text_file, threads), caption_rows(vocab, captions, cfg.max_len))
    return compare(reference, got, image_emb.float().numpy(), k)


# ----------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a finished run directory (config.json, metrics.json, best_<phase>.pt)")
    ap.add_argument("out", help="folder to write text_encoder.onnx, image_head.onnx, tokenizer.json, model.json")
    ap.add_argument("--half-weights", action="store_true",
                    help="store the large weights in float16 (half the size; arithmetic stays float32)")
    args = ap.parse_args(argv)
    try:
        meta = export(args.run_dir, args.out, half_weights=args.half_weights)
    except DualPathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {(Path(args.out) / name).stat().st_size / 1e6:.1f} MB" for name in meta["files"])
    print(f"exported {meta['run']} ({meta['phase']}, commit {meta['commit'][:12]}) to {args.out}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
