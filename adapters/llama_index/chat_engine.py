"""Reading a LlamaIndex chat engine into a module graph: one chat turn.

``index.as_chat_engine()`` builds a ``CondensePlusContextChatEngine`` (``chat_mode="context"`` a
``ContextChatEngine``, ``chat_mode="condense_question"`` a ``CondenseQuestionChatEngine``). A turn reads the chat history from its memory, condenses the history and
the new message into a standalone question (an LLM completion; none on the first turn, nor in a
context engine, which retrieves by the message itself), retrieves and postprocesses nodes for it,
and answers the message with a CompactAndRefine synthesizer the engine builds for the turn, its
templates holding the chat history; then it stores the message and the answer in its memory.

A condense-question turn condenses the history and the message into a question (an LLM
``predict``; none on a first turn) and asks its query engine that question. A simple engine's turn
is one chat call on its prefix messages and the history.

Teola lowers the LLM and retrieval work (the condensation, the retriever, the refine steps of the
turn's synthesizer; a condense-question engine's query engine, read as any query engine; a simple
engine's chat call) into primitives; the memory's reads and writes run as calls, where the native
turn makes them. Any other chat engine (an agent) runs whole, as one call.

A streamed turn (``stream_chat``/``astream_chat``) is the same turn with a streaming synthesizer (a
context engine's built for the turn; a condense-question engine's query engine read with its
synthesizer streaming, as the native turn sets it while it asks; a simple engine's chat call
streaming), its reply a ``StreamingAgentChatResponse`` whose answer is stored once read.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, AsyncIterator, Iterator

from llama_index.core.base.llms.generic_utils import messages_to_history_str
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.chat_engine import (CondensePlusContextChatEngine, CondenseQuestionChatEngine, ContextChatEngine,
                                          SimpleChatEngine)
from llama_index.core.chat_engine.types import (AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse,
                                                ToolOutput)
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.types import Thread  # LlamaIndex's: the thread runs in a copy of the context

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.answer_tokens import answer_tokens
from teola.adapters.llama_index.as_asked import run_as_asked
from teola.adapters.llama_index.models import completion_prompt, llm_for, llm_why_not
from teola.adapters.llama_index.query_engine import read_inner_engine, read_postprocessors, read_retriever
from teola.adapters.llama_index.reading import AppReading, UnsupportedPipelineError, recognise, render, to_prompt
from teola.adapters.llama_index.refine import REFINE_STEPS
from teola.adapters.llama_index.retrievers import most_nodes
from teola.adapters.llama_index.spans import chat_spans, completion_spans, llm_call_spans
from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref
from teola.optimizer.ops import FnArgs, GenerateArgs, Meta
from teola.optimizer.values import SKIPPED, Prompt

log = logging.getLogger("teola.adapters.llama_index")
condense_question_log = logging.getLogger(CondenseQuestionChatEngine.__module__)  # where it logs its question natively

CHAT_INPUTS = ("message", "chat_history", "prev_chunks")
MESSAGE = QueryInput("message")
RESPONSE = Ref("reply", "response")
_LOWERED = (CondensePlusContextChatEngine, ContextChatEngine, CondenseQuestionChatEngine, SimpleChatEngine)


def read_chat_engine(chat_engine: Any, streamed: bool = False) -> AppReading:
    """Read a chat engine's turn (``chat``/``achat`` with a message and, optionally, the chat history
    to start from and, for a context engine, the nodes to answer from where retrieval finds none:
    ``prev_chunks``) into a module graph whose output ``response`` is the ``AgentChatResponse``;
    ``streamed``: a ``stream_chat``/``astream_chat`` turn, whose ``StreamingAgentChatResponse``
    streams the answer from the engines (where ``streamed_turn_why_not`` allows it)."""
    li.check_version()
    if not isinstance(chat_engine, BaseChatEngine):
        raise UnsupportedPipelineError(
            f"optimize() takes a llama_index query or chat engine (for example index.as_chat_engine()), "
            f"got {type(chat_engine).__module__}.{type(chat_engine).__name__}")
    reading = AppReading(Graph(inputs=CHAT_INPUTS))
    if streamed:
        why = streamed_turn_why_not(chat_engine)
        if why:
            raise ValueError(f"a streamed turn of {type(chat_engine).__name__} cannot be lowered: {why}")
        if type(chat_engine) is SimpleChatEngine:
            _read_simple_turn(reading, li.simple_chat_parts(chat_engine), streamed=True)
        elif type(chat_engine) is CondenseQuestionChatEngine:
            _read_question_turn(reading, li.condense_question_parts(chat_engine), streamed=True)
        else:
            _read_turn(reading, chat_engine, streamed=True)
        reading.graph.set_output("response", RESPONSE)
        reading.graph.set_output("stream", reading.stream)
        return reading
    why = _why_not(chat_engine)
    if why:
        reading.fallback(chat_engine, why)
        reading.whole = True
        reading.graph.add(Node("reply", ModuleKind.CALL, {name: QueryInput(name) for name in CHAT_INPUTS},
                               ("response",), FnArgs(partial(_whole_turn, chat_engine), type(chat_engine).__name__)))
    elif type(chat_engine) is CondenseQuestionChatEngine:
        _read_question_turn(reading, li.condense_question_parts(chat_engine))
    elif type(chat_engine) is SimpleChatEngine:
        _read_simple_turn(reading, li.simple_chat_parts(chat_engine))
    else:
        _read_turn(reading, chat_engine)
    reading.graph.set_output("response", RESPONSE)
    return reading


def _why_not(chat_engine: Any) -> str | None:
    if type(chat_engine) not in _LOWERED:
        return ("Teola lowers CondensePlusContextChatEngine, ContextChatEngine, CondenseQuestionChatEngine and "
                "SimpleChatEngine turns so far")
    if type(chat_engine) is SimpleChatEngine:
        llm = li.simple_chat_parts(chat_engine).llm
        return llm_why_not(llm) or (None if llm.metadata.is_chat_model else "its LLM is not a chat model")
    if type(chat_engine) is CondenseQuestionChatEngine:
        question_parts = li.condense_question_parts(chat_engine)
        if li.streams_its_answers(question_parts.query_engine):
            return "its query engine streams (a turn turns that off while it asks)"
        return llm_why_not(question_parts.llm)
    parts = li.chat_engine_parts(chat_engine)
    why = llm_why_not(parts.llm)
    if why:
        return why
    return recognise(REFINE_STEPS, parts.synthesizer_for([]))[1] or None


def streamed_turn_why_not(chat_engine: Any) -> str | None:
    """Why Teola cannot stream ``chat_engine``'s turns from its engines (None: it can; its
    ``stream_chat`` then runs natively)."""
    if type(chat_engine) not in _LOWERED:
        return ("Teola streams the turns of CondensePlusContextChatEngine, ContextChatEngine, "
                "CondenseQuestionChatEngine and SimpleChatEngine so far")
    if type(chat_engine) is CondenseQuestionChatEngine:
        parts = li.condense_question_parts(chat_engine)
        if not isinstance(parts.query_engine, RetrieverQueryEngine):  # natively only one of those streams here
            return f"its query engine is a {type(parts.query_engine).__name__}, not a RetrieverQueryEngine"
        streaming_synth = li.synthesizer(li.streaming_twin(parts.query_engine))
        return llm_why_not(parts.llm) or recognise(REFINE_STEPS, streaming_synth)[1] or None
    why = _why_not(chat_engine)
    if why or type(chat_engine) is SimpleChatEngine:
        return why
    return recognise(REFINE_STEPS, li.chat_engine_parts(chat_engine).synthesizer_for([], streaming=True))[1] or None


def _read_turn(reading: AppReading, chat_engine: Any, streamed: bool = False) -> None:
    """turn (memory) -> [condense] -> retrieve -> postprocess* -> refine steps -> reply (memory);
    ``streamed``: the synthesizer streams, and the reply streams its answer, storing it once read."""
    parts = li.chat_engine_parts(chat_engine)
    graph = reading.graph

    def turn(message: str, chat_history: list[ChatMessage] | None) -> dict[str, Any]:
        history = run_as_asked(_history, _ahistory, parts.memory, message, chat_history)
        return {"history": history, "synth": parts.synthesizer_for(history, streaming=streamed)}

    graph.add(Node("turn", ModuleKind.CALL, {"message": MESSAGE, "chat_history": QueryInput("chat_history")},
                   ("history", "synth"), FnArgs(turn, "chat memory")))
    question = _read_condense(reading, parts) if parts.condense_template is not None else MESSAGE
    with reading.asking(question):
        nodes = read_retriever(reading, parts.retriever)
        nodes, bound = read_postprocessors(reading, parts.postprocessors, nodes, most_nodes(parts.retriever))
    if parts.condense_template is None:  # a context engine answers from prev_chunks where it retrieved nothing
        graph.add(Node("context", ModuleKind.CALL, {"nodes": nodes, "prev_chunks": QueryInput("prev_chunks")},
                       ("nodes",), FnArgs(_context, "previous chunks where none came", pure=True)))
        nodes, bound = Ref("context", "nodes"), None
    with reading.asking(MESSAGE):
        REFINE_STEPS[0].read(reading, parts.synthesizer_for([], streaming=streamed), nodes, bound,
                             turn=Ref("turn", "synth"))

    def reply(message: str, question: str, nodes: list[Any], response: Any) -> Any:
        source = ToolOutput(tool_name="retriever", content=str(nodes), raw_input={"message": question},
                            raw_output=nodes)
        if streamed:
            return run_as_asked(_streamed_reply, _astreamed_reply, parts.memory, message, response, sources=[source],
                                source_nodes=nodes)
        run_as_asked(_remember, _aremember, parts.memory, message, str(response))
        return AgentChatResponse(response=str(response), sources=[source], source_nodes=nodes)

    graph.add(Node("reply", ModuleKind.CALL, {"message": MESSAGE, "question": question, "nodes": nodes,
                                              "response": Ref("synthesize", "response")}, ("response",),
                   FnArgs(reply, "chat memory")))


def _read_condense(reading: AppReading, parts: li.ChatEngineParts) -> Ref:
    """The condensation of the history and the message into a standalone question (an LLM
    completion, skipped where the engine skips it or there is no history), and the question."""
    llm = parts.llm
    bound = llm_for(reading, llm)

    def condense_text(message: str, history: list[ChatMessage]) -> str | Any:
        if parts.skip_condense or not history:
            return SKIPPED
        return parts.condense_template.format(chat_history=messages_to_history_str(history), question=message)

    def build_prompt(message: str, history: list[ChatMessage]) -> Prompt | Any:
        text = condense_text(message, history)
        return SKIPPED if text is SKIPPED else completion_prompt(llm, text)

    def standalone(message: str, text: Any) -> str:
        question = message if text is SKIPPED else text
        log.info("Condensed question: %s", question)
        if parts.verbose:
            print(f"Condensed question: {question}")
        return question

    inputs = {"message": MESSAGE, "history": Ref("turn", "history")}
    reading.graph.add(Node("condense", ModuleKind.GENERATE, inputs, ("text",),
                           GenerateArgs(bound.engine, bound.sampling, build_prompt)))
    completion_spans(reading, llm, lambda v: condense_text(v["message"], v["history"]),
                     {**inputs, "prompt": Ref("condense", "prompt")}, Ref("condense", "text"))
    reading.graph.add(Node("question", ModuleKind.CALL, {"message": MESSAGE, "text": Ref("condense", "text")},
                           ("question",), FnArgs(standalone, "standalone question", runs_on_skipped=("text",))))
    return Ref("question", "question")


def _read_question_turn(reading: AppReading, parts: li.CondenseQuestionParts, streamed: bool = False) -> None:
    """turn (memory) -> [condense] -> question -> the query engine, asked it (read as any query
    engine, under the prefix ``query/``) -> reply (memory); ``streamed``: the query engine's
    synthesizer streams, as the native ``stream_chat`` makes it while it asks, and the reply streams
    its answer, storing it once read."""
    graph, llm = reading.graph, parts.llm
    bound = llm_for(reading, llm)

    def history(message: str, chat_history: list[ChatMessage] | None) -> list[ChatMessage]:
        return chat_history or run_as_asked(_stored, _astored, parts.memory, message)

    graph.add(Node("turn", ModuleKind.CALL, {"message": MESSAGE, "chat_history": QueryInput("chat_history")},
                   ("history",), FnArgs(history, "chat memory")))

    def arguments(message: str, history: list[ChatMessage]) -> dict[str, Any]:
        return {"question": message, "chat_history": messages_to_history_str(history)}

    def build_prompt(message: str, history: list[ChatMessage]) -> Prompt | Any:
        return render(llm, parts.condense_prompt, **arguments(message, history)) if history else SKIPPED

    inputs = {"message": MESSAGE, "history": Ref("turn", "history")}
    graph.add(Node("condense", ModuleKind.GENERATE, inputs, ("text",),
                   GenerateArgs(bound.engine, bound.sampling, build_prompt)))
    llm_call_spans(reading, llm, lambda v: (parts.condense_prompt, arguments(v["message"], v["history"])),
                   {**inputs, "prompt": Ref("condense", "prompt")}, Ref("condense", "text"))

    def standalone(message: str, text: Any) -> str:
        question = message if text is SKIPPED else li.parse_output(llm, text)
        condense_question_log.info("Querying with: %s", question)
        if parts.verbose:
            print(f"Querying with: {question}")
        return question

    graph.add(Node("question", ModuleKind.CALL, {"message": MESSAGE, "text": Ref("condense", "text")}, ("question",),
                   FnArgs(standalone, "standalone question", runs_on_skipped=("text",))))
    engine = li.streaming_twin(parts.query_engine) if streamed else parts.query_engine
    response = read_inner_engine(reading, engine, Ref("question", "question"), "query/", answers_its_caller=streamed)

    def reply(message: str, question: str, response: Any) -> Any:
        source = ToolOutput(content="" if streamed else str(response), tool_name="query_engine",
                            raw_input={"query": question}, raw_output=response)
        if streamed:
            return run_as_asked(_streamed_reply, _astreamed_reply, parts.memory, message, response, sources=[source])
        run_as_asked(_remember, _aremember, parts.memory, message, str(response))
        return AgentChatResponse(response=str(response), sources=[source])

    graph.add(Node("reply", ModuleKind.CALL, {"message": MESSAGE, "question": Ref("question", "question"),
                                              "response": response}, ("response",), FnArgs(reply, "chat memory")))


def _read_simple_turn(reading: AppReading, parts: li.SimpleChatParts, streamed: bool = False) -> None:
    """turn (memory: the message stored, the messages read) -> chat -> reply (memory); ``streamed``:
    the chat call streams, and the reply streams it, storing the answer once read."""
    graph, llm = reading.graph, parts.llm
    bound = llm_for(reading, llm)

    def turn(message: str, chat_history: list[ChatMessage] | None) -> list[ChatMessage]:
        return parts.prefix_messages + run_as_asked(_asked, _aasked, parts, message, chat_history)

    graph.add(Node("turn", ModuleKind.CALL, {"message": MESSAGE, "chat_history": QueryInput("chat_history")},
                   ("messages",), FnArgs(turn, "chat memory")))
    messages = {"messages": Ref("turn", "messages")}
    graph.add(Node("chat", ModuleKind.GENERATE, messages, ("text",), GenerateArgs(bound.engine, bound.sampling, to_prompt),
                   meta=Meta(stream=streamed)))
    chat_spans(reading, llm, lambda v: v["messages"], messages, Ref("chat", "text"), streamed=streamed)
    if streamed:
        graph.add(Node("reply.tokens", ModuleKind.CALL, {"text": Ref("chat", "text")}, ("tokens",),
                       FnArgs(_tokens_of, "the answer's tokens", pure=True, reads_later=("text",))))
        graph.add(Node("reply", ModuleKind.CALL, {"tokens": Ref("reply.tokens", "tokens")}, ("response",),
                       FnArgs(partial(run_as_asked, _stream_reply, _astream_reply, parts.memory), "chat memory")))
        reading.stream = Ref("chat", "text")
        return

    def reply(text: str) -> AgentChatResponse:
        run_as_asked(_answered, _aanswered, parts.memory, text)
        return AgentChatResponse(response=text)

    graph.add(Node("reply", ModuleKind.CALL, {"text": Ref("chat", "text")}, ("response",), FnArgs(reply, "chat memory")))


def _whole_turn(chat_engine: Any, message: str, chat_history: list[ChatMessage] | None,
                prev_chunks: list[Any] | None) -> Any:
    """A turn of a chat engine Teola runs as it is (``prev_chunks`` passed only where given)."""
    extra = {} if prev_chunks is None else {"prev_chunks": prev_chunks}
    return run_as_asked(chat_engine.chat, chat_engine.achat, message, chat_history, **extra)


def _context(nodes: list[Any], prev_chunks: list[Any] | None) -> list[Any]:
    """The nodes a ContextChatEngine answers from: ``prev_chunks`` where retrieval left none, as it does."""
    return prev_chunks if not nodes and prev_chunks is not None else nodes


def _history(memory: Any, message: str, chat_history: list[ChatMessage] | None) -> list[ChatMessage]:
    """The turn's chat history: ``chat_history`` where given (it replaces the memory's), else the memory's."""
    if chat_history is not None:
        memory.set(chat_history)
    return memory.get(input=message)


