"""Recipes, schedules and the training loop: reproducibility, resume equivalence, evaluation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from modgraph.data import load_dataset
from modgraph import train as train_module
from modgraph.train import (
    RECIPES,
    RESUME_FILE,
    SCHEDULES,
    Acceleration,
    Recipe,
    acceleration,
    cpu_has_native_bf16,
    evaluate,
    get_recipe,
    measure_throughput,
    resolve_device,
    snapshot_path,
    train_model,
)


class TinyNet(nn.Module):
    """Pixel-space input (N, 3, 32, 32) -> 10 logits; batch norm and dropout exercise the RNG and buffers."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.1),
            )
            self.head = nn.Linear(16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.3) / 0.4))


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODGRAPH_HOME", str(home))
        return load_dataset("digits", "train", progress=False), load_dataset("digits", "test", progress=False)


@pytest.fixture(scope="module")
def small(digits):
    train, test = digits
    return train.subset(range(0, 1297, 4)), test.subset(range(0, 500, 5))


RECIPE = dataclasses.replace(get_recipe("smoke"), batch_size=32, warmup_epochs=0.5, eval_batch_size=64)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_paper_recipe_is_the_papers():
    r = get_recipe("paper")
    assert (r.lr, r.momentum, r.weight_decay, r.batch_size, r.epochs) == (0.01, 0.9, 0.005, 256, 150)
    assert (r.schedule, r.milestones, r.gamma, r.crop, r.pad, r.flip) == ("multistep", (50, 100), 0.1, True, 4, True)
    assert not r.nesterov and r.label_smoothing == 0


def test_registered_recipes_and_lookup_errors():
    assert set(RECIPES.names()) >= {"paper", "fast", "quick", "smoke"}
    assert get_recipe("fast").epochs <= 30 and get_recipe("FAST") is get_recipe("fast")
    with pytest.raises(ValueError, match="unknown recipe 'slow'; valid choices: fast, paper, quick, smoke, vit_fast, vit_quick, vit_smoke"):
        get_recipe("slow")
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        Recipe("x", epochs=3, batch_size=8, lr=0.1, schedule="step")
    with pytest.raises(ValueError, match="milestones must lie in"):
        dataclasses.replace(get_recipe("paper"), epochs=60)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        dataclasses.replace(get_recipe("fast"), batch_size=0)
    assert dataclasses.replace(get_recipe("fast"), epochs=10).epochs == 10


def test_with_epochs_scales_the_schedule():
    paper = get_recipe("paper")
    assert paper.with_epochs(15).milestones == (5, 10)
    assert paper.with_epochs(2).milestones == (1, 1)  # both decays kept: gamma ** 2 from epoch 1
    assert paper.with_epochs(1).milestones == ()
    assert get_recipe("fast").with_epochs(15).warmup_epochs == pytest.approx(1.0)
    assert paper.with_epochs(150) is paper
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        paper.with_epochs(0)


