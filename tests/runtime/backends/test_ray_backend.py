"""The Ray backend on a local multi-node Ray cluster (Ray's own cluster utilities): a real LangChain
app answers as it does in process, with its LLM on one node and its retrieval engines on another,
an abandoned stream frees its request on the replica, and killed replicas are replaced while the
queries they held are answered."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from teola_integrations.langchain import optimize
from teola_integrations.tools.langchain_apps import build_app, build_store

pytestmark = pytest.mark.engines
MAX_TOKENS = 24  # short answers: this test is about where the engines run, not what they write
ray = pytest.importorskip("ray", reason="the Ray backend needs Ray: pip install 'teola[ray]'")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    llm_node = cluster.add_node(num_cpus=2, resources={"teola_llm": 1})
    retrieval_node = cluster.add_node(num_cpus=2, resources={"teola_retrieval": 1})
    yield cluster, llm_node.node_id, retrieval_node.node_id
    cluster.shutdown()


def test_a_pipeline_on_a_ray_cluster_answers_as_in_process_frees_abandoned_streams_and_survives_killed_replicas(cluster, questions):
    from teola_integrations.langchain import TeolaChatModel

    address, llm_node, retrieval_node = cluster[0].address, cluster[1], cluster[2]
    asked = [q.question for q in questions[:2]]
    script = Path(__file__).with_name("ray_pipeline.py")
    run = subprocess.Popen([sys.executable, str(script), address, str(MAX_TOKENS), *asked],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # meanwhile, the same app in this process
    fast = optimize(build_app("rag", build_store(), TeolaChatModel(max_tokens=MAX_TOKENS)).native)
    expected = []
    for question in asked:
        fast.invoke({"question": question})
        expected.append(fast.invoke({"question": question}))

    stdout, stderr = run.communicate(timeout=900)
    assert run.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["answers"] == expected and all(a.strip() for a in expected)

    nodes = report["nodes"]
    assert nodes["llm"] == [llm_node]
    assert nodes["embedding"] == [retrieval_node] * 2 and nodes["index"] == [retrieval_node]

    # a stream whose reader stopped after one delta: cancelled on the replica, whose vLLM aborts the request
    assert report["abandoned_stream"] == {"while_read": 1, "after": 0}

    # the LLM replica killed under a query: replaced once (on a node that offers it), the query
    # answered, the dead replica's vLLM engine core gone, and the new replica answering as before
    killed = report["llm_kill"]
    assert killed["restarts"] == 1 and killed["nodes"] == [llm_node]
    assert killed["answer"].strip() and killed["old_cores_left"] == []
    assert killed["answer_after"] == expected[0]
    # an embedding replica killed between batches: the batch sent to it ran again on its replacement
    assert report["embedding_kill"]["restarts"] == 1 and report["embedding_kill"]["answer"] == expected[0]
    assert report["embedding_kill"]["nodes"] == [retrieval_node] * 2


def test_an_engine_no_node_can_hold_is_refused_with_what_the_nodes_offer(cluster):
    import asyncio

    from teola.optimizer.ops import EngineKind
    from teola.runtime.backends.ray_backend import Placement, RayBackend
    from teola.runtime.errors import TeolaRuntimeError
    from teola.runtime.registry import EngineSpec

    backend = RayBackend(cluster[0].address, embedding=Placement(num_gpus=1))
    backend.open()
    try:
        with pytest.raises(TeolaRuntimeError, match=r"no node of the Ray cluster can hold .*'GPU': 1.*add a node"):
            asyncio.run(backend.start(EngineSpec(EngineKind.EMBEDDING, "all-minilm-l6-v2")))
    finally:
        backend.close()
    assert not ray.is_initialized()
