"""PESQ for the quality harness (liveloop-bench-quality).

  pesq_score.py make-ref <espeak.wav> <out.wav>
      The reference: espeak-ng's speech at 48 kHz, 16-bit mono, padded with silence to a
      whole number of half seconds (the microphones play it in a loop). Prints its seconds.
  pesq_score.py score <reference.wav> <received.wav> <skip seconds>
      Cuts the received (looped) speech into whole periods of the reference, each found by
      cross-correlation, and scores each against the reference with ITU-T P.862.2 wideband
      PESQ (the `pesq` package) at 16 kHz. Prints JSON: {"scores": [...], "failed": n}.
  pesq_score.py pair <reference.wav> <degraded.wav>...
      Wideband PESQ of each degraded file against the reference, as they are (time-aligned:
      liveloop-bench-audio's outputs). Prints JSON: {"<degraded.wav>": score or null}.
"""

import json
import sys

import numpy as np
from pesq import pesq
from scipy.io import wavfile
from scipy.signal import resample_poly


def load(path, rate):
    sr, x = wavfile.read(path)
    x = x.astype(np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    if np.issubdtype(wavfile.read(path)[1].dtype, np.integer):
        x /= 32768.0
    if sr != rate:
        g = np.gcd(sr, rate)
        x = resample_poly(x, rate // g, sr // g)
    return x


def make_ref(src, out):
    x = load(src, 48000)
    x = x / max(1e-9, np.abs(x).max()) * 0.5
    half = 24000
    n = (len(x) // half + 2) * half  # at least half a second of silence
    y = np.zeros(n)
    y[: len(x)] = x
    wavfile.write(out, 48000, (y * 32767).astype(np.int16))
    print(n / 48000)


def score(ref_path, rx_path, skip):
    rate = 16000
    ref = load(ref_path, rate)
    rx = load(rx_path, rate)
    period = len(ref)
    pos = int(skip * rate)
    scores, failed = [], 0
    while pos + period <= len(rx):
        window = rx[pos : pos + 2 * period]
        # The offset of the reference's start in this window, by FFT cross-correlation, among
        # the offsets that leave a whole period after it.
        room = min(period, len(window) - period + 1)
        n = 1 << int(np.ceil(np.log2(len(window) + period)))
        corr = np.fft.irfft(np.fft.rfft(window, n) * np.conj(np.fft.rfft(ref, n)), n)
        lag = int(np.argmax(corr[:room]))
        seg = window[lag : lag + period]
        try:
            scores.append(float(pesq(rate, ref, seg, "wb")))
        except Exception:  # noqa: BLE001 - silence or no utterances: the period is unscorable
            failed += 1
        pos += lag + period
    print(json.dumps({"scores": scores, "failed": failed}))


def pair(ref_path, degraded):
    rate = 16000
    ref = load(ref_path, rate)
    out = {}
    for path in degraded:
        deg = load(path, rate)
        n = min(len(ref), len(deg))
        try:
            out[path] = float(pesq(rate, ref[:n], deg[:n], "wb"))
        except Exception:  # noqa: BLE001 - no utterances found: unscorable
            out[path] = None
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "make-ref":
        make_ref(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "pair":
        pair(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "score":
        score(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(__doc__)
