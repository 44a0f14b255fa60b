"""The project's own Japanese sentence generator: templates filled from word lists.

Training text for the offline corpus (`asrdemo make_synth_ja`) must be written by the project
itself, so it is generated here: a few dozen sentence templates (statements, questions,
requests; polite and plain forms; numbers, prices, dates, times and counters written in kanji
numerals as JSUT writes them) whose slots are filled from two sources -- a short everyday
vocabulary written below, and the much larger word lists of `asrdemo.data.lexicon` (nouns,
loanwords, place and person names, verbs and adjectives with their conjugated forms, taken
from pyopenjtalk-plus's dictionary). Half the slots draw from each, so frequent words recur
while the rarer dictionary words spread the character inventory (thousands of kanji).

Templates alone teach a model the templates: trained on them, a recognizer's CTC branch
answered natural sentences with template fragments (docs/synth_ja.md). So a share of the
sentences (`free_ratio`, default 0.5) are *free* sentences instead: one to three clauses, each a
chain of random words with random particles and a random predicate, joined by connectives. They
are grammatical in shape rather than meaning, and no sequence of words recurs often enough to
be memorised: the model has to listen.

`generate(n, seed)` is deterministic: the same (n, seed) gives the same list, and a longer
list starts with the shorter one. Sentences of an evaluation set (`eval_sentences()`) are
never produced.
"""

from pathlib import Path

import numpy as np

from asrdemo.data.lexicon import load_lexicon

REPO = Path(__file__).resolve().parents[2]
# Evaluation text that must never be trained on: the mini corpus (its test sentence is the demo
# sample's) and the offline corpus's own held-out sentences.
EVAL_SENTENCE_FILES = (REPO / "egs" / "mini_jsut" / "sentences.txt", REPO / "egs" / "synth_ja" / "eval_sentences.txt")

# --------------------------------------------------------------------------- everyday words

PEOPLE = "私 僕 彼 彼女 父 母 兄 姉 弟 妹 友達 先生 学生 子供 家族 部長 店員 医者 祖母 祖父 隣の人 みんな 社長 お客様".split()
PLACES = ("駅 学校 会社 病院 公園 図書館 銀行 郵便局 空港 店 部屋 台所 教室 海 山 川 町 村 東京 大阪 京都 北海道 "
          "沖縄 名古屋 福岡 横浜 神戸 仙台 広島 札幌 家 庭 市役所 美術館 映画館 体育館 交差点 橋 港 島").split()
THINGS = ("本 水 お茶 牛乳 新聞 手紙 写真 傘 鍵 財布 時計 電話 机 椅子 窓 車 自転車 電車 切符 地図 料理 野菜 果物 "
          "魚 肉 卵 お米 パン 花 服 靴 帽子 眼鏡 荷物 宿題 資料 会議 予定 天気 雨 雪 風 音楽 映画 番組 問題 意見 "
          "計画 仕事 趣味 旅行 試験 病気 薬 お金 時間 言葉 漢字 名前 住所 番号 道 船 飛行機 部品 机 石 紙 箱").split()
LOAN = ("コーヒー パソコン スマートフォン テレビ カメラ メール ホテル レストラン バス タクシー エレベーター "
        "コンビニ スーパー ケーキ ジュース ニュース プレゼント チケット アプリ インターネット データ サービス "
        "システム プログラム ミーティング スケジュール イベント スポーツ サッカー ピアノ ギター ゲーム").split()
VERBS_O = ("読みます 書きます 買います 作ります 使います 探します 見ます 食べます 飲みます 届けます 開けます 閉めます "
           "洗います 選びます 送ります 借ります 返します 調べます 忘れます 覚えます 持ちます 運びます 片付けます").split()
