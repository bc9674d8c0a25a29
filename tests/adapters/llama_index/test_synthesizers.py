"""What the synthesizer families share, apart from any engine."""

from concurrent.futures import ThreadPoolExecutor

from llama_index.core.schema import NodeWithScore, TextNode

from teola.adapters.llama_index.synthesizers import per_query


def test_per_query_values_hold_while_queries_on_many_threads_fill_and_trim_the_cache():
    computed = []
    remembered = per_query(lambda query, nodes, *more: computed.append(query) or (query, len(nodes), more))
    nodes = [NodeWithScore(node=TextNode(id_="n1", text="a"))]

    def ask(i: int) -> bool:
        return all(remembered(f"q{i % 97}", nodes, k) == (f"q{i % 97}", 1, (k,)) for k in range(3))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(ask, range(2000)))  # far more keys than the 64 kept: entries come and go meanwhile
    assert remembered("q1", nodes, 0) == ("q1", 1, (0,))
    before = len(computed)
    assert remembered("q1", nodes, 0) == ("q1", 1, (0,)) and len(computed) == before  # kept: not computed again
