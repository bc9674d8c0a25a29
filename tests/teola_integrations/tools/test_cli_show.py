"""`teola show` on a real app and the real CPU engines: it writes both pictures."""

import pytest

from teola_integrations.tools.cli import main

pytestmark = pytest.mark.engines


def test_show_writes_the_passes_and_the_timeline_of_a_langchain_app(tmp_path, capsys):
    assert main(["show", "--framework", "langchain", "--app", "fusion", "--max-tokens", "16", "--out", str(tmp_path)]) == 0
    for picture in ("langchain-fusion-passes.png", "langchain-fusion-timeline.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"
    assert "decode" in capsys.readouterr().out  # the plan printed
