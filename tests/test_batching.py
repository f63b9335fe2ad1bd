"""Dynamic batching (``cronos.server.batching``): concurrent requests decoded together, each answered with
its own results in order, settings never mixed, bounded batches and queue, nothing accepted lost."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from torch import nn

from cronos.decoding.in_flight import InFlight
from cronos.server.batching import Batcher, BatcherStopped, QueueFull


def at_once(decode):
    """A batcher's ``start`` from a ``decode`` that returns its results: a search without decoder
    steps, which decodes when it joins the flight (the worker busy meanwhile)."""
    def start(items, settings, abandoned):
        yield from ()
        return decode(items, settings, abandoned)
    return start


def no_network() -> InFlight:
    """The flight of searches without decoder steps: no network ever steps."""
    return InFlight(nn.Module())


class Recorder:
    """A decode function that records its batches; a result is the text and the settings.  A held
    one waits for ``release`` before each batch (the worker busy while more requests queue)."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None, held: bool = False):
        self.batches: list[tuple[list[str], object]] = []
        self.delay, self.fail_on = delay, fail_on
        self.release = threading.Event()
        if not held:
            self.release.set()

    def __call__(self, texts: list[str], settings, abandoned=lambda: False) -> list[str]:
        assert self.release.wait(10), "the test never released the worker"
        self.batches.append((list(texts), settings))
        time.sleep(self.delay)
        if self.fail_on in texts:
            raise RuntimeError(f"cannot decode {self.fail_on!r}")
        return [f"{text}|{settings}" for text in texts]


def _batcher(decode, **options) -> Batcher:
    settings = {"max_batch_tokens": 1000, "max_wait": 0.05, "max_queue": 1000, **options}
    return Batcher(at_once(decode), lambda text, settings: (text, len(text.split())), no_network(), **settings).start()


def test_concurrent_requests_share_batches_and_each_gets_its_own_results_in_order():
    decode = Recorder(delay=0.02)
    batcher = _batcher(decode)
    requests = [[f"r{r} s{s}" for s in range(r % 3 + 1)] for r in range(40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda texts: batcher.submit(texts, "beam 4").result(timeout=30), requests))
    batcher.stop()
    assert answers == [[f"{text}|beam 4" for text in texts] for texts in requests]
    assert len(decode.batches) < len(requests)  # batched together
    assert sorted(t for texts, _ in decode.batches for t in texts) == sorted(t for r in requests for t in r)


def test_requests_with_other_settings_are_never_in_one_batch():
    decode = Recorder(delay=0.01)
    batcher = _batcher(decode)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: batcher.submit([f"text {i}"], ("beam", i % 3)).result(timeout=30),
                                range(30)))
    batcher.stop()
    assert answers == [[f"text {i}|('beam', {i % 3})"] for i in range(30)]
    for texts, settings in decode.batches:
        assert {int(t.split()[1]) % 3 for t in texts} == {settings[1]}


def test_a_batch_holds_at_most_max_batch_tokens_unless_one_sentence_is_longer():
    decode = Recorder()
    batcher = _batcher(decode, max_batch_tokens=10, max_wait=0.2)
    futures = [batcher.submit(["a b c d"] * 3, "s"), batcher.submit(["x " * 15], "s")]
    assert [len(f.result(timeout=30)) for f in futures] == [3, 1]
    batcher.stop()
    assert [sum(len(t.split()) for t in texts) for texts, _ in decode.batches] == [8, 4, 15]


def test_when_more_wait_than_fit_the_oldest_leads_and_its_mates_are_the_closest_in_length():
    decode = Recorder(held=True)
    batcher = _batcher(decode, max_batch_tokens=12, max_wait=0.0)
    busy = batcher.submit(["busy"], "s")
    time.sleep(0.2)  # the worker holds "busy"; the rest queue up behind it
    lengths = [3, 9, 1, 4, 8, 2, 3]
    waiting = [batcher.submit([" ".join([f"w{i}"] * n)], "s") for i, n in enumerate(lengths)]
    decode.release.set()
    assert busy.result(timeout=10) == ["busy|s"] and all(len(f.result(timeout=10)) == 1 for f in waiting)
    batcher.stop()
    batches = [sorted(len(t.split()) for t in texts) for texts, _ in decode.batches[1:]]
    assert batches == [[2, 3, 3, 4], [1, 9], [8]]  # led by the oldest left: 3, then 9, then 8


def test_a_lone_request_is_answered_after_at_most_the_wait():
    batcher = _batcher(Recorder(), max_wait=0.05)
    start = time.monotonic()
    assert batcher.submit(["one"], "s").result(timeout=10) == ["one|s"]
    assert time.monotonic() - start < 5  # waited for company for 0.05 s, not for a full batch
    batcher.stop()


