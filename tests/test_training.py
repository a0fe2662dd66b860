"""fit(): learning, divergence, targets, settings, repeatability, and the History it returns."""
import json
import math

import pytest
import torch

from conftest import synthetic_data
from helpers.models import MLP, build
from helpers.training import CHANCE_PATIENCE, History, first_reaching, fit


def small_fit(data, **kwargs):
    settings = dict(epochs=3, lr=0.3, batch_size=32, progress=False, seed=0)
    settings.update(kwargs)
    torch.manual_seed(0)
    return fit(MLP((32,)), data, **settings)


def test_fit_learns_a_learnable_problem(data):
    history = small_fit(data)
    assert history.epochs == 3 and history.stop_reason == "epochs"
    assert history.train_loss[-1] < 0.5 * history.step_loss[0]
    assert history.test_accuracy[-1] > 0.9
    assert len(history.step_loss) == 3 * math.ceil(640 / 32)
    assert len(history.seconds) == len(history.eval_seconds) == 3
    assert history.parameters == (784 + 1) * 32 + (32 + 1) * 10
    assert sum(map(sum, history.confusion)) == 200


def test_huge_learning_rate_is_reported_as_diverged_not_raised(data):
    history = small_fit(data, lr=1e12)
    assert history.diverged and history.stop_reason == "diverged"
    assert history.diverged_step >= 1 and len(history.step_loss) == history.diverged_step - 1
    assert all(math.isfinite(v) for v in history.step_loss)
    assert history.final_test_accuracy is None and history.confusion is None
    json.dumps(history.to_dict(), allow_nan=False)  # no NaN reaches the results file


def testfirst_reaching_is_one_based_and_none_when_missed():
    assert first_reaching([0.5, 0.9, 0.95], 0.9) == 2
    assert first_reaching([0.5, 0.89], 0.9) is None
    assert first_reaching([0.5], None) is None


def test_target_epochs_and_stop_at_target(data):
    full = small_fit(data, epochs=6, target_accuracy=0.9)
    assert full.epochs == 6 and full.epoch_test_target is not None
    assert full.test_accuracy[full.epoch_test_target - 1] >= 0.9
    assert all(a < 0.9 for a in full.test_accuracy[:full.epoch_test_target - 1])
    stopped = small_fit(data, epochs=6, target_accuracy=0.9, stop_at_target=True)
    both = max(full.epoch_test_target, full.epoch_train_target)
    assert stopped.epochs == both and stopped.stop_reason == "target"
    kept = small_fit(data, epochs=6, target_accuracy=0.9, stop_at_target=True, min_epochs=5)
    assert kept.epochs == max(both, 5)


def test_a_run_stuck_at_chance_stops_when_chasing_a_target(data):
    # test images of class 0 labelled 9: the model learns class 0, so test accuracy stays at 0.0
    zeros = data.train_images[data.train_labels == 0]
    stuck = type(data)(data.train_images, data.train_labels, zeros, torch.full((len(zeros),), 9), "synthetic")
    history = small_fit(stuck, epochs=20, target_accuracy=0.9, stop_at_target=True, min_epochs=2)
    assert history.stop_reason == "chance" and history.epochs == CHANCE_PATIENCE
    assert history.at_chance_since() == 1
    assert small_fit(stuck, epochs=7, target_accuracy=0.9).epochs == 7  # only when chasing a target
    assert small_fit(stuck, epochs=20, target_accuracy=0.9, stop_at_target=True, min_epochs=8).epochs == 8


@pytest.mark.parametrize("bad, message", [
    (dict(lr=0), "lr=0"), (dict(lr=-1.0), "lr=-1.0"), (dict(lr=float("nan")), "lr=nan"),
    (dict(lr=float("inf")), "lr=inf"), (dict(epochs=0), "epochs=0"), (dict(epochs=2.5), "epochs=2.5"),
    (dict(batch_size=0), "batch_size=0"), (dict(optimizer="rmsprop"), "optimizer='rmsprop'"),
    (dict(schedule="cosine"), "schedule='cosine'"), (dict(target_accuracy=90), "target_accuracy=90"),
])
def test_bad_settings_raise_value_error_before_training(data, bad, message):
    model = MLP((8,))
    before = [p.clone() for p in model.parameters()]
    settings = dict(epochs=1, lr=0.1, progress=False)
    settings.update(bad)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        fit(model, data, **settings)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_same_seed_gives_bitwise_identical_history(data):
    runs = [fit(build("base", seed=3), data, epochs=2, lr=0.05, seed=3, progress=False, track_gradient_steps=5)
            for _ in range(2)]
    a, b = (dict(vars(h)) for h in runs)
    for timing in ("seconds", "eval_seconds"):
        a.pop(timing), b.pop(timing)
    assert a == b  # exact float equality, not approx
    other = fit(build("base", seed=4), data, epochs=2, lr=0.05, seed=4, progress=False)
    assert other.step_loss != runs[0].step_loss


def test_first_epochs_equals_a_shorter_run(data):
    long = small_fit(data, epochs=4, target_accuracy=0.9)
    short = small_fit(data, epochs=2, target_accuracy=0.9)
    cut = long.first_epochs(2)
    assert cut.step_loss == short.step_loss and cut.test_accuracy == short.test_accuracy
    assert cut.epoch_test_target == short.epoch_test_target and cut.epochs == 2


def test_gradient_tracking_records_the_first_steps(data):
    history = small_fit(data, epochs=2, track_gradient_steps=25)
    assert len(history.gradient_mean) == len(history.gradient_abs_mean) == 25
    assert set(history.layer_gradient_mean) == {"linear_relu_stack.0", "linear_relu_stack.2"}
    assert all(a >= abs(m) for a, m in zip(history.gradient_abs_mean, history.gradient_mean))


def test_history_round_trips_through_json(data):
    history = small_fit(data, epochs=1)
    again = History.from_dict(json.loads(json.dumps(history.to_dict())))
    assert again.test_accuracy == pytest.approx(history.test_accuracy, rel=1e-5)
    assert again.epochs == 1 and again.settings["lr"] == 0.3


def test_cnn_trains_with_its_own_scheme(data):
    history = fit(build("cnn"), synthetic_data(train=2000), epochs=2, lr=0.01, batch_size=64,
                  optimizer="adamw", weight_decay=0.05, schedule="onecycle", progress=False)
    assert history.test_accuracy[-1] > 0.9 and history.train_loss[1] < history.train_loss[0]
