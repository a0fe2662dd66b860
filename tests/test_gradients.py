"""Q1.6's quantities against hand computations; no float64 on the device (Apple's MPS has none)."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.gradients import GradientTrace, block_means, dead_units, gradient_means
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


def one_step(model: nn.Module, trace: GradientTrace, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    images, labels = torch.rand(8, 1, 28, 28, generator=generator), torch.arange(8)
    model.zero_grad()
    nn.functional.cross_entropy(model(images), labels).backward()
    trace.append(gradient_means(model))


def test_trace_stores_the_means_it_is_given_and_each_layers_factors():
    torch.manual_seed(0)
    model = MLP((16, 8))
    trace = GradientTrace(model, steps=3, block=2)
    seen = {}
    layer = model.linear_relu_stack[2]  # the second linear layer: input = first hidden activations

    def keep(module, inputs, output):
        seen["a"] = inputs[0].detach()
        output.register_hook(lambda grad: seen.update(delta=grad.detach()))
    layer.register_forward_hook(keep)
    one_step(model, trace)
    trace.close()
    series = trace.series()
    assert [series["signed_mean"][0], series["abs_mean"][0]] == pytest.approx(gradient_means(model).tolist(), rel=1e-5)
    probe = series["layers"]["linear_relu_stack.2"]
    error = seen["delta"].norm(dim=1) * 8  # the batch-mean loss: one image's error is 8 x its share
    assert probe["error"][0] == pytest.approx(float(error.mean()), rel=1e-5)
    assert probe["input"][0] == pytest.approx(float(seen["a"].norm(dim=1).mean()), rel=1e-5)
    grads = [layer.weight.grad, layer.bias.grad]
    assert probe["abs_mean"][0] == pytest.approx(sum(float(g.abs().sum()) for g in grads) / (16 * 8 + 8), rel=1e-5)
    # one image's weight gradient is the outer product delta a^T (norm ||delta|| ||a||): the batch gradient, their
    # mean, is at most the mean of those norms
    assert float(layer.weight.grad.norm()) <= float((error * seen["a"].norm(dim=1)).mean()) + 1e-6
    output = series["layers"]["linear_relu_stack.4"]["error"][0]
    assert 0 < output < 2 ** 0.5  # the output layer's error is p - y: a probability vector minus a one-hot


def test_output_layer_gradient_of_cross_entropy_sums_to_zero():
    # Softmax cross-entropy: the gradient of each output unit's inputs sums to zero over the classes,
    # so the output layer adds (almost) nothing to the signed mean -- an observation Q1.6 discusses.
    torch.manual_seed(0)
    model = MLP((16,))
    nn.functional.cross_entropy(model(torch.rand(8, 1, 28, 28)), torch.arange(8)).backward()
    output = model.linear_relu_stack[2]
    assert float(output.weight.grad.sum() + output.bias.grad.sum()) == pytest.approx(0, abs=1e-7)
    assert float(output.weight.grad.abs().sum()) > 1e-3


def test_trace_keeps_the_first_steps_and_block_means_of_all():
    torch.manual_seed(0)
    model = MLP((4,))
    trace = GradientTrace(model, steps=3, block=2)
    for seed in range(5):
        one_step(model, trace, seed)
    trace.close()
    every = trace.series()["abs_mean"]
    stored = trace.to_dict()
    assert stored["steps"]["abs_mean"] == every[:3]
    assert stored["blocks"]["abs_mean"] == pytest.approx([(every[0] + every[1]) / 2, (every[2] + every[3]) / 2, every[4]])
    assert len(stored["blocks"]["layers"]["linear_relu_stack.0"]["error"]) == 3
    assert block_means([1.0, 2.0, 3.0], 2) == [1.5, 3.0]


def test_diverged_steps_are_cut_from_the_trace_and_evaluation_is_not_probed():
    model = MLP((4,))
    trace = GradientTrace(model, steps=10, block=10)
    for seed in range(4):
        one_step(model, trace, seed)
    with torch.no_grad():
        model(torch.rand(3, 1, 28, 28))  # an evaluation pass: no error to probe, no failure
    trace.close(keep_steps=2)
    assert len(trace.series()["signed_mean"]) == 2


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
    trace = GradientTrace(model, steps=5, block=5)
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 1, 28, 28, generator=generator), torch.arange(8)
    with DtypeRecorder() as recorder:
        nn.functional.cross_entropy(model(images), labels).backward()
        trace.append(gradient_means(model))
        trace._pending[-1].float()  # what flush() does on the device before moving to the CPU
    assert torch.float64 not in recorder.dtypes and torch.float32 in recorder.dtypes


def test_dead_units_counts_units_that_never_fire():
    model = MLP((3,))
    with torch.no_grad():
        model.linear_relu_stack[0].weight.zero_()
        model.linear_relu_stack[0].bias.copy_(torch.tensor([1.0, -1.0, 0.0]))  # unit 0 fires, 1 and 2 never
    assert dead_units(model, [torch.rand(5, 1, 28, 28), torch.rand(2, 1, 28, 28)]) == {"linear_relu_stack.1": [2, 3]}
