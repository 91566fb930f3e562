"""The published site: links to results, the rerun command, admonitions, the claims page."""

import re
import shlex

import pytest

from modgraph import book, site

PARAMS = {"datasets": ["digits"], "k": 3, "epochs": None, "width": 0.125, "tap": "block",
          "attack_overrides": {"pgd": {"nb_iter": 10, "eps_iter": 0.03}}, "note": 'it\'s "quoted" \\ here'}


def test_rerun_command_round_trips_every_parameter():
    command = site.rerun_command("02_adversarial", "smoke", PARAMS)
    make = shlex.split(command)  # what the shell gives make
    assert make[:4] == ["make", "figure", "NB=02_adversarial", "PROFILE=smoke"]
    words = shlex.split(make[4].removeprefix("P="))  # make pastes $(P) into a shell command line
    pairs = [words[i + 1:i + 3] for i in range(0, len(words), 3)]
    assert words[::3] == ["-p"] * len(PARAMS)
    assert book.parse_overrides(pairs) == PARAMS
    assert site.rerun_command("00_overview", "quick", {}) == "make figure NB=00_overview PROFILE=quick"
    with pytest.raises(ValueError, match=r"parameters \['x'\] hold '\$'"):
        site.rerun_command("00_overview", "quick", {"x": "$HOME"})


def test_link_goes_up_from_the_chapter_pages():
    assert site.link("results/smoke/01_curves.json") == "../results/smoke/01_curves.json"
    assert site.link("results/x.png", page_dir="") == "results/x.png"
    for bad in ("/abs/x.png", "../x.png"):
        with pytest.raises(ValueError, match="project-relative"):
            site.link(bad)


def test_figure_footer_links_files_results_and_command():
    footer = site.figure_footer(["results/s/figures/n/f.png", "results/s/figures/n/f.pdf"], "results/s/n.json",
                                "make figure NB=n PROFILE=s P='-p k 3'")
    assert re.findall(r'href="([^"]+)">([^<]+)<', footer) == [
        ("../results/s/figures/n/f.png", "PNG"), ("../results/s/figures/n/f.pdf", "PDF"),
        ("../results/s/n.json", "numbers (JSON)")]
    assert "<pre>make figure NB=n PROFILE=s P=&#x27;-p k 3&#x27;</pre>" in footer


def test_admonition_shows_the_text_as_written():
    note = site.admonition("imagenet50: not measured", "needs data/imagenet/val/<wnid>/*.JPEG;\n $Q$ [x]")
    assert note.startswith(":::{admonition} imagenet50: not measured\n:class: warning\n")
    assert r"data/imagenet/val/\<wnid\>/\*.JPEG; \$Q\$ \[x\]" in note and note.endswith(":::\n")
    with pytest.raises(ValueError, match="valid choices: warning, note, tip"):
        site.admonition("t", "x", kind="danger")


def claim(value, holds, name="c"):
    return {"claim": name, "quantity": "q", "value": value, "op": ">", "threshold": 0.5, "holds": holds,
            "source": "Fig. 4"}


def test_claims_page_lists_every_claim_and_its_totals():
    chapters = [("01_curves", "01 Curves (Figs. 4 and 5)", {"claims": [claim(0.9, True), claim(0.1, False)]}),
                ("06_pruning", "06 Pruning", {"claims": [claim(None, False, "absent")]}),
                ("07_none", "07 Nothing", None)]
    page = site.claims_page(chapters, "smoke")
    assert page.startswith("# Claims at a glance\n") and "profile `smoke`" in page
    totals = re.search(r'<p class="claims-summary" id="claims-totals">(.*)</p>', page).group(1)
    assert 'data-total="3"' in totals
    assert re.findall(r'data-verdict="([^"]+)">(\d+)<', totals) == [
        ("holds", "1"), ("does not hold", "1"), ("not measured", "1")]
    assert "## [01 Curves (Figs. 4 and 5)](notebooks/01_curves.ipynb)" in page
    assert page.count('<td><span class="verdict verdict-holds">holds</span></td>') == 1  # one row holds
    assert '<td class="num">0.900</td>' in page and '<td class="num">–</td>' in page
    assert site.claim_counts([]) == {"holds": 0, "does not hold": 0, "not measured": 0}


def test_parameters_html_is_one_compact_table():
    out = site.parameters_html("smoke", "results/smoke", PARAMS)
    assert out.count("<tr>") == len(PARAMS) + 1
    assert "<td><code>attack_overrides</code></td><td><code>{pgd: {nb_iter: 10, eps_iter: 0.03}}</code></td>" in out
