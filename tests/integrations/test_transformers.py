"""GradientflowCallback inside a real Hugging Face Trainer (tiny BERT from a config), against a plain Probe."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="needs the transformers extra")
pytest.importorskip("accelerate", reason="the Trainer needs accelerate (the transformers extra)")

from gradientflow import Probe  # noqa: E402
from gradientflow.integrations.transformers import GradientflowCallback  # noqa: E402

from .conftest import assert_same_rows, hook_count  # noqa: E402

EXAMPLES, LR, STEPS = 8, 0.1, 3


def tiny_bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_act="relu",  # an nn.ReLU module: an activation row
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=16,
        num_labels=2,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def examples() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 32, (EXAMPLES, 8), generator=generator)
    labels = torch.randint(0, 2, (EXAMPLES,), generator=generator)
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": labels[i]}
        for i in range(EXAMPLES)
    ]


class FailAt(transformers.TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == 2:
            raise RuntimeError("data loader died (simulated)")


def train(model: torch.nn.Module, callbacks: list, folder: Path, accumulate: int, steps: int = STEPS) -> None:
    args = transformers.TrainingArguments(
        output_dir=str(folder),
        per_device_train_batch_size=EXAMPLES // accumulate,
        gradient_accumulation_steps=accumulate,
        max_steps=steps,
        learning_rate=LR,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,  # no clipping: the plain loop below does not clip either
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=examples(), callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        trainer.train()


def plain_loop_frame(steps: int) -> pd.DataFrame:
    """The same training by hand: the whole batch of 8 per optimizer step, SGD, no clipping."""
    model = tiny_bert()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    batch = {key: torch.stack([e[key] for e in examples()]) for key in ("input_ids", "attention_mask", "labels")}
    with Probe(model, every=1) as probe:
        for _ in range(steps):
            model(**batch).loss.backward()
            optimizer.step()
            probe.step()
            optimizer.zero_grad()
    return probe.frame()


@pytest.fixture(scope="module")
def plain() -> pd.DataFrame:
    return plain_loop_frame(STEPS)


def test_rows_equal_a_plain_probe_on_the_same_loop(tmp_path: Path, plain: pd.DataFrame) -> None:
    callback = GradientflowCallback(every=1, on_alert=None)
    model = tiny_bert()
    train(model, [callback], tmp_path, accumulate=1)
    frame = callback.frame()
    assert sorted(frame["step"].unique()) == list(range(STEPS))
    assert frame.loc[frame["kind"] == "activation", "layer"].str.endswith("intermediate_act_fn").any()
    assert frame["update_ratio"].notna().any()  # measured after the optimizer stepped
    assert hook_count(model) == 0 and callback.probe is None
    # the Trainer shuffles the 8 examples; every statistic is over examples, so only float rounding differs
    assert_same_rows(frame, plain, rtol=1e-4)


def test_accumulated_micro_batches_pool_into_one_probe_step(tmp_path: Path, plain: pd.DataFrame) -> None:
    callback = GradientflowCallback(every=1, on_alert=None)
    train(tiny_bert(), [callback], tmp_path, accumulate=2, steps=2)
    frame = callback.frame()
    assert sorted(frame["step"].unique()) == [0, 1]  # one probe step per optimizer step, not per micro-batch
    first, whole = frame[frame["step"] == 0].reset_index(drop=True), plain[plain["step"] == 0].reset_index(drop=True)
    # both micro-batches of 4 are in step 0's rows: the same distribution as the batch of 8
    pre = ["pre_mean", "pre_std", "pre_min", "pre_max", "pre_p50", "saturated_frac"]
    pd.testing.assert_frame_equal(first[pre], whole[pre], rtol=1e-4, atol=1e-9)
    # the gradients are the batch's up to the one factor this Trainer version scales the loss by
    activation = first["kind"] == "activation"
    ratio = (first["grad_rms"] / whole["grad_rms"])[activation]
    assert ratio.max() == pytest.approx(ratio.min(), rel=1e-4)


def test_an_exception_closes_the_probe_inside_with(tmp_path: Path) -> None:
    callback = GradientflowCallback(every=1, on_alert=None, store=tmp_path / "runs.db")
    model = tiny_bert()
    with pytest.raises(RuntimeError, match="simulated"), callback:
        train(model, [callback, FailAt()], tmp_path, accumulate=1)
    assert hook_count(model) == 0 and callback.probe is None
    assert sorted(callback.frame()["step"].unique()) == [0, 1]
    from gradientflow.store import Store

    with Store(tmp_path / "runs.db", readonly=True) as store:
        run = store.run(callback.run_id)
    assert run["status"] == "failed" and "simulated" in run["message"]
