"""One name for one idea across the library's public functions (issue 10, item 7).

Checked on every public function and method of every module: a confidence level is called ``level``
(never ``confidence``, ``ci``, ``conf_level``); randomness comes in through ``seed`` (an int or a
numpy Generator) whose default is ``None`` (no hidden fixed seed); domains are given with ``by=``
(never ``groups``, ``group_by``, ``domain``). The command line and the demo writers, whose fixed
seed is the documented demo seed, are outside this rule.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import sipas_lib

EXEMPT_MODULES = ("sipas_lib.cli", "sipas_lib.simulate", "sipas_lib.simulate_national")
LEVEL_ALIASES = {"confidence", "ci", "conf_level", "ci_level", "confidence_level"}
RANDOM_ALIASES = {"random_state", "rng", "random_seed", "generator"}
DOMAIN_ALIASES = {"groups", "group_by", "groupby", "domain", "domains"}


def _public_functions():
    for info in pkgutil.walk_packages(sipas_lib.__path__, "sipas_lib."):
        if info.name.endswith("__main__") or info.name.startswith(EXEMPT_MODULES):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj):
                for attr, fn in vars(obj).items():
                    if inspect.isfunction(fn) and not attr.startswith("_"):
                        yield f"{module.__name__}.{name}.{attr}", fn


FUNCTIONS = sorted(_public_functions(), key=lambda item: item[0])


def test_there_are_public_functions_to_check():
    assert len(FUNCTIONS) > 150


@pytest.mark.parametrize("name,function", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_public_function_keeps_the_naming_conventions(name, function):
    params = inspect.signature(function).parameters
    assert not LEVEL_ALIASES & set(params), f"{name}: call the confidence level `level`"
    assert not RANDOM_ALIASES & set(params), f"{name}: take randomness as `seed` (int or Generator)"
    assert not DOMAIN_ALIASES & set(params), f"{name}: give domains with `by=`"
    if "seed" in params:
        assert params["seed"].default in (None, inspect.Parameter.empty), f"{name}: seed must default to None"
    if "level" in params and params["level"].default is not inspect.Parameter.empty:
        default = params["level"].default
        assert default is None or 0.5 <= default < 1, f"{name}: level is a confidence level, got {default!r}"
