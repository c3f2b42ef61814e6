"""MINER's six benchmarks from their usual local layouts, with the authors' prompts (huang-kc/MINER).

API (tasks/miner/ uses these):
    records = load_dataset(name, path, n=None, seed=0)  # Records: a list of BenchRecord, plus
                                                         # .bad = [(where, reason)] skipped samples
    per_sample = [miner_metrics.score(name, prediction, r) for ...]
    summary = miner_metrics.aggregate(name, per_sample)
`name` is one of the authors' keys (DATASETS): text_vqa, coco_caption, mmlu, msvd_qa, libri, vocal_sound
(aliases in ALIASES). `path` is the dataset's folder (layouts below) or, where one file defines the set,
that file. n=None: every sample in the authors' order; n with seed=None: the first n (the authors'
`--sample_num`); n with an integer seed: a seed-determined subset of n, kept in the authors' order.

A `BenchRecord` carries `prompt` (the exact user text the authors give the model; the chat template is
the model's business), `references` (answers, captions, transcript, label name or answer letter),
`modality` (image / video / audio / text) and `media_path`. Image and audio records also answer to the
names `miner_samples.as_sample` reads (`image_path`; `audios`, which decodes the file). Video is not
decoded here: a video record becomes a sample with `videos=(media_path,)` and `meta` holding the
sampling the authors used (fps 1.0, max_pixels 360*420); `miner_samples.videos_of` decodes it at
batch time (`media.read_video_frames`, which needs decord or av) for Qwen2-VL's video input.

Layouts (first match wins; a missing annotation file raises FileNotFoundError naming what was tried):
- text_vqa: `TextVQA_0.5.1_val.json` (in path or path/val) + `train_images/<image_id>.jpg`.
- coco_caption: `captions_val2014.json` (path, path/annotations, path/annotations_trainval2014[/annotations])
  + the Karpathy test list `coco_test.txt` (path/karparthy_split2014 [sic, the authors'], path/
  karpathy_split2014, path) or Karpathy's `dataset_coco.json` (split == "test") + images in `val2014/`;
  images in the captions file's order, captions in annotation order (the authors' pycocotools walk).
  `dataset_coco.json` alone also works (its order, its raw sentences, images at path/<filepath>/<filename>).
- mmlu: `data/dev/<subject>_dev.csv` + `data/test/<subject>_test.csv` (or dev/, test/ in path); subjects
  sorted, test rows in file order; the Hendrycks 5-shot prompt from the first 5 dev rows.
- msvd_qa: `test_qa.json` + `youtube_mapping.txt` (lines "<clip name> vid<N>") + `YouTubeClips/<clip>.avi`.
- libri: `test-clean/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt` + `<utterance>.flac` (or .wav);
  path may be test-clean itself, its parent, or LibriSpeech's parent. Speakers and chapters sorted.
- vocal_sound: `datafiles/all.json` (the authors' choice: every split, 20977 clips; else te.json, or a
  .csv/.json given as path) with `wav` + `labels` (AudioSet mid or class name); audio resolved as given,
  else under path, else `audio_16k/<basename>`.
"""
import dataclasses
import json
import os

from absl import logging

from mmneuron_jax.data.sources import media
from mmneuron_jax.data.sources.records import VQARecord, deterministic_shuffle
from mmneuron_jax.io.progress import Progress

DATASETS = ("text_vqa", "coco_caption", "mmlu", "msvd_qa", "libri", "vocal_sound")
ALIASES = {"textvqa": "text_vqa", "coco": "coco_caption", "coco_captions": "coco_caption", "msvd": "msvd_qa",
           "msvdqa": "msvd_qa", "librispeech": "libri", "vocalsound": "vocal_sound"}
MODALITY = {"text_vqa": "image", "coco_caption": "image", "mmlu": "text", "msvd_qa": "video", "libri": "audio",
            "vocal_sound": "audio"}
