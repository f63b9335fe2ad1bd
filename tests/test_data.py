"""The data pipeline: readers and their errors, tokenizers, vocabulary, lengths, collate, sampler."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cronos.config import DataConfig, ParallelFiles, load_config
from cronos.data import (BOS_INDEX, EOS_INDEX, PAD_INDEX, UNK_INDEX, BucketBatchSampler, DataError,
                         RandomBatchSampler, TextCodec, Vocabulary, build_tokenizer, collate,
                         load_eval_split, load_training_data, padded_share, read_pairs)
from cronos.data.preprocess import Example


def data_config(train, **kw) -> DataConfig:
    return DataConfig(train=str(train) if not isinstance(train, ParallelFiles) else train, **kw)


# --- readers -------------------------------------------------------------------------------------

def test_tsv_and_parallel_files_read_the_same_pairs(write):
    tsv = write("a.tsv", "eins\tone\nzwei\ttwo\n")
    src, tgt = write("a.de", "eins\nzwei\n"), write("a.en", "one\ntwo")
    from_tsv, from_parallel = read_pairs(str(tsv)), read_pairs(ParallelFiles(str(src), str(tgt)))
    assert [(p.source, p.target) for p in from_tsv] == [("eins", "one"), ("zwei", "two")]
    assert [(p.source, p.target) for p in from_parallel] == [("eins", "one"), ("zwei", "two")]


@pytest.mark.parametrize("content, message", [
    ("a\tb\nno tab here\n", r"a\.tsv:2: expected 'source<TAB>target', found no tab"),
    ("a\tb\tc\n", r"a\.tsv:1: expected 'source<TAB>target', found 2 tabs"),
    (b"ok\tfine\n\xff\xfe\tbad\n", r"a\.tsv:2: not valid UTF-8 \(byte 0xff at column 1\)"),
])
def test_bad_tsv_lines_name_file_and_line(write, content, message):
    with pytest.raises(DataError, match=message):
        read_pairs(str(write("a.tsv", content)))


def test_parallel_files_with_different_line_counts(write):
    src, tgt = write("x.de", "a\nb\nc\n"), write("x.en", "a\nb\n")
    with pytest.raises(DataError, match=r"x\.de has 3 lines but .*x\.en has 2; parallel files must be line-aligned"):
        read_pairs(ParallelFiles(str(src), str(tgt)))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.tsv: file not found"):
        read_pairs(str(tmp_path / "nope.tsv"))


def test_a_missing_file_of_the_config_names_its_key_and_the_ways_to_the_data(tmp_path, root):
    config = load_config(root / "configs" / "multi30k_gru.yaml", overrides={"data.root": str(tmp_path)})
    with pytest.raises(DataError) as caught:
        load_training_data(config.data)
    assert str(caught.value) == (
        f"data.train: {tmp_path / 'train.de'}: file not found (data.root is {tmp_path}); point the config at the "
        "data with --set data.root=PATH (or the environment variable its data.root names), or fetch the data as "
        "the config's comments say")
    assert "scripts/download_multi30k.py" in (root / "configs" / "multi30k_gru.yaml").read_text()


def test_empty_side_is_an_error_by_default_and_skipped_on_request(write):
    path = write("e.tsv", "abc\txyz\n \tempty source\nfoo\t\n")
    message = (r"^[^()]*e\.tsv:2: empty source \(no text, or only white space\); fix the line or set "
               r"data\.empty_policy: skip$")
    with pytest.raises(DataError, match=message):
        load_training_data(data_config(path, tokenizer="whitespace"))
    data = load_training_data(data_config(path, tokenizer="whitespace", empty_policy="skip"))
    assert len(data.examples) == 1 and data.stats.skipped_empty == 2


def test_long_examples_are_filtered_or_truncated_and_counted(write):
    path = write("l.tsv", "abc\txy\nabcdefgh\txy\nab\txyzxyzxyz\n")
    filtered = load_training_data(data_config(path, max_length=4))
    assert [e.src_length for e in filtered.examples] == [3] and filtered.stats.filtered_long == 2
    truncated = load_training_data(data_config(path, max_length=4, long_policy="truncate"))
    assert [e.src_length for e in truncated.examples] == [3, 4, 2]
    assert [e.tgt_length for e in truncated.examples] == [3, 3, 5] and truncated.stats.truncated == 2


# --- tokenizers and vocabulary ---------------------------------------------------------------------

def test_tokenizers():
    assert build_tokenizer("char").tokenize("26 Nov") == ["2", "6", " ", "N", "o", "v"]
    assert build_tokenizer("whitespace").tokenize("  a  b ") == ["a", "b"]
    assert build_tokenizer("word", lowercase=True).tokenize("Ein Hund, der's läuft!") == \
        ["ein", "hund", ",", "der's", "läuft", "!"]
    assert build_tokenizer("word").detokenize(["A", "dog", ",", "running", "."]) == "A dog, running."
    with pytest.raises(ValueError, match="unknown tokenizer"):
        build_tokenizer("bpe")


def test_vocabulary_specials_order_and_round_trip(tmp_path):
    vocab = Vocabulary.build([list("banana"), list("band")], min_freq=1)
    assert vocab.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and vocab.stoi["<pad>"] == PAD_INDEX == 0
    assert vocab.itos[4:] == ["a", "n", "b", "d"]  # by frequency, ties alphabetical
    assert Vocabulary.build([list("band"), list("banana")]) == vocab  # order of input does not matter
    assert vocab.encode(list("bz")) == [vocab.stoi["b"], UNK_INDEX]
    assert vocab.to_tokens([BOS_INDEX, vocab.stoi["b"], vocab.stoi["a"], EOS_INDEX, vocab.stoi["d"], PAD_INDEX]) == ["b", "a"]
    assert Vocabulary.build([list("banana"), list("band")], min_freq=2).itos[4:] == ["a", "n", "b"]
    assert Vocabulary.build([list("banana")], max_size=1).itos[4:] == ["a"]


# --- lengths and collate ---------------------------------------------------------------------------

@given(st.lists(st.text(alphabet="abc xyz", min_size=1, max_size=20).filter(lambda s: s.split() != []), min_size=1, max_size=8))
def test_lengths_equal_the_true_token_counts(sources):
    tokenizer = build_tokenizer("whitespace")
    vocab = Vocabulary.build([tokenizer.tokenize(s) for s in sources])
    examples = TextCodec(tokenizer, tokenizer, vocab, vocab, max_length=100).encode(sources, targets=sources)
    for text, example in zip(sources, examples):
        assert example.src_length == len(text.split()) == len(example.src)
        assert example.tgt_length == len(text.split()) + 1


def test_collate_pads_right_with_zero_and_returns_lengths():
    examples = [Example(0, (5, 6, 7), (8,), 3, 2), Example(1, (9,), (10, 11, 12), 1, 4)]
    batch = collate(examples)
    assert batch.src.tolist() == [[5, 6, 7], [9, 0, 0]]
    assert batch.src_lengths.tolist() == [3, 1]
    assert batch.tgt_in.tolist() == [[BOS_INDEX, 8, 0, 0], [BOS_INDEX, 10, 11, 12]]
    assert batch.tgt_out.tolist() == [[8, EOS_INDEX, 0, 0], [10, 11, 12, EOS_INDEX]]
    assert batch.tgt_lengths.tolist() == [2, 4] and batch.indices == (0, 1)
    assert batch.src.dtype == torch.long and batch.num_target_tokens == 6
    no_targets = collate([Example(0, (5,), None, 1, 0)])
    assert no_targets.tgt_in is None and no_targets.src_lengths.tolist() == [1]


def test_empty_user_input_is_rejected():
    tokenizer, vocab = build_tokenizer("char"), Vocabulary.build([list("abc")])
    with pytest.raises(ValueError, match="input 1: empty source"):
        TextCodec(tokenizer, tokenizer, vocab, vocab, max_length=100).encode(["abc", ""])
    with pytest.raises(TypeError, match="wrap it"):
        TextCodec(tokenizer, tokenizer, vocab, vocab, max_length=100).encode("abc")


# --- sampler --------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=200), st.integers(0, 1000), st.integers(0, 5),
       st.one_of(st.integers(1, 16).map(lambda n: {"batch_size": n}),
                 st.integers(1, 300).map(lambda n: {"batch_tokens": n})))
def test_sampler_yields_every_example_once_per_epoch_deterministically(lengths, seed, epoch, budget):
    tgt = [n % 7 + 2 for n in lengths]
    sampler = BucketBatchSampler(lengths, tgt, seed=seed, **budget)
    batches = as_lists(sampler.batches(epoch))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches == as_lists(BucketBatchSampler(lengths, tgt, seed=seed, **budget).batches(epoch))
    if "batch_size" in budget:
        assert all(len(b) <= budget["batch_size"] for b in batches)
    else:  # over budget only when one example alone exceeds it
        assert all(len(b) * max(max(lengths[i], tgt[i]) for i in b) <= budget["batch_tokens"] or len(b) == 1
                   for b in batches)


def test_sampler_reshuffles_each_epoch_and_follows_set_epoch():
    lengths = list(range(1, 200))
    sampler = BucketBatchSampler(lengths, lengths, batch_size=8, seed=3)
    assert as_lists(sampler.batches(0)) != as_lists(sampler.batches(1))
    sampler.set_epoch(1)
    assert list(sampler) == as_lists(sampler.batches(1)) and len(sampler) == len(sampler.batches(1))
    assert as_lists(BucketBatchSampler(lengths, lengths, batch_size=8, seed=4).batches(0)) != as_lists(sampler.batches(0))


def as_lists(batches: list) -> list[list[int]]:
    return [batch.tolist() for batch in batches]


def test_bucketing_cuts_padding_on_dates_to_under_a_third_of_random(root):
    config = load_config(root / "configs" / "dates.yaml")
    data = load_training_data(config.data)
    src = [e.src_length for e in data.examples]
    tgt = [e.tgt_length for e in data.examples]
    bucketed = padded_share(BucketBatchSampler(src, tgt, batch_size=64, seed=1).batches(0), src, tgt)
    random_ = padded_share(RandomBatchSampler(src, tgt, batch_size=64, seed=1).batches(0), src, tgt)
    assert random_ > 0.2  # dates really are padding-heavy
    assert bucketed <= random_ / 3


def test_padded_share_counts_pad_positions():
    # sources 1 and 3 -> 2 pads of 6; targets 2 and 2 -> 0 of 4
    assert padded_share([[0, 1]], [1, 3], [2, 2]) == pytest.approx(2 / 10)


def test_eval_split_keeps_texts_aligned_with_examples(write):
    train = write("t.tsv", "ab\tx\nabc\ty\n")
    data = load_training_data(data_config(train))
    codec = TextCodec.for_data(data_config(train), data.src_vocab, data.tgt_vocab)
    split = load_eval_split(read_pairs(str(write("v.tsv", "ba\tyx\nq\tz\n"))), data_config(train), codec)
    assert split.sources == ["ba", "q"] and split.targets == ["yx", "z"]
    assert split.examples[1].src == (UNK_INDEX,) and split.examples[0].tgt_length == 3


# --- untrusted data --------------------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["<pad>", "<eos>", "<bos>", "<unk>"])
def test_a_literal_special_in_the_text_never_becomes_a_special_id(write, literal):
    train = write("train.tsv", f"a {literal} b\tx {literal} y\nb a\ty x\n")
    data = load_training_data(data_config(train, tokenizer="whitespace"))
    for example in data.examples:
        assert PAD_INDEX not in example.src[:example.src_length] and PAD_INDEX not in example.tgt
        assert not {BOS_INDEX, EOS_INDEX} & set(example.src + example.tgt)
    assert data.examples[0].src == (data.src_vocab.stoi["a"], UNK_INDEX, data.src_vocab.stoi["b"])
    assert literal not in data.src_vocab.itos[4:]  # never a word of the vocabulary either
    batch = collate(data.examples)
    assert batch.src_lengths.tolist() == [3, 2] and (batch.src[0] != PAD_INDEX).all()


def test_a_byte_order_mark_is_not_a_token(write):
    tsv = write("bom.tsv", b"\xef\xbb\xbfeins\tone\nzwei\ttwo\n")
    src, tgt = write("bom.de", b"\xef\xbb\xbfeins\n"), write("bom.en", b"\xef\xbb\xbfone\n")
    assert read_pairs(str(tsv))[0].source == "eins"
    assert [(p.source, p.target) for p in read_pairs(ParallelFiles(str(src), str(tgt)))] == [("eins", "one")]


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_before_reading(path):
    with pytest.raises(DataError, match=f"{path}: is a device or a socket, not a text file"):
        read_pairs(path)


def test_a_pipe_says_it_waits_for_a_writer_then_reads_it(tmp_path, caplog):
    import os
    import threading
    import time

    fifo = tmp_path / "train.fifo"
    os.mkfifo(fifo)
    result = {}
    reader = threading.Thread(target=lambda: result.update(pairs=read_pairs(str(fifo))), daemon=True)
    with caplog.at_level("WARNING", logger="cronos"):
        reader.start()
        deadline = time.monotonic() + 30
        while f"{fifo} is a pipe: waiting for a program to write into it" not in caplog.text:
            assert time.monotonic() < deadline, "no message while waiting for a writer"
            time.sleep(0.01)
    fifo.write_text("eins\tone\nzwei\ttwo\n")  # the writer comes; the read goes on
    reader.join(timeout=30)
    assert [(p.source, p.target) for p in result["pairs"]] == [("eins", "one"), ("zwei", "two")]


def test_a_pipe_without_line_ends_stops_with_a_clear_error(tmp_path):
    import os
    import threading

    fifo = tmp_path / "zeros.fifo"
    os.mkfifo(fifo)

    def endless_line():
        try:
            with open(fifo, "wb") as pipe:
                while True:
                    pipe.write(b"\0" * 65536)
        except BrokenPipeError:  # the reader gave up, as it should
            pass

    threading.Thread(target=endless_line, daemon=True).start()
    with pytest.raises(DataError, match=r"zeros\.fifo:1: a line longer than 1 MiB without a line end"):
        read_pairs(str(fifo))


def test_messages_about_split_files_can_keep_their_contents_out(write):
    secret = write("secret.tsv", "root:x:0:0:the-password\n")
    with pytest.raises(DataError) as caught:
        read_pairs(str(secret), quote=False)
    assert "found no tab" in str(caught.value) and "password" not in str(caught.value)
    assert "password" in str(pytest.raises(DataError, read_pairs, str(secret)).value)  # a user's own file: quoted


# --- ExampleTable ---------------------------------------------------------------------------------

TABLE_EXAMPLES = [Example(0, (4, 5, 6), (7, 8), 3, 3), Example(1, (9,), (10, 11, 12), 1, 4), Example(2, (5, 4), (7,), 2, 2)]


def test_a_table_gives_back_its_examples_and_their_lengths(tmp_path):
    import numpy as np

    from cronos.data.table import ARRAYS, ExampleTable

    table = ExampleTable.from_examples(TABLE_EXAMPLES, np.dtype(np.uint16))
    assert list(table) == TABLE_EXAMPLES and table[-1] == TABLE_EXAMPLES[2] and table[1:] == TABLE_EXAMPLES[1:]
    assert table.src_lengths.tolist() == [3, 1, 2] and table.tgt_lengths.tolist() == [3, 4, 2]  # targets + <eos>
    with pytest.raises(IndexError, match="example 3 of a table of 3"):
        table[3]
    for name in ARRAYS:
        np.save(tmp_path / f"{name}.npy", getattr(table, name))
    stored = ExampleTable.open(tmp_path)
    assert isinstance(stored.src_ids, np.memmap) and stored == table and list(stored) == TABLE_EXAMPLES
    with pytest.raises(ValueError, match="offsets of 4 and 3 entries"):
        ExampleTable(table.src_ids, table.src_offsets, table.tgt_ids, table.tgt_offsets[:-1])


# --- filters --------------------------------------------------------------------------------------

def test_filters_leave_out_pairs_by_length_ratio_shortest_side_and_copies_and_say_how_many(write, caplog):
    import logging

    lines = ["abc\tabcdefghijkl", "hello\thallo", "a\tab", "same text\tsame text", "fine\tfein"]
    path = write("train.tsv", "\n".join(lines) + "\n")
    config = load_config({"data": {"train": str(path), "filters": {"max_length_ratio": 3, "min_length": 2,
                                                                     "copies": False}}}).data
    with caplog.at_level(logging.INFO, logger="cronos"):
        data = load_training_data(config)
    assert len(data.examples) == 2  # hello/hallo and fine/fein
    assert data.stats.filtered == {"max_length_ratio": 1, "min_length": 1, "copies": 1}
    assert "1 of 5 examples had sides whose lengths differ by more than data.filters.max_length_ratio and were " \
           "left out" in caplog.text
    kept = load_training_data(load_config({"data": {"train": str(path)}}).data)
    assert len(kept.examples) == 5 and kept.stats.filtered == {}  # by default every pair is kept


def test_filters_never_touch_what_a_user_translates_or_evaluates(write):
    path = write("train.tsv", "abc\tabcdefghijkl\nhello\thallo\n")
    config = load_config({"data": {"train": str(path), "filters": {"max_length_ratio": 2, "copies": False}}}).data
    data = load_training_data(config)
    codec = TextCodec.for_data(config, data.src_vocab, data.tgt_vocab)
    assert len(codec.encode(["abc", "hello"], ["abcdefghijkl", "hello"])) == 2
    from cronos.data import load_split

    assert len(load_split([("abc", "abcdefghijkl"), ("same", "same")], config, codec).examples) == 2