async def _ahistory(memory: Any, message: str, chat_history: list[ChatMessage] | None) -> list[ChatMessage]:
    if chat_history is not None:
        await memory.aset(chat_history)
    return await memory.aget(input=message)


def _stored(memory: Any, message: str) -> list[ChatMessage]:
    """The memory's chat history for ``message``."""
    return memory.get(input=message)


async def _astored(memory: Any, message: str) -> list[ChatMessage]:
    return await memory.aget(input=message)


def _asked(parts: li.SimpleChatParts, message: str, chat_history: list[ChatMessage] | None) -> list[ChatMessage]:
    """A simple engine's turn: ``chat_history`` set where given, the message stored, then the history the
    memory gives with room left for the prefix messages."""
    if chat_history is not None:
        parts.memory.set(chat_history)
    parts.memory.put(ChatMessage(content=message, role=MessageRole.USER))
    return parts.memory.get(initial_token_count=_prefix_tokens(parts))


async def _aasked(parts: li.SimpleChatParts, message: str, chat_history: list[ChatMessage] | None) -> list[ChatMessage]:
    if chat_history is not None:
        await parts.memory.aset(chat_history)
    await parts.memory.aput(ChatMessage(content=message, role=MessageRole.USER))
    return await parts.memory.aget(initial_token_count=_prefix_tokens(parts))