ADJ_I = "大きい 小さい 新しい 古い 高い 安い 暑い 寒い 忙しい 難しい 易しい 面白い 楽しい 早い 遅い 近い 遠い 明るい 暗い 美味しい".split()
ADJ_NA = "静か 便利 有名 丁寧 大切 簡単 元気 親切 きれい 大変 必要 安全 自由 不思議 複雑 特別".split()
ADVERBS = "とても 少し もう まだ すぐに ゆっくり きっと たぶん いつも 時々 全然 必ず 初めて やっと ちょうど 突然 だいたい 今日 明日 昨日 今朝 毎日".split()
COUNTERS = ("本", "枚", "冊", "個", "台", "匹", "人", "回", "階", "歳", "杯", "軒", "着", "足", "箱", "キロ", "メートル", "パーセント")
WEEKDAYS = "月曜日 火曜日 水曜日 木曜日 金曜日 土曜日 日曜日".split()

_DIGITS = "〇一二三四五六七八九"


def kanji_number(n: int) -> str:
    """An integer 0 <= n < 10**12 in kanji numerals, as transcripts write them: 2024 -> 二千二十四."""
    if not 0 <= n < 10**12:
        raise ValueError(f"kanji_number: {n} out of range")
    if n == 0:
        return "〇"
    out = []
    for unit_value, unit in ((10**8, "億"), (10**4, "万"), (1, "")):
        chunk, n = divmod(n, unit_value)
        if not chunk:
            continue
        part = ""
        for value, name in ((1000, "千"), (100, "百"), (10, "十")):
            d, chunk = divmod(chunk, value)
            if d:
                part += ("" if d == 1 else _DIGITS[d]) + name
        if chunk:
            part += _DIGITS[chunk]
        out.append(part + unit)
    return "".join(out)


