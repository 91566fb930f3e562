import json
import math

import numpy as np
import pytest
import torch

from modgraph import paper
from modgraph.curve import Curve
from modgraph.features import layer_names
from modgraph.models import create_model
from modgraph.prune import (
    LayerVerdict,
    authors_complexity,
    complexity,
    depth_variant,
    layer_steps,
    prunable_layers,
    prune,
    redundant_layers,
    reduction,
    removed_delta_q,
    removed_layers,
    select_removable,
    transfer_weights,
)

TINY = 1 / 16
X = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))

# Mean modularity per layer and a per-layer offset: repeat 0 is mean + e, repeat 1 is mean - e,
# so dQ_i = mean_i - mean_{i-1} and its standard error is |e_i - e_{i-1}|.
MEAN = np.array([0.10, 0.30, 0.25, 0.252, 0.257, 0.40, 0.45, 0.30])
E = np.array([0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0])
LAYERS = tuple(f"l{i}" for i in range(len(MEAN)))


def _curve(mean=MEAN, e=E, layers=LAYERS) -> Curve:
    return Curve(layers, np.stack([mean + e, mean - e]), {"arch": "test"})


@pytest.fixture(scope="module")
def vgg():
    return create_model("vgg19", width=TINY, seed=0).eval()


@pytest.fixture(scope="module")
def resnet():
    return create_model("resnet20", width=0.25, seed=0).eval()


def _expected(mean, e, threshold):
    """The documented rule, written out layer by layer."""
    out = []
    for i in range(1, len(mean)):
        dq, se = mean[i] - mean[i - 1], abs(e[i] - e[i - 1])
        if dq < threshold:
            out.append((f"l{i}", "drop" if dq < -se else "plateau" if dq <= se else "slow growth"))
    return out


def test_layer_steps_mean_and_standard_error():
    dq, se = layer_steps(np.stack([MEAN + E, MEAN - E]))
    np.testing.assert_allclose(dq, np.diff(MEAN), atol=1e-12)
    np.testing.assert_allclose(se, np.abs(np.diff(E)), atol=1e-12)
    dq1, se1 = layer_steps(MEAN[None])
    np.testing.assert_allclose(dq1, np.diff(MEAN)) and np.testing.assert_array_equal(se1, 0)
    with pytest.raises(ValueError, match="shape"):
        layer_steps(MEAN)


def test_redundant_layers_follow_the_rule():
    verdicts = redundant_layers(_curve(), threshold=0.01)
    assert [(v.layer, v.kind) for v in verdicts] == _expected(MEAN, E, 0.01)
    assert [(v.layer, v.kind) for v in verdicts] == [("l2", "drop"), ("l3", "plateau"), ("l4", "slow growth"),
                                                      ("l7", "drop")]
    drop = verdicts[0]
    assert drop.index == 2 and math.isclose(drop.dq, -0.05) and math.isclose(drop.dq_se, 0.01)
    assert "drops" in drop.reason and "l1" in drop.reason
    assert [v.layer for v in redundant_layers(_curve(), threshold=0.15)] == [f"l{i}" for i in range(2, 8)]


def test_first_layer_is_never_proposed_the_last_can_be():
    falling = np.linspace(0.9, 0.1, 6)
    verdicts = redundant_layers(_curve(falling, np.zeros(6), LAYERS[:6]))
    assert [v.layer for v in verdicts] == ["l1", "l2", "l3", "l4", "l5"]
    assert [v.layer for v in redundant_layers(_curve(falling[:2], np.zeros(2), LAYERS[:2]))] == ["l1"]
    assert redundant_layers(_curve(falling[:1], np.zeros(1), LAYERS[:1])) == []
    rising_then_flat = np.array([0.1, 0.2, 0.3, 0.4, 0.4])
    assert [v.layer for v in redundant_layers(_curve(rising_then_flat, np.zeros(5), LAYERS[:5]))] == ["l4"]


def test_verdicts_invariant_to_shifting_the_curve_and_scaling_with_threshold():
    base = [(v.layer, v.kind) for v in redundant_layers(_curve(), threshold=0.01)]
    assert [(v.layer, v.kind) for v in redundant_layers(_curve(MEAN + 0.3), threshold=0.01)] == base
    assert [(v.layer, v.kind) for v in redundant_layers(_curve(MEAN * 2, E * 2), threshold=0.02)] == base