def test_past_the_queue_limit_requests_are_refused_and_every_accepted_one_is_answered():
    decode = Recorder(held=True)
    batcher = _batcher(decode, max_queue=5, max_wait=0.0)
    first = batcher.submit(["busy"], "s")  # the worker takes it and waits
    time.sleep(0.2)
    accepted = [batcher.submit([f"t{i}"], "s") for i in range(5)]
    with pytest.raises(QueueFull, match="5 sentences are waiting to be translated") as refused:
        batcher.submit(["one too many"], "s")
    assert refused.value.retry_after >= 1
    decode.release.set()
    batcher.stop()
    assert first.result(timeout=10) == ["busy|s"]
    assert [f.result(timeout=10) for f in accepted] == [[f"t{i}|s"] for i in range(5)]


def test_stopping_answers_what_was_accepted_and_refuses_what_comes_after():
    decode = Recorder(delay=0.05)
    batcher = _batcher(decode, max_wait=1.0)
    accepted = [batcher.submit([f"t{i}"], "s") for i in range(10)]
    batcher.stop()
    assert [f.result(timeout=0) for f in accepted] == [[f"t{i}|s"] for i in range(10)]
    with pytest.raises(BatcherStopped):
        batcher.submit(["late"], "s")


def test_a_failing_batch_fails_its_requests_only_and_the_worker_goes_on():
    batcher = _batcher(Recorder(fail_on="bad"), max_wait=0.0)
    with pytest.raises(RuntimeError, match="cannot decode 'bad'"):
        batcher.submit(["bad"], "s").result(timeout=10)
    assert batcher.submit(["good"], "s").result(timeout=10) == ["good|s"]
    batcher.stop()


def test_a_request_cancelled_while_waiting_costs_no_decoding():
    decode = Recorder(held=True)
    batcher = _batcher(decode, max_wait=0.0)
    busy = batcher.submit(["busy"], "s")
    time.sleep(0.2)
    gone = batcher.submit(["gone"], "s")
    assert gone.cancel()  # its client disconnected
    kept = batcher.submit(["kept"], "s")
    decode.release.set()
    assert busy.result(timeout=10) == ["busy|s"] and kept.result(timeout=10) == ["kept|s"]
    batcher.stop()
    assert all("gone" not in texts for texts, _ in decode.batches)


def test_requests_no_one_waits_for_hold_no_room_in_the_queue():
    """Cancelled (timed out, client gone) while waiting: the queue of 4 takes 4 new ones at once."""
    decode = Recorder(held=True)
    batcher = _batcher(decode, max_wait=0.0, max_queue=4)
    busy = batcher.submit(["busy"], "s")
    time.sleep(0.2)  # the worker holds it
    gone = batcher.submit(["a", "b", "c", "d"], "s")
    assert gone.cancel() and batcher.waiting == 0
    wanted = batcher.submit(["e", "f", "g", "h"], "s")
    decode.release.set()
    assert busy.result(timeout=10) == ["busy|s"] and wanted.result(timeout=10) == ["e|s", "f|s", "g|s", "h|s"]
    batcher.stop()


def test_a_batch_whose_every_request_was_cancelled_may_stop_and_the_worker_goes_on():
    steps, started = [], threading.Event()

    def decode(texts, settings, abandoned):
        if "long" not in texts:
            return list(texts)
        started.set()
        for step in range(500):  # a search's steps, each asking whether anyone still waits
            if abandoned():
                raise RuntimeError("stopped")
            steps.append(step)
            time.sleep(0.01)
        return list(texts)

    batcher = Batcher(at_once(decode), lambda text, settings: (text, 1), no_network(), max_batch_tokens=100, max_wait=0.0,
                      max_queue=100).start()
    first, second = batcher.submit(["long"], "s"), batcher.submit(["long"], "s")  # one batch, two requests
    assert started.wait(10)
    first.cancel()
    time.sleep(0.1)
    assert steps and len(steps) < 400  # still decoding for the second
    second.cancel()
    assert batcher.submit(["next"], "s").result(timeout=2) == ["next"]  # answered long before 500 steps
    batcher.stop()
    assert len(steps) < 400


class JoinsRecorded(InFlight):
    """A flight that records how many searches were in flight at each join."""

    def __init__(self, network):
        super().__init__(network)
        self.in_flight_at_joins: list[int] = []

    def join(self, search, done) -> None:
        self.in_flight_at_joins.append(len(self))
        super().join(search, done)

    def arrive(self, key, arrival, start) -> None:
        self.in_flight_at_joins.append(len(self))
        self.joined_in_flight += key in self._joining  # a batch that joins a beam search already decoding
        super().arrive(key, arrival, start)

    joined_in_flight = 0