# The authors' full-set sizes (config.yaml ALL_SAMPLE_NUMS).
EXPECTED_SIZES = {"text_vqa": 5000, "coco_caption": 5000, "mmlu": 14042, "msvd_qa": 13157, "libri": 2620,
                  "vocal_sound": 20977}
# Every benchmark; the authors' `generate(**inputs, max_new_tokens=128)` passed nothing else, so each
# checkpoint's generation_config.json decided the decoding: Qwen2-VL samples with top_k 1 (greedy on logits
# under repetition_penalty 1.05), Qwen2-Audio samples (top_k 20, top_p 0.5, temperature 0.7, penalty 1.1).
MAX_NEW_TOKENS = 128
VIDEO_FPS, VIDEO_MAX_PIXELS = 1.0, 360 * 420
SAMPLING_RATE = 16000

# ---------------------------------------------------------------- the authors' prompts
# (their triple-quoted strings after `re.sub(r'\s+', ' ', s.replace("\n", "").strip())`)
SHORT_ANSWER = "Answer the question using a single word or phrase."
COCO_PROMPT = (
    "Generate a caption for the image in one short sentence, similar to these examples from the COCO dataset: "
    "1. A man with a red helmet on a small moped on a dirt road. "
    "2. Man riding a motor bike on a dirt road on the countryside. "
    "3. A man riding on the back of a motorcycle. "
    "4. A man in a red shirt and a red hat is on a motorcycle on a hill side. "
    "Now, describe the image.")
LIBRI_PROMPT = (
    "Please transcribe the following audio directly into plain text without any additional explanations, "
    "prefixes, or descriptions. Only output the transcription of the spoken content in the audio.")
VOCAL_LABELS = {"/m/01j3sz": "Laughter", "/m/07plz5l": "Sigh", "/m/01b_21": "Cough",
                "/m/0dl9sf8": "Throat clearing", "/m/01hsr_": "Sneeze", "/m/07ppn3j": "Sniff"}
VOCAL_PROMPT = (
    "You are a sound classification model. Your task is to classify a given audio sample into one of the "
    "following categories based on its content: 1. Laughter 2. Sigh 3. Cough 4. Throat clearing 5. Sneeze "
    "6. Sniff Please analyze the audio sample and provide the corresponding category name.")
MMLU_CHOICES = "ABCD"


@dataclasses.dataclass(frozen=True)
class BenchRecord:
  """One benchmark sample: `prompt` (user text), `references` [str], `modality`, `media_path` (or None)."""
  id: str
  dataset: str
  modality: str
  prompt: str
  references: list
  question: str = ""
  media_path: str | None = None
  meta: dict = dataclasses.field(default_factory=dict)
  sampling_rate: int = SAMPLING_RATE

  @property
  def answers(self) -> list:
    return list(self.references)

  @property
  def image_path(self) -> str | None:
    return self.media_path if self.modality == "image" else None

  @property
  def audios(self) -> tuple:
    """(float32[N] waveform at `sampling_rate`,) for audio records (reads the file), else ()."""
    return (media.load_audio(self.media_path, self.sampling_rate),) if self.modality == "audio" else ()

  def to_vqa_record(self) -> VQARecord:
    """An image record as an MMNeuron VQARecord (domain = dataset, question = prompt)."""
    if self.modality != "image":
      raise ValueError(f"record {self.id} of {self.dataset} is {self.modality}, not image")
    return VQARecord(id=self.id, domain=self.dataset, question=self.prompt, answers=list(self.references),
                     image_path=self.media_path, meta=dict(self.meta))


class Records(list):
  """A list of BenchRecords; `.bad` = [(where, reason)] for each skipped sample; `.dataset`, `.source`."""

  def __init__(self, items=(), bad=(), dataset: str = "", source: str = ""):
    super().__init__(items)
    self.bad, self.dataset, self.source = list(bad), dataset, source


# ---------------------------------------------------------------- helpers