def test_prunable_restriction_and_bad_arguments():
    assert [v.layer for v in redundant_layers(_curve(), prunable=["l3", "l6"])] == ["l3"]
    with pytest.raises(ValueError, match="not layers of the curve"):
        redundant_layers(_curve(), prunable=["stage1.1"])
    with pytest.raises(ValueError, match="threshold"):
        redundant_layers(_curve(), threshold=float("nan"))


def test_prunable_layers_preserve_shape(vgg, resnet):
    assert prunable_layers(vgg) == ["stage1.1", "stage2.1", "stage3.1", "stage3.2", "stage3.3", "stage4.1",
                                    "stage4.2", "stage4.3", "stage5.0", "stage5.1", "stage5.2", "stage5.3"]
    assert prunable_layers(vgg, "conv")[0] == "stage1.1.conv"
    assert prunable_layers(resnet) == ["layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2",
                                       "layer3.1", "layer3.2"]


def test_pruning_nothing_is_the_same_function(vgg, resnet):
    for model in (vgg, resnet):
        with torch.no_grad():
            assert torch.equal(prune(model, [])(X), model(X))


def test_pruned_vgg_keeps_weights_and_parent(vgg):
    before = {k: v.clone() for k, v in vgg.state_dict().items()}
    child = prune(vgg, ["stage3.1", LayerVerdict("stage5.0.conv", 0, 0.0, 0.0, "plateau", "")])
    assert len(layer_names(child)) == len(layer_names(vgg)) - 2
    assert child.config.stages[2] == (256, 256, 256) and child.config.stages[4] == (512, 512, 512)
    pairs = {"stage3.0": "stage3.0", "stage3.2": "stage3.1", "stage3.3": "stage3.2", "stage5.1": "stage5.0",
             "stage5.3": "stage5.2", "stage4.2": "stage4.2", "classifier": "classifier", "normalize": "normalize"}
    parent, pruned = vgg.state_dict(), child.state_dict()
    for old, new in pairs.items():
        keys = [k for k in parent if k.startswith(old + ".")]
        assert keys and all(torch.equal(parent[k], pruned[new + k[len(old):]]) for k in keys)
    assert all(torch.equal(before[k], v) for k, v in vgg.state_dict().items())
    assert child(X).shape == (3, 10)


def test_removing_identity_block_changes_output_keeps_shapes(resnet):
    child = prune(resnet, ["layer2.1"])
    assert child.config.depths == (3, 2, 3) and len(layer_names(child)) == len(layer_names(resnet)) - 1
    with torch.no_grad():
        out, ref = child(X), resnet(X)
    assert out.shape == ref.shape and not torch.allclose(out, ref)
    with torch.no_grad():
        full = resnet.layer2(resnet.layer1(resnet.stem(resnet.normalize(X))))
        short = child.layer2(child.layer1(child.stem(child.normalize(X))))
    assert full.shape == short.shape


def test_pruned_model_is_the_depth_variant_with_transferred_weights(resnet, vgg):
    for model, arch, width, removed in ((resnet, "resnet20", 0.25, ["layer1.0", "layer3.2"]),
                                        (vgg, "vgg19", TINY, ["stage4.2"])):
        overrides = depth_variant(arch, removed)
        fresh = create_model(arch, width=width, seed=1, **overrides).eval()
        pruned = prune(model, removed)
        assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}
        transfer_weights(model, fresh, removed)
        with torch.no_grad():
            assert torch.equal(fresh(X), pruned(X))
    assert depth_variant("resnet56", ["layer3.4"]) == {"depths": (9, 9, 8)}
    assert depth_variant("resnet20", ["layer1.0"], shortcut="projection") == {"shortcut": "projection",
                                                                               "depths": (2, 3, 3)}
    with pytest.raises(ValueError, match="unknown option"):
        depth_variant("resnet20", ["layer1.0"], width=0.5)


def test_transfer_weights_to_name_sharing_variant(vgg):
    child = create_model("vgg19_2", width=TINY, seed=5).eval()
    transfer_weights(vgg, child)
    with torch.no_grad():
        assert torch.equal(child(X), prune(vgg, ["stage5.2", "stage5.3"])(X))
    with pytest.raises(ValueError, match="is not the parent's without stage3.1"):
        transfer_weights(vgg, create_model("vgg19_2", width=TINY), ["stage3.1"])
    with pytest.raises(ValueError, match="do not fit"):
        transfer_weights(vgg, create_model("vgg19_2", width=TINY * 2))


