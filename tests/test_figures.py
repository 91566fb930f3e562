"""Figure files: PNG and PDF written atomically and reproducibly; plain names only."""

import pytest

from modgraph import figures


def test_save_figure_writes_png_and_pdf_reproducibly(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    first = figures.save_figure(fig, "fig4_test", tmp_path)
    assert [p.name for p in first] == ["fig4_test.png", "fig4_test.pdf"]
    assert first[0].read_bytes().startswith(b"\x89PNG") and first[1].read_bytes().startswith(b"%PDF")
    snapshot = [p.read_bytes() for p in first]
    figures.save_figure(fig, "fig4_test", tmp_path)
    assert [p.read_bytes() for p in first] == snapshot  # no timestamps: reruns do not change the files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig4_test.pdf", "fig4_test.png"]  # no temp files left


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden"])
def test_save_figure_rejects_paths_as_names(tmp_path, name):
    import matplotlib.pyplot as plt

    with pytest.raises(ValueError, match="plain file stem"):
        figures.save_figure(plt.figure(), name, tmp_path)