@pytest.mark.parametrize("joining", [False, True], ids=["searches in flight", "batches joining a search in flight"])
@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_answers_of_a_real_model_joining_searches_in_flight_equal_its_translations_alone(trained_models, family,
                                                                                         joining):
    """Mixed beam sizes, n-best lists and prefixes, each batch a search that joins the others in
    flight, or (beams of 2 or more) a batch that joins the beam search of its settings in flight,
    each sentence answered as it ends: every answer is what its text alone gives, to the bit."""
    model = trained_models[family]
    sources = ["Thu 26 Nov 2026", "1/2/07", "the 21st of June 1950", "2000 01 01", "5 May 1999", "Dec 3, 1987"]
    settings = [(3, None), (1, None), (4, "19"), (2, "2")]  # beam size, prefix

    def start(examples, setting, abandoned):
        beam, prefix = setting
        return model.searching(examples, beam, n_best=min(beam, 2), stop=abandoned,
                               prefixes=None if prefix is None else [prefix] * len(examples))

    def arrive(examples, setting, abandoned, answer, failed):
        beam, prefix = setting
        return model.arrival(examples, answer, failed, abandoned, beam, n_best=min(beam, 2),
                             prefixes=None if prefix is None else [prefix] * len(examples))

    flight = JoinsRecorded(model.network)
    batcher = Batcher(start, lambda text, setting: (model.codec.encode([text])[0], len(text)), flight,
                      max_batch_tokens=200, max_wait=0.01, max_queue=100, arrive=arrive if joining else None).start()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: batcher.submit([sources[i % 6]], settings[i % 4]).result(timeout=60),
                                range(48)))
    batcher.stop()

    def alone(i: int) -> list:
        beam, prefix = settings[i % 4]
        return model.translate([sources[i % 6]], beam_size=beam, n_best=min(beam, 2),
                               prefixes=None if prefix is None else [prefix])
    assert answers == [alone(i) for i in range(48)]
    assert max(flight.in_flight_at_joins) > 0  # batches did join searches in flight
    assert (flight.joined_in_flight > 0) == joining


def test_an_item_that_cannot_be_prepared_fails_its_own_request_only():
    def count(text, settings):
        if not text.strip():
            raise ValueError("text 0 is empty")
        return text, len(text.split())

    batcher = Batcher(at_once(Recorder()), count, no_network(), max_batch_tokens=100, max_wait=0.05, max_queue=100).start()
    good, bad = batcher.submit(["a b", "c"], "s"), batcher.submit(["d", " "], "s")
    with pytest.raises(ValueError, match="text 0 is empty"):
        bad.result(timeout=10)
    assert good.result(timeout=10) == ["a b|s", "c|s"]
    batcher.stop()


def test_after_a_batch_the_waiting_ones_wait_for_company_again():
    decode = Recorder(held=True)
    batcher = _batcher(decode, max_wait=0.5)
    first = batcher.submit(["first"], "s")
    time.sleep(0.7)  # "first" is batched alone and held
    waiting = batcher.submit(["waiting"], "s")  # arrives while the worker is busy; its own wait ends meanwhile
    time.sleep(0.7)
    decode.release.set()
    time.sleep(0.1)  # the worker is free again: "waiting" waits for company from now
    late = batcher.submit(["late"], "s")
    assert [f.result(timeout=10) for f in (first, waiting, late)] == [["first|s"], ["waiting|s"], ["late|s"]]
    batcher.stop()
    assert [sorted(texts) for texts, _ in decode.batches] == [["first"], ["late", "waiting"]]


def test_clients_that_send_again_when_answered_fill_the_next_batch_without_waiting_max_wait():
    """Four clients, each sending its next text as soon as it has its answer: after each batch the
    worker waits for as many as it answered, so it starts each batch full, and long before
    ``max_wait`` (a fixed wait after each batch would take 1 s per round)."""
    decode = Recorder(delay=0.05)
    batcher = _batcher(decode, max_wait=1.0)
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: [batcher.submit([f"c{c} r{r}"], "s").result(timeout=10) for r in range(5)], range(4)))
    elapsed = time.monotonic() - start
    batcher.stop()
    sizes = [len(texts) for texts, _ in decode.batches]
    assert sum(sizes) == 20 and all(size == 4 for size in sizes[1:-1]), sizes
    assert elapsed < 2.0, f"{elapsed:.2f} s for 5 rounds of 4 clients"  # the last batch alone waits the 1 s


