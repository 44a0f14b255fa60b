"""CTC forced alignment: checked against brute force over every CTC path, then on a trained model
(characters of a training utterance land in order, inside the audio, and the forced path never
beats the best unconstrained path)."""

import itertools

import numpy as np
import pytest
import torch

from asrdemo.decode.alignment import (AlignmentError, best_path_score, ctc_forced_align, encoder_frame_seconds,
                                      greedy_path, min_frames_needed, token_times)

torch.set_num_threads(1)


def random_logp(num_frames, vocab, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (num_frames, vocab))
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def collapse(path, blank=0):
    return [t for i, t in enumerate(path) if t != blank and (i == 0 or t != path[i - 1])]


def brute_force(logp, ids):
    """Best path spelling `ids` and its score, by trying all V^T paths."""
    best, best_path = -np.inf, None
    for path in itertools.product(range(logp.shape[1]), repeat=logp.shape[0]):
        if collapse(list(path)) == list(ids):
            s = logp[np.arange(len(path)), path].sum()
            if s > best:
                best, best_path = s, list(path)
    return best, best_path


@pytest.mark.parametrize("ids,num_frames,seed", [
    ([1], 1, 0), ([1], 4, 1), ([1, 2], 5, 2), ([2, 2], 3, 3), ([2, 2], 6, 4), ([1, 2, 1], 6, 5),
    ([3, 3, 3], 5, 6), ([1, 2, 3], 7, 7), ([], 4, 8),
])
def test_viterbi_equals_brute_force(ids, num_frames, seed):
    logp = random_logp(num_frames, 4, seed)
    expected, _ = brute_force(logp, ids)
    ali = ctc_forced_align(logp, ids)
    assert ali.score == pytest.approx(expected, abs=1e-9)
    # the returned path is a real path: it spells the sequence and has the returned score
    assert collapse(ali.frame_labels) == ids
    assert logp[np.arange(num_frames), ali.frame_labels].sum() == pytest.approx(ali.score, abs=1e-9)
    # spans: one per token, in order, disjoint, each frame emitting that token
    assert len(ali.spans) == len(ids)
    previous_end = 0
    for tok, (start, end) in zip(ids, ali.spans):
        assert previous_end <= start < end <= num_frames
        assert all(ali.frame_labels[t] == tok for t in range(start, end))
        previous_end = end
    assert ali.score <= best_path_score(logp) + 1e-9


def test_equal_neighbours_need_a_blank_between():
    assert min_frames_needed([5, 5, 6]) == 4
    logp = np.log(np.full((3, 7), 1 / 7))
    with pytest.raises(AlignmentError, match="at least 4 encoder frames"):
        ctc_forced_align(logp, [5, 5, 6])
    ali = ctc_forced_align(np.log(np.full((4, 7), 1 / 7)), [5, 5, 6])
    assert ali.frame_labels == [5, 0, 5, 6]


def test_greedy_sequence_aligns_on_the_best_path():
    """When the transcript is the greedy path's own, the forced alignment is that path."""
    logp = random_logp(30, 6, seed=11)
    path = greedy_path(logp)
    ali = ctc_forced_align(torch.from_numpy(logp), collapse(path))
    assert ali.score == pytest.approx(best_path_score(logp))
    assert ali.frame_labels == path


def test_bad_input():
    logp = random_logp(5, 4, 0)
    with pytest.raises(ValueError, match="blank"):
        ctc_forced_align(logp, [1, 0, 2])
    with pytest.raises(ValueError, match="vocabulary"):
        ctc_forced_align(logp, [4])
    with pytest.raises(ValueError, match="frames, vocab"):
        ctc_forced_align(logp[0], [1])


def test_token_times_seconds():
    logp = np.log(np.full((10, 4), 0.01))
    logp[[2, 3], 1] = np.log(0.97)
    logp[7, 2] = np.log(0.97)
    logp[[0, 1, 4, 5, 6, 8, 9], 0] = np.log(0.97)
    ali = ctc_forced_align(logp, [1, 2])
    assert ali.spans == [(2, 4), (7, 8)]
    frame_s = encoder_frame_seconds(4, 0.010)
    assert frame_s == pytest.approx(0.04)
    times = token_times(ali, ["<blank>", "あ", "い", "<sos/eos>"], frame_s, duration_s=0.31)
    assert [(t.token, t.start_s, t.end_s) for t in times] == [("あ", 0.08, 0.16), ("い", 0.28, 0.31)]


# ------------------------------------------------------------------ on the learning-test model


def test_training_utterance_aligns_in_order_inside_the_audio(trained_exp):
    from asrdemo.data.audio import load_audio
    from asrdemo.data.datadir import read_kv
    from asrdemo.decode.recognizer import Recognizer

    rec = Recognizer.from_exp_dir(trained_exp)
    model = rec.model
    data = trained_exp.parent.parent / "data" / "train"
    wav_scp, text = read_kv(data / "wav.scp"), read_kv(data / "text")
    checked = 0
    for utt in sorted(text)[:3]:
        wave, _ = load_audio(wav_scp[utt], rec.sample_rate)
        duration = len(wave) / rec.sample_rate
        feats = torch.from_numpy(rec.fbank(wave)).unsqueeze(0)
        with torch.inference_mode():
            enc, _ = model.encode(feats, torch.tensor([feats.size(1)]))
            logp = model.ctc.log_softmax(enc)[0]
        ids = rec.token_list.encode(text[utt])
        ali = ctc_forced_align(logp, ids, model.blank_id)
        times = token_times(ali, rec.token_list.tokens,
                            encoder_frame_seconds(model.subsampling_rate, rec.fbank.frame_shift_s), duration)
        assert [t.token_id for t in times] == ids  # every character, in order
        starts = [t.start_s for t in times]
        assert starts == sorted(starts)
        for a, b in zip(times, times[1:]):
            assert a.end_s <= b.start_s  # no two characters share a frame
        assert all(0.0 <= t.start_s < t.end_s <= duration for t in times)
        # unclipped: the encoder's frames never reach past the audio
        assert len(logp) * encoder_frame_seconds(model.subsampling_rate, rec.fbank.frame_shift_s) <= duration
        assert ali.score <= best_path_score(logp) + 1e-6
        # the Viterbi path is one of the paths the CTC loss sums over: its score is below log p(y|x)
        log_likelihood = -torch.nn.functional.ctc_loss(logp, torch.tensor(ids), torch.tensor([len(logp)]),
                                                        torch.tensor([len(ids)]), reduction="sum").item()
        assert ali.score <= log_likelihood + 1e-4
        checked += 1
    assert checked == 3
