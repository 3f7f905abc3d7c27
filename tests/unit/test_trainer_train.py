"""The training step on real (tiny) backbones: gradients point the right way, LoRA keeps its
reference, outputs load back as backbones, and dspo-infer writes what it should."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from diffusers import StableDiffusionUpscalePipeline
from PIL import Image

from stages.backbones import SampleRequest
from tests.tiny_models import save_tiny_upscaler
from tests.tolerances import FLOAT32_RTOL, equal_models_dpo_atol, sum_atol
from trainer.data import collate_dspo, load_dspo_split
from trainer.evaluate import best_instance_composite
from trainer.evaluate import main as evaluate_main
from trainer.infer import main as infer_main
from trainer.logs import TrainingLog
from trainer.loss import dspo_loss
from trainer.models import LoraSettings, TinyTrainable, load_sampling_backbone, load_trainable
from trainer.train import main as train_main
from trainer.train import training_step


def fixed_loss(trainable, batch, beta):
    """DSPO loss and accuracy of the current policy under one fixed noise draw."""
    generator = torch.Generator().manual_seed(0)
    encoded = trainable.encode(batch.lq, batch.candidates, batch.texts, generator)
    noise, timesteps, keep = trainable.draw_noise(encoded, generator, condition_dropout=0.0)
    policy = trainable.errors(trainable.denoiser, encoded, noise, timesteps, keep)
    with torch.no_grad(), trainable.reference_denoiser() as reference:
        ref = trainable.errors(reference, encoded, noise, timesteps, keep)
    return dspo_loss(policy, ref, batch.masks, batch.win, batch.lose, batch.weights, beta)


def test_a_few_steps_raise_implicit_accuracy_and_lower_the_loss(dspo_dataset, tiny_sr_folder):
    torch.manual_seed(0)
    trainable = TinyTrainable(tiny_sr_folder, lora=None)
    ds = load_dspo_split(str(dspo_dataset), "train")
    batch = collate_dspo([ds[0], ds[1]])
    beta = 200.0
    loss0, metrics0 = fixed_loss(trainable, batch, beta)
    # Policy == reference at the start: every instance sits at log(2), no preference yet.
    # Policy == reference: log 2 per unit of weight, up to the two passes' rounding.
    unit_weights = batch.weights.sum(1).mean().item()
    assert loss0.item() == pytest.approx(math.log(2) * unit_weights, abs=equal_models_dpo_atol(beta, unit_weights))
    optimizer = torch.optim.Adam(trainable.trainable_parameters(), lr=1e-3)
    for _ in range(8):
        loss, _ = fixed_loss(trainable, batch, beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss1, metrics1 = fixed_loss(trainable, batch, beta)
    assert loss1.item() < loss0.item() - 0.05
    assert metrics1["implicit_acc"].item() > 0.5
    assert metrics1["reward_margin"].item() > metrics0["reward_margin"].item()


def test_all_candidates_of_an_image_share_noise_and_timestep(dspo_dataset, tiny_sr_folder):
    trainable = TinyTrainable(tiny_sr_folder, lora=None)
    ds = load_dspo_split(str(dspo_dataset), "train")
    batch = collate_dspo([ds[0]])
    # Three identical candidates must get identical errors: same noise, same timestep.
    same = batch.candidates[:, :1].expand_as(batch.candidates).contiguous()
    encoded = trainable.encode(batch.lq, same, batch.texts, torch.Generator().manual_seed(1))
    noise, timesteps, keep = trainable.draw_noise(encoded, torch.Generator().manual_seed(1), 0.0)
    errors = trainable.errors(trainable.denoiser, encoded, noise, timesteps, keep)
    assert errors.shape == (1, 3, 32, 32)  # HR pixels: the tiny model's error is pixel-shuffled back
    torch.testing.assert_close(errors[:, 0], errors[:, 1])
    torch.testing.assert_close(errors[:, 0], errors[:, 2])


def test_lora_on_a_tiny_sd_upscaler(tmp_path, dspo_dataset):
    folder = save_tiny_upscaler(tmp_path / "upscaler")
    out = tmp_path / "out"
    args = [
        "--dataset", str(dspo_dataset), "--backbone", str(folder), "--output_dir", str(out), "--use_lora",
        "--lora_rank", "4", "--max_train_steps", "3", "--learning_rate", "1e-2", "--checkpointing_steps", "3",
        "--validation_steps", "3", "--validation_images", "1", "--validation_seeds", "1", "--sample_steps", "2",
    ]
    assert train_main(args) == 0
    records = TrainingLog.read(out)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in train)
    # Only the LoRA-targeted attention weights changed (the adapters are merged into the saved UNet).
    original = StableDiffusionUpscalePipeline.from_pretrained(folder)
    trained = StableDiffusionUpscalePipeline.from_pretrained(out / "last")
    assert (out / "last" / "lora" / "adapter_config.json").is_file()
    changed = [
        name for name, p in trained.unet.named_parameters()
        if not torch.equal(p, dict(original.unet.named_parameters())[name])
    ]
    assert changed and all(any(t in name for t in ("to_q", "to_k", "to_v", "to_out")) for name in changed)
    # The text encoder and VAE are untouched.
    for name, p in trained.text_encoder.named_parameters():
        assert torch.equal(p, dict(original.text_encoder.named_parameters())[name])
    # And the output loads as the sample stage's backbone and samples 4x.
    backbone = load_sampling_backbone(str(out / "last"), torch.device("cpu"))
    sr = backbone.sample(torch.rand(1, 3, 8, 8), SampleRequest(["a photo"], [""], [0], steps=2, guidance=1.0))
    assert sr.shape == (1, 3, 32, 32)


def test_lora_reference_is_the_model_with_adapters_disabled(tmp_path, dspo_dataset):
    folder = save_tiny_upscaler(tmp_path / "upscaler")
    lora = LoraSettings(rank=4, alpha=4.0, target_modules=("to_q", "to_k", "to_v", "to_out.0"))
    trainable = load_trainable(str(folder), lora)
    assert trainable.reference is None  # no second copy
    plain = load_trainable(str(folder), None)
    ds = load_dspo_split(str(dspo_dataset), "train")
    batch = collate_dspo([ds[0]])
    # LoRA starts as a no-op (B = 0); give the adapters weights so policy and reference differ.
    with torch.no_grad():
        for name, p in trainable.denoiser.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    generator = torch.Generator().manual_seed(3)
    encoded = trainable.encode(batch.lq, batch.candidates, batch.texts, generator)
    noise, timesteps, keep = trainable.draw_noise(encoded, generator, 0.0)
    with torch.no_grad():
        with trainable.reference_denoiser() as reference:
            ref = trainable.errors(reference, encoded, noise, timesteps, keep)
        original = plain.errors(plain.denoiser, encoded, noise, timesteps, keep)
        policy = trainable.errors(trainable.denoiser, encoded, noise, timesteps, keep)
    torch.testing.assert_close(ref, original)
    assert not torch.allclose(policy, ref)  # outside the block the adapters are active
    assert ref.shape == (1, 3, 8, 8)  # latent pixels; the loss pools the 32x32 masks to this size


def test_output_folder_is_the_best_validated_model_and_loads_as_a_backbone(tmp_path, dspo_dataset, tiny_sr_folder, capsys,
                                                                           monkeypatch):
    out = tmp_path / "out"
    args = [
        "--dataset", str(dspo_dataset), "--backbone", str(tiny_sr_folder), "--output_dir", str(out), "--max_train_steps", "2",
        "--validation_steps", "1", "--validation_seeds", "1", "--checkpointing_steps", "2", "--learning_rate", "1e-3",
    ]
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # this test looks at the bar
    assert train_main(args) == 0
    err = capsys.readouterr().err
    # A step bar with the loss and tqdm's ETA, and a line before each validation, the first
    # one (which samples the reference too) saying so.
    assert "dspo-train" in err and "2/2" in err and "loss=" in err and "<" in err
    announced = [line for line in err.splitlines() if "validation at step" in line and "sampling" in line]
    assert [line.split(":")[0].split("\r")[-1] for line in announced] == [f"validation at step {s}" for s in (0, 1, 2)]
    assert "the reference's samples too" in announced[0] and "reference" not in announced[1]
    summary = json.loads((out / "training_summary.json").read_text())
    validations = [r for r in TrainingLog.read(out) if r["kind"] == "validation"]
    assert [r["step"] for r in validations] == [0, 1, 2]
    best = max(validations, key=lambda r: r["psnr"])
    assert summary["best_step"] == best["step"]
    for name in ("model_index.json", "unet/diffusion_pytorch_model.safetensors"):
        assert (out / name).read_bytes() == (out / "best" / name).read_bytes()
    assert load_sampling_backbone(str(out), torch.device("cpu")).scale == 4
    # The trained model keeps the data space it was trained in (a copy that lost
    # signal_scaled_input sampled 14 dB below its reference).
    data_space = ("residual_scale", "signal_scaled_input")
    saved, source = (json.loads((folder / "model_index.json").read_text()) for folder in (out, tiny_sr_folder))
    assert {k: saved[k] for k in data_space} == {k: source[k] for k in data_space} == {"residual_scale": 0.08, "signal_scaled_input": True}


def test_infer_writes_one_output_per_input_at_the_right_size(tmp_path, tiny_sr_folder):
    inputs = tmp_path / "in"
    inputs.mkdir()
    sizes = {"wide": (12, 8), "square": (8, 8)}
    for name, size in sizes.items():
        Image.new("RGB", size, (120, 30, 200)).save(inputs / f"{name}.png")
    out = tmp_path / "sr"
    code = infer_main(["--input_path", str(inputs), "--output_path", str(out), "--checkpoint", str(tiny_sr_folder), "--steps", "2"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["square.png", "wide.png"]
    for name, (width, height) in sizes.items():
        with Image.open(out / f"{name}.png") as image:
            assert image.size == (4 * width, 4 * height)
    assert infer_main(["--input_path", str(tmp_path / "nothing"), "--output_path", str(out)]) == 2


def test_eval_of_the_reference_against_itself_is_all_ties(tmp_path, dspo_dataset, tiny_sr_folder):
    out = tmp_path / "eval.json"
    args = [
        "--dataset", str(dspo_dataset), "--checkpoint", str(tiny_sr_folder), "--reference", str(tiny_sr_folder),
        "--seeds", "1", "--metrics", "psnr,ssim", "--output_json", str(out),
    ]
    assert evaluate_main(args) == 0
    result = json.loads(out.read_text())
    # 2 images x 1 seed: too few units for a 95% interval, and said so (at the start and in the table).
    assert result["interval_units"] == 2 and "only 2 (image, seed) unit(s)" in result["warnings"][0]
    [comparison] = result["comparisons"]
    assert (comparison["a"], comparison["b"]) == ("trained", "reference")
    assert result["images"] == 2 and comparison["instance_comparisons"] == 8  # 2 images x 4 quadrants x 1 seed
    assert comparison["instance_ties"] == 8 and comparison["instance_win_rate"]["value"] == 0.5
    assert {n: d["value"] for n, d in comparison["delta"].items()} == {"psnr": 0.0, "ssim": 0.0}
    assert comparison["metrics_worse"] == [] and comparison["metrics_worse_beyond_interval"] == []
    # One seed: the mean of the reference's samples and its best sample per instance are that sample.
    for label in ("reference_mean", "reference_best_instances"):
        assert {n: d["value"] for n, d in result["headroom_over_reference"][label].items()} == {"psnr": 0.0, "ssim": 0.0}
    # Bicubic against HR is computed too (the synthetic LQ is HR's bicubic downscale).
    assert result["whole_image"]["bicubic"]["psnr"] > 20


def test_best_instance_composite_takes_each_instance_from_its_closest_sample():
    generator = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 8, 8, generator=generator)
    samples = hr.repeat(3, 1, 1, 1) + 0.1 * torch.randn(3, 3, 8, 8, generator=generator)
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, :4], masks[1, 4:, :4], masks[2, 4:, 4:] = True, True, True
    composite = best_instance_composite(samples, hr, masks.numpy())
    for mask in masks:
        errors = [float(((s - hr[0]) ** 2).mean(dim=0)[mask].mean()) for s in samples]
        best = min(range(3), key=errors.__getitem__)
        torch.testing.assert_close(composite[0][:, mask], samples[best][:, mask])
    # Never worse than any single sample.
    assert all(((composite - hr) ** 2).mean() <= ((s - hr[0]) ** 2).mean() for s in samples)


@pytest.mark.parametrize("dpo_weight", [0.0, 1.0])
def test_dpo_weight_scales_the_preference_term(dspo_dataset, tiny_sr_folder, dpo_weight):
    trainable = TinyTrainable(tiny_sr_folder, lora=None)
    batch = collate_dspo([load_dspo_split(str(dspo_dataset), "train")[0]])
    args = argparse.Namespace(condition_dropout=0.0, beta=100.0, sft_weight=3.0, dpo_weight=dpo_weight)
    loss, metrics = training_step(trainable, trainable.denoiser, batch, torch.Generator().manual_seed(0), args)
    expected = dpo_weight * metrics["dpo_loss"] + 3.0 * metrics["sft_loss"]
    # One float32 multiply-add of the two terms the step computed.
    assert loss.item() == pytest.approx(expected.item(), rel=FLOAT32_RTOL, abs=sum_atol(2))
    assert metrics["dpo_loss"].item() > 0 and metrics["sft_loss"].item() > 0


def test_sft_only_needs_a_positive_sft_weight(dspo_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--dataset", str(dspo_dataset), "--output_dir", str(tmp_path), "--dpo_weight", "0", "--sft_weight", "0"])
    assert "--dpo_weight and --sft_weight" in capsys.readouterr().err