def test_a_client_that_sends_again_the_moment_it_is_answered_is_served_at_once():
    """The next request is submitted from the answer's callback, on the worker's thread, before the
    worker has moved on: it must still start at once rather than wait ``max_wait`` for a mate."""
    decode = Recorder()
    batcher = _batcher(decode, max_wait=1.0)
    done = threading.Event()

    def send(round_: int) -> None:
        if round_ == 5:
            done.set()
            return
        batcher.submit([f"r{round_}"], "s").add_done_callback(lambda answer: send(round_ + 1))

    start = time.monotonic()
    send(0)
    assert done.wait(10)
    elapsed = time.monotonic() - start
    batcher.stop()
    assert [texts for texts, _ in decode.batches] == [[f"r{r}"] for r in range(5)]
    assert elapsed < 0.5, f"{elapsed:.2f} s for 5 requests one after another"


def test_abandoning_cancels_every_accepted_request_and_the_worker_ends_without_decoding_them():
    decode = Recorder(held=True)
    batcher = _batcher(decode, max_wait=0.0)
    busy = batcher.submit(["busy"], "s")
    time.sleep(0.2)  # the worker holds it
    waiting = batcher.submit(["waiting"], "s")
    batcher.abandon()
    assert busy.cancelled() and waiting.cancelled()
    with pytest.raises(BatcherStopped):
        batcher.submit(["late"], "s")
    decode.release.set()
    batcher._worker.join(5)
    assert not batcher._worker.is_alive() and [texts for texts, _ in decode.batches] == [["busy"]]


class Stepped:
    """A flight of fake searches (generators that yield a step each until their steps are done),
    recording what was in flight at each join and step."""

    def __init__(self):
        self.flying: list = []
        self.joins: list[tuple[list[str], int]] = []  # each batch's texts, and the sentences in flight then

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __len__(self) -> int:
        return len(self.flying)

    def join(self, search, done) -> None:
        self.joins.append((search.texts, sum(len(f[0].texts) for f in self.flying)))
        self._advance([search, done])

    def step(self) -> None:
        time.sleep(0.005)
        flying, self.flying = self.flying, []
        for f in flying:
            self._advance(f)

    def _advance(self, f) -> None:
        try:
            next(f[0].steps)
        except StopIteration as end:
            f[1](end.value)
        else:
            self.flying.append(f)


class FakeSearch:
    def __init__(self, texts: list[str], steps: int):
        self.texts = texts
        self.steps = self._steps(steps)

    def _steps(self, count: int):
        for _ in range(count):
            yield
        return [f"{text}|done" for text in self.texts]


def test_while_searches_run_a_batch_joins_at_a_quarter_of_the_sentences_in_flight_or_after_the_wait():
    flight = Stepped()
    steps = {"long": 400, "short": 5}
    batcher = Batcher(lambda texts, settings, abandoned: FakeSearch(texts, steps[texts[0].split()[0]]),
                      lambda text, settings: (text, 1), flight, max_batch_tokens=100, max_wait=0.5, max_queue=100).start()
    running = batcher.submit([f"long {i}" for i in range(8)], "s")
    time.sleep(0.1)  # in flight now
    started = time.monotonic()
    one = batcher.submit(["short a"], "s")  # an eighth of what is in flight: waits for company, or the wait
    assert one.result(timeout=5) == ["short a|done"]
    waited = time.monotonic() - started
    started = time.monotonic()
    two = batcher.submit(["short b", "short c"], "s")  # a quarter: joins at the next step
    assert two.result(timeout=5) == ["short b|done", "short c|done"] and time.monotonic() - started < 0.4
    assert not running.done()  # both joined the long search in flight and ended before it
    batcher.stop()
    assert running.result(timeout=10) == [f"long {i}|done" for i in range(8)]
    assert waited >= 0.45 and flight.joins == [([f"long {i}" for i in range(8)], 0), (["short a"], 8),
                                               (["short b", "short c"], 8)]


def test_the_tokens_in_flight_stay_within_max_batch_tokens():
    flight = Stepped()
    batcher = Batcher(lambda texts, settings, abandoned: FakeSearch(texts, 60), lambda text, settings: (text, 3),
                      flight, max_batch_tokens=12, max_wait=0.0, max_queue=100).start()
    first = batcher.submit(["a", "b", "c"], "s")  # 9 tokens in flight
    time.sleep(0.05)
    second = batcher.submit(["d", "e"], "s")  # 6 more do not fit: "d" joins (12), "e" waits for room
    assert first.result(timeout=10) and second.result(timeout=10) == ["d|done", "e|done"]
    batcher.stop()
    assert flight.joins == [(["a", "b", "c"], 0), (["d"], 3), (["e"], 1)]  # "e" once "a", "b", "c" ended
