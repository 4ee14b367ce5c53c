"""Checked notebook cells print only numbers that are the same on every machine (issue: portable
nbval).

nbval compares the text of `# NBVAL_CHECK_OUTPUT` cells, so every printed digit is a promise. The
rule stated here: a number in a checked cell's output carries at most DEFAULT_DIGITS significant
digits (enough for a Monte Carlo figure at its standard error or a band), unless the cell declares
more with a line `# NBVAL_DIGITS: n <reason>` (float64 or closed-form values that hold n digits
everywhere); a number right after '<' or '>' is a bound, not a measurement, and is exempt; and no
checked cell prints a value at machine precision (0 < |x| < TINY), whose last digit depends on the
CPU's kernels; such a value is shown as a verdict (`< 1e-12: True`) instead. Training outcomes are
asserted in a band and printed as the band or a verdict; `make test-portable` replays the chapters
on another instruction set.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("book/*.ipynb"))
DEFAULT_DIGITS = 4
TINY = 1e-10
DECLARATION = re.compile(r"#\s*NBVAL_DIGITS:\s*(\d+)\s+(\S.*)")
# A decimal number: optional sign, digits with a point or an exponent (integers and counts are not
# floats).
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d+|\d+(?:\.\d+)?[eE][-+]?\d+)(?![\w.])")


def significant_digits(literal: str) -> int:
    """Significant digits of a printed decimal: '0.0063' -> 2, '-275.38' -> 5, '1.000' -> 4,
    '3.5e-02' -> 2."""
    mantissa = re.split(r"[eE]", literal.lstrip("+-"))[0]
    digits = mantissa.replace(".", "").lstrip("0")
    return max(len(digits), 1)


def checked_cells(path: Path):
    """(code-cell index, source, printed text) of every `# NBVAL_CHECK_OUTPUT` cell."""
    nb = nbformat.read(path, as_version=4)
    cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    for index, cell in enumerate(cells):
        if "NBVAL_CHECK_OUTPUT" not in cell.source:
            continue
        texts = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif "text/plain" in output.get("data", {}):
                texts.append(output.data["text/plain"])
        yield index, cell.source, "\n".join(texts)


def violations(source: str, text: str) -> list[str]:
    """What breaks the rule in one cell's output (empty when it is portable)."""
    declared = DECLARATION.search(source)
    allowed = int(declared.group(1)) if declared else DEFAULT_DIGITS
    found = []
    for match in NUMBER.finditer(text):
        literal = match.group()
        if re.search(r"[<>≤≥]=?\s*$", text[max(0, match.start() - 3) : match.start()]):
            continue  # a bound the cell compares against ('< 1e-12: True'), not a measured value
        value = float(literal)
        if 0 < abs(value) < TINY:
            found.append(
                f"{literal} is at machine precision; print a verdict such as '< 1e-12: True'"
            )
        elif significant_digits(literal) > allowed:
            found.append(
                f"{literal} has {significant_digits(literal)} significant digits, more than "
                f"{allowed}"
            )
    return found


@pytest.mark.parametrize(
    "literal, digits",
    [
        ("0.0063", 2),
        ("-275.38", 5),
        ("1.000", 4),
        ("3.5e-02", 2),
        ("2.5", 2),
        ("0.000", 1),
        ("1.000000000000", 13),
    ],
)
def test_significant_digits(literal, digits):
    assert significant_digits(literal) == digits


def test_rule_catches_fragile_prints_and_accepts_declared_ones():
    assert violations("print(x)", "difference 2e-16") and violations("print(x)", "NLL 0.24531")
    assert violations("# NBVAL_DIGITS: 5 float64 quadrature\n", "sum = 1.000000000000")
    assert not violations("# NBVAL_DIGITS: 13 float64 identity\n", "sum = 1.000000000000")
    assert not violations(
        "print(x)", "accuracy in [0.90, 0.95]: True; 3,136,000 pixels; 0 errors; step 1000"
    )
    assert not violations("print(x)", "max |J_g J_f - I| < 1e-12: True, error <= 0.00125: True")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_cells_print_portable_numbers(path):
    problems = [
        f"code cell {index}: {problem}"
        for index, source, text in checked_cells(path)
        for problem in violations(source, text)
    ]
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_digit_declarations_give_a_reason(path):
    for index, source, _ in checked_cells(path):
        for line in source.splitlines():
            if "NBVAL_DIGITS" in line:
                assert DECLARATION.search(line), (
                    f"{path.name} code cell {index}: '{line}' needs 'n reason'"
                )
