"""The model learns: the tiny model of tests/conf/train_tiny.yaml, trained for a bounded number of
steps (80 epochs x 2 batches) on 10 synthesized utterances, transcribes those utterances with a
low CER in both decoding modes, from their wav files, through the same recognizer as the demo.

This can fail: a broken loss, mask, frontend mismatch between training and inference, or search
gives a CER near 100 %.
"""

import json

import pytest

from asrdemo.data.datadir import read_data_dir
from asrdemo.decode.recognizer import Recognizer
from asrdemo.score import score


@pytest.mark.parametrize("mode", ["ctc_greedy", "joint"])
def test_tiny_model_memorises_its_training_utterances(trained_exp, tiny_work, mode):
    history = [json.loads(line) for line in (trained_exp / "history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] <= 200  # bounded: 80 epochs of 2 batches
    utts = read_data_dir(tiny_work / "data" / "train")
    rec = Recognizer.from_exp_dir(trained_exp, num_threads=1)
    hyps = {u.utt_id: rec.recognize_file(u.wav, mode=mode).text for u in utts}
    totals, _, _ = score({u.utt_id: u.text for u in utts}, hyps)
    assert totals.ref_units > 150
    assert totals.cer <= 10.0, f"{mode}: CER {totals.cer:.1f} % on training utterances: {hyps}"