def _prefix_tokens(parts: li.SimpleChatParts) -> int:
    """How many tokens a simple engine's prefix messages take of its memory's budget, as it counts them."""
    if not hasattr(parts.memory, "tokenizer_fn"):
        return 0
    return len(parts.memory.tokenizer_fn(" ".join(m.content or "" for m in parts.prefix_messages
                                                  if isinstance(m.content, str))))


def _answered(memory: Any, text: str) -> None:
    """The LLM's answer stored in a simple engine's memory."""
    memory.put(ChatMessage(content=text, role=MessageRole.ASSISTANT))


async def _aanswered(memory: Any, text: str) -> None:
    await memory.aput(ChatMessage(content=text, role=MessageRole.ASSISTANT))


def _streamed_reply(memory: Any, message: str, response: Any, **fields: Any) -> StreamingAgentChatResponse:
    """A context or condense-question engine's streamed reply, as its ``stream_chat`` makes it: the
    message stored, then the synthesizer's tokens streamed (``_stream_reply``) in a reply with ``fields``."""
    memory.put(ChatMessage(content=message, role=MessageRole.USER))
    return _stream_reply(memory, response.response_gen, **fields)


async def _astreamed_reply(memory: Any, message: str, response: Any, **fields: Any) -> StreamingAgentChatResponse:
    await memory.aput(ChatMessage(content=message, role=MessageRole.USER))
    return await _astream_reply(memory, response.async_response_gen(), **fields)


