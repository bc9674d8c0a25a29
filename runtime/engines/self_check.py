"""The LLM engine's start-up check: does it compute what its model computes?

A known answer is a chat question and the model's own greedy answer to it as the model's reference
implementation computes it (HF transformers, float32): the answer's tokens, each one's
log-probability, and its margin over the runner-up there. The check sends every answer through the
engine teacher-forced (one prefill each, all at once, well under a second) and reads two things:

- wrong tokens: the engine prefers another token where the reference is sure of its own
  (margin >= ``SURE_NATS``). Numerics that broken serve garbage: the engine does not start.
- the largest log-probability error: above ``TOLERANCE_NATS`` greedy answers flip where two tokens
  are that close (bfloat16 on vLLM-CPU's AMX path is off by up to 0.13 nats and answers "What is the
  capital of France?" with "L'Étoile, ..."; float32 by under 1e-4). The engine starts, with a warning.

Known answers ship for the default model; other models are started unchecked (one log line).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Literal, Protocol, Sequence

from teola.optimizer.values import ChatMessage, Prompt
from teola.runtime.engines.cpu_isa import describe_cpu
from teola.runtime.errors import EngineUnavailableError

log = logging.getLogger(__name__)

CheckMode = Literal["fail", "warn", "off"]
SURE_NATS = 1.0
TOLERANCE_NATS = 0.05
_FOLDER = "known_answers"


class EngineNumericsError(EngineUnavailableError):
    """The LLM engine computes something else than its model: its greedy answers would be wrong."""


@dataclass(frozen=True)
class KnownAnswer:
    """A question and the model's reference greedy answer: tokens, their log-probabilities and margins."""

    question: str
    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]
    margins: tuple[float, ...]

    @property
    def prompt(self) -> Prompt:
        """The question as the one user message of a chat."""
        return Prompt(messages=(ChatMessage("user", self.question),))


@dataclass(frozen=True)
class NumericsReport:
    """How far an engine's numbers are from its model's reference on the known answers."""

    model: str
    dtype: str
    tokens: int
    max_error: float
    wrong: tuple[str, ...]

    @property
    def broken(self) -> bool:
        """Whether the engine prefers another token where the model is sure of its own."""
        return bool(self.wrong)

    @property
    def imprecise(self) -> bool:
        """Whether its log-probabilities are off by enough to flip near-ties in greedy answers."""
        return self.max_error > TOLERANCE_NATS

    def describe(self) -> str:
        """One line: what was compared and what was found."""
        found = f"largest log-probability error {self.max_error:.4f} nats over {self.tokens} reference tokens"
        if self.wrong:
            found += f"; it prefers other tokens where the model is sure ({', '.join(self.wrong[:3])})"
        return f"{self.model} in {self.dtype}: {found}"


class ScoringEngine(Protocol):
    """What the check needs of an engine: its tokenizer and teacher-forced scores."""

    model_name: str

    def tokenize(self, prompt: Prompt) -> list[int]: ...

    async def score(self, token_ids: list[int], start: int) -> list[tuple[float, float]]: ...


def known_answers(model: str) -> list[KnownAnswer]:
    """The known answers shipped for ``model`` (empty for a model without them)."""
    path = resources.files(__package__).joinpath(_FOLDER, f"{model}.json")
    if not path.is_file():
        return []
    return [KnownAnswer(a["question"], tuple(a["tokens"]), tuple(a["logprobs"]), tuple(a["margins"]))
            for a in json.loads(path.read_text())["answers"]]


def compare(model: str, dtype: str, answers: Sequence[KnownAnswer],
            scores: Sequence[Sequence[tuple[float, float]]]) -> NumericsReport:
    """The report for ``scores`` (per answer, per token: the engine's log-probability of the reference
    token and of its own first choice) against the reference ``answers``."""
    errors, wrong = [], []
    for answer, scored in zip(answers, scores, strict=True):
        for at, (reference, margin, (given, best)) in enumerate(zip(answer.logprobs, answer.margins, scored, strict=True)):
            errors.append(abs(given - reference))
            if margin >= SURE_NATS and best > given:
                wrong.append(f"{answer.question!r} token {at}")
    return NumericsReport(model, dtype, len(errors), max(errors, default=0.0), tuple(wrong))


async def verify_numerics(engine: ScoringEngine, mode: CheckMode, dtype: str) -> NumericsReport | None:
    """Check ``engine`` against its model's known answers: raise ``EngineNumericsError`` (``mode``
    "fail") or warn when it is broken, warn when it is imprecise; None when nothing was checked."""
    if mode == "off":
        return None
    answers = known_answers(engine.model_name)
    if not answers:
        log.info("teola: no known answers ship for %s; its engine's numerics are not checked", engine.model_name)
        return None
    prompts = [engine.tokenize(answer.prompt) for answer in answers]
    scores = await asyncio.gather(*(engine.score(ids + list(answer.tokens), len(ids))
                                    for ids, answer in zip(prompts, answers)))
    report = compare(engine.model_name, dtype, answers, scores)
    fix = ("start it with dtype='float32' (the CPU default)" if dtype != "float32"
           else f"its numerics are broken on {describe_cpu()}: please report it")
    if report.broken and mode == "fail":
        raise EngineNumericsError(f"the LLM engine answers wrongly: {report.describe()}; {fix}, "
                                  "or pass check_numerics='warn' to serve it anyway")
    if report.broken or report.imprecise:
        log.warning("teola: the LLM engine's greedy answers can differ from the model's: %s; %s", report.describe(), fix)
    else:
        log.info("teola: LLM engine numerics checked: %s", report.describe())
    return report


def reference_answers(model_path: str, questions: Sequence[str], max_tokens: int) -> list[KnownAnswer]:
    """The model's greedy answers to ``questions`` by its reference implementation: HF transformers,
    float32, eager attention (what ``known_answers`` ship; ``scripts/make-known-answers`` writes them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="eager")
    answers = []
    for question in questions:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True, pad_token_id=tokenizer.eos_token_id)
        tokens = out.sequences[0, ids.shape[1]:].tolist()
        logprobs, margins = [], []
        for step, token in zip(out.scores, tokens):
            ranked = torch.log_softmax(step[0].float(), dim=-1)
            first, second = torch.topk(ranked, 2).values.tolist()
            logprobs.append(round(float(ranked[token]), 6))
            margins.append(round(first - second, 6))
        answers.append(KnownAnswer(question, tuple(tokens), tuple(logprobs), tuple(margins)))
    return answers
