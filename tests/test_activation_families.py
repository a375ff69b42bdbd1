"""One table of activation families: spec, models, probe and verdicts agree with it."""

from __future__ import annotations

import typing

import pytest

from gradientflow import activation_families as families
from gradientflow.analysis import verdicts
from gradientflow.errors import SpecError
from gradientflow.models.activations import ACTIVATIONS
from gradientflow.probe import activations as probe_activations
from gradientflow.spec import from_dict
from gradientflow.spec.schema import ActivationName


def test_the_spec_accepts_exactly_the_buildable_activations() -> None:
    assert typing.get_args(ActivationName) == families.SPEC_ACTIVATIONS
    assert tuple(ACTIVATIONS) == families.SPEC_ACTIVATIONS  # models builds each of them


def test_the_probe_has_a_saturation_rule_for_every_name() -> None:
    assert probe_activations.ACTIVATION_NAMES == families.ACTIVATION_NAMES
    for name in families.ACTIVATION_NAMES:
        assert probe_activations.rule_for_name(name, 0.05).name == name


def test_verdicts_read_the_families_from_the_table() -> None:
    assert verdicts.BOUNDED is families.BOUNDED and verdicts.RELU_LIKE is families.RELU_LIKE
    assert {"sigmoid", "tanh", "hardtanh", "hardsigmoid", "logsigmoid"} == families.BOUNDED
    assert not families.BOUNDED & families.RELU_LIKE
    assert {families.family_of(n) for n in families.ACTIVATION_NAMES} == {"bounded", "relu_like", "linear"}
    assert families.family_of("swish-ish") is None


def test_a_spec_naming_an_unbuildable_activation_is_refused_with_the_choices() -> None:
    with pytest.raises(SpecError, match="mish") as caught:
        from_dict({"name": "x", "model": {"activation": "mish"}})
    assert "sigmoid" in str(caught.value)
