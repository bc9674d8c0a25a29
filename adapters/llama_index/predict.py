"""LLM components that ask their LLM once and parse the answer: ``llm.predict(prompt, **arguments)``,
then the prompt's own output parser. A router's LLM selector and a sub-question engine's
LLMQuestionGenerator are such components; their call is lowered (a prefill and a decode on the LLM's
engine), the parse runs as LlamaIndex's, and both report inside the component's own span."""

from __future__ import annotations

from typing import Any, Callable

from llama_index.core.schema import QueryBundle

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.as_asked import run_as_asked
from teola.adapters.llama_index.models import llm_for
from teola.adapters.llama_index.reading import AppReading, render
from teola.adapters.llama_index.spans import chooser_span, llm_call_spans
from teola.optimizer.ir import ModuleKind, Node, Ref
from teola.optimizer.ops import FnArgs, GenerateArgs


def read_as_call(reading: AppReading, name: str, component: Any, why: str, sync: Callable[..., Any],
                 twin: Callable[..., Any], choices: list[Any]) -> Ref:
    """Such a component Teola cannot lower (``why``, logged once), run as one call (module ``name``):
    ``sync(choices, bundle)``, or its async ``twin`` in an ``aquery``; returns its result."""
    reading.fallback(component, why)
    reading.graph.add(Node(name, ModuleKind.CALL, {"query": reading.query}, ("result",),
                           FnArgs(lambda query: run_as_asked(sync, twin, choices, QueryBundle(query)),
                                  type(component).__name__), region=reading.region))
    return Ref(name, "result")


def read_predict_parse(reading: AppReading, name: str, component: Any, method: str,
                       call_with: Callable[[QueryBundle], tuple[tuple, dict]], llm: Any, prompt: Any,
                       arguments: Callable[[str], dict[str, Any]], result_of: Callable[[Any], Any]) -> Ref:
    """``component.method`` (called with ``call_with(bundle)``) as modules: ``{name}.predict``, the LLM call
    of ``prompt`` with ``arguments(query)``, and ``name``, its answer parsed by the prompt's output parser
    and made the method's result by ``result_of(parsed)``; returns that result."""
    bound = llm_for(reading, llm)
    reading.graph.add(Node(f"{name}.predict", ModuleKind.GENERATE, {"query": reading.query}, ("text",),
                           GenerateArgs(bound.engine, bound.sampling,
                                        lambda query: render(llm, prompt, **arguments(query)))))
    with reading.inside(chooser_span(reading, component, method, call_with, Ref(name, "result"))):
        llm_call_spans(reading, llm, lambda v: (prompt, arguments(v["query"])), {"query": reading.query},
                       Ref(f"{name}.predict", "text"))

        def parse(text: str) -> Any:
            return result_of(prompt.output_parser.parse(li.parse_output(llm, text)))

        reading.graph.add(Node(name, ModuleKind.CALL, {"text": Ref(f"{name}.predict", "text")}, ("result",),
                               FnArgs(parse, f"{type(component).__name__}'s answer parsed", pure=True),
                               region=reading.region))
    return Ref(name, "result")