def _first(paths, what: str, kind: str = "file") -> str:
  test = os.path.isfile if kind == "file" else os.path.isdir
  for p in paths:
    if test(p):
      return p
  raise FileNotFoundError(f"{what} not found; looked for: {', '.join(paths)}")


def _load_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: invalid JSON: {e}") from e


def _json_list(path: str, key: str) -> list:
  data = _load_json(path)
  if isinstance(data, dict) and isinstance(data.get(key), list):
    return data[key]
  raise ValueError(f"{path}: expected a JSON object with a '{key}' list")


def _missing(row: dict, fields) -> list:
  return [f for f in fields if row.get(f) is None or (isinstance(row.get(f), str) and not row[f].strip())]


# ---------------------------------------------------------------- TextVQA

def load_text_vqa(path: str) -> tuple:
  """TextVQA val -> (records, bad). Prompt: the bare question (the authors add no instruction)."""
  jpath = path if os.path.isfile(path) else _first(
      [os.path.join(path, "TextVQA_0.5.1_val.json"), os.path.join(path, "val", "TextVQA_0.5.1_val.json")],
      "TextVQA val json")
  base = os.path.dirname(jpath)
  root = path if os.path.isdir(path) else base
  img_dirs = [os.path.join(base, "train_images"), os.path.join(root, "train_images"),
              os.path.join(root, "train_val_images", "train_images")]
  img_dir = next((d for d in img_dirs if os.path.isdir(d)), img_dirs[0])
  records, bad = [], []
  for n, q in enumerate(_json_list(jpath, "data")):
    where = f"{jpath} item {n}"
    miss = _missing(q, ("question", "image_id", "answers"))
    if miss or not isinstance(q["answers"], list) or not q["answers"]:
      bad.append((where, f"missing field(s) {miss}" if miss else "'answers' is not a non-empty list"))
      continue
    records.append(BenchRecord(
        id=str(q.get("question_id", n)), dataset="text_vqa", modality="image", prompt=str(q["question"]),
        question=str(q["question"]), references=[str(a) for a in q["answers"]],
        media_path=os.path.join(img_dir, f"{q['image_id']}.jpg"), meta={"image_id": str(q["image_id"])}))
  return records, bad


# ---------------------------------------------------------------- COCO captions (Karpathy test)

def _coco_paths(root: str) -> dict:
  j = lambda *p: os.path.join(root, *p)
  found = lambda ps: next((p for p in ps if os.path.isfile(p)), None)
  return {
      "captions": found([j("captions_val2014.json"), j("annotations", "captions_val2014.json"),
                         j("annotations_trainval2014", "captions_val2014.json"),
                         j("annotations_trainval2014", "annotations", "captions_val2014.json")]),
      "test_list": found([j("karparthy_split2014", "coco_test.txt"), j("karpathy_split2014", "coco_test.txt"),
                          j("coco_test.txt")]),
      "karpathy": found([j("dataset_coco.json"), j("karpathy", "dataset_coco.json"),
                         j("annotations", "dataset_coco.json")]),
      "images": next((d for d in (j("val2014"), j("images", "val2014")) if os.path.isdir(d)), j("val2014")),
  }


def _karpathy_images(path: str, split: str = "test") -> list:
  return [im for im in _json_list(path, "images") if im.get("split") == split]


