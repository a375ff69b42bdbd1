"""Hugging Face models built from tiny configs (no download): every activation and norm found,
each activation row against the test's own hooks on the activation modules' inputs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gradientflow import Probe

from .reference import assert_rows_match, reference_row, thresholds  # noqa: F401  (a fixture)

transformers = pytest.importorskip("transformers")

HF_ACTIVATIONS = ("GELUActivation", "NewGELUActivation", "SiLUActivation", "Tanh")


def _bert() -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return transformers.BertForMaskedLM(config)


def _gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    return transformers.GPT2LMHeadModel(config)


def _llama() -> nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        attention_dropout=0.0,
    )
    return transformers.LlamaForCausalLM(config)


MODELS = {"bert": (_bert, "GELUActivation", "LayerNorm"), "gpt2": (_gpt2, "NewGELUActivation", "LayerNorm")}
MODELS["llama"] = (_llama, "SiLUActivation", "LlamaRMSNorm")


def _loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, labels=ids).loss


def _reference(model: nn.Module, ids: torch.Tensor, samples: int | None) -> dict[str, dict[str, float]]:
    """The inputs of the activation modules, kept by hooks of the test's own with retain_grad."""
    model = copy.deepcopy(model)
    kept: dict[str, tuple[nn.Module, torch.Tensor]] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            args[0].retain_grad()
            kept[name] = (module, args[0])

        return hook

    for name, module in model.named_modules():
        if type(module).__name__ in HF_ACTIVATIONS:
            module.register_forward_pre_hook(keep(name))
    _loss(model, ids).backward()
    return {name: reference_row(x, x.grad, module, samples=samples) for name, (module, x) in kept.items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_activation_row_of_a_transformer_matches_its_own_hooks(name: str, thresholds: dict[str, int]) -> None:  # noqa: F811
    factory, activation_class, norm_class = MODELS[name]
    torch.manual_seed(0)
    model = factory()
    ids = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(1))
    expected = _reference(model, ids, thresholds.get("max_percentile_samples", 4096))
    assert len(expected) >= 2
    with Probe(model, **thresholds) as probe:
        _loss(model, ids).backward()
        probe.step()
    frame = probe.frame()
    activations = frame[frame.kind == "activation"]
    # one row per activation module, about its input: the ops inside it are no rows of their own
    assert sorted(activations["layer"]) == sorted(expected), list(activations["layer"])
    assert set(activations["module_type"]) <= {activation_class, "Tanh"}
    assert_rows_match(frame, expected)
    norms = frame[frame.kind == "norm"]
    assert len(norms) >= 2 and set(norms["module_type"]) == {norm_class}
    assert (activations["grad_rms"] > 0).all()