def test_store_transfer_initialiser_uses_transfer_weights(resnet):
    from modgraph.store import INITIALISERS

    child = create_model("resnet20", width=0.25, seed=3, depths=(3, 2, 3)).eval()
    INITIALISERS.get("transfer")(resnet, child)
    with torch.no_grad():
        assert torch.equal(child(X), prune(resnet, ["layer2.2"])(X))


def test_prune_errors(vgg, resnet):
    vgg_layers = [v for v in layer_names(vgg) if v in prunable_layers(vgg)][:2]
    with pytest.raises(ValueError, match="not layers of this ResNet .*another architecture.*valid choices: stem"):
        prune(resnet, vgg_layers)
    with pytest.raises(ValueError, match="cannot remove stem"):
        prune(resnet, ["stem"])
    with pytest.raises(ValueError, match="cannot remove layer2.0.*removable: layer1.0"):
        prune(resnet, ["layer2.0"])
    with pytest.raises(ValueError, match="cannot remove stage2.0"):
        prune(vgg, ["stage2.0"])
    with pytest.raises(ValueError, match="would empty layer1"):
        prune(resnet, ["layer1.0", "layer1.1", "layer1.2"])
    with pytest.raises(ValueError, match="not the string"):
        prune(resnet, "layer1.0")
    with pytest.raises(ValueError, match="unknown prunable architecture.*valid choices: resnet, vgg"):
        prune(torch.nn.Linear(2, 2), [])


def test_complexity_of_resnet56_and_pruned_model():
    model = create_model("resnet56", seed=0)
    keys = list(model.state_dict())
    c = complexity(model)
    assert abs(c.params / 0.85e6 - 1) < 0.02 and abs(c.macs / 125e6 - 1) < 0.03
    assert c.flops == 2 * c.macs and "multiply-accumulates" in c.note
    assert list(model.state_dict()) == keys
    smaller = complexity(prune(model, ["layer3.4", "layer3.5"]))
    saved = reduction(c, smaller)
    assert smaller.params < c.params and smaller.macs < c.macs
    assert 0 < saved["macs_pct"] < saved["params_pct"] < 100
    with pytest.raises(ValueError, match="input_size"):
        complexity(model, (3, 32, 32))


def test_select_removable_keeps_shape_changers_and_one_layer_per_stage(resnet):
    def verdict(name, dq):
        return LayerVerdict(name, 0, dq, 0.0, "plateau", "")

    verdicts = [verdict("layer1.0", 0.001), verdict("layer1.1", 0.004), verdict("layer1.2", -0.01),
                verdict("layer2.0", -0.2), verdict("layer3.1", 0.0)]
    removable, refused = select_removable(resnet, verdicts)
    assert [v.layer for v in removable] == ["layer1.0", "layer1.2", "layer3.1"]
    assert set(refused) == {"layer1.1", "layer2.0"} and "layer1" in refused["layer1.1"]
    assert prune(resnet, removable).config.depths == (1, 3, 2)


