"""dspo-train --level image (Diffusion-DPO on whole images) and the pairs config, and
dspo-eval --compare."""

from __future__ import annotations

import argparse
import json
import math

import pyarrow.parquet as pq
import pytest
import torch
from diffusers import UNet2DModel

from tests.dspo_fixtures import write_dspo_dataset, write_pairs_dataset
from tests.tiny_models import save_tiny_sr
from tests.tolerances import FLOAT32_RTOL, equal_models_dpo_atol, sum_atol
from trainer.data import collate_dspo, load_dspo_split, load_split
from trainer.evaluate import main as evaluate_main
from trainer.levels import collate_pairs, collate_whole_image, whole_image_choice
from trainer.logs import TrainingLog
from trainer.loss import dspo_loss
from trainer.models import TinyTrainable
from trainer.train import main as train_main
from trainer.train import training_step


def test_whole_image_winner_and_loser_are_the_area_weighted_net_wins():
    # Net wins: c0 = 0.5 - 0.2, c1 = -0.5 + 0.3 + 0.2, c2 = -0.3.
    assert whole_image_choice([0, 1, 1], [1, 2, 0], [0.5, 0.3, 0.2], candidates=3) == (0, 2)
    # A candidate that wins a large instance beats one that wins two small ones.
    assert whole_image_choice([2, 1, 1], [0, 0, 0], [0.6, 0.2, 0.2], candidates=3) == (2, 0)
    # Each candidate wins half the area from the other: no whole-image preference.
    assert whole_image_choice([0, 1], [1, 0], [0.5, 0.5], candidates=2) is None


def whole_image_loss_by_loop(policy, ref, choices, beta):
    """Diffusion-DPO written out: whole-image mean errors, one term per image."""
    total = 0.0
    for b, (win, lose) in enumerate(choices):
        def mean(err, k, b=b):
            return sum(float(v) for v in err[b, k].flatten()) / err[b, k].numel()

        x = -beta / 2 * ((mean(policy, win) - mean(ref, win)) - (mean(policy, lose) - mean(ref, lose)))
        total += math.log1p(math.exp(-x))
    return total / len(choices)


def test_image_level_loss_is_diffusion_dpo_on_whole_images(dspo_dataset, tiny_sr_folder):
    trainable = TinyTrainable(tiny_sr_folder, lora=None)
    # policy != reference, so the loss is not log 2 everywhere; a fixed draw, not the global RNG
    # (whose state depends on which tests and fixtures ran before)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainable.denoiser.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    rows = [load_dspo_split(str(dspo_dataset), "train")[i] for i in range(2)]
    choices = [whole_image_choice(r["win_index"], r["lose_index"], r["weight"], len(r["candidates"])) for r in rows]
    args = argparse.Namespace(condition_dropout=0.0, beta=500.0, sft_weight=0.0, dpo_weight=1.0)

    _, metrics = training_step(trainable, trainable.denoiser, collate_whole_image(rows), torch.Generator().manual_seed(5), args)

    # The same noise draw on the full instance-level batch (noise is drawn per image, not per candidate).
    full = collate_dspo(rows)
    generator = torch.Generator().manual_seed(5)
    encoded = trainable.encode(full.lq, full.candidates, full.texts, generator)
    noise, timesteps, keep = trainable.draw_noise(encoded, generator, 0.0)
    with torch.no_grad():
        policy = trainable.errors(trainable.denoiser, encoded, noise, timesteps, keep)
        with trainable.reference_denoiser() as reference:
            ref = trainable.errors(reference, encoded, noise, timesteps, keep)
    expected = whole_image_loss_by_loop(policy, ref, choices, args.beta)
    assert abs(expected - math.log(2)) > 1e-3
    # float32 against a float64 loop: each logit is beta/2 times four float32 means of errors
    # (of at most their largest value) over a whole latent; -log sigmoid has slope below 1.
    logit_atol = args.beta / 2 * 4 * sum_atol(policy[0, 0].numel(), float(torch.maximum(policy.max(), ref.max())))
    assert metrics["dpo_loss"].item() == pytest.approx(expected, rel=FLOAT32_RTOL, abs=logit_atol)
    # = the instance-level loss with one instance covering the whole image.
    one_instance = torch.ones(2, 1, *policy.shape[-2:], dtype=torch.bool)
    win, lose = (torch.tensor([[c[i]] for c in choices]) for i in (0, 1))
    instance_loss, _ = dspo_loss(policy, ref, one_instance, win, lose, torch.ones(2, 1), args.beta)
    assert metrics["dpo_loss"].item() == pytest.approx(instance_loss.item(), rel=FLOAT32_RTOL, abs=logit_atol)