def test_schedules_shape():
    spe = 10
    fast = get_recipe("fast")
    linear = SCHEDULES.get("linear")(fast, spe)
    warm = int(fast.warmup_epochs * spe)
    assert linear(0) == pytest.approx(1 / warm) and linear(warm - 1) == pytest.approx(1.0)
    assert linear(warm) == pytest.approx(1.0)
    assert linear(fast.epochs * spe - 1) == pytest.approx(1 / (fast.epochs * spe - warm))
    values = [linear(s) for s in range(warm, fast.epochs * spe)]
    assert all(a > b for a, b in zip(values, values[1:]))
    paper = SCHEDULES.get("multistep")(get_recipe("paper"), spe)
    assert [paper(s) for s in (0, 499, 500, 999, 1000, 1499)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = SCHEDULES.get("cosine")(dataclasses.replace(fast, schedule="cosine"), spe)
    assert cosine(warm) == pytest.approx(1.0)
    assert cosine(warm + (fast.epochs * spe - warm) // 2) == pytest.approx(0.5)
    decay_steps = fast.epochs * spe - warm
    assert cosine(fast.epochs * spe - 1) == pytest.approx(0.5 * (1 + math.cos(math.pi * (1 - 1 / decay_steps))))


def test_training_learns_and_reports(digits):
    train, test = digits
    model = TinyNet()
    metrics = train_model(model, train, test, RECIPE, seed=0, device="cpu", progress=False)
    assert metrics["finished"] and metrics["epochs_completed"] == RECIPE.epochs == len(metrics["history"])
    assert metrics["final_test_acc"] > 0.5  # chance is 0.1
    assert metrics["final_test_acc"] == pytest.approx(evaluate(model, test)[0])
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert metrics["images_per_s"] > 0 and metrics["wall_time_s"] > 0
    assert not model.training


def test_same_seed_same_weights_other_seed_differs(small):
    train, test = small
    runs = [TinyNet(), TinyNet(), TinyNet()]
    for model, seed in zip(runs, (3, 3, 4)):
        torch.rand(10)  # the global RNG state differs between runs
        train_model(model, train, test, RECIPE, seed=seed, device="cpu", progress=False)
    assert _same_weights(runs[0], runs[1])
    assert not _same_weights(runs[0], runs[2])


ADAMW = dataclasses.replace(RECIPE, optimizer="adamw", lr=3e-3, weight_decay=0.05, nesterov=False)


EMA = dataclasses.replace(RECIPE, ema=0.9)


@pytest.mark.parametrize("recipe", [RECIPE, ADAMW, EMA], ids=["sgd", "adamw", "ema"])
def test_resume_after_interruption_equals_uninterrupted_run(small, tmp_path, recipe):
    train, test = small
    whole = TinyNet()
    full = train_model(whole, train, test, recipe, seed=1, device="cpu", checkpoint_dir=tmp_path / "a",
                       progress=False)
    first = train_model(TinyNet(), train, test, recipe, seed=1, device="cpu", checkpoint_dir=tmp_path / "b",
                        stop_after_epoch=1, progress=False)
    assert not first["finished"] and first["epochs_completed"] == 1
    torch.rand(10)  # move the global RNG on: dropout must not depend on it
    resumed = TinyNet(seed=99)  # a different initialisation: the checkpoint must overwrite it
    rest = train_model(resumed, train, test, recipe, seed=1, device="cpu", checkpoint_dir=tmp_path / "b",
                       progress=False)
    assert _same_weights(whole, resumed)
    assert rest["finished"] and rest["history"][0] == first["history"][0]
    assert [h["test_acc"] for h in rest["history"]] == [h["test_acc"] for h in full["history"]]
    again = TinyNet(seed=5)
    train_model(again, train, test, recipe, seed=1, device="cpu", checkpoint_dir=tmp_path / "b", progress=False)
    assert _same_weights(whole, again)  # a finished checkpoint just loads


def test_resume_checkpoint_of_another_run_is_refused(small, tmp_path):
    train, test = small
    train_model(TinyNet(), train, test, RECIPE, seed=1, device="cpu", checkpoint_dir=tmp_path, stop_after_epoch=1,
                progress=False)
    with pytest.raises(ValueError, match="belongs to another run"):
        train_model(TinyNet(), train, test, RECIPE, seed=2, device="cpu", checkpoint_dir=tmp_path, progress=False)


def test_truncated_resume_checkpoint_restarts_with_warning(small, tmp_path):
    train, test = small
    train_model(TinyNet(), train, test, RECIPE, seed=1, device="cpu", checkpoint_dir=tmp_path, stop_after_epoch=1,
                progress=False)
    ckpt = tmp_path / RESUME_FILE
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    model, fresh = TinyNet(), TinyNet()
    with pytest.warns(UserWarning, match="unreadable resume checkpoint"):
        train_model(model, train, test, RECIPE, seed=1, device="cpu", checkpoint_dir=tmp_path, progress=False)
    train_model(fresh, train, test, RECIPE, seed=1, device="cpu", progress=False)
    assert _same_weights(model, fresh)


def test_snapshots_and_deterministic_algorithms(small, tmp_path):
    train, test = small
    model = TinyNet()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    torch.use_deterministic_algorithms(True)
    try:
        train_model(model, train, test, RECIPE, seed=0, device="cpu", checkpoint_dir=tmp_path,
                    snapshot_epochs=(0, 2), snapshot_meta={"meta": {"arch": "tiny"}}, progress=False)
    finally:
        torch.use_deterministic_algorithms(False)
    zero = torch.load(snapshot_path(tmp_path, 0), weights_only=True)
    last = torch.load(snapshot_path(tmp_path, 2), weights_only=True)
    assert zero["epoch"] == 0 and zero["meta"] == {"arch": "tiny"}
    assert all(torch.equal(zero["state_dict"][k], initial[k]) for k in initial)
    assert all(torch.equal(last["state_dict"][k], v) for k, v in model.state_dict().items())
    assert not snapshot_path(tmp_path, 1).exists()


def test_bad_arguments(small, tmp_path):
    train, test = small
    with pytest.raises(ValueError, match="need a checkpoint_dir"):
        train_model(TinyNet(), train, test, RECIPE, seed=0, snapshot_epochs=(1,), progress=False)
    with pytest.raises(ValueError, match=r"snapshot epochs \[3\] outside 0..2"):
        train_model(TinyNet(), train, test, RECIPE, seed=0, checkpoint_dir=tmp_path, snapshot_epochs=(3,))
    with pytest.raises(ValueError, match="stop_after_epoch must be in 1..2"):
        train_model(TinyNet(), train, test, RECIPE, seed=0, stop_after_epoch=3)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        train_model(TinyNet(), train, test, RECIPE, seed=-1)
    other = dataclasses.replace(test, classes=test.classes + ("x",))
    with pytest.raises(ValueError, match="train and test sets disagree"):
        train_model(TinyNet(), train, other, RECIPE, seed=0)


def test_evaluate_matches_manual_computation(small):
    _, test = small
    model = TinyNet().train()
    x, y = test.tensors()
    acc, loss = evaluate(model, test, batch_size=7)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert acc == pytest.approx((out.argmax(1) == y).float().mean().item())
    assert loss == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert evaluate(model, (x, y)) == pytest.approx((acc, loss))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate(model, test, batch_size=0)
    with pytest.raises(ValueError, match="need images"):
        evaluate(model, (x, y[:3]))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ValueError, match="unknown device 'gpu0'; valid choices"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_measure_throughput():
    result = measure_throughput(TinyNet(), RECIPE, batch_size=16, steps=2, warmup=1, device="cpu")
    assert result["images_per_s"] > 0 and result["batch_size"] == 16 and result["steps"] == 2
    with pytest.raises(ValueError, match="steps must be >= 1"):
        measure_throughput(TinyNet(), RECIPE, steps=0)


BF16 = dataclasses.replace(RECIPE, use_amp=True, channels_last=True, compile=True)


def test_acceleration_grants_bf16_on_cpu_only_where_native():
    cpu = torch.device("cpu")
    native = acceleration(BF16, cpu, native_bf16=True)
    assert native.amp and native.channels_last and not native.compile
    assert [n for n in native.notes if n.startswith("bf16")] == []
    emulated = acceleration(BF16, cpu, native_bf16=False)
    assert not emulated.amp and emulated.channels_last
    assert any("no native bf16" in n for n in emulated.notes)
    assert any("torch.compile off" in n for n in native.notes)
    assert acceleration(RECIPE, cpu, native_bf16=True) == Acceleration(False, False, False)


def test_acceleration_on_cuda(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert acceleration(BF16, cuda) == Acceleration(True, True, True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    old_gpu = acceleration(BF16, cuda)
    assert not old_gpu.amp and old_gpu.compile and "does not support bf16" in old_gpu.notes[0]


def test_cpu_bf16_detection_agrees_with_cpuinfo():
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_bf16_training_on_cpu_is_used_reproducible_and_evaluated_in_fp32(small, monkeypatch):
    train, test = small
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: True)
    runs = [TinyNet(), TinyNet()]
    metrics = [train_model(m, train, test, BF16, seed=2, device="cpu", progress=False) for m in runs]
    assert metrics[0]["acceleration"]["bf16_autocast"] and metrics[0]["acceleration"]["channels_last"]
    assert _same_weights(*runs)
    fp32 = TinyNet()
    train_model(fp32, train, test, RECIPE, seed=2, device="cpu", progress=False)
    assert not _same_weights(runs[0], fp32)  # autocast really changed the arithmetic
    assert metrics[0]["final_test_acc"] == pytest.approx(evaluate(runs[0], test)[0])
    params = list(runs[0].parameters())
    assert all(p.dtype == torch.float32 for p in params)
    assert all(p.is_contiguous() for p in params)  # back in the layout features are read in


def test_bf16_request_on_a_cpu_without_it_trains_fp32_and_says_so(small, monkeypatch):
    train, test = small
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: False)
    model, plain = TinyNet(), TinyNet()
    with pytest.warns(UserWarning, match="bf16 autocast off"):
        metrics = train_model(model, train, test, dataclasses.replace(BF16, channels_last=False), seed=2,
                              device="cpu", progress=False)
    train_model(plain, train, test, RECIPE, seed=2, device="cpu", progress=False)
    assert not metrics["acceleration"]["bf16_autocast"]
    assert _same_weights(model, plain)


def test_compile_branch_wraps_the_model(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    model = TinyNet()
    result = measure_throughput(model, BF16, batch_size=8, steps=1, warmup=0, device="cpu",
                                accel=Acceleration(amp=False, channels_last=True, compile=True))
    assert compiled == [model] and result["acceleration"]["compile"]


def test_optimizers_registry_and_their_parameter_groups():
    model = TinyNet()
    sgd = train_module.OPTIMIZERS.get("sgd")(list(model.parameters()), RECIPE)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    adamw = train_module.OPTIMIZERS.get("adamw")(list(model.parameters()), ADAMW)
    decayed, plain = adamw.param_groups
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (ADAMW.momentum, 0.999)
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; valid choices: adamw, sgd"):
        dataclasses.replace(RECIPE, optimizer="adam")
    with pytest.raises(ValueError, match="nesterov applies to sgd only"):
        dataclasses.replace(ADAMW, nesterov=True)


def test_sgd_recipes_keep_their_identity_and_adamw_ones_record_it():
    assert "optimizer" not in get_recipe("quick").to_dict()
    assert get_recipe("vit_quick").to_dict()["optimizer"] == "adamw"
    assert {get_recipe(name).optimizer for name in ("vit_fast", "vit_quick", "vit_smoke")} == {"adamw"}


def test_adamw_training_learns(small):
    train, test = small
    model = TinyNet()
    metrics = train_model(model, train, test, dataclasses.replace(ADAMW, epochs=3), seed=0, device="cpu",
                          progress=False)
    assert metrics["final_test_acc"] > 0.5  # chance is 0.1


def test_recipe_dropout_acts_while_training_and_is_restored(small):
    train, test = small
    recipe = dataclasses.replace(RECIPE, dropout=0.0)
    by_recipe, by_hand, own = TinyNet(), TinyNet(), TinyNet()
    by_hand.features[-1].p = 0.0
    train_model(by_recipe, train, test, recipe, seed=3, device="cpu", progress=False)
    train_model(by_hand, train, test, RECIPE, seed=3, device="cpu", progress=False)
    train_model(own, train, test, RECIPE, seed=3, device="cpu", progress=False)
    assert _same_weights(by_recipe, by_hand)
    assert not _same_weights(by_recipe, own)
    assert by_recipe.features[-1].p == 0.1
    with pytest.raises(ValueError, match="dropout must be None or in"):
        dataclasses.replace(RECIPE, dropout=1.0)


def _patches(model: nn.Module, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    inputs = model.normalize(x) if hasattr(model, "normalize") else x
    unfolded = torch.nn.functional.unfold(inputs, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    return unfolded.transpose(1, 2).reshape(-1, conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1])


def test_whiten_stem_decorrelates_the_first_convolution():
    from modgraph.models import create_model

    gen = torch.Generator().manual_seed(0)
    base = torch.rand(64, 1, 8, 8, generator=gen)
    images = torch.nn.functional.interpolate(base, size=32, mode="bilinear").repeat(1, 3, 1, 1)
    images = (images + 0.05 * torch.rand(64, 3, 32, 32, generator=gen)).clamp(0, 1)
    model = create_model("vgg11", num_classes=10, width=0.25, seed=0)
    later = model.stage2[0].conv.weight.clone()
    conv = train_module.whiten_stem(model, images, eps=1e-8, batch_size=20)
    assert conv is model.stage1[0].conv and conv.out_channels == 16
    patches = _patches(model, conv, images).double()
    responses = (patches - patches.mean(0)) @ conv.weight.reshape(16, -1).double().T
    cov = responses.T @ responses / len(responses)
    assert torch.allclose(cov[:8, :8], torch.eye(8, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(conv.weight[8:], -conv.weight[:8])
    assert torch.equal(model.stage2[0].conv.weight, later)
    assert model.training


def test_whiten_stem_keeps_filters_beyond_twice_the_patch_size_and_zeroes_a_bias():
    conv = nn.Conv2d(3, 60, 3, padding=1, bias=True)
    model = nn.Sequential(conv, nn.ReLU())
    tail = conv.weight[54:].clone()
    train_module.whiten_stem(model, torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(conv.weight[54:], tail) and torch.count_nonzero(conv.bias) == 0
    with pytest.raises(ValueError, match="no convolution on 3 input channels"):
        train_module.whiten_stem(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)), torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\) batch, got \(2, 16, 16\)"):
        train_module.whiten_stem(model, torch.rand(2, 16, 16))


def test_whiten_recipe_whitens_before_epoch_zero_and_keeps_other_identities(small, tmp_path):
    train, test = small
    assert "whiten" not in get_recipe("paper").to_dict() and get_recipe("quick").to_dict()["whiten"] is True
    recipe = dataclasses.replace(RECIPE, epochs=1, whiten=True)
    assert recipe.to_dict()["whiten"] is True
    model = TinyNet()
    train_model(model, train, test, recipe, seed=0, device="cpu", checkpoint_dir=tmp_path, snapshot_epochs=[0],
                progress=False)
    first = torch.load(snapshot_path(tmp_path, 0), weights_only=True)["state_dict"]["features.0.weight"]
    plain = TinyNet().features[0].weight
    expected = train_module.whiten_stem(TinyNet(), torch.from_numpy(train.images[:train_module.WHITEN_IMAGES])
                                        .permute(0, 3, 1, 2).float().div(255.0)).weight
    assert not torch.allclose(first, plain) and torch.allclose(first, expected)


def test_dirac_init_makes_equal_width_convolutions_identities():
    from modgraph.models import create_model

    model = create_model("vgg11", num_classes=10, width=0.25, seed=0).eval()
    stem = model.stage1[0].conv.weight.clone()
    assert train_module.dirac_init(model) == 7
    assert torch.equal(model.stage1[0].conv.weight, stem)
    conv = model.stage3[1].conv
    x = torch.randn(2, conv.in_channels, 8, 8)
    assert torch.allclose(conv(x), x, atol=1e-6)
    widening = model.stage2[0].conv
    y = torch.randn(2, widening.in_channels, 8, 8)
    assert torch.allclose(widening(y)[:, :widening.in_channels], y, atol=1e-6)
    assert "dirac" not in get_recipe("paper").to_dict() and dataclasses.replace(RECIPE, dirac=True).to_dict()["dirac"]


def test_dirac_init_leaves_residual_blocks_alone():
    from modgraph.models import create_model

    model = create_model("resnet20", num_classes=10, width=0.5, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert train_module.dirac_init(model) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))
    assert train_module.dirac_init(plain) == 1


def test_initialise_false_keeps_the_given_weights_for_fine_tuning(small, tmp_path):
    train, test = small
    recipe = dataclasses.replace(RECIPE, epochs=1, whiten=True, dirac=True)
    given = TinyNet()
    start = {k: v.clone() for k, v in given.state_dict().items()}
    metrics = train_model(given, train, test, recipe, seed=0, device="cpu", checkpoint_dir=tmp_path,
                          snapshot_epochs=[0], progress=False, initialise=False)
    first = torch.load(snapshot_path(tmp_path, 0), weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], v) for k, v in start.items())
    assert metrics["initialised"] is False
    fresh = train_model(TinyNet(), train, test, recipe, seed=0, device="cpu", progress=False)
    assert fresh["initialised"] is True


def test_ema_averages_the_weights_it_evaluates_and_returns(small, tmp_path):
    train, test = small
    raw, tracked, averaged = TinyNet(), TinyNet(), TinyNet()
    train_model(raw, train, test, RECIPE, seed=2, device="cpu", progress=False)
    train_model(tracked, train, test, dataclasses.replace(RECIPE, ema=1e-12), seed=2, device="cpu", progress=False)
    for (key, a), b in zip(raw.state_dict().items(), tracked.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), key
    metrics = train_model(averaged, train, test, EMA, seed=2, device="cpu", checkpoint_dir=tmp_path,
                          snapshot_epochs=[RECIPE.epochs], progress=False)
    assert not _same_weights(raw, averaged)
    assert metrics["final_test_acc"] == pytest.approx(evaluate(averaged, test, device="cpu")[0])
    snapshot = torch.load(snapshot_path(tmp_path, RECIPE.epochs), weights_only=True)["state_dict"]
    resume = torch.load(tmp_path / RESUME_FILE, weights_only=True)
    assert all(torch.equal(snapshot[k], resume["average"][k]) for k in snapshot)
    assert not all(torch.equal(snapshot[k], resume["model"][k]) for k in snapshot)
    assert "ema" not in get_recipe("paper").to_dict() and EMA.to_dict()["ema"] == 0.9
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\)"):
        dataclasses.replace(RECIPE, ema=1.0)


def test_epochs_by_arch_resolves_per_architecture_and_keeps_other_identities():
    table = dataclasses.replace(RECIPE, epochs=4, warmup_epochs=1.0, epochs_by_arch={"VGG11": 8})
    assert table.epochs_by_arch == (("vgg11", 8),)
    assert table.for_arch("vgg11") == dataclasses.replace(RECIPE, epochs=8, warmup_epochs=2.0)
    assert table.for_arch("resnet18") == dataclasses.replace(RECIPE, epochs=4, warmup_epochs=1.0)
    assert table.for_arch("vgg11", 2).epochs == 2 and table.for_arch("vgg11", 2).epochs_by_arch == ()
    assert table.to_dict()["epochs_by_arch"] == {"vgg11": 8}
    assert "epochs_by_arch" not in table.for_arch("vgg11").to_dict()
    assert "epochs_by_arch" not in get_recipe("fast").to_dict()
    for bad in ({"vgg11": 0}, {"vgg11": 2.5}, {"vgg11": True}):
        with pytest.raises(ValueError, match="epochs_by_arch must map architecture -> int >= 1"):
            dataclasses.replace(RECIPE, epochs_by_arch=bad)
    with pytest.raises(ValueError, match="unknown model 'vgg1'; valid choices: .*vgg11"):
        dataclasses.replace(RECIPE, epochs_by_arch={"vgg1": 3})
