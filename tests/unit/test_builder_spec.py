"""User model builders: the admin's allow-list, the ``code:admin`` action, the spec, building
the module and loading the user's own weights into it."""

from __future__ import annotations

import pytest
import torch

from inhouse.access.permissions import ACTIONS, Principal, RoleBinding, is_allowed
from inhouse.config import load_settings
from inhouse.errors import ConfigError, IntegrityError, InvalidInputError
from inhouse.kinds import build_model, kind_for_spec, kind_named
from inhouse.models.builder import (
    BuilderSpec,
    build_user_model,
    check_allowed,
    check_forward,
    load_user_weights,
    parse_kwargs,
    split_target,
)
from tests.user_models.nets import ResidualNet, residual

TARGET = "tests.user_models.nets:residual"


def _spec(**changes: object) -> BuilderSpec:
    fields = {"builder": TARGET, "kwargs": {"inputs": 4, "width": 8, "classes": 3}}
    return BuilderSpec.model_validate(fields | {"input_dim": 4, "num_classes": 3} | changes)


def test_no_builder_is_allowed_until_an_admin_lists_its_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().models.allowed_builder_prefixes == []
    with pytest.raises(ConfigError, match=r"allowed: none.*models.allowed_builder_prefixes"):
        check_allowed(TARGET, allowed_prefixes=[])
    monkeypatch.setenv("INHOUSE_MODELS__ALLOWED_BUILDER_PREFIXES", '["tests.user_models"]')
    prefixes = load_settings().models.allowed_builder_prefixes
    assert check_allowed(TARGET, allowed_prefixes=prefixes) == TARGET
    assert check_allowed("tests.user_models:f", allowed_prefixes=prefixes)
    for refused in ("tests.user_modelsx.evil:f", "tests.user:f", "os:system"):
        with pytest.raises(ConfigError, match="not under an allowed module prefix"):
            check_allowed(refused, allowed_prefixes=prefixes)


@pytest.mark.parametrize("prefix", ["*", "", "tests.", "a b", "tests.*"])
def test_a_wildcard_or_malformed_prefix_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("INHOUSE_MODELS__ALLOWED_BUILDER_PREFIXES", f'["{prefix}"]')
    with pytest.raises(ConfigError, match="models.allowed_builder_prefixes"):
        load_settings()


def test_registering_code_is_an_admin_action_no_other_role_holds() -> None:
    assert "code:admin" in ACTIONS
    admin = Principal("root", roles=frozenset({RoleBinding("admin")}))
    assert is_allowed(admin, "code:admin", "*")
    for role in ("ml-engineer", "operator", "trainer", "analyst", "service"):
        assert not is_allowed(
            Principal("p", roles=frozenset({RoleBinding(role)})), "code:admin", "*"
        )


@pytest.mark.parametrize(
    "target", ["tests.user_models.nets", "nets:", ":f", "a..b:f", "a.b:f()", "a/b:f", "a:b:c"]
)
def test_a_target_must_be_module_colon_function(target: str) -> None:
    with pytest.raises(InvalidInputError, match="package.module:function"):
        split_target(target)
    with pytest.raises(ValueError):
        _spec(builder=target)


def test_kwargs_are_a_json_object() -> None:
    assert parse_kwargs(None) == {} and parse_kwargs('{"width": 8}') == {"width": 8}
    for bad, why in (("[1]", "JSON object"), ("{width: 8}", "not valid JSON")):
        with pytest.raises(InvalidInputError, match=why):
            parse_kwargs(bad)
    with pytest.raises(InvalidInputError, match="larger than"):
        parse_kwargs('{"a": "' + "x" * 70_000 + '"}')


def test_the_tabular_kind_builds_the_users_module_behind_an_identity_scaling() -> None:
    spec = _spec().model_dump()
    assert kind_for_spec(spec) is kind_named("tabular")
    module = build_model(spec)
    assert isinstance(module[1], ResidualNet)
    torch.manual_seed(1)
    user = residual(4, 8, 3)
    load_user_weights(module, user.state_dict())
    x = torch.randn(5, 4) * 10
    with torch.inference_mode():
        assert torch.allclose(module.eval()(x), user(x))
    check_forward(module, _spec())
    assert set(module.state_dict()) == {"0.mean", "0.std"} | {f"1.{k}" for k in user.state_dict()}


def test_weights_that_do_not_fit_are_refused_by_name() -> None:
    module = build_user_model(_spec())
    with pytest.raises(IntegrityError, match=r"missing \['block.0.bias'"):
        load_user_weights(
            module, {k: v for k, v in residual(4, 8, 3).state_dict().items() if k != "block.0.bias"}
        )
    with pytest.raises(
        IntegrityError, match=r"other shapes \['stem.weight \[9, 4\] \(module: \[8, 4\]\)"
    ):
        load_user_weights(module, residual(4, 9, 3).state_dict())


def test_a_builder_that_fails_or_answers_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be imported on this node.*every node"):
        build_user_model(_spec(builder="tests.user_models.absent:residual"))
    with pytest.raises(ConfigError, match="has no function nothing"):
        build_user_model(_spec(builder="tests.user_models.nets:nothing"))
    with pytest.raises(InvalidInputError, match="returned dict, not a torch nn.Module"):
        build_user_model(_spec(builder="tests.user_models.nets:not_a_module", kwargs={"inputs": 4}))
    with pytest.raises(InvalidInputError, match="failed with kwargs.*TypeError"):
        build_user_model(_spec(kwargs={"inputs": 4, "depth": 2}))
    two = _spec(kwargs={"inputs": 4, "width": 8, "classes": 2})
    with pytest.raises(InvalidInputError, match=r"logits \[n, 3\].*got \[2, 2\]"):
        check_forward(build_user_model(two), _spec())
    wide = _spec(kwargs={"inputs": 5, "width": 8, "classes": 3})
    with pytest.raises(InvalidInputError, match=r"forward on a float tensor \[2, 4\] failed"):
        check_forward(build_user_model(wide), _spec())


def test_training_refuses_a_builder_the_clusters_settings_do_not_allow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inhouse.config import TrainSettings
    from inhouse.data import DatasetInfo
    from inhouse.kinds.tabular.training import builder_spec

    info = DatasetInfo("d", "tabular", 4, list("abcd"), ["x", "y", "z"], 9, 6, 3, 1, 9)
    options = TrainSettings(builder=TARGET, builder_kwargs='{"inputs": 4, "classes": 3}')
    with pytest.raises(ConfigError, match="not under an allowed module prefix"):
        builder_spec(load_settings(), info, options)
    monkeypatch.setenv("INHOUSE_MODELS__ALLOWED_BUILDER_PREFIXES", '["tests.user_models"]')
    spec = builder_spec(load_settings(), info, options)
    assert (spec["kind"], spec["kwargs"], spec["class_names"]) == (
        "torch_module",
        {"inputs": 4, "classes": 3},
        ["x", "y", "z"],
    )