def load_coco_caption(path: str) -> tuple:
  """COCO Karpathy test -> (records, bad) with every human caption as references (see module doc)."""
  p = _coco_paths(path)
  if p["captions"] and (p["test_list"] or p["karpathy"]):
    if p["test_list"]:
      with open(p["test_list"], encoding="utf-8") as f:
        test = [line.strip() for line in f if line.strip()]
    else:
      test = [im["filename"] for im in _karpathy_images(p["karpathy"])]
    data = _load_json(p["captions"])
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
      raise ValueError(f"{p['captions']}: expected a COCO captions file with 'images' and 'annotations'")
    caps = {}
    for a in data["annotations"]:
      caps.setdefault(a.get("image_id"), []).append(str(a.get("caption", "")).strip())
    wanted, records, bad, seen = set(test), [], [], set()
    for im in data["images"]:
      if im.get("file_name") not in wanted:
        continue
      seen.add(im["file_name"])
      refs = [c for c in caps.get(im.get("id"), []) if c]
      if not refs:
        bad.append((f"{p['captions']} image {im.get('id')}", "no captions"))
        continue
      records.append(BenchRecord(
          id=str(im["id"]), dataset="coco_caption", modality="image", prompt=COCO_PROMPT, references=refs,
          media_path=os.path.join(p["images"], im["file_name"]), meta={"file_name": im["file_name"]}))
    listed = p["test_list"] or p["karpathy"]
    bad += [(f"{listed}: {name}", f"not in {p['captions']}") for name in test if name not in seen]
    return records, bad
  if p["karpathy"]:
    records, bad = [], []
    for n, im in enumerate(_karpathy_images(p["karpathy"])):
      refs = [str(s.get("raw", "")).strip() for s in im.get("sentences", []) if str(s.get("raw", "")).strip()]
      if not refs or "filename" not in im:
        bad.append((f"{p['karpathy']} test image {n}", "no sentences" if refs == [] else "no filename"))
        continue
      img = os.path.join(path, im.get("filepath", ""), im["filename"])
      if not os.path.isfile(img):
        img = os.path.join(p["images"], im["filename"])
      records.append(BenchRecord(
          id=str(im.get("cocoid", im["filename"])), dataset="coco_caption", modality="image", prompt=COCO_PROMPT,
          references=refs, media_path=img, meta={"file_name": im["filename"]}))
    return records, bad
  raise FileNotFoundError(
      f"COCO captions under {path}: need captions_val2014.json plus karparthy_split2014/coco_test.txt or "
      f"dataset_coco.json, or dataset_coco.json alone (found: "
      f"{ {k: v for k, v in p.items() if k != 'images'} })")


# ---------------------------------------------------------------- MMLU (5-shot)

def format_subject(subject: str) -> str:
  """"high_school_physics" -> " high school physics" (leading space, as the Hendrycks harness)."""
  return "".join(" " + part for part in subject.split("_"))


def format_example(row: list, include_answer: bool = True) -> str:
  """One question row [question, choice..., answer] -> "Q\\nA. ..\\nB. ..\\nAnswer:"( " X\\n\\n")."""
  k = len(row) - 2
  text = str(row[0]) + "".join(f"\n{MMLU_CHOICES[j]}. {row[j + 1]}" for j in range(k)) + "\nAnswer:"
  return text + (f" {row[k + 1]}\n\n" if include_answer else "")


def mmlu_prompt(dev_rows: list, subject: str, test_row: list, k: int = 5, count_tokens=None,
                max_tokens: int = 2048) -> tuple:
  """-> (prompt, k used): the header, k answered dev examples, the test question. With `count_tokens`
  (text -> int) k drops while the prompt is over `max_tokens` (the authors crop with GPT-2 BPE at 2048)."""
  end = format_example(test_row, include_answer=False)
  while True:
    head = f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"
    prompt = head + "".join(format_example(r) for r in dev_rows[:k]) + end
    if count_tokens is None or k == 0 or count_tokens(prompt) <= max_tokens:
      return prompt, k
    k -= 1


def _read_mmlu_csv(path: str, raw_text: bool) -> list:
  import pandas as pd
  try:
    if raw_text:
      df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    else:  # the authors' pd.read_csv(path, header=None): "None" -> nan, numeric columns -> numbers
      df = pd.read_csv(path, header=None)
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: cannot parse as MMLU csv: {e}") from e
  return df.values.tolist()


