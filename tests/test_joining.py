"""A beam search that batches join in flight (``decoding/beam.py``, ``InFlight.arrive``): its inputs
decode at different steps in one decoder batch, each answered the step it ends, and each finds, to
the bit, the hypotheses it finds alone (P0), whoever joins or leaves beside it: for every model
family, with n-best lists, attention kept, the decoding controls and forced prefixes.  A batch
whose caller goes away leaves; an error ends every input in flight with it."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import cronos
from hypothesis import given, settings, strategies as st

from cronos.decoding.beam import BeamSearch
from cronos.decoding.controls import Guide
from cronos.decoding.in_flight import InFlight
from cronos.decoding.inference import NonFiniteOutput, one_batch
from cronos.decoding.search import Beam, SearchStopped, arrival_of, controls_of, search_batch
from cronos.modules.network import evaluating
from helpers import tiny_config
from test_in_flight import CONTROLS, FAMILIES, SOURCES, _same, untrained_models

@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    return untrained_models(tmp_path_factory)


SETTINGS = {  # name: (beam, changes to the decoding settings, attention kept)
    "beam 3, 2-best": (Beam(3, n_best=2), {}, False),
    "beam 4, controlled": (Beam(4), CONTROLS, False),
    "beam 2, attention": (Beam(2), {}, True),
}


@dataclasses.dataclass
class _Batch:
    """A batch that joins: its sources, whether they start with a forced prefix, and the step at which it comes."""

    first: int
    count: int
    prefixed: bool
    comes_at: int

    def examples(self, model):
        return model.codec.encode(SOURCES[self.first: self.first + self.count])

    def guides(self, model) -> list[Guide] | None:
        if not self.prefixed:
            return None
        return [Guide(tuple(model.codec.output_ids(text, "prefix"))) for text in ("1", "19", "2")[: self.count]] + \
            [Guide()] * max(self.count - 3, 0)


batches = st.builds(_Batch, st.integers(0, 20), st.integers(1, 4), st.booleans(), st.integers(0, 8))


def _options(model, name: str):
    beam, changes, need_weights = SETTINGS[name]
    return beam, dataclasses.replace(model.config.decoding, **changes), need_weights


def _raise(error: Exception) -> None:
    raise AssertionError("a search in flight failed") from error


def _alone(model, name: str, plan: _Batch) -> list:
    """The batch decoded alone (its attention as wide as its own source: each sentence's is
    that of the sentence alone, ``test_batch_invariance``)."""
    beam, options, need_weights = _options(model, name)
    batch = one_batch(model.network, plan.examples(model))
    return search_batch(model.network, batch, beam, options, need_weights, guides=plan.guides(model))


def _joined(model, names: str | list[str], plans: list[_Batch],
            flight: InFlight | None = None) -> tuple[list, list[int]]:
    """Each plan's hypotheses per sentence, each plan joining at its step the search in flight of
    its settings (``names``: one for all, or one per plan); and the step each sentence was answered at."""
    names = [names] * len(plans) if isinstance(names, str) else names
    flight = flight if flight is not None else InFlight(model.network)
    found = [[None] * plan.count for plan in plans]
    answered_at: list[int] = []
    step = 0
    while step <= max(plan.comes_at for plan in plans) or flight:
        for number, (plan, name) in enumerate(zip(plans, names)):
            if plan.comes_at == step:
                def answer(index, hypotheses, number=number):
                    found[number][index] = hypotheses
                    answered_at.append(step)
                beam, options, need_weights = _options(model, name)
                batch = one_batch(model.network, plan.examples(model))
                flight.arrive(name, arrival_of(batch, options, plan.guides(model), answer, failed=_raise),
                              lambda joining, beam=beam, options=options, need_weights=need_weights:
                              beam.in_flight(model.network, joining, options, need_weights))
        flight.step()
        step += 1
    return found, answered_at


@pytest.mark.parametrize("family", ["transformer", "transformer, post-norm", "gru, additive", "ensemble"])
@pytest.mark.parametrize("name", sorted(SETTINGS))
@settings(max_examples=3, deadline=None)
@given(plans=st.lists(batches, min_size=2, max_size=5))
def test_each_sentence_that_joins_finds_what_it_finds_alone(models, family, name, plans):
    model = models[family]
    with evaluating(model.network):
        alone = [_alone(model, name, plan) for plan in plans]
        joined, _ = _joined(model, name, plans)
    assert [_same(a, b) for a, b in zip(joined, alone)] == [True] * len(plans)


def test_a_model_whose_attention_sees_padding_joins_too(tmp_path):
    """The masking ablation: each batch keeps its own padding in its own part, so a sentence gets
    what its batch gives alone (not what it gives alone: padding is not inert there)."""
    config = tiny_config(tmp_path, model={"embedding_size": 16, **FAMILIES["transformer"], "mask_padding": False},
                         decoding={"max_length_offset": 4, "max_length_ratio": 1.0})
    model = cronos.Cronos.from_config(cronos.load_config(config)).eval()
    plans = [_Batch(0, 3, False, 0), _Batch(5, 4, False, 2), _Batch(14, 2, True, 3)]
    with evaluating(model.network):
        alone = [_alone(model, "beam 3, 2-best", plan) for plan in plans]
        joined, _ = _joined(model, "beam 3, 2-best", plans)
    assert [_same(a, b) for a, b in zip(joined, alone)] == [True] * len(plans)


def test_rows_at_different_steps_share_one_search_and_each_sentence_is_answered_as_it_ends(models):
    model = models["transformer"]
    plans = [_Batch(0, 4, False, 0), _Batch(4, 3, True, 2), _Batch(8, 2, False, 3), _Batch(12, 1, False, 7)]
    with evaluating(model.network):
        flight = InFlight(model.network)
        sizes = []
        original = flight.step

        def step():
            sizes.append((len(flight), flight.rows))
            original()
        flight.step = step
        joined, answered_at = _joined(model, "beam 3, 2-best", plans, flight)
        alone = [_alone(model, "beam 3, 2-best", plan) for plan in plans]
    assert [_same(a, b) for a, b in zip(joined, alone)] == [True] * len(plans)
    assert {searches for searches, _ in sizes} == {1}  # one search, whoever joins
    assert max(rows for _, rows in sizes) > 4 * 3 and len(set(answered_at)) > 3  # rows joined; answers one by one


@pytest.mark.parametrize("family", ["transformer", "ensemble"])
def test_searches_of_other_settings_decode_beside_each_other(models, family):
    """Batches of three beam settings, each joining the search of its own settings, all in one flight."""
    model = models[family]
    plans = [_Batch(0, 3, False, 0), _Batch(3, 2, True, 0), _Batch(6, 4, False, 1), _Batch(10, 1, True, 2),
             _Batch(11, 3, False, 4), _Batch(15, 2, False, 5)]
    names = ["beam 3, 2-best", "beam 4, controlled", "beam 2, attention", "beam 3, 2-best", "beam 4, controlled",
             "beam 3, 2-best"]
    with evaluating(model.network):
        alone = [_alone(model, name, plan) for plan, name in zip(plans, names)]
        joined, _ = _joined(model, names, plans)
    assert [_same(a, b) for a, b in zip(joined, alone)] == [True] * len(plans)


def test_a_batch_whose_caller_goes_away_leaves_and_the_others_decode_on(models):
    model = models["transformer"]
    beam, options, _ = _options(model, "beam 3, 2-best")
    found, failures, asked = {}, [], []
    with evaluating(model.network):
        flight = InFlight(model.network)
        start = lambda joining: beam.in_flight(model.network, joining, options)  # noqa: E731
        for first, stop in ((0, None), (4, lambda: asked.append(1) or len(asked) > 2)):
            batch = one_batch(model.network, model.codec.encode(SOURCES[first: first + 3]))
            flight.arrive("beam", arrival_of(batch, options, None, lambda i, h, first=first: found.setdefault(first + i, h),
                                             stop, failures.append), start)
        while flight:
            flight.step()
        alone = _alone(model, "beam 3, 2-best", _Batch(0, 3, False, 0))
    assert [type(error) for error in failures] == [SearchStopped] and len(asked) == 3
    assert sorted(found) == [0, 1, 2] and _same([found[i] for i in range(3)], alone)


def test_a_nan_ends_every_sentence_in_flight_with_one_clear_error_and_the_next_search_starts_clean(models, monkeypatch):
    model = models["transformer"]
    beam, options, _ = _options(model, "beam 3, 2-best")
    failures = []
    network = model.network
    with evaluating(network):
        flight = InFlight(network)
        start = lambda joining: beam.in_flight(network, joining, options)  # noqa: E731
        for first in (0, 4):
            batch = one_batch(network, model.codec.encode(SOURCES[first: first + 2]))
            flight.arrive("beam", arrival_of(batch, options, None, lambda i, h: None, None, failures.append), start)
        real = network.run_decoder_together

        def poisoned(steps, need_weights):
            outputs = real(steps, need_weights)
            logits = outputs[0][0].clone()
            logits[5, 0, 7] = float("nan")
            return [(logits, *outputs[0][1:])]
        monkeypatch.setattr(network, "run_decoder_together", poisoned)
        flight.step()
        assert len(flight) == 0 and [type(error) for error in failures] == [NonFiniteOutput] * 2
        monkeypatch.undo()
        found = {}
        batch = one_batch(network, model.codec.encode(SOURCES[:1]))
        flight.arrive("beam", arrival_of(batch, options, None, found.__setitem__), start)
        while flight:
            flight.step()
        alone = _alone(model, "beam 3, 2-best", _Batch(0, 1, False, 0))
    assert _same([found[0]], alone)


def test_inputs_with_constraints_do_not_join_a_search_of_others(models):
    model = models["transformer"]
    beam, options, _ = _options(model, "beam 3, 2-best")
    search = BeamSearch(model.network, 3, *controls_of(options), need_weights=False)
    batch = one_batch(model.network, model.codec.encode(SOURCES[:2]))
    constrained = [Guide((), ((5, 6),)), Guide()]
    with evaluating(model.network), torch.no_grad():
        search.add(arrival_of(batch, options, None, lambda i, h: None))
        with pytest.raises(ValueError, match="constraints decode in a search of their own"):
            search.add(arrival_of(batch, options, constrained, lambda i, h: None))
