"""The budget planner (mvd_lib/budget.py): batch arithmetic by hand, FLOPs against flops.py and against the
records of finished runs, hours by hand, monotonicity, and the memory estimate against what `bench` measures on
this CPU (in a fresh process, so the peak is this run's)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mvd_lib import budget, flops, profiles, runner
from mvd_lib.config import (image_teacher_config, masked_count, mvd_decoder_config, video_teacher_config,
                            videomae_decoder_config, vit_config)

REPO = Path(__file__).resolve().parents[1]
B = vit_config("vit_base")
K400 = 240_000  # training videos assumed in these tests (any count works; the list is not read)


# ----------------------------------------------------------------------------------------------- batch arithmetic
@pytest.mark.parametrize("total, per_gpu, gpus, accum", [
    (1024, 128, 8, 1), (1024, 32, 8, 4), (1024, 48, 8, 3), (512, 1, 1, 512), (1, 4, 8, 1), (384, 12, 32, 1),
])
def test_accumulation_arithmetic(total, per_gpu, gpus, accum):
    assert budget.accum_steps(total, per_gpu, gpus) == accum
    assert per_gpu * gpus * accum >= total > per_gpu * gpus * (accum - 1)  # the smallest that reaches the total


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_accumulation_refuses_bad_counts(bad):
    with pytest.raises(ValueError, match="gpus must be an integer"):
        budget.accum_steps(1024, 8, bad)


def test_lr_scaling_by_hand():
    """paper_vit_b distillation: base 1.5e-4, min 1e-4, total batch 1024 -> lr 6e-4, min lr 4e-4; a batch that
    overshoots (48 x 8 x 3 = 1152) scales the lr with it, as the reference scales by its real total batch."""
    cfg = profiles.preset("distill", "paper_vit_b")
    cost = budget.model_cost(cfg)
    plan = budget.estimate(cfg, "H100", gpus=8, per_gpu_batch=128, num_samples=K400, cost=cost)
    assert (plan.accum_steps, plan.effective_batch) == (1, 1024)
    assert plan.lr == pytest.approx(1.5e-4 * 1024 / 256) == pytest.approx(6e-4)
    assert plan.min_lr == pytest.approx(4e-4)
    plan = budget.estimate(cfg, "H100", gpus=8, per_gpu_batch=48, num_samples=K400, cost=cost)
    assert (plan.accum_steps, plan.effective_batch) == (3, 1152)
    assert plan.lr == pytest.approx(1.5e-4 * 1152 / 256)
    plan = budget.estimate(cfg, "RTX 4090", gpus=1, per_gpu_batch=16, num_samples=K400, cost=cost)
    assert (plan.accum_steps, plan.effective_batch, plan.lr) == (64, 1024, pytest.approx(6e-4))
    assert plan.steps_per_epoch == K400 // 16 // 64


# ----------------------------------------------------------------------------------------------- FLOPs
def test_flops_per_sample_equal_flops_py_for_vit_b():
    """The planner reads the objectives; here the same counts are composed by hand from flops.py."""
    vis = B.num_tokens - masked_count(B.grid, 0.9)
    assert vis == 160
    dec = videomae_decoder_config(B)
    videomae = 2 * 3 * (flops.encoder_macs(B, vis) + flops.decoder_macs(dec, B.width, vis, B.num_tokens, B.tubelet_dim))
    assert budget.model_cost(profiles.preset("pretrain-video", "paper_vit_b")).flops_per_sample == videomae

    student = flops.student_macs(B, mvd_decoder_config(B), vis, {"img": 768, "vid": 768})
    teachers = (flops.image_encoder_macs(image_teacher_config("vit_base", B), B.grid[0])
                + flops.encoder_macs(video_teacher_config("vit_base", B)))
    cost = budget.model_cost(profiles.preset("distill", "paper_vit_b"))
    assert cost.flops_per_sample == flops.train_step_flops(student, teachers)
    assert cost.flops_once_per_sample == 0  # real videos: teacher targets are computed every step
    assert cost.tokens == 1568 and cost.visible == 160

    finetune = budget.model_cost(profiles.preset("finetune", "paper_vit_b_k400"))
    assert finetune.flops_per_sample == 2 * 3 * flops.encoder_macs(B) * 2  # repeated augmentation x2
    assert finetune.copies == 2


def test_a_missing_teacher_costs_nothing():
    both = budget.model_cost(profiles.preset("distill", "paper_vit_b"))
    vid = budget.model_cost(profiles.preset("distill", "paper_vit_b_vid"))
    image_teacher = flops.image_encoder_macs(image_teacher_config("vit_base", B), B.grid[0])
    student_img_branch = flops.decoder_macs(mvd_decoder_config(B), B.width, 160, B.num_tokens, 768)
    assert both.flops_per_sample - vid.flops_per_sample == 2 * image_teacher + 2 * 3 * student_img_branch
    assert vid.frozen_params < both.frozen_params and len(vid.stacks) == 2  # encoder + one decoder


def test_whole_run_flops_and_steps_equal_the_records_of_finished_runs(tmp_path):
    """smoke runs on this CPU: the planner's FLOPs equal what the runs recorded (distillation with cached teacher
    targets: train_flops + target_flops), and its steps and peak lr equal theirs."""
    p = runner.profile("smoke")
    kw = dict(root=tmp_path / "runs", progress=False)
    for verb, variant in (("pretrain-video", ""), ("distill", ""), ("distill", "vid"), ("finetune", "motion")):
        run = runner.run(verb, p, variant, **kw)
        plan = budget.estimate(run.config, budget.DEVICES["H100"], gpus=1, per_gpu_batch=run.config.optim.batch_size)
        m = run.metrics
        recorded = m["train_flops"] + m.get("target_flops", 0.0)
        assert plan.total_flops == pytest.approx(recorded, rel=1e-12), (verb, variant)
        assert (plan.steps_per_epoch, plan.total_steps) == (m["steps_per_epoch"], m["steps"]), (verb, variant)
        assert plan.lr == pytest.approx(max(m["lr_curve"]), rel=1e-9), (verb, variant)


# ----------------------------------------------------------------------------------------------- hours
def test_hours_by_hand():
    cfg = profiles.preset("distill", "paper_vit_s")
    plan = budget.estimate(cfg, "A100 80GB", gpus=16, per_gpu_batch=64, mfu=0.3, num_samples=K400)
    steps = 400 * (K400 // 16 // 64)
    assert plan.total_steps == steps
    assert plan.total_flops == pytest.approx(steps * 1024 * plan.flops_per_step / 1024)
    assert plan.hours == pytest.approx(plan.total_flops / (16 * 312e12 * 0.3) / 3600)
    assert plan.gpu_hours == pytest.approx(16 * plan.hours)
    assert budget.implied_mfu(plan, plan.hours) == pytest.approx(0.3)
    assert budget.implied_mfu(plan, 2 * plan.hours) == pytest.approx(0.15)


def test_more_gpus_are_faster_and_a_bigger_micro_batch_needs_more_memory():
    cfg = profiles.preset("distill", "paper_vit_b")
    cost = budget.model_cost(cfg)
    hours = [budget.estimate(cfg, "H100", gpus=g, per_gpu_batch=32, num_samples=K400, cost=cost).hours
             for g in (1, 2, 8, 32)]
    assert hours == sorted(hours, reverse=True) and len(set(hours)) == 4
    accum = [budget.estimate(cfg, "H100", gpus=g, per_gpu_batch=32, num_samples=K400, cost=cost).accum_steps
             for g in (1, 2, 8, 32)]
    assert accum == [32, 16, 4, 1]
    mem = [budget.estimate(cfg, "H100", gpus=8, per_gpu_batch=b, num_samples=K400, cost=cost).memory
           for b in (8, 16, 32, 64)]
    assert [m.total for m in mem] == sorted(m.total for m in mem)
    assert mem[1].activations == pytest.approx(2 * mem[0].activations) and mem[0].static == mem[3].static
    fp32 = budget.estimate(cfg, "H100", gpus=8, per_gpu_batch=8, dtype="fp32", num_samples=K400, cost=cost)
    assert fp32.memory.activations == pytest.approx(2 * mem[0].activations)  # 4 bytes instead of 2
    ckpt = budget.estimate(cfg, "H100", gpus=8, per_gpu_batch=8, checkpointing=True, num_samples=K400, cost=cost)
    assert ckpt.memory.activations == pytest.approx(mem[0].activations / budget.ACT_ELEMENTS)


def test_default_micro_batch_is_the_largest_halving_that_fits():
    cfg = profiles.preset("distill", "paper_vit_l")
    cost = budget.model_cost(cfg)
    plan = budget.estimate(cfg, "RTX 4090", gpus=2, num_samples=K400, cost=cost)
    assert plan.fits and plan.per_gpu_batch < 512 // 2
    bigger = budget.estimate(cfg, "RTX 4090", gpus=2, per_gpu_batch=2 * plan.per_gpu_batch, num_samples=K400, cost=cost)
    assert not bigger.fits
    assert plan.effective_batch == 512 and plan.accum_steps == 512 // (2 * plan.per_gpu_batch)
    assert budget.fitting_batch(cost, 512, 2, budget.DEVICES["RTX 4090"].memory_gib) == plan.per_gpu_batch
    assert budget.fitting_batch(cost, 512, 2, 1e6) == 256 and budget.fitting_batch(cost, 512, 2, 0.0) == 1


def test_mistakes_are_named():
    cfg = profiles.preset("distill", "paper_vit_b")
    with pytest.raises(ValueError, match="unknown device 'TPU'"):
        budget.estimate(cfg, "TPU", num_samples=K400)
    with pytest.raises(ValueError, match="pass num_samples"):
        budget.estimate(cfg, "H100")
    with pytest.raises(ValueError, match="mfu must be in"):
        budget.estimate(cfg, "H100", mfu=1.5, num_samples=K400)
    with pytest.raises(ValueError, match="does not train"):
        budget.model_cost(profiles.preset("probe", "smoke"))
    with pytest.raises(ValueError, match="no full optimizer step"):
        budget.estimate(cfg, "H100", gpus=8, num_samples=100)


def test_table_states_the_numbers_and_how():
    plan = budget.estimate(profiles.preset("distill", "paper_vit_b"), "H100", gpus=8, per_gpu_batch=128,
                           num_samples=K400)
    table = plan.table().set_index("quantity")
    assert table.loc["per-GPU batch x GPUs x accumulation", "value"] == "128 x 8 x 1 = 1024"
    assert table.loc["lr (base -> scaled)", "value"] == "0.00015 -> 0.0006"
    assert "MFU 0.4" in table.loc["rate per GPU", "how"]
    assert plan.summary()["hours"] == plan.hours and plan.summary()["fits"] == plan.fits


# ----------------------------------------------------------------------------------------------- this CPU
def test_a_measured_device_uses_its_rate_without_mfu():
    from mvd_lib.bench import bench_run

    result = bench_run("distill", "smoke", device="cpu", batch=4, steps=1, warmup=0)
    dev = budget.measured_device(result)
    assert dev.measured and dev.fp32_tflops == result.tflops > 0
    cfg = profiles.preset("distill", "smoke")
    plan = budget.estimate(cfg, dev, per_gpu_batch=8)
    assert plan.mfu == 1.0 and plan.dtype == "fp32" and plan.measured
    assert plan.hours == pytest.approx(plan.total_flops / (result.tflops * 1e12) / 3600)
    assert "measured by bench" in plan.table().set_index("quantity").loc["rate per GPU", "how"]


MEASURE = textwrap.dedent("""
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from mvd_lib import budget, profiles
    from mvd_lib.bench import bench_run
    verb, preset, batch, attention = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    cost = budget.model_cost(profiles.preset(verb, preset))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (Linux: KiB)
    result = bench_run(verb, preset, device="cpu", batch=batch, steps=1, warmup=1, attention=attention)
    print(json.dumps({"measured": result.peak_mem_gb - before,
                      "estimate": budget.memory(cost, batch, 1, "fp32", attention).total}))