def load_mmlu(path: str, k: int = 5, count_tokens=None, max_tokens: int = 2048, raw_text: bool = False) -> tuple:
  """MMLU test -> (records, bad) with the 5-shot prompt; references = [answer letter].
  `raw_text=True` reads cells as text (the authors' pandas parsing turns "None" into "nan")."""
  data = next((d for d in (os.path.join(path, "data"), path) if os.path.isdir(os.path.join(d, "test"))), None)
  if data is None:
    raise FileNotFoundError(f"MMLU test folder not found; looked for {os.path.join(path, 'data', 'test')} "
                            f"and {os.path.join(path, 'test')}")
  test_dir, dev_dir = os.path.join(data, "test"), os.path.join(data, "dev")
  subjects = sorted(f[:-len("_test.csv")] for f in os.listdir(test_dir) if f.endswith("_test.csv"))
  if not subjects:
    raise FileNotFoundError(f"no <subject>_test.csv files in {test_dir}")
  records, bad = [], []
  for subject in subjects:
    dev_path = os.path.join(dev_dir, f"{subject}_dev.csv")
    if not os.path.isfile(dev_path):
      raise FileNotFoundError(f"MMLU dev file not found: {dev_path} (needed for the 5-shot prompt of {subject})")
    dev = _read_mmlu_csv(dev_path, raw_text)[:5]
    if any(len(r) != 6 for r in dev):
      raise ValueError(f"{dev_path}: expected 6 columns (question, 4 choices, answer)")
    test_path = os.path.join(test_dir, f"{subject}_test.csv")
    for n, row in enumerate(_read_mmlu_csv(test_path, raw_text)):
      where = f"{test_path} row {n}"
      if len(row) != 6:
        bad.append((where, f"{len(row)} columns, expected 6 (question, 4 choices, answer)"))
        continue
      answer = str(row[5]).strip()
      if answer not in MMLU_CHOICES:
        bad.append((where, f"answer {row[5]!r} is not one of A-D"))
        continue
      prompt, used = mmlu_prompt(dev, subject, row, k, count_tokens, max_tokens)
      records.append(BenchRecord(
          id=f"{subject}/{n}", dataset="mmlu", modality="text", prompt=prompt, references=[answer],
          question=str(row[0]), meta={"subject": subject, "row": n, "k_shot": used,
                                      "choices": [str(c) for c in row[1:5]]}))
  return records, bad


# ---------------------------------------------------------------- MSVD-QA

def _youtube_mapping(path: str) -> dict:
  out = {}
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      parts = line.strip().split(" ")
      if not line.strip():
        continue
      if len(parts) != 2:
        raise ValueError(f"{path} line {n}: expected '<clip name> vid<N>', got {line.strip()!r}")
      out[parts[1]] = parts[0]
  return out


def load_msvd_qa(path: str) -> tuple:
  """MSVD-QA test -> (records, bad). Prompt: question + "\\n" + SHORT_ANSWER; media = the .avi clip."""
  qa = _first([os.path.join(path, "test_qa.json"), os.path.join(path, "annotations", "test_qa.json")],
              "MSVD-QA test_qa.json")
  mapping = _youtube_mapping(_first([os.path.join(path, "youtube_mapping.txt"),
                                     os.path.join(path, "annotations", "youtube_mapping.txt")],
                                    "MSVD-QA youtube_mapping.txt"))
  clips = next((d for d in (os.path.join(path, "YouTubeClips"), os.path.join(path, "videos")) if os.path.isdir(d)),
               os.path.join(path, "YouTubeClips"))
  data = _load_json(qa)
  if not isinstance(data, list):
    raise ValueError(f"{qa}: expected a JSON list of {{question, answer, video_id}}")
  records, bad = [], []
  for n, item in enumerate(data):
    where = f"{qa} item {n}"
    miss = _missing(item, ("question", "answer", "video_id"))
    if miss:
      bad.append((where, f"missing field(s) {miss}"))
      continue
    vid = f"vid{item['video_id']}"
    if vid not in mapping:
      bad.append((where, f"video id {vid} not in youtube_mapping.txt"))
      continue
    records.append(BenchRecord(
        id=str(item.get("id", n)), dataset="msvd_qa", modality="video",
        prompt=f"{item['question']}\n{SHORT_ANSWER}", question=str(item["question"]),
        references=[str(item["answer"])], media_path=os.path.join(clips, mapping[vid] + ".avi"),
        meta={"video_id": vid, "fps": VIDEO_FPS, "max_pixels": VIDEO_MAX_PIXELS}))
  return records, bad