def _run_cli(capsys, *argv):
    from modgraph.cli import main

    code = main(["prune", *map(str, argv), "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_from_checkpoint_on_digits(tmp_path, capsys):
    from modgraph.data import load_dataset

    data = load_dataset("digits", "test", progress=False)
    model = create_model("vgg11", num_classes=10, width=TINY, mean=data.mean, std=data.std, seed=0)
    torch.save(model.state_dict(), tmp_path / "vgg11.pt")
    code, out, _ = _run_cli(capsys, "--arch", "vgg11", "--dataset", "digits", "--width", TINY, "--checkpoint",
                            tmp_path / "vgg11.pt", "-n", 20, "--repeats", 2, "--threshold", 1.0,
                            "--out", tmp_path / "prune.json")
    assert code == 0
    report = json.loads((tmp_path / "prune.json").read_text())
    assert report["removed"] == ["stage3.1", "stage4.1", "stage5.1"]  # the last layer can go
    assert set(report["kept"]) == {"stage2.0", "stage3.0", "stage4.0", "stage5.0"}
    assert report["overrides"] == {"stages": [[64], [128], [256], [512], [512]]}
    assert report["metrics"]["after"]["params"] < report["metrics"]["before"]["params"]
    assert report["code_version"] and report["config"]["checkpoint"].endswith("vgg11.pt")
    assert "remove stage3.1" in out and "params:" in out and "% fewer" in out


def test_cli_from_curve_json_and_mismatched_curve(tmp_path, resnet, capsys):
    names = layer_names(resnet)
    values = [0.1, 0.1, 0.1, 0.1, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # layer1 flat: one block must stay
    Curve(tuple(names), [values, values], {"arch": "resnet20", "tap": "block"}).to_json(tmp_path / "c.json")
    code, out, _ = _run_cli(capsys, "--arch", "resnet20", "--dataset", "digits", "--width", 0.25,
                            "--curve", tmp_path / "c.json")
    assert code == 0
    assert "remove layer1.1" in out and "keep   layer1.0" in out and "which must keep one" in out
    assert "pruned: depths=(1, 3, 3)" in out
    code, _, err = _run_cli(capsys, "--arch", "vgg11", "--dataset", "digits", "--width", TINY,
                            "--curve", tmp_path / "c.json")
    assert code == 2 and "are not those of --arch vgg11" in err


VARIANT_LAYERS = ("stage1.0", "stage2.0", "stage3.0", "stage3.1", "stage4.0", "stage4.1")


def test_removed_delta_q_sums_the_steps_of_the_removed_layers():
    q = np.array([0.1, 0.2, 0.5, 0.52, 0.7, 0.69])
    assert removed_delta_q(q, VARIANT_LAYERS, ["stage4.1"]) == pytest.approx(-0.01)
    assert removed_delta_q(q, VARIANT_LAYERS, ["stage3.1", "stage4.1"]) == pytest.approx(0.02 - 0.01)
    assert removed_delta_q(q, VARIANT_LAYERS, []) == 0.0
    # a shift of the whole curve changes no step
    assert removed_delta_q(q + 3.0, VARIANT_LAYERS, ["stage3.1", "stage4.1"]) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="first layer 'stage1.0' has no step"):
        removed_delta_q(q, VARIANT_LAYERS, ["stage1.0"])
    with pytest.raises(ValueError, match="stage9.0 not among the curve's layers; valid choices: stage1.0"):
        removed_delta_q(q, VARIANT_LAYERS, ["stage9.0"])
    with pytest.raises(ValueError, match="distinct"):
        removed_delta_q(q, VARIANT_LAYERS, ["stage4.1", "stage4.1"])
    with pytest.raises(ValueError, match="one value per layer"):
        removed_delta_q(q[:3], VARIANT_LAYERS, ["stage4.1"])


def test_removed_layers_of_registered_variants():
    assert removed_layers("vgg19", "vgg19_3") == ("stage5.1", "stage5.2", "stage5.3")
    assert removed_layers("vgg11", "vgg11_3") == ("stage3.1", "stage4.1", "stage5.1")
    assert removed_layers("resnet152", "resnet152_5") == tuple(f"layer3.{b}" for b in range(31, 36))
    with pytest.raises(ValueError, match="'resnet152_5' is not 'vgg19'"):
        removed_layers("vgg19", "resnet152_5")
    with pytest.raises(ValueError, match="'vgg19_1' is not 'vgg11'"):
        removed_layers("vgg11", "vgg19_1")
    with pytest.raises(ValueError, match="not a pruned variant"):
        removed_layers("vgg11", "vgg11")
    with pytest.raises(ValueError, match="unknown model 'vgg7'"):
        removed_layers("vgg7", "vgg11_1")


def test_authors_released_architecture_reproduces_the_papers_table1_reductions():
    full, pruned = authors_complexity("cifar10", 10, (1, 3, 32, 32)).values()
    saved = reduction(full, pruned)
    quoted = paper.PAPER_TABLE1[0]
    assert saved["params_pct"] == pytest.approx(quoted["parameters reduction (%)"], abs=0.1)  # 42.91 vs 43.00
    assert saved["macs_pct"] == pytest.approx(quoted["FLOPs reduction (%)"], abs=0.1)  # 60.26 vs 60.30
    c100 = authors_complexity("cifar100", 100, (1, 3, 32, 32))
    assert list(c100) == ["resnet56", "resnet56_authors_cifar100"]
    assert authors_complexity("digits", 10, (1, 3, 8, 8)) == {}