class _Picker:
    """Draws words: half from the everyday lists above, half from the dictionary's lists."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.lex = load_lexicon()

    def one(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def mix(self, everyday, dictionary, p_everyday=0.5):
        return self.one(everyday) if self.rng.random() < p_everyday else self.one(dictionary)

    def noun(self):
        return self.mix(THINGS + PLACES, self.lex.nouns)

    def thing(self):
        return self.mix(THINGS + LOAN, self.lex.nouns + self.lex.loanwords, 0.45)

    def loan(self):
        return self.mix(LOAN, self.lex.loanwords, 0.4)

    def place(self):
        return self.mix(PLACES, self.lex.places, 0.6)

    def person(self):
        r = self.rng.random()
        if r < 0.5:
            return self.one(PEOPLE)
        if r < 0.8:
            return self.one(self.lex.surnames) + self.one(["さん", "さん", "先生", "部長", "君"])
        return self.one(self.lex.given_names) + self.one(["さん", "ちゃん", "君"])

    def verb(self):
        return self.one(self.lex.verbs)

    def adj(self):
        return self.one(self.lex.adjectives)

    def adverb(self):
        return self.mix(ADVERBS, self.lex.adverbs, 0.6)

    def na_adj(self):
        return self.mix(ADJ_NA, self.lex.na_adjectives, 0.4)

    def sahen(self):
        return self.one(self.lex.sahen)

    def number(self, lo, hi):
        return kanji_number(int(self.rng.integers(lo, hi + 1)))


# --------------------------------------------------------------------------- templates
# Each template takes a _Picker and returns one sentence (with its final punctuation).


def _verb_end(p: _Picker, v) -> str:
    """A verb (from the dictionary) in one of its polite or plain sentence-final forms."""
    da = "だ" if v.ta_voiced else "た"
    de = "で" if v.ta_voiced else "て"
    return p.one([v.renyo + "ます", v.renyo + "ました", v.renyo + "ません", v.renyo + "ましょう",
                  v.renyo + "たいです", v.base, v.ta + da, v.mizen + "ない", v.mizen + "なかった",
                  v.ta + de + "います", v.ta + de + "ください", v.base + "そうです", v.base + "つもりです",
                  v.base + "ことができます", v.mizen + "なければなりません"])


def _final(p: _Picker, polite: str, plain: str) -> str:
    return polite if p.rng.random() < 0.6 else plain


TEMPLATES = [
    lambda p: f"{p.person()}は{p.place()}で{p.thing()}を{_verb_end(p, p.verb())}。",
    lambda p: f"{p.adverb()}{p.noun()}を{_verb_end(p, p.verb())}。",
    lambda p: f"{p.person()}が{p.noun()}に{_verb_end(p, p.verb())}。",
    lambda p: f"{p.noun()}の{p.noun()}は{p.adj().base}{_final(p, 'です', '')}。",
    lambda p: f"{p.noun()}は{p.adj().ku}ありません。",
    lambda p: f"昨日の{p.noun()}は{p.adj().ta}た{_final(p, 'です', '')}。",
    lambda p: f"この{p.thing()}は{p.na_adj()}{_final(p, 'です', 'だ')}。",
    lambda p: f"{p.na_adj()}な{p.noun()}が{p.one(['ほしい', '好きです', 'あります', '見つかりました'])}。",
    lambda p: f"{p.person()}は毎日{p.sahen()}{p.one(['しています', 'します', 'する', 'しました', 'した'])}。",
    lambda p: f"{p.sahen()}の{p.one(['予定', '準備', '結果', '目的', '方法'])}を{p.one(['教えてください', '説明します', '確認しました', '決めました'])}。",
    lambda p: f"{p.place()}までどのくらいかかりますか。",
    lambda p: f"{p.place()}へ行く{p.one(['バス', '電車', '道', '船'])}はどれですか？",
    lambda p: f"{p.thing()}はどこにありますか？",
    lambda p: f"すみません、{p.thing()}を{p.number(1, 12)}{p.one(COUNTERS[:7])}ください。",
    lambda p: f"{p.thing()}を{p.number(1, 30)}{p.one(COUNTERS)}{p.one(['買いました', '用意しました', '注文します', '持っています'])}。",
    lambda p: f"この{p.loan()}は{p.number(1, 99)}{p.one(['百', '千', '万', ''])}円です。",
    lambda p: f"{p.thing()}の値段は{p.number(100, 99999)}円でした。",
    lambda p: f"{p.number(1, 12)}月{p.number(1, 31)}日の{p.one(['午前', '午後', '夜'])}{p.number(1, 12)}時に{p.place()}で会いましょう。",
    lambda p: f"会議は{p.one(WEEKDAYS)}の{p.number(1, 12)}時{p.number(1, 59)}分から始まります。",
    lambda p: f"{p.number(1900, 2030)}年に{p.person()}は{p.place()}へ引っ越した。",
    lambda p: f"{p.place()}の人口は約{p.number(1, 999)}万人です。",
    lambda p: f"{p.thing()}の{p.number(1, 99)}パーセントが{p.one(['売れました', '届きました', '残っています', '壊れていた'])}。",
    lambda p: f"{p.person()}は{p.number(2, 90)}歳で、{p.place()}に住んでいます。",
    lambda p: f"{p.loan()}と{p.loan()}、どちらが{p.one(ADJ_I)}ですか？",
    lambda p: f"{p.loan()}で{p.thing()}を{p.one(VERBS_O)}。",
    lambda p: f"{p.person()}に{p.thing()}を{p.one(['渡してください', '見せました', '貸してもらった', '送りたいです'])}。",
    lambda p: f"{p.adverb()}、{p.place()}は{p.one(ADJ_I)}{_final(p, 'ですね', 'な')}。",
    lambda p: f"{p.noun()}について{p.person()}と話し合いました。",
    lambda p: f"もし{p.noun()}が{p.adj().base}なら、{p.thing()}を{p.one(VERBS_O)}。",
    lambda p: f"{p.thing()}を{p.verb().ta}{'で' if p.rng.random() < 0.3 else 'て'}から、{p.place()}に行きました。",
    lambda p: f"{p.person()}は{p.noun()}が{p.one(['好き', '嫌い', '得意', '苦手'])}{_final(p, 'です', 'だ')}。",
    lambda p: f"{p.noun()}と{p.noun()}を{p.one(VERBS_O)}か？",
    lambda p: f"{p.place()}から{p.place()}まで{p.one(['歩いて', '車で', '電車で', '自転車で'])}{p.number(2, 90)}分です。",
    lambda p: f"{p.adverb()}{p.verb().base}のは{p.na_adj()}ですよ。",
    lambda p: f"{p.person()}の{p.noun()}は{p.noun()}より{p.adj().base}。",
    lambda p: f"どうして{p.noun()}を{p.verb().mizen}なかったんですか。",
    lambda p: f"{p.noun()}、{p.noun()}、そして{p.noun()}が{p.one(['必要です', 'あります', '並んでいる'])}。",
    lambda p: f"{p.one(['はい', 'いいえ', 'ええ', 'そうですね', 'なるほど'])}、{p.noun()}は{p.adverb()}{_verb_end(p, p.verb())}。",
]


# --------------------------------------------------------------------------- free sentences

DEFAULT_FREE_RATIO = 0.5  # share of free sentences in the offline corpus (corpus version 2)
PARTICLES = "は が を に で と へ から まで の も や より".split()
CONNECTIVES = ["、", "ので、", "けれど、", "から、", "が、", "し、", "のに、", "ながら、"]


def _clause(p: _Picker) -> str:
    """Random noun phrases, each with a random particle, then a random predicate."""
    words = [p.adverb()] if p.rng.random() < 0.3 else []
    for _ in range(int(p.rng.integers(1, 4))):
        noun = p.one([p.noun, p.thing, p.place, p.person, p.loan, p.sahen])()
        words.append(noun + p.one(PARTICLES))
    r = p.rng.random()
    if r < 0.55:
        words.append(_verb_end(p, p.verb()))
    elif r < 0.75:
        a = p.adj()
        words.append(p.one([a.base, a.ku + "ない", a.ta + "た", a.base + "です", a.ku + "なりました"]))
    elif r < 0.9:
        words.append(p.na_adj() + p.one(["です", "だ", "でした", "ではない"]))
    else:
        words.append(p.sahen() + p.one(["します", "した", "しない", "している", "しましょう"]))
    return "".join(words)


def free_sentence(p: _Picker) -> str:
    """One to three clauses joined by connectives; a statement or (15 %) a question."""
    text = _clause(p)
    for _ in range(int(p.rng.choice([0, 0, 1, 1, 2]))):
        text += p.one(CONNECTIVES) + _clause(p)
    return text + ("か？" if p.rng.random() < 0.15 else "。")


def eval_sentences() -> set:
    """Every sentence of the evaluation sets (text after `ID:` or the whole line)."""
    out = set()
    for path in EVAL_SENTENCE_FILES:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.add(line.split(":", 1)[1].strip() if ":" in line else line)
    return out


def generate(n: int, seed: int = 0, free_ratio: float = DEFAULT_FREE_RATIO) -> list:
    """`n` distinct sentences, deterministic from `seed` (a prefix of any longer list).

    `free_ratio` of them (on average) are free sentences, the rest templates.
    Raises ValueError when `n` < 1 or `free_ratio` is outside [0, 1]. Never returns an
    evaluation sentence.
    """
    if n < 1:
        raise ValueError(f"generate: n must be >= 1, got {n}")
    if not 0.0 <= free_ratio <= 1.0:
        raise ValueError(f"generate: free_ratio must be in [0, 1], got {free_ratio}")
    rng = np.random.default_rng(seed)
    picker = _Picker(rng)
    banned = eval_sentences()
    out, seen = [], set()
    while len(out) < n:
        # free_ratio 0 draws nothing extra: exactly the template-only text of corpus version 1
        if free_ratio > 0 and rng.random() < free_ratio:
            text = free_sentence(picker)
        else:
            text = TEMPLATES[int(rng.integers(len(TEMPLATES)))](picker)
        if text in seen or text in banned or len(text) > 48:
            continue
        seen.add(text)
        out.append(text)
    return out


def add_arguments(parser):
    parser.add_argument("--num_sentences", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--free_ratio", type=float, default=DEFAULT_FREE_RATIO, help="share of free (non-template) sentences")
    parser.add_argument("--out", required=True, help="text file, one sentence per line (written atomically)")


def main(args):
    from asrdemo.utils.io import atomic_write_lines

    sents = generate(args.num_sentences, args.seed, args.free_ratio)
    atomic_write_lines(args.out, sents)
    chars = set("".join(sents))
    print(f"{args.out}: {len(sents)} sentences, {len(chars)} distinct characters")
