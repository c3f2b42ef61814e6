"""Audio and video reading for the MINER benchmarks, lazily and with clear errors.

- `load_audio(path, sampling_rate=16000) -> float32[N]`: mono (channels averaged, as librosa's
  `mono=True`), in [-1, 1]. `.wav` (PCM 8/16/24/32-bit) is read with the stdlib `wave` module; other
  formats (LibriSpeech `.flac`) need `soundfile`. A different file rate is resampled with
  `scipy.signal.resample_poly` (the authors used `librosa.load(sr=16000)`, i.e. soxr; both LibriSpeech
  and VocalSound-16k are already 16 kHz, so normally nothing is resampled).
- `video_frame_indices(total_frames, video_fps, fps=1.0)`: which frames Qwen2-VL's `qwen_vl_utils`
  samples for `{"fps": 1.0}` (the authors' MSVD-QA setting): n = total / video_fps * fps clipped to
  [4, min(768, total)] and rounded to a multiple of 2, then round(linspace(0, total - 1, n)).
- `read_video_frames(path, fps=1.0) -> uint8[n, H, W, 3]`: decodes with `decord` or `av` (PyAV),
  whichever is installed; neither -> ImportError naming both and the file.
"""
import importlib.util
import math
import os
import wave

import numpy as np


class MediaError(ValueError):
  """A media file that is missing or cannot be decoded; the message names the file."""


# ---------------------------------------------------------------- audio

def _read_wav(path: str) -> tuple:
  try:
    with wave.open(path, "rb") as w:
      channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
      raw = w.readframes(n)
  except (wave.Error, EOFError) as e:
    raise MediaError(f"cannot read wav file {path}: {e}") from e
  if width == 1:
    x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
  elif width == 2:
    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
  elif width == 3:
    b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
  elif width == 4:
    x = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
  else:
    raise MediaError(f"{path}: unsupported wav sample width {width} bytes")
  return x.reshape(-1, channels), rate


def _read_soundfile(path: str) -> tuple:
  if importlib.util.find_spec("soundfile") is None:
    raise ImportError(f"reading {path} needs the 'soundfile' package (pip install soundfile); "
                      "only .wav files can be read without it")
  import soundfile
  try:
    x, rate = soundfile.read(path, dtype="float32", always_2d=True)
  except RuntimeError as e:
    raise MediaError(f"cannot read audio file {path}: {e}") from e
  return x, rate


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
  """float32[N] at `rate` -> float32[M] at `target` (polyphase, scipy)."""
  if rate == target:
    return x
  from scipy.signal import resample_poly
  g = math.gcd(int(rate), int(target))
  return resample_poly(x, target // g, rate // g).astype(np.float32)


def load_audio(path: str, sampling_rate: int = 16000) -> np.ndarray:
  """float32[N] mono samples of an audio file at `sampling_rate` (see the module docstring)."""
  if not os.path.isfile(path):
    raise MediaError(f"audio file not found: {path}")
  x, rate = _read_wav(path) if path.lower().endswith(".wav") else _read_soundfile(path)
  return resample(x.mean(axis=1).astype(np.float32), rate, sampling_rate)


# ---------------------------------------------------------------- video

def video_frame_indices(total_frames: int, video_fps: float, fps: float = 1.0, min_frames: int = 4,
                        max_frames: int = 768, factor: int = 2) -> np.ndarray:
  """int64[n] frame indices `qwen_vl_utils` (fps mode) samples from a video (see the module docstring)."""
  if total_frames < factor:
    raise MediaError(f"video has {total_frames} frames; at least {factor} are needed")
  lo = math.ceil(min_frames / factor) * factor
  hi = math.floor(min(max_frames, total_frames) / factor) * factor
  n = total_frames / video_fps * fps
  n = min(min(max(n, lo), hi), total_frames)
  n = int(round(n / factor) * factor)
  return np.round(np.linspace(0, total_frames - 1, n)).astype(np.int64)


VIDEO_BACKENDS = ("decord", "av")


def _decord_frames(path: str, fps: float) -> np.ndarray:
  import decord
  reader = decord.VideoReader(path)
  idx = video_frame_indices(len(reader), reader.get_avg_fps(), fps)
  return np.asarray(reader.get_batch(idx.tolist()).asnumpy())


def _av_frames(path: str, fps: float) -> np.ndarray:
  import av
  with av.open(path) as container:
    stream = container.streams.video[0]
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    rate = float(stream.average_rate or 0) or float(stream.guessed_rate or 0)
  if not rate:
    raise MediaError(f"{path}: the video stream has no frame rate")
  return np.stack([frames[i] for i in video_frame_indices(len(frames), rate, fps)])


def read_video_frames(path: str, fps: float = 1.0) -> np.ndarray:
  """uint8[n, H, W, 3] frames sampled as Qwen2-VL's `qwen_vl_utils` does at `fps` frames per second."""
  if not os.path.isfile(path):
    raise MediaError(f"video file not found: {path}")
  for name, read in (("decord", _decord_frames), ("av", _av_frames)):
    if importlib.util.find_spec(name) is not None:
      try:
        return read(path, fps)
      except MediaError:
        raise
      except Exception as e:  # decoders raise their own error types
        raise MediaError(f"cannot decode video {path} with {name}: {e}") from e
  raise ImportError(f"reading the video {path} needs a decoder: install one of {', '.join(VIDEO_BACKENDS)} "
                    "(pip install decord, or pip install av)")
