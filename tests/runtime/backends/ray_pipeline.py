"""Run the LangChain rag app with its engines on a Ray cluster, as a user's program would (the test
of the Ray backend runs it in a subprocess: a process has one shared runtime).

Usage: python ray_pipeline.py ADDRESS MAX_TOKENS QUESTION... ; prints one JSON object: the answers, each
engine's replica nodes, what the LLM replica held while and after a stream was abandoned, and what
happened when the LLM's and an embedding replica were killed.
"""

import asyncio
import json
import sys
import threading
import time

import psutil
import ray

from teola.optimizer.values import Prompt, Sampling
from teola.runtime.backends.ray_backend import Placement, RayBackend
from teola.runtime.runtime import configure_runtime
from teola_integrations.langchain import TeolaChatModel, optimize
from teola_integrations.tools.langchain_apps import build_app, build_store


def _engine_core_pids(actor_title: str) -> set[int]:
    """PIDs of the processes under the Ray actors titled ``actor_title`` (vLLM's engine core)."""
    pids = set()
    for process in psutil.process_iter(["cmdline"]):
        if (process.info["cmdline"] or [""])[0].startswith(actor_title):
            pids |= {child.pid for child in process.children(recursive=True)}
    return pids


async def _abandon_a_stream(llm) -> dict:
    """Read the first delta of a long answer from the Ray LLM proxy, stop reading, and count the requests
    its replica's engine holds unfinished while the stream is read and once the reader has stopped."""
    async def unfinished() -> int:
        return await llm.replicas[0].unfinished_requests.remote()

    prompt = Prompt(text="Count from one to one thousand, one number per line:\n1\n2\n")
    stream = llm.generate(llm.tokenize(prompt), Sampling(max_tokens=1000))
    await anext(stream)
    while_read = await unfinished()
    await stream.aclose()
    after, deadline = while_read, time.monotonic() + 30
    while after and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        after = await unfinished()
    return {"while_read": while_read, "after": after}


def _kill_under_a_query(fast, value, actor, is_running) -> str:
    """Kill ``actor`` once ``is_running()`` says the query's work reached it (mid-batch); return the query's answer."""
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(text=fast.invoke(value)))
    worker.start()
    while not is_running():
        time.sleep(0.005)
    ray.kill(actor)
    worker.join()
    return answer["text"]


def main(address: str, max_tokens: int, questions: list[str]) -> dict:
    runtime = configure_runtime(backend=RayBackend(
        address,
        llm=Placement(num_cpus=1, resources={"teola_llm": 1}),
        embedding=Placement(replicas=2, num_cpus=0.5, resources={"teola_retrieval": 0.25}),
        vector_index=Placement(num_cpus=0.25, resources={"teola_retrieval": 0.25}),
    ))
    app = build_app("rag", build_store(), TeolaChatModel(max_tokens=max_tokens))
    fast = optimize(app.native)
    answers = []
    for question in questions:
        fast.invoke({"question": question})  # the same prefix-cache state as the in-process run compared
        answers.append(fast.invoke({"question": question}))
    llm, embedding = runtime.llm().engine, runtime.embedding().engine
    [index] = [s.engine for name, s in runtime.engines.items() if name.startswith("vector_index")]
    report = {"answers": answers, "nodes": {"llm": llm.nodes, "embedding": embedding.nodes, "index": index.nodes}}

    report["abandoned_stream"] = runtime.run(_abandon_a_stream(llm))

    value = {"question": questions[0]}
    cores = _engine_core_pids("ray::LLMReplica")
    killed_answer = _kill_under_a_query(fast, value, llm.replicas[0], lambda: llm.router.loads.loads[0] > 0)
    report["llm_kill"] = {"answer": killed_answer, "restarts": llm.restarts, "nodes": llm.nodes,
                          "old_cores_left": sorted(pid for pid in cores if psutil.pid_exists(pid)),
                          "answer_after": fast.invoke(value)}
    ray.kill(embedding.replicas[0])  # between batches: the next batch routed to it finds it dead
    report["embedding_kill"] = {"answer": fast.invoke(value), "restarts": embedding.restarts, "nodes": embedding.nodes}
    runtime.close()
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])))
