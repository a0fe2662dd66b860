"""Q1.6's quantity against hand computations."""
import pytest
import torch
from torch import nn

from helpers.gradients import GradientMeanTracker, gradient_means
from helpers.models import MLP


def test_gradient_means_equal_hand_computation():
    # y = W x + b, L = sum(y): dL/dW[i, j] = x[j], dL/db[i] = 1.
    layer = nn.Linear(3, 2)
    x = torch.tensor([1.0, -2.0, 3.0])
    layer(x).sum().backward()
    mean, abs_mean, per_layer = gradient_means(layer)
    # entries: W.grad = [[1,-2,3],[1,-2,3]], b.grad = [1,1] -> sum 6, |sum| 14, 8 entries
    assert mean == pytest.approx(6 / 8)
    assert abs_mean == pytest.approx(14 / 8)
    assert per_layer == {"": pytest.approx(6 / 8)}  # a bare layer: one group named ""


def test_gradient_means_average_over_all_entries_not_over_tensors():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model(torch.ones(1, 2)).sum().backward()
    grads = [p.grad for p in model.parameters()]
    expected = sum(float(g.sum()) for g in grads) / sum(g.numel() for g in grads)
    mean, abs_mean, per_layer = gradient_means(model)
    assert mean == pytest.approx(expected)
    assert abs_mean == pytest.approx(sum(float(g.abs().sum()) for g in grads) / sum(g.numel() for g in grads))
    assert set(per_layer) == {"0", "1"}
    assert per_layer["1"] == pytest.approx((float(grads[2].sum()) + float(grads[3].sum())) / 4)


def test_frozen_parameters_are_left_out():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].requires_grad_(False)
    model(torch.ones(1, 2)).sum().backward()
    _, _, per_layer = gradient_means(model)
    assert set(per_layer) == {"1"}


def test_output_layer_gradient_of_cross_entropy_sums_to_zero():
    # Softmax cross-entropy: the gradient of each output unit's inputs sums to zero over the classes,
    # so the output layer adds (almost) nothing to the signed mean -- the observation Q1.6 discusses.
    torch.manual_seed(0)
    model = MLP((16,))
    loss = nn.functional.cross_entropy(model(torch.rand(8, 1, 28, 28)), torch.arange(8))
    loss.backward()
    _, abs_mean, per_layer = gradient_means(model)
    assert abs(per_layer["linear_relu_stack.2"]) < 1e-8 < abs_mean


def test_calling_before_backward_is_an_error():
    with pytest.raises(RuntimeError, match="after loss.backward"):
        gradient_means(nn.Linear(2, 2))


def test_tracker_keeps_only_the_first_steps():
    layer = nn.Linear(2, 1)
    tracker = GradientMeanTracker(steps=3)
    for value in [1.0, 2.0, 3.0, 4.0, 5.0]:
        layer.zero_grad()
        (layer(torch.ones(2)) * value).sum().backward()
        tracker.record(layer)
    assert tracker.mean == pytest.approx([1.0, 2.0, 3.0])
    assert len(tracker.abs_mean) == 3 and all(len(v) == 3 for v in tracker.layer_mean.values())
