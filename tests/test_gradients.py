"""Q1.6's quantities against hand computations: the mean gradient, the probe batch's gradient and its minibatch
statistics, the record of a run; no float64 on the device (Apple's MPS has none)."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.gradients import (PROBE_CHUNK, PROBE_SERIES, GradientRecord, checkpoints, dead_units, gradient_means,
                               layers, probe)
from helpers.models import MLP


def mean(model: nn.Module) -> float:
    return float(gradient_means(model)[0])


def test_gradient_mean_equals_hand_computation():
    # y = W x + b, L = sum(y): dL/dW[i, j] = x[j], dL/db[i] = 1.
    layer = nn.Linear(3, 2)
    layer(torch.tensor([1.0, -2.0, 3.0])).sum().backward()
    # entries: W.grad = [[1,-2,3],[1,-2,3]], b.grad = [1,1] -> sum 6 and |sum| 14 over 8 entries
    assert gradient_means(layer).tolist() == pytest.approx([6 / 8, 14 / 8])


def test_gradient_mean_averages_over_all_entries_not_over_tensors():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model(torch.ones(1, 2)).sum().backward()
    grads = [p.grad for p in model.parameters()]
    count = sum(g.numel() for g in grads)
    expected = sum(float(g.sum()) for g in grads) / count
    # float32 sums are exact to ~1e-7 of the sizes summed, not of a result where signs cancel
    size = sum(float(g.abs().sum()) for g in grads) / count
    assert mean(model) == pytest.approx(expected, abs=1e-6 * size)
    assert expected != pytest.approx(sum(float(g.mean()) for g in grads) / len(grads))  # the two differ here


def test_frozen_parameters_are_left_out():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].requires_grad_(False)
    model(torch.ones(1, 2)).sum().backward()
    assert mean(model) == pytest.approx(float(model[1].weight.grad.sum() + model[1].bias.grad.sum()) / 3)


def test_calling_before_backward_is_an_error():
    with pytest.raises(RuntimeError, match="after loss.backward"):
        gradient_means(nn.Linear(2, 2))


def batch(n: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=generator), torch.arange(n) % 10


def test_the_probe_is_the_gradient_of_the_whole_batch_and_touches_nothing():
    """The probe's mean |g| and signed mean are those of the gradient of the mean loss over all its images, computed
    in one pass; per layer likewise; its minibatch statistics are those of PROBE_CHUNK-image minibatches; the model's
    .grad, its mode and its weights are left as they were."""
    torch.manual_seed(0)
    model = MLP((16, 8))
    images, labels = batch(128)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    row = probe(model, images, labels, nn.CrossEntropyLoss())
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    nn.functional.cross_entropy(model(images), labels).backward()
    whole = torch.cat([p.grad.flatten() for p in model.parameters()])
    loss = float(nn.functional.cross_entropy(model(images), labels).detach())
    assert row[:3].tolist() == pytest.approx([loss, float(whole.mean()), float(whole.abs().mean())], rel=1e-4)
    chunks = []
    for x, y in zip(images.split(PROBE_CHUNK), labels.split(PROBE_CHUNK)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        chunks.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    sizes = torch.stack([c.abs().mean() for c in chunks])
    assert row[3:5].tolist() == pytest.approx([float(sizes.mean()), float(sizes.std())], rel=1e-4)
    assert float(row[5]) == pytest.approx(float(torch.stack([c.mean() for c in chunks]).std()), rel=1e-4)
    # a minibatch's gradient is the batch's plus noise: its mean |g| is larger
    assert float(row[3]) > float(row[2])
    assert len(row) == len(PROBE_SERIES) + len(layers(model)) == 6 + 3  # then one value per layer


def test_the_probe_per_layer_is_that_layers_mean_abs_gradient():
    torch.manual_seed(0)
    model = MLP((16, 8))
    images, labels = batch(128)
    row = probe(model, images, labels, nn.CrossEntropyLoss())
    nn.functional.cross_entropy(model(images), labels).backward()
    for i, layer in enumerate(layers(model).values()):
        grads = torch.cat([p.grad.flatten() for p in layer.parameters()])
        assert float(row[len(PROBE_SERIES) + i]) == pytest.approx(float(grads.abs().mean()), rel=1e-4)


def test_the_record_keeps_the_first_steps_and_probes_at_its_checkpoints():
    torch.manual_seed(0)
    model = MLP((4,))
    images, labels = batch(128)
    record = GradientRecord(model, 3, images, labels, [0, 2, 5], nn.CrossEntropyLoss())
    seen = []
    for seed in range(5):
        record.step()
        model.zero_grad()
        x, y = batch(8, seed)
        nn.functional.cross_entropy(model(x), y).backward()
        seen.append(gradient_means(model))
        record.mean(seen[-1])
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    record.step()  # after the last update
    stored = record.to_dict(5, diverged=False)
    assert stored["steps"]["abs_mean"] == pytest.approx([float(m[1]) for m in seen[:3]])
    assert stored["probe"]["step"] == [0, 2, 5] and stored["probe"]["images"] == 128
    assert set(stored["probe"]["layers"]) == {"1", "2"} and stored["probe"]["layer_sizes"] == {"1": 785 * 4, "2": 50}
    diverged = record.to_dict(2, diverged=True)  # the loss of step 3 was not finite: weights after 2 updates were bad
    assert diverged["steps"]["abs_mean"] == stored["steps"]["abs_mean"][:2] and diverged["probe"]["step"] == [0]


def test_checkpoints_come_early_then_at_epoch_ends():
    assert checkpoints(1, 10) == [0, 1, 2, 5, 10]
    assert checkpoints(12, 1000) == [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, *range(1000, 10001, 1000), 12000]
    assert checkpoints(50, 860)[-3:] == [40 * 860, 45 * 860, 50 * 860]


class DtypeRecorder(TorchDispatchMode):
    """Records the dtype of every tensor every operation produces."""

    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(value, torch.Tensor):
                self.dtypes.add(value.dtype)
        return out


def test_the_reductions_never_ask_the_device_for_float64():
    torch.manual_seed(0)
    model = MLP((16,))
    images, labels = batch(128)
    record = GradientRecord(model, 5, images, labels, [0], nn.CrossEntropyLoss())
    with DtypeRecorder() as recorder:
        record.step()
        nn.functional.cross_entropy(model(images[:8]), labels[:8]).backward()
        record.mean(gradient_means(model))
    assert torch.float64 not in recorder.dtypes and torch.float32 in recorder.dtypes


def test_dead_units_counts_units_that_never_fire():
    model = MLP((3,))
    with torch.no_grad():
        model.linear_relu_stack[0].weight.zero_()
        model.linear_relu_stack[0].bias.copy_(torch.tensor([1.0, -1.0, 0.0]))  # unit 0 fires, 1 and 2 never
    assert dead_units(model, [torch.rand(5, 1, 28, 28), torch.rand(2, 1, 28, 28)]) == {"linear_relu_stack.1": [2, 3]}
