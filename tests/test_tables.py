"""Page tables: no index column, one precision per column, long lists summarised, verdicts coloured."""

import pandas as pd
import pytest

from modgraph import tables


@pytest.mark.parametrize("values,decimals", [([1, 2, 3], 0), ([0.51, 0.02], 3), ([94.78, 3.5], 2),
                                             ([1.5e6, 2.25], 0), ([2.0, 4.0], 0), ([], 0)])
def test_column_decimals_follow_the_largest_value(values, decimals):
    assert tables.column_decimals(values) == decimals


def test_format_number_is_never_raw_float_repr():
    assert tables.format_number(-5.365280e-07, 3) == "-5.4e-07"
    assert tables.format_number(0.123456, 3) == "0.123"
    assert tables.format_number(1234567.0, 0) == "1,234,567"
    assert tables.format_number(0.0, 3) == "0.000"
    assert tables.format_number(float("nan"), 3) == tables.format_number(None, 3) == tables.MISSING


def test_long_lists_and_text_are_summarised_but_kept_whole():
    assert tables.format_cell(["a", "b"]) == "a, b"
    assert tables.format_cell(list(range(10))) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    assert tables.summary("0, 1, 2, 3, 4, 5, 6, 7, 8, 9") == "0, 1, 2, 3, … (10 in all)"
    assert tables.summary("short text") is None
    prose = "word " * 60
    assert tables.summary(prose).endswith(" …") and len(tables.summary(prose)) <= tables.LONG_CELL // 2
    out = tables.to_html(pd.DataFrame({"plateau": [list(range(10))], "reason": [prose.strip()]}))
    assert "<details><summary>0, 1, 2, 3, … (10 in all)</summary>0, 1, 2, 3, 4, 5, 6, 7, 8, 9</details>" in out
    assert f"</summary>{prose.strip()}</details>" in out and out.count('<td class="text">') == 1  # the prose; the list is short
    assert tables.format_cell({"pgd": {"nb_iter": 10}}) == "pgd: nb_iter: 10"
    assert tables.format_cell(True) == "yes"


def test_only_cells_with_a_long_word_may_break_it_anywhere():
    frame = pd.DataFrame({"attack": ["CarliniWagnerL2Attack", "cifar10 vgg19_2"],
                          "parameters": ["binary_search_steps=3, max_iterations=100", "eps=0.3"]})
    out = tables.to_html(frame)
    assert '<td class="token">CarliniWagnerL2Attack</td>' in out and "<td>cifar10 vgg19_2</td>" in out
    assert '<td class="text token">binary_search_steps=3, max_iterations=100</td>' in out and "<td>eps=0.3</td>" in out


def test_to_html_drops_the_default_index_and_keeps_a_named_one():
    frame = pd.DataFrame({"q": [0.5123, -5.36528e-07], "verdict": ["holds", "not measured"]})
    out = tables.to_html(frame)
    assert "<th>q</th><th>verdict</th>" in out and ">0<" not in out  # no index column 0, 1
    assert '<td class="num">0.512</td>' in out and '<td class="num">-5.4e-07</td>' in out
    assert '<span class="verdict verdict-holds">holds</span>' in out
    assert '<span class="verdict verdict-unmeasured">not measured</span>' in out
    named = tables.to_html(frame.set_index(pd.Index(["conv1", "fc"], name="layer")))
    assert named.index("<th>layer</th>") < named.index("<th>q</th>") and "<td>conv1</td>" in named


def test_to_html_escapes_and_rejects_non_frames():
    assert "&lt;wnid&gt;" in tables.to_html(pd.DataFrame({"note": ["data/<wnid>/"]}))
    with pytest.raises(ValueError, match="DataFrame"):
        tables.to_html([1, 2])


def test_install_needs_a_kernel():
    assert tables.install() is False