# ---------------------------------------------------------------- LibriSpeech test-clean

def _libri_root(path: str) -> str:
  for p in (path, os.path.join(path, "test-clean"), os.path.join(path, "LibriSpeech", "test-clean")):
    if os.path.basename(os.path.normpath(p)) == "test-clean" and os.path.isdir(p):
      return p
  raise FileNotFoundError(f"LibriSpeech test-clean not found; looked for {path}, {path}/test-clean, "
                          f"{path}/LibriSpeech/test-clean")


def load_libri(path: str) -> tuple:
  """LibriSpeech test-clean -> (records, bad); references = [transcript] (upper case, as distributed)."""
  root = _libri_root(path)
  records, bad = [], []
  for spk in sorted(os.listdir(root)):
    if not os.path.isdir(os.path.join(root, spk)):
      continue
    for chap in sorted(os.listdir(os.path.join(root, spk))):
      cdir = os.path.join(root, spk, chap)
      if not os.path.isdir(cdir):
        continue
      trans = os.path.join(cdir, f"{spk}-{chap}.trans.txt")
      if not os.path.isfile(trans):
        bad.append((cdir, f"no transcript file {trans}"))
        continue
      with open(trans, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
          if not line.strip():
            continue
          parts = line.strip().split(" ", 1)
          if len(parts) != 2 or not parts[1].strip():
            bad.append((f"{trans} line {n}", "no transcript text"))
            continue
          utt, text = parts
          audio = os.path.join(cdir, f"{utt}.flac")
          if not os.path.isfile(audio) and os.path.isfile(os.path.join(cdir, f"{utt}.wav")):
            audio = os.path.join(cdir, f"{utt}.wav")
          records.append(BenchRecord(id=utt, dataset="libri", modality="audio", prompt=LIBRI_PROMPT,
                                     references=[text.strip()], media_path=audio,
                                     meta={"speaker": spk, "chapter": chap}))
  return records, bad


# ---------------------------------------------------------------- VocalSound

_LABEL_NAMES = {v.lower(): v for v in VOCAL_LABELS.values()}


def vocal_label(raw) -> str | None:
  """An AudioSet mid ("/m/01j3sz") or class name ("throat_clearing", "Laughter") -> the authors' name."""
  s = str(raw).strip()
  if s in VOCAL_LABELS:
    return VOCAL_LABELS[s]
  return _LABEL_NAMES.get(s.lower().replace("_", " ").replace("-", " "))


def _vocal_rows(meta: str) -> list:
  if meta.lower().endswith(".csv"):
    import pandas as pd
    return pd.read_csv(meta, dtype=str, keep_default_na=False).to_dict("records")
  return _json_list(meta, "data")


def load_vocal_sound(path: str) -> tuple:
  """VocalSound -> (records, bad); references = [class name] ("Laughter", ..., "Throat clearing")."""
  meta = path if os.path.isfile(path) else _first(
      [os.path.join(path, "datafiles", "all.json"), os.path.join(path, "datafiles", "te.json"),
       os.path.join(path, "all.json"), os.path.join(path, "te.json"), os.path.join(path, "meta.csv")],
      "VocalSound meta file")
  meta_dir = os.path.dirname(os.path.abspath(meta))
  root = path if os.path.isdir(path) else (
      os.path.dirname(meta_dir) if os.path.basename(meta_dir) == "datafiles" else meta_dir)
  audio_dir = os.path.join(root, "audio_16k")
  records, bad = [], []
  for n, row in enumerate(_vocal_rows(meta)):
    where = f"{meta} item {n}"
    wav = next((row[k] for k in ("wav", "filename", "file", "path") if str(row.get(k, "")).strip()), None)
    raw = next((row[k] for k in ("labels", "label", "class") if str(row.get(k, "")).strip()), None)
    if wav is None or raw is None:
      bad.append((where, "needs a 'wav' (or filename/file/path) and a 'labels' (or label/class) field"))
      continue
    label = vocal_label(raw)
    if label is None:
      bad.append((where, f"unknown label {raw!r} (expected one of {sorted(VOCAL_LABELS.values())} or their mids)"))
      continue
    wav = str(wav).strip()
    candidates = [wav if os.path.isabs(wav) else os.path.join(root, wav),
                  os.path.join(audio_dir, os.path.basename(wav))]
    audio = next((c for c in candidates if os.path.isfile(c)), candidates[-1])
    records.append(BenchRecord(
        id=os.path.splitext(os.path.basename(wav))[0], dataset="vocal_sound", modality="audio",
        prompt=VOCAL_PROMPT, references=[label], media_path=audio, meta={"label": label, "raw_label": str(raw)}))
  return records, bad


# ---------------------------------------------------------------- entry point

LOADERS = {"text_vqa": load_text_vqa, "coco_caption": load_coco_caption, "mmlu": load_mmlu,
           "msvd_qa": load_msvd_qa, "libri": load_libri, "vocal_sound": load_vocal_sound}


def canonical_name(name: str) -> str:
  """The authors' key for a benchmark name or alias."""
  key = str(name).strip().lower()
  key = ALIASES.get(key, key)
  if key not in LOADERS:
    raise ValueError(f"unknown MINER benchmark {name!r}; expected one of {DATASETS} (or {sorted(ALIASES)})")
  return key


def check(records, name: str = "", media_files: bool = True) -> tuple:
  """-> (good, bad [(where, reason)]): duplicate ids, empty prompt/references and (`media_files`) media
  files that do not exist."""
  good, bad, seen = [], [], set()
  progress = Progress(total=len(records), desc=f"{name}: checking samples", unit="samples", every_s=10.0)
  for r in records:
    if r.id in seen:
      reason = "duplicate id"
    elif not r.prompt.strip() or not r.references:
      reason = "empty prompt or no references"
    elif media_files and r.media_path is not None and not os.path.isfile(r.media_path):
      reason = f"{r.modality} file not found: {r.media_path}"
    else:
      reason = None
    seen.add(r.id)
    if reason:
      bad.append((f"{name} record {r.id}", reason))
    else:
      good.append(r)
    progress.update()
  progress.close()
  return good, bad


def subset(records: list, n: int | None, seed: int | None) -> list:
  """All records (n None), the first n (seed None), or a seed-determined n in their original order."""
  if n is None or n >= len(records):
    return list(records)
  if seed is None:
    return list(records[:n])
  keep = {id(r) for r in deterministic_shuffle(records, seed)[:n]}
  return [r for r in records if id(r) in keep]


def load_dataset(name: str, path: str, n: int | None = None, seed: int | None = 0, check_media: bool = True,
                 **options) -> Records:
  """Benchmark `name` from `path` -> Records (see the module docstring). `options` go to the loader
  (mmlu: k, count_tokens, max_tokens, raw_text). Bad samples are logged, counted in `.bad` and skipped;
  `check_media=False` skips the media-file existence check (not the other checks)."""
  key = canonical_name(name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{key}: dataset path not found: {path}")
  records, bad = LOADERS[key](path, **options)
  records, more = check(records, key, media_files=check_media)
  bad += more
  if bad:
    logging.warning("%s: skipped %d bad sample(s) of %d; first: %s: %s", key, len(bad), len(records) + len(bad),
                    *bad[0])
  if n is None and len(records) != EXPECTED_SIZES[key]:
    logging.info("%s: %d records (the authors evaluated %d)", key, len(records), EXPECTED_SIZES[key])
  return Records(subset(records, n, seed), bad=bad, dataset=key, source=path)