def _stream_reply(memory: Any, tokens: Iterator[str], **fields: Any) -> StreamingAgentChatResponse:
    """A reply streaming ``tokens`` as chat responses, the answer stored in ``memory`` by a thread of
    its own once read, as a chat engine's ``stream_chat`` makes it."""
    reply = StreamingAgentChatResponse(chat_stream=_chat_responses(tokens), **fields)
    reply.write_response_to_history_thread = Thread(target=reply.write_response_to_history, args=(memory,))
    reply.write_response_to_history_thread.start()
    return reply


async def _astream_reply(memory: Any, tokens: AsyncIterator[str], **fields: Any) -> StreamingAgentChatResponse:
    """``_stream_reply`` in ``astream_chat``: the answer stored by a task on the caller's loop."""
    reply = StreamingAgentChatResponse(achat_stream=_achat_responses(tokens), **fields)
    reply.awrite_response_to_history_task = asyncio.create_task(reply.awrite_response_to_history(memory))
    return reply


async def _tokens_of(text: Any) -> Iterator[str] | AsyncIterator[str]:
    """The tokens of a streamed chat call, read where the turn was asked."""
    return answer_tokens(await text)


def _chat_responses(tokens: Iterator[str]) -> Iterator[ChatResponse]:
    """The tokens of a streamed answer as the chat responses a chat engine streams (the text so far, the token)."""
    text = ""
    for token in tokens:
        text += token
        yield ChatResponse(message=ChatMessage(content=text, role=MessageRole.ASSISTANT), delta=token)


async def _achat_responses(tokens: AsyncIterator[str]) -> AsyncIterator[ChatResponse]:
    text = ""
    async for token in tokens:
        text += token
        yield ChatResponse(message=ChatMessage(content=text, role=MessageRole.ASSISTANT), delta=token)


def _remember(memory: Any, message: str, answer: str) -> None:
    """The turn's message and answer, stored in the memory as the native turn stores them."""
    memory.put(ChatMessage(content=message, role=MessageRole.USER))
    memory.put(ChatMessage(content=answer, role=MessageRole.ASSISTANT))


async def _aremember(memory: Any, message: str, answer: str) -> None:
    await memory.aput(ChatMessage(content=message, role=MessageRole.USER))
    await memory.aput(ChatMessage(content=answer, role=MessageRole.ASSISTANT))
