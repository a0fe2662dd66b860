"""Recipe and fit(): validation, learning, divergence, the stopping rule, repeatability, the History."""
import json
import math
import re
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CPU, synthetic_data
from helpers import training
from helpers.models import build
from helpers.training import History, Recipe, first_reaching, fit, stalled

SMALL = Recipe(model="base", lr=0.3, epochs=3, batch_size=32)
TINY_DATA = synthetic_data(train=32, validation=16, test=16)


def small_fit(data, **changes) -> History:
    return fit(build("base", seed=0), data, replace(SMALL, **changes), CPU)


def test_fit_learns_a_learnable_problem(data):
    history = small_fit(data)
    assert history.epochs == 3 and history.stop_reason == "epochs"
    assert history.train_loss[-1] < 0.5 * history.step_loss[0]
    assert history.test_accuracy[-1] > 0.9 and history.validation_accuracy[-1] > 0.9
    assert history.train_accuracy[-1] > 0.9  # eval mode, on the fixed training sample
    assert len(history.step_loss) == 3 * math.ceil(640 / 32)
    assert len(history.seconds) == len(history.eval_seconds) == 3
    assert history.parameters == 669_706 and history.data_sizes == data.sizes
    assert sum(map(sum, history.confusion)) == 200
    assert history.finished >= history.started > 1.7e12  # milliseconds, stored exactly
    assert history.machine["device"] == "cpu" and history.machine["kernels"]


def test_train_accuracy_is_measured_in_eval_mode_on_the_fixed_sample(data, monkeypatch):
    seen = []
    real = training.evaluate

    def spy(model, images, labels):
        result = real(model, images, labels)
        seen.append((model.training, len(labels)))
        return result
    monkeypatch.setattr(training, "evaluate", spy)
    small_fit(data, epochs=1)
    assert seen[0] == (False, data.train_eval)
    assert [n for _, n in seen] == [data.train_eval, 100, 200]  # then validation, then test


def test_evaluation_in_batches_equals_one_pass():
    data = synthetic_data(test=1000)
    model = build("base", seed=0)
    loss, accuracy = training.evaluate(model, data.test_images, data.test_labels)
    with torch.no_grad():
        logits = model(data.test_images.float() / 255)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, data.test_labels)), rel=1e-5)
    assert accuracy == pytest.approx(float((logits.argmax(1) == data.test_labels).double().mean()))


def test_huge_learning_rate_is_reported_as_diverged_not_raised(data):
    history = small_fit(data, lr=1e12, gradient_epochs=3)
    assert history.diverged and history.stop_reason == "diverged"
    assert history.diverged_step >= 1 and len(history.step_loss) == history.diverged_step - 1
    assert all(math.isfinite(v) for v in history.step_loss)
    assert history.confusion is None and history.epochs == 0
    assert len(history.gradients["steps"]["signed_mean"]) == history.diverged_step - 1  # the steps before it
    json.dumps(history.to_dict(), allow_nan=False)  # no NaN reaches the results file


def test_first_reaching_is_one_based_and_none_when_missed():
    assert first_reaching([0.5, 0.9, 0.95], 0.9) == 2
    assert first_reaching([0.5, 0.89], 0.9) is None
    assert first_reaching([0.5], None) is None


def test_stop_once_train_and_validation_reach_the_target(data):
    full = small_fit(data, epochs=6)
    both = max(first_reaching(full.train_accuracy, 0.9), first_reaching(full.validation_accuracy, 0.9))
    stopped = small_fit(data, epochs=6, target_accuracy=0.9)
    assert stopped.epochs == both and stopped.stop_reason == "target"
    assert small_fit(data, epochs=6, target_accuracy=0.9, min_epochs=5).epochs == max(both, 5)
    assert small_fit(data, epochs=6, target_accuracy=0.1).epochs == 1  # reached in epoch 1


def test_the_test_set_never_decides_when_a_run_stops(data):
    """Validation reaches the target, test never does (its labels are wrong): the run stops on reaching it."""
    wrong = type(data)(data.train_images, data.train_labels, data.validation_images, data.validation_labels,
                       data.test_images, (data.test_labels + 1) % 10, data.train_eval)
    history = small_fit(wrong, epochs=6, target_accuracy=0.9)
    assert max(history.test_accuracy) < 0.2 and history.validation_accuracy[-1] >= 0.9
    assert history.stop_reason == "target" and history.epochs < 6
    assert history.epochs == max(first_reaching(history.train_accuracy, 0.9),
                                 first_reaching(history.validation_accuracy, 0.9))