""")


def _measure(verb: str, preset: str, batch: int, attention: str = "sdpa") -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, verb, preset, str(batch), attention], capture_output=True,
                         text=True, cwd=REPO, check=True, env={"OMP_NUM_THREADS": "1", **_env()})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"PYTHONPATH": str(REPO)}


@pytest.mark.benchmark
def test_memory_estimate_against_the_peak_bench_measures_on_cpu():
    """The estimate counts what the backward pass keeps; the measured peak (process RSS over what it was before
    the model was built) adds the backward pass's transient buffers and the allocator's slack, but can also
    reuse memory the process held before (RSS is a high-water mark). The measurement must lie within 0.75 and
    2 times the estimate, and grow with the batch as the estimate does (measured on a shared 2-core CPU:
    0.86-1.6 times the estimate)."""
    small, big = _measure("distill", "quick", 8), _measure("distill", "quick", 24)
    math = _measure("distill", "quick", 16, "math")
    for name, m in (("sdpa, batch 8", small), ("sdpa, batch 24", big), ("math, batch 16", math)):
        print(f"distill quick {name}: estimate {m['estimate']:.3f} GiB, measured {m['measured']:.3f} GiB "
              f"({m['measured'] / m['estimate']:.2f}x)")
    for m in (small, big, math):
        assert 0.75 * m["estimate"] <= m["measured"] <= 2 * m["estimate"], m
    growth = (big["measured"] - small["measured"]) / (big["estimate"] - small["estimate"])
    assert 1.0 <= growth <= 2.0, (small, big)
    for key in ("estimate", "measured"):  # explicit attention keeps its softmax: more than sdpa at batch 16
        sdpa_16 = small[key] + (big[key] - small[key]) * (16 - 8) / (24 - 8)
        assert math[key] > sdpa_16, (key, math, sdpa_16)
