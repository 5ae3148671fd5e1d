"""The public classes and functions document their arguments, shapes and an
example (torchvision / kornia style), and every Example runs as written:
each is executed with doctest (on CPU, seeded in the example itself), and
its printed shapes, dtypes, values and tolerance checks must match."""
import doctest
import inspect

import pytest
import torch

import fastfreq
from fastfreq import aps, transforms

# what the package exports for users to build with (fastfreq.__all__ and the
# APS and torchvision modules the README points to)
CLASSES = [fastfreq.PowerSuppression, fastfreq.NFD, fastfreq.SpectralAugment,
           aps.ChannelAttention, aps.ExtendedChannelAttention, aps.AuxLabels]
FUNCTIONS = [fastfreq.spectral_augment, fastfreq.power_suppress, fastfreq.nfd,
             transforms.batch_params, aps.aux_loss]


def _tv_v2():
    from fastfreq import tv

    if tv.IMPORT_ERROR is not None:  # missing, or built for another torch
        pytest.skip(f"torchvision does not import: {tv.IMPORT_ERROR}")
    return tv.V2


def _run_examples(obj):
    """Run the docstring of ``obj`` itself (not of its methods) as a doctest;
    returns the report of what failed."""
    finder = doctest.DocTestFinder(recurse=False)
    (test,) = finder.find(obj, obj.__qualname__, globs={})
    assert test.examples, f"{obj.__qualname__}: no >>> example in its docstring"
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    state = torch.random.get_rng_state()
    try:
        runner.run(test, out=report.append)
    finally:
        torch.random.set_rng_state(state)  # the examples seed the global RNG
    return runner.failures, len(test.examples), "".join(report)


def _check(obj, sections):
    doc = inspect.getdoc(obj) or ""
    missing = [s for s in sections if f"\n{s}:\n" not in f"\n{doc}"]
    assert not missing, f"{obj.__qualname__}: docstring lacks {missing}"
    failures, n, report = _run_examples(obj)
    assert failures == 0, f"{obj.__qualname__}: {failures} of {n} examples failed\n{report}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_class_docstrings(cls):
    _check(cls, ("Args", "Shape", "Example"))


def test_tv_adapter_docstring():
    _check(_tv_v2(), ("Args", "Shape", "Example"))


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_function_docstrings(fn):
    _check(fn, ("Shape", "Example"))


def test_every_exported_class_is_covered():
    """A class added to fastfreq's exports gets its docstring test too."""
    exported = {getattr(fastfreq, n) for n in fastfreq.__all__}
    assert {c for c in exported if inspect.isclass(c) and issubclass(c, torch.nn.Module)} \
        <= set(CLASSES)


def test_a_wrong_example_output_fails():
    """The runner reports a failing example (not a vacuous pass)."""
    def wrong():
        """
        >>> 1 + 1
        3
        """
    failures, n, report = _run_examples(wrong)
    assert (failures, n) == (1, 1) and "Expected:\n    3" in report
