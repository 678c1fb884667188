"""Training on the Flickr8k mini split: determinism, resume after SIGKILL, DDP, checkpoints, bad input.

One uninterrupted reference run (a subprocess, like a user's) is shared by the tests.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dualpath
from dualpath import checkpoint as ckpt_io
from dualpath.config import Config, preset
from dualpath.errors import CheckpointError, ConfigError, DataError
from dualpath.train import RunDir, open_run, run_dir_for, train

SMOKE = preset("smoke", progress=False)
ENV = {**os.environ, "DUALPATH_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}


def _train_cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dualpath.train", "--preset", "smoke", "--run-dir", str(run_dir),
            "--set", "progress=false", *extra]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(_train_cmd(run_dir), check=True, env=ENV, timeout=900)
    return run_dir


def test_reference_run_writes_everything(reference_run: Path):
    for name in ("config.json", "log.csv", "last.pt", "best_stage1.pt", "best_stage2.pt", "metrics.json"):
        assert (reference_run / name).is_file(), name
    log = (reference_run / "log.csv").read_text().splitlines()
    assert len(log) == 1 + SMOKE.stage1_epochs + SMOKE.stage2_epochs
    m = _metrics(reference_run)
    assert set(m) >= {"stage1", "stage2", "final"}
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "i2t_medr", "t2i_medr", "rsum"):
        assert 0 <= m["final"][key] <= (600 if key == "rsum" else 100 if "medr" not in key else 1000)


def test_same_seed_same_metrics(reference_run: Path, tmp_path: Path):
    run = train(SMOKE, tmp_path / "again", log=lambda *a: None)
    assert run.metrics == _metrics(reference_run)


def test_a_run_that_fills_the_feature_cache_equals_one_that_reads_it(tmp_path: Path):
    # The extraction once shifted the global generator (the loader's worker seed), so the same
    # config trained to another R-sum (24.0 against 34.2). With the backbone frozen, as in the
    # book's run, the two now agree exactly. (Fine-tuning top blocks on cached maps still differs
    # in the last float digits after an extraction in the same process: not solved yet.)
    env = {**ENV, "DUALPATH_CACHE": str(tmp_path / "cache")}
    frozen = ("--set", "finetune_blocks=0")
    subprocess.run(_train_cmd(tmp_path / "extracts", *frozen), check=True, env=env, timeout=900)
    assert any((tmp_path / "cache").rglob("*.safetensors")), "the run did not extract"
    subprocess.run(_train_cmd(tmp_path / "reads", *frozen), check=True, env=env, timeout=900)
    assert _metrics(tmp_path / "extracts") == _metrics(tmp_path / "reads")


def test_a_busy_machine_gives_identical_metrics_and_the_environment_is_recorded(reference_run: Path,
                                                                                tmp_path: Path):
    # Same config, same environment (versions, threads, device, cache files): same metrics, with
    # another process competing for every core, as when two sweep jobs share a machine.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        subprocess.run(_train_cmd(tmp_path / "busy"), check=True, env=ENV, timeout=900)
    finally:
        burner.kill()
        burner.wait()
    assert _metrics(tmp_path / "busy") == _metrics(reference_run)
    (env,) = json.loads((tmp_path / "busy" / "environment.json").read_text())
    assert env == json.loads((reference_run / "environment.json").read_text())[0]
    assert env["torch"] == torch.__version__ and env["torch_threads"] >= 1
    assert len(env["feature_cache"]) == 3 and all(f.endswith(".safetensors") for f in env["feature_cache"])


def test_resume_under_other_threads_says_the_metrics_will_differ(tmp_path: Path):
    run_dir = tmp_path / "run"
    subprocess.run(_train_cmd(run_dir, "--until", "stage1"), check=True, env=ENV, timeout=900)
    threads = json.loads((run_dir / "environment.json").read_text())[0]["torch_threads"]
    other = "1" if threads > 1 else "2"   # both variables: torch reads MKL_NUM_THREADS too (OMP 2 + MKL 1 gives 1)
    out = subprocess.run(_train_cmd(run_dir), check=True, env={**ENV, "OMP_NUM_THREADS": other, "MKL_NUM_THREADS": other},
                         timeout=900, capture_output=True, text=True)
    assert "resumes under another environment (torch_threads)" in out.stdout + out.stderr
    assert len(json.loads((run_dir / "environment.json").read_text())) == 2


def test_resume_after_sigkill_gives_identical_metrics(reference_run: Path, tmp_path: Path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(run_dir), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    # kill as soon as the first epoch's checkpoint lands: mid-way through Stage I
    while not (run_dir / "last.pt").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    first = torch.load(run_dir / "last.pt", weights_only=True)
    assert (first["phase"], first["epoch"]) == (0, 1)
    subprocess.run(_train_cmd(run_dir), check=True, env=ENV, timeout=900)
    assert _metrics(run_dir) == _metrics(reference_run)
    # the log is whole: one row per epoch, the same rows as the uninterrupted run (times aside)
    assert _untimed_log(run_dir) == _untimed_log(reference_run)


def _untimed_log(run_dir: Path) -> list[dict]:
    import csv
    from dualpath.train.rundir import TIME_FIELDS
    with open(run_dir / "log.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in csv.DictReader(f)]


def test_log_has_grad_norms_and_throughput(reference_run: Path):
    rows = _untimed_log(reference_run)
    for row in rows:
        assert all(float(row[f"grad_{g}"]) > 0 for g in ("image", "text", "classifier")), row
    import csv
    with open(reference_run / "log.csv") as f:
        assert all(float(r["samples_s"]) > 0 for r in csv.DictReader(f))


def test_caption_epochs_adamw_cosine_warmup_clip(tmp_path: Path):
    cfg = SMOKE.replace(epoch_unit="captions", optimizer="adamw", lr=1e-3, stage2_lr=5e-4,
                        schedule="cosine", warmup_epochs=0.5, grad_clip=5.0, batch_size=32)
    metrics = train(cfg, tmp_path / "run", log=lambda *a: None).metrics
    assert 0 <= metrics["final"]["rsum"] <= 600
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (stored["optimizer"], stored["schedule"], stored["epoch_unit"]) == ("adamw", "cosine", "captions")
    lrs = [float(r["lr"]) for r in _untimed_log(tmp_path / "run")]
    assert lrs[-1] < 5e-4 * 0.05          # cosine: near 0 at the end of each phase


def test_torchrun_two_gloo_processes(tmp_path: Path):
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dualpath.train", "--preset", "smoke", "--run-dir", str(run_dir),
           "--set", "progress=false", "num_threads=1", "device=cpu"]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    m = _metrics(run_dir)
    assert all(0 <= m["final"][k] <= 100 for k in ("i2t_r10", "t2i_r10"))


def test_checkpoint_encodes_identically_in_a_fresh_process(reference_run: Path, tmp_path: Path, flickr8k):
    ckpt = reference_run / "best_stage2.pt"
    corpus = flickr8k.select("mini_test")
    images = [str(corpus.image_path(i)) for i in range(3)]
    texts = corpus.captions[:4]
    enc = dualpath.load_checkpoint(ckpt)
    here_img, here_txt = enc.encode_image(images), enc.encode_text(texts)
    script = ("import sys, json, torch, dualpath\n"
              "enc = dualpath.load_checkpoint(sys.argv[1])\n"
              "a = json.loads(sys.argv[2]); b = json.loads(sys.argv[3])\n"
              "torch.save({'img': enc.encode_image(a), 'txt': enc.encode_text(b)}, sys.argv[4])\n")
    out = tmp_path / "vectors.pt"
    subprocess.run([sys.executable, "-c", script, str(ckpt), json.dumps(images), json.dumps(texts),
                    str(out)], check=True, env=ENV, timeout=300)
    there = torch.load(out, weights_only=True)
    assert torch.equal(here_img, there["img"]) and torch.equal(here_txt, there["txt"])
    assert here_img.shape == (3, SMOKE.feature_dim)
    assert torch.allclose(here_img.norm(dim=1), torch.ones(3), atol=1e-5)
    # the search API ranks a caption's own image first more often than chance
    index = enc.index(images=images, captions=texts)
    hits = index.search_images(texts[0], k=3)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[-1].score


# ------------------------------------------------------------------------------ bad input
def test_checkpoint_with_other_vocabulary_is_refused(reference_run: Path, tmp_path: Path):
    state = torch.load(reference_run / "best_stage2.pt", weights_only=True)
    vocab = state["vocab"]
    vocab["words"], vocab["counts"] = vocab["words"][:-5], vocab["counts"][:-5]
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="vocabulary size"):
        dualpath.load_checkpoint(bad)


def test_checkpoint_with_other_class_count_is_refused(reference_run: Path, tmp_path: Path):
    state = torch.load(reference_run / "best_stage2.pt", weights_only=True)
    state["n_classes"] = state["n_classes"] + 1
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="number of classes"):
        dualpath.load_checkpoint(bad)


def test_truncated_checkpoint_is_refused(reference_run: Path, tmp_path: Path):
    bad = tmp_path / "trunc.pt"
    bad.write_bytes((reference_run / "last.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        dualpath.load_checkpoint(bad)


def test_config_unknown_key_and_wrong_type(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown key.*'lrate'"):
        Config.from_dict({"lrate": 0.1})
    with pytest.raises(ConfigError, match="'stage1_epochs' must be int"):
        Config.from_dict({"stage1_epochs": "ten"})
    with pytest.raises(ConfigError, match="'negatives'"):
        preset("cpu", negatives="hardest-ever")
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text('{"batch_size": 32, "droput": 0.5}')
    out = subprocess.run(_train_cmd(tmp_path / "r", "--config", str(cfg_file)), env=ENV,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "droput" in out.stderr


def test_a_config_file_sets_only_the_keys_it_names(tmp_path: Path):
    from dualpath.train.__main__ import _config_file

    path = tmp_path / "c.json"
    path.write_text('{"batch_size": 8}')
    cfg = preset("cpu", **_config_file(str(path)))
    assert cfg.batch_size == 8 and cfg.optimizer == "adam" and cfg.stage1_epochs == preset("cpu").stage1_epochs
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        _config_file(str(path))
    path.write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        _config_file(str(path))


def test_data_root_without_images(tmp_path: Path):
    root = tmp_path / "root" / "flickr8k_224"
    (root / "splits").mkdir(parents=True)
    shared = dualpath.paths.find_data_root() / "flickr8k_224"
    for name in ("captions.tsv",):
        (root / name).write_text((shared / name).read_text())
    for name in ("train.txt", "val.txt", "test.txt"):
        (root / "splits" / name).write_text((shared / "splits" / name).read_text())
    (root / "images").mkdir()
    with pytest.raises(DataError, match=r"splits/\w+\.txt:1: split names image .* which is not in"):
        dualpath.data.load_corpus("flickr8k", tmp_path / "root")


def test_full_disk_keeps_earlier_checkpoint(reference_run: Path, tmp_path: Path, monkeypatch):
    target = tmp_path / "last.pt"
    target.write_bytes((reference_run / "last.pt").read_bytes())
    before = target.read_bytes()

    def no_space(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(CheckpointError, match="disk is full"):
        ckpt_io.save(target, {"model": {}})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]   # no temporary file left behind


def test_resume_refuses_a_different_config(reference_run: Path, tmp_path: Path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    with pytest.raises(ConfigError, match="different config"):
        train(SMOKE.replace(margin=0.5), run_dir, log=lambda *a: None)


def _as_written_before_the_recipe_was_a_config_key(path: Path) -> None:
    """Rewrite a checkpoint as runs wrote it then: the recipe beside the config, not in it."""
    state = torch.load(path, weights_only=True)
    state["recipe"] = state["config"].pop("recipe")
    torch.save(state, path)


def test_a_run_written_before_the_recipe_was_a_config_key_resumes_and_opens(reference_run: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    train(SMOKE, run_dir, until="stage1", log=lambda *a: None)
    for name in ("last.pt", "best_stage1.pt", "end_stage1.pt"):
        _as_written_before_the_recipe_was_a_config_key(run_dir / name)
    # config.json then held the recipe spliced in beside the config keys: the very file written now
    assert json.loads((run_dir / "config.json").read_text())["recipe"] == "paper"
    assert train(SMOKE, run_dir, log=lambda *a: None).metrics == _metrics(reference_run)
    run = open_run(run_dir, log=lambda *a: None)
    assert run.cfg == SMOKE and run.metrics == _metrics(reference_run)
    # a recipe other than the default is read from beside the config, in a checkpoint and in config.json
    _as_written_before_the_recipe_was_a_config_key(run_dir / "last.pt")
    last = torch.load(run_dir / "last.pt", weights_only=True)
    torch.save({**last, "recipe": "ranking"}, run_dir / "last.pt")
    with pytest.raises(ConfigError, match="different config or recipe"):
        RunDir(run_dir, SMOKE).resume_state()
    assert RunDir(run_dir, SMOKE.replace(recipe="ranking")).resume_state()["phase"] == 1
    (run_dir / "config.json").write_text(json.dumps({**SMOKE.to_dict(), "recipe": "ranking"}))
    run = open_run(run_dir, log=lambda *a: None)
    assert run.cfg.recipe == "ranking" and tuple(run.phases[0].lambdas[1:]) == (0.0, 0.0)


def test_run_directory_names_stay_those_of_the_runs_on_disk(tmp_path: Path):
    """python -m dualpath.train's default names hash the config without the recipe (which they
    name); the readable names of the pages and arms hash what differs from the preset. Pinned
    to the names the code gave before the recipe became a config key."""
    cpu = preset("cpu")
    assert run_dir_for(cpu, tmp_path) == tmp_path / "flickr8k-paper-d44e01b780-seed0"
    assert run_dir_for(cpu.replace(recipe="ranking"), tmp_path).name == "flickr8k-ranking-d44e01b780-seed0"
    assert run_dir_for(preset("cpu", stage2_epochs=3, seed=1, recipe="joint")).name == "flickr8k-joint-462dba4404-seed1"
    assert run_dir_for(preset("paper")).name == "flickr30k_official-paper-f0b8f07040-seed0"
    assert run_dir_for(cpu, tmp_path, "cpu") == tmp_path / "cpu-efficientnet_lite0-seed0"
    assert run_dir_for(preset("cpu", stage2_epochs=10), tmp_path, "cpu").name == "cpu-efficientnet_lite0-seed0-epochs5+10"
    assert run_dir_for(preset("cpu", dropout=0.3, margin=0.1), tmp_path, "cpu").name == \
        "cpu-efficientnet_lite0-seed0-0cd16d79c2"
    assert run_dir_for(preset("cpu", dataset="cuhk_pedes", protocol="cuhk"), tmp_path, "cpu").name == \
        "cuhk_pedes-cpu-efficientnet_lite0-seed0"
    assert run_dir_for(preset("cpu", backbone="resnet50", seed=2, device="cpu"), tmp_path, "cpu").name == \
        "cpu-resnet50-seed2"


def test_the_book_recipe_learns_clearly_above_chance(tmp_path: Path):
    """A learning floor for the method, not the plumbing: the cpu recipe on the mini split, a few
    epochs, must retrieve on the validation split far better than random embeddings do."""
    from dualpath.evaluate import evaluate_embeddings
    from dualpath.train.inputs import prepare

    cfg = preset("cpu", subset="mini", text_width=0.125, feature_dim=256, stage1_epochs=10,
                 stage2_epochs=6, test_shift="center", batch_size=32, progress=False)
    # fill the feature cache first: a run that extracts it trains to other numbers than one that
    # reads it (a known determinism gap, #11), and this floor is calibrated on a run that reads it
    prepare(cfg, log=lambda *a: None)
    train(cfg, tmp_path / "run", log=lambda *a: None)
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    header = log[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in log[1:]]
    best = {phase: max(float(r["val_rsum"]) for r in rows if r["phase"] == phase) for phase in ("stage1", "stage2")}
    val = prepare(cfg, log=lambda *a: None).splits["val"].corpus   # from the cache
    gen = torch.Generator().manual_seed(0)
    chance = torch.tensor([evaluate_embeddings(torch.randn(val.n_images, 64, generator=gen),
                                               torch.randn(len(val.caption_image), 64, generator=gen),
                                               val.caption_image, "1k")["rsum"] for _ in range(20)])
    # measured here: chance 60.4 +- 11.3 (mini val, 20 draws); Stage I 116.0, Stage II 131.2
    floor = float(chance.mean() + 4 * chance.std())
    assert best["stage1"] > floor, (best, floor)          # Stage I alone already aligns the branches
    assert best["stage2"] > floor, (best, floor)
