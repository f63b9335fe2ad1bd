"""Searches run together (``decoding/in_flight.py``): each finds, to the bit, the hypotheses it finds
alone, whatever searches join or leave beside it, in any strategy (greedy, beam with n-best lists,
sampling, attention kept for alignments) and under the decoding controls; a search that fails
ends alone."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings, strategies as st

import cronos
import cronos.modules.linear
from cronos.data import collate
from cronos.decoding.in_flight import InFlight
from cronos.decoding.inference import one_batch
from cronos.decoding.search import Beam, Greedy, Sampling, SearchStopped, run_alone, searching
from cronos.modules.network import evaluating
from helpers import DATES, tiny_config

SOURCES = [line.split("\t")[0] for line in (DATES / "test.tsv").read_text(encoding="utf-8").splitlines()[:24]]


def _transformer(**more) -> dict:
    return {"type": "transformer", "hidden_size": 32, "layers": 2, "heads": 4, "ff_size": 64, "dropout": 0.0, **more}


FAMILIES = {
    "transformer": {"encoder": _transformer(), "decoder": _transformer()},
    "transformer, post-norm": {"encoder": _transformer(normalize_before=False),
                               "decoder": _transformer(normalize_before=False, activation="gelu")},
    "gru, additive": {"encoder": {"type": "rnn", "cell": "gru", "hidden_size": 32, "dropout": 0.0},
                      "decoder": {"type": "rnn", "cell": "gru", "hidden_size": 48, "attention": "additive",
                                  "dropout": 0.0}},
}
CONTROLS = {"min_length": 5, "no_repeat_ngram_size": 2, "length_penalty_form": "gnmt", "coverage_penalty": 0.2}
SEARCHES = {  # name: (strategy, changes to the decoding settings, attention kept)
    "greedy": (Greedy(), {}, False),
    "beam 3, 2-best": (Beam(3, n_best=2), {}, False),
    "beam 4, controlled": (Beam(4), CONTROLS, False),
    "greedy, controlled": (Greedy(), CONTROLS, False),
    "sampling": (Sampling(top_k=5, seed=3), {}, False),
    "beam 2, attention": (Beam(2), {}, True),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    return untrained_models(tmp_path_factory)


def untrained_models(tmp_path_factory) -> dict:
    """Untrained models (random weights: near-ties everywhere, outputs up to their length limits)."""
    built = {}
    for name, model in FAMILIES.items():
        config = tiny_config(tmp_path_factory.mktemp("flight"), model={"embedding_size": 16, **model},
                             decoding={"max_length_offset": 4, "max_length_ratio": 1.0})
        built[name] = cronos.Cronos.from_config(cronos.load_config(config)).eval()
    built["ensemble"] = cronos.Cronos.ensemble([built["gru, additive"], built["transformer"]])
    return built


@dataclasses.dataclass
class _Planned:
    """A search to run: its sources, kind, and the step of the others at which it joins."""

    first: int
    count: int
    kind: str
    joins_at: int

    def start(self, model):
        strategy, changes, need_weights = SEARCHES[self.kind]
        batch = one_batch(model.network, model.codec.encode(SOURCES[self.first: self.first + self.count]))
        options = dataclasses.replace(model.config.decoding, **changes)
        return searching(model.network, batch, strategy, options, need_weights)


planned = st.builds(_Planned, st.integers(0, 20), st.integers(1, 4), st.sampled_from(sorted(SEARCHES)),
                    st.integers(0, 6))


def _same(a, b) -> bool:
    """Bit-identical hypotheses (tokens, scores, log-probs and attention)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    return a == b


def _in_flight(model, plans: list[_Planned]) -> list:
    """Each plan's outcome with all of them in one flight, each joining at its step."""
    flight, outcomes = InFlight(model.network), [None] * len(plans)
    step = 0
    while step <= max(plan.joins_at for plan in plans) or flight:
        for number, plan in enumerate(plans):
            if plan.joins_at == step:
                flight.join(plan.start(model), lambda found, number=number: outcomes.__setitem__(number, found))
        flight.step()
        step += 1
    return outcomes


@pytest.mark.parametrize("family", [*FAMILIES, "ensemble"])
@settings(max_examples=4, deadline=None)
@given(plans=st.lists(planned, min_size=2, max_size=5))
def test_searches_in_flight_find_what_each_finds_alone(models, family, plans):
    model = models[family]
    with evaluating(model.network):
        alone = [run_alone(model.network, plan.start(model)) for plan in plans]
        together = _in_flight(model, plans)
    assert [_same(a, b) for a, b in zip(together, alone)] == [True] * len(plans)


@pytest.mark.parametrize("family", ["transformer", "ensemble"])
def test_with_every_linear_layer_packed_for_onednn_too(models, monkeypatch, family):
    """A large model's layers multiply with packed weights (any number of rows)."""
    monkeypatch.setattr(cronos.modules.linear, "PACK_MIN_WEIGHTS", 1)
    plans = [_Planned(0, 3, "beam 3, 2-best", 0), _Planned(5, 1, "greedy", 1), _Planned(9, 4, "beam 4, controlled", 2),
             _Planned(2, 2, "beam 2, attention", 2), _Planned(14, 2, "sampling", 5)]
    model = models[family]
    with evaluating(model.network):
        alone = [run_alone(model.network, plan.start(model)) for plan in plans]
        together = _in_flight(model, plans)
    assert [_same(a, b) for a, b in zip(together, alone)] == [True] * len(plans)


def test_searches_leave_as_they_end_and_a_failing_one_ends_alone(models):
    model = models["transformer"]
    plans = [_Planned(0, 2, "greedy", 0), _Planned(3, 4, "beam 4, controlled", 0), _Planned(8, 1, "beam 2, attention", 0)]
    outcomes: dict = {}
    with evaluating(model.network):
        alone = [run_alone(model.network, plan.start(model)) for plan in plans]
        flight = InFlight(model.network)
        for number, plan in enumerate(plans):
            flight.join(plan.start(model), lambda found, number=number: outcomes.__setitem__(number, found))
        asked = []
        stopped = searching(model.network, collate(model.codec.encode(SOURCES[10:14])), Beam(3),
                            model.config.decoding, stop=lambda: asked.append(1) or len(asked) > 2)
        flight.join(stopped, lambda found: outcomes.__setitem__("stopped", found))
        assert len(flight) == 4 and flight.rows == 2 * 1 + 4 * 4 + 1 * 2 + 4 * 3  # rows: sentences x beams
        sizes = []
        while flight:
            flight.step()
            sizes.append(len(flight))
    assert isinstance(outcomes["stopped"], SearchStopped) and len(asked) == 3
    assert [_same(outcomes[number], found) for number, found in enumerate(alone)] == [True] * 3
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 0 and len(set(sizes)) > 2  # each left when it ended


def test_a_step_the_network_cannot_run_ends_every_search_in_flight_with_its_error(models, monkeypatch):
    model = models["transformer"]
    outcomes = []
    with evaluating(model.network):
        flight = InFlight(model.network)
        for first in (0, 4):
            flight.join(_Planned(first, 4, "greedy", 0).start(model), outcomes.append)
        monkeypatch.setattr(model.network, "run_decoder_together", lambda steps, need_weights: 1 / 0)
        flight.step()
    assert len(flight) == 0 and [type(error) for error in outcomes] == [ZeroDivisionError] * 2
