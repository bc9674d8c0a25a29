"""The demo's comparison table and its one-line summary per app."""

from teola_integrations.tools.compare import QuestionResult, format_table, summary_line


def _results() -> list[QuestionResult]:
    return [QuestionResult("q1", native=[2.0, 2.2], teola=[1.0, 1.1], answer="a"),
            QuestionResult("q2", native=[3.0, 3.0], teola=[3.0, 3.0], same_text=False, answer="b"),
            QuestionResult("q3", native=[4.0], teola=[2.0], same_sources=False, answer="c")]


def test_summary_line_gives_the_median_ratio_its_spread_and_the_equal_answers() -> None:
    line = summary_line(_results())
    assert line.startswith("median ratio native/teola 2.000 (IQR 1.500-2.000; 3000 vs 2000 ms)")
    assert line.endswith("over 3 questions; answers equal 2/3, sources equal 2/3")


def test_the_table_has_a_row_per_question_and_ends_with_the_summary() -> None:
    lines = format_table(_results()).splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["q1", "q2", "q3"]
    assert lines[-1] == summary_line(_results())