def test_pairs_rows_put_the_labelled_winner_first(pairs_dataset):
    ds = load_split(str(pairs_dataset), "pairs", "train")
    row = next(r for r in ds if r["label_0"] == 0.0)
    batch = collate_pairs([row], level="image")
    jpg_1 = collate_pairs([{**row, "label_0": 1.0, "jpg_0": row["jpg_1"]}], level="image").candidates[0, 0]
    torch.testing.assert_close(batch.candidates[0, 0], jpg_1)
    assert batch.masks.all() and batch.win.tolist() == [[0]] and batch.lose.tolist() == [[1]]
    assert not collate_pairs([row], level="instance").masks.all()  # one quadrant


def test_image_level_on_the_pairs_config_trains_two_steps(tmp_path, pairs_dataset, tiny_sr_folder):
    out = tmp_path / "out"
    args = [
        "--dataset", str(pairs_dataset), "--dataset_config", "pairs", "--level", "image",
        "--backbone", str(tiny_sr_folder), "--output_dir", str(out), "--max_train_steps", "2",
        "--learning_rate", "1e-3", "--validation_steps", "1", "--validation_images", "2",
        "--validation_seeds", "1", "--report_to", "none",
    ]
    assert train_main(args) == 0
    records = TrainingLog.read(out)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["dpo_loss"] > 0 and r["sft_loss"] > 0 for r in train)
    # Policy = reference at step 1 (default beta 100): log 2 up to the two passes' rounding.
    assert train[0]["dpo_loss"] == pytest.approx(math.log(2), abs=equal_models_dpo_atol(100.0))
    # No HR in pairs: the best step is chosen by the held-out loss, and the weights moved.
    assert [r["step"] for r in records if r["kind"] == "validation"] == [0, 1, 2]
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["args"]["level"] == "image" and summary["args"]["dataset_config"] == "pairs"
    before = UNet2DModel.from_pretrained(tiny_sr_folder / "unet").state_dict()
    after = UNet2DModel.from_pretrained(out / "last" / "unet").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_pairs_without_lq_and_images_without_preference_are_refused(tmp_path, tiny_sr_folder, capsys):
    no_lq = write_pairs_dataset(tmp_path / "no_lq")
    for path in (no_lq / "data" / "pairs").iterdir():
        pq.write_table(pq.read_table(path).drop_columns(["lq"]), path)
    common = ["--backbone", str(tiny_sr_folder), "--max_train_steps", "1", "--validation_steps", "0", "--report_to", "none"]
    code = train_main(["--dataset", str(no_lq), "--dataset_config", "pairs", "--level", "image",
                       "--output_dir", str(tmp_path / "a"), *common])
    assert code == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['lq']" in err and "Traceback" not in err

    def balanced(split, i, row):
        # Two instances, each won by the other candidate: no whole-image winner.
        return {**row, "win_index": [0, 1, 0, 1], "lose_index": [1, 0, 1, 0]}

    ties = write_dspo_dataset(tmp_path / "ties", edit=balanced)
    assert train_main(["--dataset", str(ties), "--level", "image", "--output_dir", str(tmp_path / "b"), *common]) == 2
    assert "no rows with a preference at level 'image'" in capsys.readouterr().err
    # A dataset without the config asked for.
    assert train_main(["--dataset", str(ties), "--dataset_config", "pairs", "--output_dir", str(tmp_path / "c"), *common]) == 2
    assert "has no 'pairs' config" in capsys.readouterr().err


def test_compare_a_checkpoint_with_itself_is_even(tmp_path, dspo_dataset, tiny_sr_folder):
    out = tmp_path / "compare.json"
    args = ["--dataset", str(dspo_dataset), "--compare", str(tiny_sr_folder), str(tiny_sr_folder), "--seeds", "2",
            "--metrics", "psnr,ssim", "--output_json", str(out)]
    assert evaluate_main(args) == 0
    [comparison] = json.loads(out.read_text())["comparisons"]
    assert comparison["instance_comparisons"] == 16  # 2 images x 2 seeds x 4 quadrants
    rate = comparison["instance_win_rate"]
    assert rate["value"] == 0.5 and rate["low"] <= 0.5 <= rate["high"]
    assert all(d["value"] == 0.0 and d["low"] <= 0.0 <= d["high"] for d in comparison["delta"].values())
    assert comparison["metrics_worse_beyond_interval"] == []


def test_compare_of_two_different_models_has_a_real_interval(tmp_path, dspo_dataset, tiny_sr_folder):
    other = save_tiny_sr(tmp_path / "other", seed=1)
    out = tmp_path / "compare.json"
    args = ["--dataset", str(dspo_dataset), "--compare", str(other), str(tiny_sr_folder), "--seeds", "2",
            "--metrics", "psnr", "--output_json", str(out)]
    assert evaluate_main(args) == 0
    result = json.loads(out.read_text())
    [comparison] = result["comparisons"]
    delta = comparison["delta"]["psnr"]
    assert delta["low"] < delta["high"]
    assert delta["value"] == pytest.approx(result["whole_image"]["A"]["psnr"] - result["whole_image"]["B"]["psnr"])
    rate = comparison["instance_win_rate"]
    assert rate["low"] <= rate["value"] <= rate["high"]
