#!/usr/bin/env python3
"""Word error rate of Whisper transcripts (`path<TAB>text` files, e.g. from `voxq transcribe --out`
and `tools/whisper_ct2.py reference`) against the reference words shipped with the audio:
the Asterisk prompt list (`name: words`, from asterisk-core-sounds-en) and pocketsphinx's
LibriVox transcription (`<s> words </s> (utterance-id)`), both under .cache/whisper/transcripts.

Text normalisation (applied to references and hypotheses alike): lower case; `mr.`/`mrs.`/`dr.`
to `mister`/`missus`/`doctor`; `#` to `pound`, `*` to `star`, `%` to `percent`; hyphens and
slashes to spaces; integers 0-999999 to English words ("21" -> "twenty one"); every other
character that is not a letter, digit, apostrophe or space dropped; whitespace collapsed.
Prompts whose reference is non-speech — nothing but bracketed spans of any form:
`[this is a simple beep tone]`, `<beep ascending>`, `(10 seconds of silence)` — are left out.

Usage: whisper_wer.py HYP.tsv [HYP2.tsv ...]   (prints one line per file; the files are
scored on the utterances they all share)
       whisper_wer.py --list OUT.tsv   (writes the evaluation list `audio<TAB>reference` of
every reference whose audio the set-up made: .cache/speech/allison/en/... and
.cache/whisper/transcripts/audio/librivox-*.wav, paths relative to the repository root, the
form `voxq eval-asr --list` reads; fixtures/whisper/lists/asterisk_librivox.tsv is its output)
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPTS = ROOT / ".cache/whisper/transcripts"

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def words_of(n: int) -> str:
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + words_of(n % 100))
    return words_of(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + words_of(n % 1000))


def normalise(text: str) -> str:
    t = text.lower()
    t = re.sub(r"\bmrs\.", "missus", t)
    t = re.sub(r"\bmr\.", "mister", t)
    t = re.sub(r"\bdr\.", "doctor", t)
    t = t.replace("#", " pound ").replace("*", " star ").replace("%", " percent ")
    t = re.sub(r"[-/]", " ", t)
    t = re.sub(r"(?<=\d),(?=\d{3})", "", t)
    t = re.sub(r"\d+", lambda m: " " + words_of(int(m.group())) + " " if len(m.group()) <= 6 else m.group(), t)
    t = re.sub(r"[^a-z0-9' ]", " ", t)
    return " ".join(t.split())


def non_speech(reference: str) -> bool:
    """Nothing but bracketed spans ([...], <...>, (...)): a tone, a beep, silence."""
    rest = re.sub(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)", " ", reference)
    return not re.search(r"[A-Za-z0-9]", rest)


def references() -> dict:
    refs = {}
    for line in (TRANSCRIPTS / "asterisk-core-sounds-en.txt").read_text(errors="replace").splitlines():
        if not line.strip() or line.startswith(";") or ":" not in line:
            continue
        name, words = line.split(":", 1)
        words = words.strip()
        if non_speech(words):
            continue
        refs[name.strip()] = words
    for line in (TRANSCRIPTS / "librivox.transcription").read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if m:
            refs[m.group(2)] = m.group(1).strip()
    return refs


def key_of(path: str) -> str:
    p = Path(path)
    if p.name.startswith("librivox-"):
        return p.stem[len("librivox-"):]
    parts = p.with_suffix("").parts
    # .cache/speech/allison/en/<name>.wav, or a sub-folder (digits/1)
    i = parts.index("en") if "en" in parts else len(parts) - 2
    return "/".join(parts[i + 1:])


def edits(a: list, b: list) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def write_list(out: str) -> int:
    refs = references()
    found = {}
    for p in sorted((ROOT / ".cache/speech/allison/en").rglob("*.wav")):
        found.setdefault(key_of(str(p.relative_to(ROOT))), p.relative_to(ROOT))
    for p in sorted((TRANSCRIPTS / "audio").glob("librivox-*.wav")):
        found.setdefault(key_of(str(p.relative_to(ROOT))), p.relative_to(ROOT))
    keys = [k for k in sorted(refs) if k in found]
    if not keys:
        print("error: no reference has audio; run `make whisper` first", file=sys.stderr)
        return 1
    lines = [f"{found[k]}\t{' '.join(refs[k].split())}\n" for k in keys]
    Path(out).write_text("".join(lines))
    missing = sorted(set(refs) - set(keys))
    print(f"{out}: {len(keys)} utterances; references without audio: {', '.join(missing) or 'none'}")
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--list":
        return write_list(sys.argv[2])
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    refs = references()
    hyps = []
    for f in sys.argv[1:]:
        d = {}
        for line in Path(f).read_text().splitlines():
            if "\t" in line:
                path, text = line.split("\t", 1)
                d[key_of(path)] = text
        hyps.append(d)
    shared = sorted(set.intersection(*(set(h) for h in hyps)) & set(refs))
    if not shared:
        print("error: no utterance is in every file and in the references", file=sys.stderr)
        return 1
    n_ref = sum(len(normalise(refs[k]).split()) for k in shared)
    for f, h in zip(sys.argv[1:], hyps):
        e = sum(edits(normalise(refs[k]).split(), normalise(h[k]).split()) for k in shared)
        print(f"{f}: WER {100.0 * e / n_ref:.2f}% ({e} errors / {n_ref} reference words, {len(shared)} utterances)")
    if len(hyps) == 2:
        same = sum(normalise(hyps[0][k]) == normalise(hyps[1][k]) for k in shared)
        print(f"identical normalised transcripts: {same}/{len(shared)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
