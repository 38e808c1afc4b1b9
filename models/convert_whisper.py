"""Convert a CTranslate2 Whisper model to whisper.cpp's ggml format, offline.

No ggml Whisper weights are published in the package registries, but
CTranslate2 conversions of OpenAI's Whisper are (faster-whisper's format).
Both hold the same tensors under other names. This module reads
CTranslate2's `model.bin` (binary version 6), renames every tensor to the
name whisper.cpp looks up, splits the fused projections CTranslate2 uses
(self-attention Q|K|V, cross-attention K|V), and writes whisper.cpp's ggml
file: the hyperparameters, the 80-bin mel filterbank (from the openai-whisper
sdist's mel_filters.npz), the byte-level BPE vocabulary, then the tensors.

Layout written (all little endian, as whisper.cpp reads it):
  magic "ggml" (0x67676d6c)
  11 x i32: n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
            n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
  i32 n_mels, i32 n_fft, then n_mels * n_fft f32 filter weights
  i32 n_tokens, then per token: i32 length, raw bytes
  per tensor: i32 n_dims, i32 name length, i32 type (0 f32, 1 f16),
              n_dims x i32 dimensions (innermost first), name, data
Vectors, conv biases and positional embeddings are f32; matrices and conv
kernels f16, which is what whisper.cpp allocates for an f16 model.

Needs numpy only.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

GGML_MAGIC = 0x67676D6C
# CTranslate2 DataType ids (binary version 6).
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class ConvertError(Exception):
    """The input is not a CTranslate2 Whisper model this converter knows."""


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model.bin, aliases resolved."""
    data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(data):
            raise ConvertError(f"{path}: truncated at byte {pos}")
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += size
        return values

    def string() -> str:
        nonlocal pos
        (n,) = take("H")
        s = data[pos : pos + n].rstrip(b"\0").decode("utf-8")
        pos += n
        return s

    (version,) = take("I")
    if version != 6:
        raise ConvertError(f"{path}: CTranslate2 binary version {version}, expected 6")
    spec = string()
    if spec != "WhisperSpec":
        raise ConvertError(f"{path}: model spec {spec!r}, expected 'WhisperSpec'")
    take("I")  # spec revision
    (count,) = take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (ndim,) = take("B")
        shape = take("I" * ndim)
        (dtype_id,) = take("B")
        (nbytes,) = take("I")
        dtype = CT2_DTYPES.get(dtype_id)
        if dtype is None:
            raise ConvertError(f"{path}: {name} has CTranslate2 type {dtype_id}; only float16/float32 weights are supported")
        array = np.frombuffer(data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=pos)
        pos += nbytes
        variables[name] = array.reshape(shape) if ndim else array.reshape(())
    (aliases,) = take("I")
    for _ in range(aliases):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def _layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def ggml_tensors(v: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """(whisper.cpp name, array) for every tensor, in whisper.cpp's naming."""

    def ln(dst: str, src: str):
        yield f"{dst}.weight", v[f"{src}/gamma"]
        yield f"{dst}.bias", v[f"{src}/beta"]

    def linear(dst: str, src: str, bias: bool = True):
        yield f"{dst}.weight", v[f"{src}/weight"]
        if bias:
            yield f"{dst}.bias", v[f"{src}/bias"]

    def split(src: str, parts: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        w, b = v[f"{src}/weight"], v[f"{src}/bias"]
        n = w.shape[0] // parts
        return [w[i * n : (i + 1) * n] for i in range(parts)], [b[i * n : (i + 1) * n] for i in range(parts)]

    def self_attention(dst: str, src: str):
        # CTranslate2 fuses Q|K|V; Whisper has no key bias.
        yield from ln(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        (wq, wk, wv), (bq, _bk, bv) = split(f"{src}/self_attention/linear_0", 3)
        yield f"{dst}.attn.query.weight", wq
        yield f"{dst}.attn.query.bias", bq
        yield f"{dst}.attn.key.weight", wk
        yield f"{dst}.attn.value.weight", wv
        yield f"{dst}.attn.value.bias", bv
        yield from linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")

    def mlp(dst: str, src: str):
        yield from ln(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        yield from linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        yield from linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for i in (1, 2):
        yield f"encoder.conv{i}.weight", v[f"encoder/conv{i}/weight"]
        bias = v[f"encoder/conv{i}/bias"]
        yield f"encoder.conv{i}.bias", bias.reshape(bias.shape[0], 1)
    for i in range(_layers(v, "encoder")):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        yield from self_attention(dst, src)
        yield from mlp(dst, src)
    yield from ln("encoder.ln_post", "encoder/layer_norm")

    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    for i in range(_layers(v, "decoder")):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from self_attention(dst, src)
        yield from ln(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        yield from linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        (wk, wv), (_bk, bv) = split(f"{src}/attention/linear_1", 2)
        yield f"{dst}.cross_attn.key.weight", wk
        yield f"{dst}.cross_attn.value.weight", wv
        yield f"{dst}.cross_attn.value.bias", bv
        yield from linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        yield from mlp(dst, src)
    yield from ln("decoder.ln", "decoder/layer_norm")


F32_NAMES = {"encoder.positional_embedding", "decoder.positional_embedding", "encoder.conv1.bias", "encoder.conv2.bias"}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (used by tokenizer.json)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def vocabulary(model_dir: Path, tiktoken: Path | None) -> list[bytes]:
    """The byte strings of the ordinary BPE tokens, in id order.

    From the openai-whisper tiktoken file when given (what OpenAI's own
    converter used), else from the model's tokenizer.json.
    """
    if tiktoken is not None:
        tokens = []
        for line in tiktoken.read_text().splitlines():
            if line.strip():
                token, _rank = line.split()
                tokens.append(base64.b64decode(token))
        return tokens
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    decode = {c: b for b, c in _bytes_to_unicode().items()}
    by_id = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    return [bytes(decode[c] for c in tok) for tok, _id in by_id]


def convert(
    model_dir: Path,
    mel_filters: Path,
    out: Path,
    tiktoken_dir: Path | None = None,
    progress: Callable[[str], None] = print,
) -> None:
    """Converts `model_dir` (model.bin, config.json, tokenizer.json) to `out`."""
    v = read_ct2(model_dir / "model.bin")
    try:
        n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
        n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
        n_text_ctx = v["decoder/position_encodings/encodings"].shape[0]
        n_mels = v["encoder/conv1/weight"].shape[1]
        hparams = [
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            int(v["encoder/num_heads"]),
            _layers(v, "encoder"),
            n_text_ctx,
            n_text_state,
            int(v["decoder/num_heads"]),
            _layers(v, "decoder"),
            n_mels,
            1,  # f16 weights
        ]
    except KeyError as e:
        raise ConvertError(f"{model_dir}: missing variable {e}") from e
    multilingual = n_vocab >= 51865
    progress(
        f"converting {'multilingual' if multilingual else 'English-only'} Whisper: "
        f"{hparams[4]} encoder / {hparams[8]} decoder layers, width {n_audio_state}"
    )
    with np.load(mel_filters) as f:
        mel = f[f"mel_{n_mels}"].astype(np.float32)
    tiktoken = None
    if tiktoken_dir is not None:
        tiktoken = tiktoken_dir / ("multilingual.tiktoken" if multilingual else "gpt2.tiktoken")
    tokens = vocabulary(model_dir, tiktoken)

    tmp = out.with_suffix(out.suffix + ".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<i", GGML_MAGIC))
        f.write(struct.pack("<" + "i" * len(hparams), *hparams))
        f.write(struct.pack("<ii", mel.shape[0], mel.shape[1]))
        f.write(mel.tobytes())
        f.write(struct.pack("<i", len(tokens)))
        for t in tokens:
            f.write(struct.pack("<i", len(t)))
            f.write(t)
        count = 0
        for name, array in ggml_tensors(v):
            data = np.ascontiguousarray(array)
            if data.ndim < 2 or name in F32_NAMES:
                data, ftype = data.astype(np.float32), 0
            else:
                data, ftype = data.astype(np.float16), 1
            encoded = name.encode("utf-8")
            f.write(struct.pack("<iii", data.ndim, len(encoded), ftype))
            f.write(struct.pack("<" + "i" * data.ndim, *reversed(data.shape)))
            f.write(encoded)
            f.write(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())
            count += 1
    tmp.replace(out)
    progress(f"wrote {out.name}: {count} tensors, {len(tokens)} tokens, {out.stat().st_size / 1e6:.1f} MB")
