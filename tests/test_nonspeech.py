"""Non-speech utterances (an empty transcript): training keeps them, and a model trained with
them answers nothing for noise while still reading speech — the reason the synthetic corpus
has them (docs/synth_ja.md)."""

import kaldiio
import numpy as np
import torch

from test_train import build_model_from_exp, make_task, run_inprocess, train_args, write_config


def _add_noise_utterances(dump_dir, n, seed, dim=20):
    """Append `n` noise-only utterances (Gaussian noise, 30-70 frames) with empty transcripts."""
    rng = np.random.default_rng(seed)
    feats = {f"zz_noise{i:03d}": rng.normal(0, 1.5, (int(rng.integers(30, 71)), dim)).astype(np.float32)
             for i in range(n)}
    with kaldiio.WriteHelper(f"ark,scp:{dump_dir}/noise.ark,{dump_dir}/noise.scp") as w:
        for utt, f in feats.items():
            w(utt, f)
    for name, lines in (("feats.scp", (dump_dir / "noise.scp").read_text().splitlines()),
                        ("utt2num_frames", [f"{u} {len(f)}" for u, f in feats.items()]),
                        ("text", [f"{u} " for u in feats])):
        with open(dump_dir / name, "a") as out:
            out.write("".join(line + "\n" for line in lines))
    return feats


def test_a_model_trained_with_non_speech_answers_nothing_for_noise(tmp_path):
    from asrdemo.decode.ctc_greedy import ctc_greedy_search

    task = make_task(tmp_path, n_train=48)
    _add_noise_utterances(task["train_dir"], 16, seed=1)
    held_out = _add_noise_utterances(task["valid_dir"], 4, seed=2)
    config = write_config(tmp_path / "train.yaml", train={"max_epochs": 12})
    assert run_inprocess(train_args(task, config, tmp_path / "exp")) == 0

    _, model = build_model_from_exp(tmp_path / "exp")
    model.load_state_dict(torch.load(tmp_path / "exp" / "valid.acc.ave.pth"))
    model.eval()
    with torch.no_grad():
        for utt, feats in held_out.items():  # noise it never saw: no CTC output, and the decoder ends at once
            x = torch.from_numpy(feats).unsqueeze(0)
            enc, enc_lens = model.encode(x, torch.tensor([len(feats)]))
            assert ctc_greedy_search(model.ctc.log_softmax(enc), enc_lens)[0][0].token_ids == [], utt
            ys_in = torch.tensor([[model.sos]])
            logits = model.decoder(enc, torch.ones(1, 1, enc.size(1), dtype=torch.bool), ys_in, torch.tensor([1]))
            assert int(logits[0, -1].argmax()) == model.eos, utt
        # and speech is still read
        speech = kaldiio.load_scp(str(task["valid_dir"] / "feats.scp"))
        first = sorted(u for u in speech if u.startswith("dv"))[0]
        x = torch.from_numpy(speech[first]).unsqueeze(0)
        enc, enc_lens = model.encode(x, torch.tensor([x.size(1)]))
        assert ctc_greedy_search(model.ctc.log_softmax(enc), enc_lens)[0][0].token_ids != []


def test_the_audio_reader_keeps_a_non_speech_utterance(tmp_path):
    """`frontend: ssl` trains on a data dir's audio (read_wave_dir): an empty transcript there is
    the same non-speech example as in a dump dir, not an error."""
    import soundfile as sf

    from asrdemo.data.datadir import Utterance, write_data_dir
    from asrdemo.data.tokens import TokenList
    from asrdemo.data.wave_dataset import read_wave_dir

    utts = []
    for utt, text in (("a_speech", "あい"), ("b_noise", "")):
        wav = tmp_path / f"{utt}.wav"
        sf.write(str(wav), np.zeros(8000, dtype=np.float32), 16000)
        utts.append(Utterance(utt, str(wav), text, "spk", 0.5))
    write_data_dir(tmp_path / "data", utts)
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\nあ\nい\n<sos/eos>\n", encoding="utf-8")
    examples = read_wave_dir(tmp_path / "data", TokenList.load(tmp_path / "tokens.txt"), 16000)
    assert [(e.utt_id, e.token_ids, e.num_frames) for e in examples] == [("a_speech", [2, 3], 8000),
                                                                         ("b_noise", [], 8000)]
