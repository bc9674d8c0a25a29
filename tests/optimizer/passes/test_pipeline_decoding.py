from teola.optimizer.ir import Node, Op, Ref
from teola.optimizer.ops import CALLABLE, FnArgs, StopAfter
from teola.optimizer.passes.pipeline_decoding import pipeline_decoding

from .conftest import parse_queries


def test_each_generated_query_gets_its_own_parse_and_the_decode_streams(primitives):
    piped = pipeline_decoding(primitives)
    decode = piped["expand.decode"]
    assert decode.meta.stream is True
    assert decode.meta.stop_after == StopAfter(parse_queries, 3)
    for j in range(3):
        assert piped[f"retrieve_gen.embed@{j}"].inputs["text"] == Ref(f"expand[{j}:{j + 1}]", "queries")
        assert piped[f"expand[{j}:{j + 1}]"].meta.items == (j, j + 1)
    assert piped["expand"].inputs["text"] == Ref("expand.decode", "text")  # the fusion still reads the whole list


def test_a_decode_whose_whole_text_something_else_reads_is_not_streamed(primitives):
    primitives.add(Node("log", Op.CALL, {"text": Ref("expand.decode", "text")}, ("out",), FnArgs(len), CALLABLE))
    piped = pipeline_decoding(primitives)
    assert piped["expand.decode"].meta.stream is False
    assert piped["retrieve_gen.embed"].inputs["text"] == Ref("expand", "queries")