def test_stalled_means_no_new_best_for_patience_epochs():
    assert not stalled([0.1, 0.2, 0.3], patience=2)                # still climbing
    assert stalled([0.5, 0.4, 0.5, 0.45], patience=2)              # a tie is no gain
    assert not stalled([0.5, 0.4, 0.45, 0.51], patience=2)         # a new best in the last two
    assert not stalled([0.5, 0.4], patience=2)                     # too short to tell
    climbing_slowly = [0.6 + 0.001 * i for i in range(50)]
    assert not stalled(climbing_slowly, patience=10)               # a run still climbing goes on, however slowly


def test_a_stuck_run_stops_after_patience_epochs_without_gain(data):
    # test and validation images of class 0 labelled 9: the model learns class 0, so they stay at 0 %
    zeros = data.test_images[data.test_labels == 0]
    stuck = type(data)(data.train_images, data.train_labels, zeros, torch.full((len(zeros),), 9), zeros,
                       torch.full((len(zeros),), 9), data.train_eval)
    history = small_fit(stuck, epochs=20, target_accuracy=0.99, min_epochs=2, patience=2)
    assert history.stop_reason == "stalled" and history.epochs < 20
    assert small_fit(stuck, epochs=4).epochs == 4  # only a run chasing a target stops early


@pytest.mark.parametrize("bad, message", [
    (dict(lr=0), "lr=0"), (dict(lr=-1.0), "lr=-1.0"), (dict(lr=float("nan")), "lr=nan"),
    (dict(lr=float("inf")), "lr=inf"), (dict(epochs=0), "epochs=0"), (dict(epochs=2.5), "epochs=2.5"),
    (dict(batch_size=0), "batch_size=0"), (dict(optimizer="rmsprop"), "optimizer='rmsprop'"),
    (dict(schedule="cosine"), "schedule='cosine'"), (dict(target_accuracy=90), "target_accuracy=90"),
    (dict(model="resnet"), "model='resnet'"), (dict(gradient_epochs=-1), "gradient_epochs=-1"),
    (dict(patience=0), "patience=0"), (dict(target_accuracy=0.9, min_epochs=10), "min_epochs=10 > epochs=3"),
    (dict(min_epochs=2), "min_epochs=2 applies only with target_accuracy"), (dict(gradient_epochs=4), "gradient_epochs=4"),
    (dict(optimizer="adamw", momentum=0.9), "momentum=0.9 applies to optimizer='sgd' only"),
    (dict(schedule="onecycle", target_accuracy=0.9), "target_accuracy=0.9 stops a run early"),
    (dict(momentum=1.0), "momentum=1.0"), (dict(flip=1), "flip=1"), (dict(seed=-1), "seed=-1"),
])
def test_a_bad_recipe_is_one_value_error_on_construction(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")) as error:
        replace(SMALL, **bad)
    assert "\n" not in str(error.value)


def timeless(history: History) -> dict:
    values = dict(vars(history))
    for timing in ("seconds", "eval_seconds", "started", "finished"):
        values.pop(timing)
    return values


def test_same_seed_gives_bitwise_identical_history(data):
    runs = [small_fit(data, epochs=2, lr=0.05, seed=3, gradient_epochs=1) for _ in range(2)]
    assert timeless(runs[0]) == timeless(runs[1])  # exact float equality, not approx
    assert small_fit(data, epochs=2, lr=0.05, seed=4).step_loss != runs[0].step_loss


def test_a_run_uses_one_thread_whatever_the_machine_has(data, monkeypatch):
    seen = []
    real = training.train_epoch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)
    monkeypatch.setattr(training, "train_epoch", spy)
    before = torch.get_num_threads()
    small_fit(data, epochs=1)
    assert seen == [1] and torch.get_num_threads() == before


FIELDS = {
    "model": st.sampled_from(["base", "cnn", "wider", "resnet", ""]),
    "lr": st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-2, 2), st.booleans()),
    "epochs": st.one_of(st.integers(-1, 3), st.floats(0, 3), st.just("2")),
    "optimizer": st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]),
    "batch_size": st.integers(-1, 40), "momentum": st.one_of(st.just(0.0), st.floats(-0.5, 1.5)),
    "weight_decay": st.one_of(st.just(0.0), st.floats(-1, 1), st.just(float("nan"))),
    "schedule": st.sampled_from(["constant", "onecycle", "cosine"]), "flip": st.sampled_from([False, True, 1]),
    "seed": st.integers(-1, 3), "target_accuracy": st.one_of(st.none(), st.floats(-0.5, 1.5), st.just(90)),
    "min_epochs": st.integers(0, 4), "patience": st.integers(0, 11), "gradient_epochs": st.integers(-1, 4),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=FIELDS))
