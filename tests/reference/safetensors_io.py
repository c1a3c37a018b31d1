"""Minimal pure-Python safetensors reader/writer (F32, F16, BF16), single-file and sharded.

File layout (https://github.com/huggingface/safetensors, "format" section):
  * 8 bytes: little-endian unsigned 64-bit N, the header length;
  * N bytes: UTF-8 JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}
    with an optional "__metadata__" entry (a str -> str map); the writer pads it with
    spaces to a multiple of 8 bytes;
  * the data: raw little-endian tensors, offsets relative to the first byte after the header.

Sharded checkpoints (Hugging Face convention):
  model-00001-of-00003.safetensors ... model-00003-of-00003.safetensors plus
  model.safetensors.index.json = {"metadata": {"total_size": <sum of tensor bytes>},
                                  "weight_map": {tensor_name: file_name}}.

Only torch and numpy are used; this module knows nothing about models.
"""

import json
import os
import struct

import numpy as np
import torch

# dtype tag -> (torch dtype, bytes per element)
_DTYPES = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "U8": (torch.uint8, 1),          # gpt-oss MXFP4 blocks and scales
}
_TAG_OF = {v[0]: k for k, v in _DTYPES.items()}

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def _tensor_to_bytes(t):
    """Raw little-endian bytes of a contiguous CPU tensor of F32/F16/BF16/U8."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy().astype("<i2", copy=False)
    elif t.dtype == torch.float16:
        arr = t.numpy().astype("<f2", copy=False)
    elif t.dtype == torch.float32:
        arr = t.numpy().astype("<f4", copy=False)
    elif t.dtype == torch.uint8:
        arr = t.numpy()
    else:
        raise TypeError("unsupported dtype %s (F32, F16, BF16, U8 only)" % t.dtype)
    return arr.tobytes(order="C")


def _bytes_to_tensor(buf, tag, shape):
    if tag == "BF16":
        arr = np.frombuffer(buf, dtype="<i2").astype(np.int16)
        t = torch.from_numpy(arr.copy()).view(torch.bfloat16)
    elif tag == "F16":
        t = torch.from_numpy(np.frombuffer(buf, dtype="<f2").astype(np.float16))
    elif tag == "F32":
        t = torch.from_numpy(np.frombuffer(buf, dtype="<f4").astype(np.float32))
    elif tag == "U8":
        t = torch.from_numpy(np.frombuffer(buf, dtype=np.uint8).copy())
    else:
        raise ValueError("unsupported safetensors dtype %r" % tag)
    return t.reshape(shape)


def save_file(tensors, path, metadata=None):
    """Write `tensors` (an ordered {name: tensor} map) to `path`.

    Tensors are packed contiguously in the order given; the header lists them in the
    same order, after "__metadata__" (default {"format": "pt"}).
    Returns the number of tensor data bytes written.
    """
    if metadata is None:
        metadata = {"format": "pt"}
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("tensor name __metadata__ is reserved")
        if t.dtype not in _TAG_OF:
            raise TypeError("%s: unsupported dtype %s" % (name, t.dtype))
        data = _tensor_to_bytes(t)
        header[name] = {
            "dtype": _TAG_OF[t.dtype],
            "shape": [int(s) for s in t.shape],
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
    return offset


def read_header(path):
    """Return (header dict without __metadata__, metadata dict or None, data start offset)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("%s: too short for a safetensors file" % path)
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise ValueError("%s: header length %d exceeds file size %d" % (path, n, size))
        header = json.loads(f.read(n).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("%s: header is not a JSON object" % path)
    metadata = header.pop("__metadata__", None)
    return header, metadata, 8 + n


def load_file(path, names=None):
    """Read a safetensors file into {name: tensor} (in header order).

    `names`: optional iterable restricting which tensors are read. Checks dtypes,
    that each tensor's byte range matches its shape, lies inside the file, and that
    ranges do not overlap.
    """
    header, _, start = read_header(path)
    data_len = os.path.getsize(path) - start
    wanted = None if names is None else set(names)
    spans = []
    out = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            tag = info["dtype"]
            if tag not in _DTYPES:
                raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, tag))
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
            numel = 1
            for s in shape:
                numel *= s
            if end - begin != numel * _DTYPES[tag][1] or begin < 0 or end > data_len:
                raise ValueError("%s: tensor %s has bad data_offsets %s for shape %s"
                                 % (path, name, info["data_offsets"], shape))
            spans.append((begin, end, name))
            if wanted is not None and name not in wanted:
                continue
            f.seek(start + begin)
            out[name] = _bytes_to_tensor(f.read(end - begin), tag, shape)
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError("%s: tensors %s and %s overlap" % (path, n0, n1))
    if wanted is not None and wanted - set(out):
        raise KeyError("%s: missing tensors %s" % (path, sorted(wanted - set(out))))
    return out


def shard_file_name(i, n):
    """Hugging Face shard name, 1-based: model-00001-of-00003.safetensors."""
    return "model-%05d-of-%05d.safetensors" % (i + 1, n)


def save_sharded(tensors, directory, num_shards, metadata=None):
    """Split `tensors` (in order) into `num_shards` files of roughly equal byte size,
    and write model.safetensors.index.json beside them. Returns the list of file names.

    Tensors keep their order; a shard boundary falls between tensors when the running
    byte count passes the next multiple of total/num_shards (each shard non-empty).
    """
    names = list(tensors)
    if num_shards < 1 or num_shards > len(names):
        raise ValueError("num_shards must be in [1, %d]" % len(names))
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    total = sum(sizes)
    groups = [[] for _ in range(num_shards)]
    acc = 0
    g = 0
    for i, (name, sz) in enumerate(zip(names, sizes)):
        remaining_names = len(names) - i
        remaining_groups = num_shards - g - 1
        # advance when this shard already passed its share, but never leave a later shard empty
        if groups[g] and g < num_shards - 1 and (
                acc >= total * (g + 1) / num_shards or remaining_names <= remaining_groups):
            g += 1
        groups[g].append(name)
        acc += sz
    files = []
    weight_map = {}
    for i, group in enumerate(groups):
        fname = shard_file_name(i, num_shards)
        save_file({n: tensors[n] for n in group}, os.path.join(directory, fname), metadata)
        files.append(fname)
        for n in group:
            weight_map[n] = fname
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(directory, INDEX_FILE), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return files


def load_checkpoint(directory):
    """Load every tensor of an HF model directory: the sharded index when present,
    else model.safetensors. Checks that the index and the shards agree exactly."""
    index_path = os.path.join(directory, INDEX_FILE)
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        weight_map = index["weight_map"]
        by_file = {}
        for name, fname in weight_map.items():
            by_file.setdefault(fname, []).append(name)
        out = {}
        total = 0
        for fname in sorted(by_file):
            path = os.path.join(directory, fname)
            header, _, _ = read_header(path)
            extra = set(header) - set(by_file[fname])
            if extra:
                raise ValueError("%s holds tensors the index does not map to it: %s"
                                 % (path, sorted(extra)))
            part = load_file(path, by_file[fname])
            for name, t in part.items():
                total += t.numel() * t.element_size()
            out.update(part)
        declared = index.get("metadata", {}).get("total_size")
        if declared is not None and int(declared) != total:
            raise ValueError("%s: total_size %s != %d bytes of tensors" % (index_path, declared, total))
        return out
    single = os.path.join(directory, SINGLE_FILE)
    if os.path.exists(single):
        return load_file(single)
    raise FileNotFoundError("%s: neither %s nor %s" % (directory, INDEX_FILE, SINGLE_FILE))
