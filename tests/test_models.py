"""Parameter counts against the formula, seeding, the model names, and the spec read from the file on disk."""
from pathlib import Path

import pytest
import torch

from helpers import models
from helpers.models import CNN_CHANNELS, MLP, SmallCNN, build, count_parameters


def mlp_formula(hidden: tuple[int, ...]) -> int:
    sizes = [784, *hidden, 10]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


@pytest.mark.parametrize("hidden", [(512, 512), (1024, 1024), (512, 512, 512, 512), (7,), (3, 5, 11)])
def test_mlp_parameter_count_matches_formula(hidden):
    assert count_parameters(MLP(hidden)) == mlp_formula(hidden)


def test_base_mlp_is_the_demo_network():
    model = build("base")
    assert count_parameters(model) == 669_706
    layers = [type(m).__name__ for m in model.linear_relu_stack]
    assert layers == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_built_presets_are_deeper_and_wider_than_base():
    def linear_widths(name):
        return [m.out_features for m in build(name).modules() if isinstance(m, torch.nn.Linear)][:-1]
    assert len(linear_widths("deeper")) == 2 * len(linear_widths("base"))  # twice the hidden layers
    assert linear_widths("wider") == [2 * w for w in linear_widths("base")]  # each twice as wide


def test_cnn_parameter_count_matches_formula_and_is_below_base_mlp():
    c1, c2, c3 = 8, 16, 24
    convs = 9 * (1 * c1 + c1 * c2 + c2 * c3)          # 3x3 kernels, no bias (BatchNorm follows)
    batchnorm = 2 * (c1 + c2 + c3)                     # weight and bias per channel
    head = (c3 * 7 * 7 + 1) * 10                       # flattened 7x7 maps to 10 logits
    model = SmallCNN((c1, c2, c3))
    assert count_parameters(model) == convs + batchnorm + head
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_the_cnn_is_small():
    assert count_parameters(build("cnn")) == count_parameters(SmallCNN(CNN_CHANNELS)) < 0.1 * 669_706


def test_a_spec_rebuilds_the_same_network():
    for name in (*models.structures(), "cnn"):
        a, b = build(name, seed=3), models.from_spec(models.spec(name), seed=3)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())), name


MODELS_PY = Path(models.__file__)


def edit_models(tmp_path: Path, monkeypatch, *edits: tuple[str, str]) -> Path:
    """An edited copy of models.py (the edits made to the file as it is), which `models` reads from now on as its
    file on disk (models.py itself is not touched: runs may be importing it)."""
    text = MODELS_PY.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    copy = tmp_path / f"edit{len(list(tmp_path.iterdir()))}" / "models.py"
    copy.parent.mkdir()
    copy.write_text(text, encoding="utf-8")
    monkeypatch.setattr(models, "__file__", str(copy))
    return copy


def test_the_spec_is_read_from_the_file_as_it_is_now(tmp_path, monkeypatch):
    """spec() reads STRUCTURES and CNN_CHANNELS from the file on disk at each call, so that an edit applies without
    a kernel restart: the module as imported keeps the old values, the spec follows the file, edit after edit."""
    imported = dict(models.STRUCTURES)
    assert models.spec("base") == {"network": "MLP", "hidden_sizes": [512, 512]}
    edit_models(tmp_path, monkeypatch, ('"base": (512, 512),', '"base": (512, 256),'),
                ('    "wider": (1024, 1024),\n', ""), ("CNN_CHANNELS = (16, 32, 64)", "CNN_CHANNELS = (8, 16, 24)"))
    assert models.STRUCTURES == imported and models.CNN_CHANNELS == (16, 32, 64)  # nothing re-imported
    assert models.spec("base") == {"network": "MLP", "hidden_sizes": [512, 256]}
    assert models.layer_sizes("base") == "784-512-256-10" and models.layer_sizes("cnn") == "8-16-24"
    assert count_parameters(build("base+bn")) == count_parameters(MLP((512, 256), batchnorm=True))
    assert count_parameters(build("cnn")) == count_parameters(SmallCNN((8, 16, 24)))
    with pytest.raises(ValueError, match="model='wider' is unknown"):
        models.spec("wider")
    edit_models(tmp_path, monkeypatch, ('"base": (512, 512),', '"base": (64,),'))  # edited again
    assert models.spec("base") == {"network": "MLP", "hidden_sizes": [64]} and models.spec("wider")


@pytest.mark.parametrize("value", ["(512, 2 * 256)", "(WIDTH, WIDTH)", "tuple([512, 512])"])
def test_a_structure_that_is_not_a_literal_is_one_line_naming_the_file_and_the_name(tmp_path, monkeypatch, value):
    """Nothing in models.py is evaluated: a name or an expression in STRUCTURES is refused, in one line."""
    edit_models(tmp_path, monkeypatch, ('"base": (512, 512),', f'"base": {value},'))
    for call in (lambda: models.spec("base"), lambda: build("deeper"), models.structures):
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message and message.startswith("models.py: STRUCTURES must be written as a literal")


def test_multiply_adds_are_counted_and_match_the_layer_sizes():
    state = torch.get_rng_state()
    cnn = build("cnn")
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    assert models.flops(build("base"))[0] == 784 * 512 + 512 * 512 + 512 * 10
    c1, c2, c3 = CNN_CHANNELS
    convolutions = 9 * (c1 * 28 * 28 + c1 * c2 * 14 * 14 + c2 * c3 * 7 * 7)
    assert models.flops(cnn)[0] == convolutions + c3 * 7 * 7 * 10
    # counting changes nothing: the weights, the BatchNorm statistics, the global random state
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items()) and torch.equal(torch.get_rng_state(), state)
    # a training step: forward, weight gradients of every layer, input gradients of all but the first
    base = models.flops(build("base"))[0]
    assert models.training_flops("base") == 2 * (2 * base + 512 * 512 + 512 * 10)


def test_count_parameters_skips_frozen_parameters():
    model = MLP((4,))
    model.linear_relu_stack[0].weight.requires_grad_(False)
    assert count_parameters(model) == mlp_formula((4,)) - 784 * 4


def test_build_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = build("base", seed=1), build("base", seed=1), build("base", seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_unknown_model_name_is_a_value_error():
    with pytest.raises(ValueError, match="model='resnet'"):
        build("resnet")


def test_an_mlp_with_batchnorm_is_the_same_structure_with_batchnorm_after_each_hidden_layer():
    model = build("base+bn")
    assert [type(m).__name__ for m in model.linear_relu_stack] == ["Linear", "BatchNorm1d", "ReLU", "Linear",
                                                                    "BatchNorm1d", "ReLU", "Linear"]
    # the hidden layers lose their bias (BatchNorm's shift replaces it) and gain a scale and a shift per unit
    assert count_parameters(model) == 669_706 - 2 * 512 + 2 * 2 * 512
    assert models.spec("wider+bn") == {"network": "MLP", "hidden_sizes": [1024, 1024], "batchnorm": True}
    assert models.multiply_adds("base+bn") == models.multiply_adds("base")
    with pytest.raises(ValueError, match=r"model='resnet\+bn' is unknown"):
        models.spec("resnet+bn")