def test_every_recipe_either_trains_or_names_its_wrong_field_in_one_line(fields):
    """Random combinations of the fields (valid and not): each recipe either constructs and trains (a few
    steps on 32 images), or fails at construction with one ValueError line that names a field and its value."""
    fields = {"model": "base", "lr": 0.1, "epochs": 1, **fields}
    try:
        recipe = Recipe(**fields)
    except ValueError as error:
        message = str(error)
        assert "\n" not in message and re.match(rf"({'|'.join(FIELDS)})=", message), message
        return
    history = fit(build(recipe.model, recipe.seed), TINY_DATA, recipe, CPU)
    assert history.epochs >= 1 or history.diverged
    json.dumps(history.to_dict(), allow_nan=False)


def test_first_epochs_equals_a_shorter_run(data):
    long = small_fit(data, epochs=4, gradient_epochs=4)
    short = small_fit(data, epochs=2, gradient_epochs=2)
    cut = long.first_epochs(2)
    assert cut.step_loss == short.step_loss and cut.test_accuracy == short.test_accuracy
    assert cut.train_accuracy == short.train_accuracy and cut.epochs == 2 and cut.stop_reason == "epochs"
    blocks = cut.gradients["blocks"]["abs_mean"]  # whole blocks only: 40 steps make no 50-step block
    assert blocks == short.gradients["blocks"]["abs_mean"][:len(blocks)]
    assert long.first_epochs(4).confusion == long.confusion and cut.confusion is None


def test_first_epochs_of_a_run_that_diverged_later_or_earlier(data):
    late = replace(small_fit(data, epochs=3), stop_reason="diverged", diverged_step=70)  # in epoch 4
    early = History(**{**vars(late), "test_accuracy": [0.5], "diverged_step": 25})        # in epoch 2
    assert late.first_epochs(2).stop_reason == "epochs" and late.first_epochs(2).diverged_step is None
    assert early.first_epochs(2).stop_reason == "diverged" and early.first_epochs(2).diverged_step == 25


def test_the_trace_covers_only_the_first_gradient_epochs(data):
    history = small_fit(data, epochs=3, gradient_epochs=1)
    steps_per_epoch = math.ceil(640 / 32)
    assert len(history.gradients["steps"]["signed_mean"]) == steps_per_epoch  # fewer than 100 in one epoch
    assert len(history.gradients["blocks"]["abs_mean"]) == 1  # 20 steps: one short block
    untraced = small_fit(data, epochs=3)
    assert untraced.gradients is None and untraced.step_loss == history.step_loss  # tracing changes no number


def test_history_round_trips_through_json(data):
    history = small_fit(data, epochs=1, gradient_epochs=1)
    again = History.from_dict(json.loads(json.dumps(history.to_dict())))
    assert again.test_accuracy == pytest.approx(history.test_accuracy, rel=1e-5)
    assert again.recipe == history.recipe and again.started == history.started
    assert again.gradients["steps"]["signed_mean"] == pytest.approx(history.gradients["steps"]["signed_mean"], rel=1e-5)


def test_cnn_trains_with_its_own_scheme():
    recipe = Recipe(model="cnn", lr=0.01, epochs=2, batch_size=64, optimizer="adamw", weight_decay=0.05,
                    schedule="onecycle", flip=True)
    history = fit(build("cnn"), synthetic_data(train=2000), recipe, CPU)
    assert history.test_accuracy[-1] > 0.9 and history.train_loss[1] < history.train_loss[0]


def test_confusion_matrix_is_true_by_predicted():
    class Always3(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float()
    labels = torch.tensor([0, 0, 1, 3])
    matrix = training.confusion_matrix(Always3(), torch.zeros(4, 1, 28, 28, dtype=torch.uint8), labels)
    assert matrix[0, 3] == 2 and matrix[1, 3] == 1 and matrix[3, 3] == 1 and matrix.sum() == 4
    assert matrix[3, 0] == 0  # rows are the true class, columns the prediction
