"""The LLM engine's start-up self-check: known answers teacher-forced through the engine."""

import asyncio
import dataclasses
import logging

import pytest

from teola.runtime.engines import self_check
from teola.runtime.engines.self_check import (EngineNumericsError, KnownAnswer, compare, known_answers,
                                              verify_numerics)
from teola.runtime.models import DEFAULT_LLM

ANSWER = KnownAnswer("What is the capital of France?", (504, 3575, 282), (-1.86, -0.02, -0.01), (0.098, 4.6, 4.7))


def _scores(errors=(0.0, 0.0, 0.0), preferred=(False, False, False)):
    """Engine scores: the reference token's log-probability off by ``errors``, and the engine's own
    first choice 0.5 nats above it where ``preferred``."""
    return [[(lp + err, lp + err + (0.5 if other else 0.0))
             for lp, err, other in zip(ANSWER.logprobs, errors, preferred)]]


def test_an_engine_that_computes_what_the_model_does_passes():
    report = compare("m", "float32", [ANSWER], _scores())
    assert (report.broken, report.imprecise, report.max_error, report.tokens) == (False, False, 0.0, 3)


def test_flipping_a_near_tie_is_imprecision_not_a_broken_engine():
    report = compare("m", "bfloat16", [ANSWER], _scores(errors=(0.12, 0.01, 0.0), preferred=(True, False, False)))
    assert not report.broken and report.imprecise and report.max_error == pytest.approx(0.12)


def test_preferring_another_token_where_the_model_is_sure_is_broken():
    report = compare("m", "bfloat16", [ANSWER], _scores(preferred=(False, True, False)))
    assert report.broken and report.wrong == ("'What is the capital of France?' token 1",)
    assert "prefers other tokens where the model is sure" in report.describe()


class _Engine:
    """Stands in for the engine in tests of the check's policy: scores fixed in advance."""

    model_name = "m"

    def __init__(self, scores):
        self._scores = iter(scores)

    def tokenize(self, prompt):
        return [1, 2, 3]

    async def score(self, token_ids, start):
        assert token_ids[start:] == list(ANSWER.tokens)
        return next(self._scores)


@pytest.fixture
def one_known_answer(monkeypatch):
    monkeypatch.setattr(self_check, "known_answers", lambda model: [ANSWER] if model == "m" else [])


def test_a_broken_engine_fails_to_start_or_warns_as_asked(one_known_answer, caplog):
    broken = _scores(preferred=(False, True, True))
    with pytest.raises(EngineNumericsError, match="answers wrongly.*dtype='float32'"):
        asyncio.run(verify_numerics(_Engine(broken), "fail", "bfloat16"))
    with caplog.at_level(logging.WARNING):
        report = asyncio.run(verify_numerics(_Engine(broken), "warn", "bfloat16"))
    assert report.broken and "can differ from the model's" in caplog.text
    assert asyncio.run(verify_numerics(_Engine(broken), "off", "bfloat16")) is None


def test_an_imprecise_engine_starts_with_a_warning_that_says_what_to_do(one_known_answer, caplog):
    with caplog.at_level(logging.WARNING):
        report = asyncio.run(verify_numerics(_Engine(_scores(errors=(0.1, 0.0, 0.0))), "fail", "bfloat16"))
    assert report.imprecise and "dtype='float32'" in caplog.text


def test_a_model_without_known_answers_starts_unchecked_with_one_line(caplog):
    engine = _Engine([])
    engine.model_name = "/models/my-llama"
    with caplog.at_level(logging.INFO):
        assert asyncio.run(verify_numerics(engine, "fail", "float32")) is None
    assert "no known answers ship for /models/my-llama" in caplog.text


@pytest.mark.engines
@pytest.mark.answers
def test_the_default_engine_computes_the_models_log_probabilities(runtime, llm):
    report = runtime.llm().engine.numerics
    assert report is not None and report.tokens == sum(len(a.tokens) for a in known_answers(DEFAULT_LLM))
    assert not report.broken and report.max_error < 0.01, report.describe()


@pytest.mark.engines
@pytest.mark.answers
def test_the_real_engine_fails_the_check_against_answers_it_would_not_give(runtime, llm):
    engine = runtime.llm().engine
    answers = known_answers(DEFAULT_LLM)
    swapped = [dataclasses.replace(a, tokens=b.tokens[:len(a.tokens)], logprobs=b.logprobs[:len(a.tokens)],
                                   margins=b.margins[:len(a.tokens)]) for a, b in zip(answers, answers[1:] + answers[:1])]
    scores = [runtime.run(engine.score(engine.tokenize(a.prompt) + list(a.tokens), len(engine.tokenize(a.prompt))))
              for a in swapped]
    report = compare(DEFAULT_LLM, "float32", swapped, scores)
    assert report.broken and report.max_error > 1.0, report.describe()


@pytest.mark.engines
@pytest.mark.answers
def test_the_shipped_known_answers_are_what_the_reference_implementation_computes():
    from teola.runtime.models import resolve_llm

    shipped = known_answers(DEFAULT_LLM)
    fresh = self_check.reference_answers(resolve_llm(), [a.question for a in shipped], max_tokens=32)
    assert [a.tokens for a in fresh] == [a.tokens for a in shipped]
    for now, then in zip(fresh, shipped):
        assert now.logprobs == pytest.approx(then.logprobs, abs=1e-3)
        assert now.margins == pytest.approx(then.margins, abs=1e-3)
