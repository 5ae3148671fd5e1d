"""fastfreq/constants.py and the C++ header hold the same numbers."""
import os
import re

from fastfreq import constants, reference

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc",
                      "spectral_common.h")


def header_value(name: str) -> float:
    text = open(HEADER).read()
    m = re.search(rf"constexpr\s+\w+\s+{name}\s*=\s*([0-9.eE+-]+)\s*;", text)
    assert m, f"{name} not found in {HEADER}"
    return float(m.group(1))


def test_cpp_header_agrees_with_constants():
    assert header_value("kDirEpsRel") == constants.DIR_EPS_REL
    assert header_value("kMaxNfdBands") == constants.MAX_NFD_BANDS


def test_reference_reads_the_constants():
    assert reference.DIR_EPS_REL is constants.DIR_EPS_REL
    assert reference.PAPER_BANDS is constants.PAPER_BANDS


def test_checks_read_the_constants():
    from fastfreq import _checks

    assert _checks.MAX_NFD_BANDS == constants.MAX_NFD_BANDS
