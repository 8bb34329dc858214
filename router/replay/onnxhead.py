"""Swap the routing head of a classifier's ONNX graph, without the `onnx` package.

The shipped model computes `embedding` with the encoder, concatenates it with
`log_chars` (the head's input, `[batch, d + 1]`), and ends in a head whose
sigmoid output is `score`. A retrained head is another linear layer on that same
input, so the new graph is the old one with the node that produced `score`
removed and four float nodes appended:

    MatMul(head_input, W[d+1, 1]) -> Add(b) -> Squeeze(axis 1) -> Sigmoid -> score

The old head becomes dead code that onnxruntime prunes when it loads the graph.
`warm_head` and `kernel_head` instead keep the old logit and add a correction
to it before a new final Sigmoid (`router train`'s warm start).
ONNX files are protocol buffers; the few fields touched here (ModelProto.graph,
GraphProto.node / initializer, NodeProto inputs, outputs and op type, TensorProto
dims, type, name and raw data) are read and written in the wire format directly,
so `router train` needs no extra dependency. Every other byte is copied as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["HeadSwapError", "head_input_name", "kernel_head", "replace_head", "warm_head"]

# Field numbers from onnx.proto.
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP = 1, 2, 3, 4
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 8, 9
_FLOAT, _INT64 = 1, 7
_PREFIX = "retrained_head/"
_WARM = "warm_head"
_KERNEL = "kernel_head"


class HeadSwapError(ValueError):
    """The graph does not have the shape this module knows how to edit."""


@dataclass(frozen=True)
class _Field:
    number: int
    wire: int
    value: int | bytes
    raw: bytes  # the field's full encoding, key included


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def _fields(buf: bytes) -> Iterator[_Field]:
    i, n = 0, len(buf)
    while i < n:
        start = i
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            length, i = _read_varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        else:
            raise HeadSwapError(f"unsupported protobuf wire type {wire}")
        yield _Field(number, wire, value, buf[start:i])


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _tensor(name: str, array: npt.NDArray[np.generic], data_type: int) -> bytes:
    body = b"".join(_int_field(_TENSOR_DIMS, d) for d in array.shape)
    body += _int_field(_TENSOR_TYPE, data_type)
    body += _bytes_field(_TENSOR_NAME, name.encode())
    body += _bytes_field(
        _TENSOR_RAW, np.ascontiguousarray(array).astype("<" + array.dtype.str[1:]).tobytes()
    )
    return _bytes_field(_GRAPH_INITIALIZER, body)


def _node(op: str, inputs: list[str], outputs: list[str], prefix: str = _PREFIX) -> bytes:
    body = b"".join(_bytes_field(_NODE_INPUT, x.encode()) for x in inputs)
    body += b"".join(_bytes_field(_NODE_OUTPUT, x.encode()) for x in outputs)
    # Node names must be unique in a graph: name a node after its first output.
    body += _bytes_field(_NODE_NAME, (prefix + op + ":" + outputs[0]).encode())
    body += _bytes_field(_NODE_OP, op.encode())
    return _bytes_field(_GRAPH_NODE, body)


def _node_info(raw: bytes) -> tuple[str, list[str], list[str]]:
    op, inputs, outputs = "", [], []
    for f in _fields(raw):
        if not isinstance(f.value, bytes):
            continue
        if f.number == _NODE_INPUT:
            inputs.append(f.value.decode())
        elif f.number == _NODE_OUTPUT:
            outputs.append(f.value.decode())
        elif f.number == _NODE_OP:
            op = f.value.decode()
    return op, inputs, outputs


def _split(model: bytes) -> tuple[list[_Field], bytes]:
    top = list(_fields(model))
    graphs = [f for f in top if f.number == _MODEL_GRAPH]
    if len(graphs) != 1 or not isinstance(graphs[0].value, bytes):
        raise HeadSwapError("the model has no single graph")
    return top, graphs[0].value


def head_input_name(model: bytes) -> str:
    """The tensor the head reads: the Concat of `embedding` and `log_chars`."""
    _, graph = _split(model)
    for f in _fields(graph):
        if f.number == _GRAPH_NODE and isinstance(f.value, bytes):
            op, inputs, outputs = _node_info(f.value)
            if op == "Concat" and "embedding" in inputs and len(outputs) == 1:
                return outputs[0]
    raise HeadSwapError("no Concat node takes `embedding`: not a routing classifier graph")


def replace_head(model: bytes, weight: npt.ArrayLike, bias: float) -> bytes:
    """The model with `score = sigmoid([embedding, log_chars] @ weight + bias)`."""
    w = np.asarray(weight, dtype=np.float32).reshape(-1, 1)
    head_input = head_input_name(model)
    top, graph = _split(model)
    kept: list[bytes] = []
    dropped = 0
    for f in _fields(graph):
        if (
            f.number == _GRAPH_NODE
            and isinstance(f.value, bytes)
            and "score" in _node_info(f.value)[2]
        ):
            dropped += 1
            continue
        kept.append(f.raw)
    if dropped != 1:
        raise HeadSwapError(f"expected one node producing `score`, found {dropped}")
    p = _PREFIX
    kept += [
        _tensor(p + "weight", w, _FLOAT),
        _tensor(p + "bias", np.asarray([bias], dtype=np.float32), _FLOAT),
        _tensor(p + "axes", np.asarray([1], dtype=np.int64), _INT64),
        _node("MatMul", [head_input, p + "weight"], [p + "matmul"]),
        _node("Add", [p + "matmul", p + "bias"], [p + "logit2d"]),
        _node("Squeeze", [p + "logit2d", p + "axes"], [p + "logit"]),
        _node("Sigmoid", [p + "logit"], ["score"]),
    ]
    new_graph = b"".join(kept)
    out = [
        _bytes_field(_MODEL_GRAPH, new_graph) if f.number == _MODEL_GRAPH else f.raw for f in top
    ]
    return b"".join(out)


def _split_score(graph: bytes) -> tuple[list[bytes], str, list[list[str]]]:
    """The graph's fields without the final Sigmoid, that Sigmoid's input, node outputs."""
    kept: list[bytes] = []
    logit: str | None = None
    outputs_seen: list[list[str]] = []
    for f in _fields(graph):
        if f.number == _GRAPH_NODE and isinstance(f.value, bytes):
            op, inputs, outputs = _node_info(f.value)
            if "score" in outputs:
                if op != "Sigmoid" or len(inputs) != 1 or logit is not None:
                    raise HeadSwapError("`score` is not one Sigmoid of a logit: cannot warm-start")
                logit = inputs[0]
                continue
            outputs_seen.append(outputs)
        kept.append(f.raw)
    if logit is None:
        raise HeadSwapError("no node produces `score`")
    return kept, logit, outputs_seen


def _fresh_index(outputs_seen: list[list[str]], prefix: str) -> int:
    # Corrections stack: each round's tensors need a name prefix no earlier
    # round used; the count of earlier nodes under `prefix` is one.
    return sum(any(x.startswith(prefix) for x in outputs) for outputs in outputs_seen)


def _join(top: list[_Field], kept: list[bytes]) -> bytes:
    new_graph = b"".join(kept)
    out = [
        _bytes_field(_MODEL_GRAPH, new_graph) if f.number == _MODEL_GRAPH else f.raw for f in top
    ]
    return b"".join(out)


def warm_head(model: bytes, scale: float, weight: npt.ArrayLike, bias: float) -> bytes:
    """The model with `score = sigmoid(scale * old_logit + [embedding, log_chars] @ weight + bias)`.

    The old head (domain prior included) keeps running; only its final Sigmoid
    is replaced, so a warm-started model adds a correction instead of forgetting.
    Applied again to a warm-started model it stacks another correction.
    """
    w = np.asarray(weight, dtype=np.float32).reshape(-1, 1)
    head_input = head_input_name(model)
    top, graph = _split(model)
    kept, logit, seen = _split_score(graph)
    p = f"{_WARM}{_fresh_index(seen, _WARM)}/"
    kept += [
        _tensor(p + "scale", np.asarray([scale], dtype=np.float32), _FLOAT),
        _tensor(p + "weight", w, _FLOAT),
        _tensor(p + "bias", np.asarray([bias], dtype=np.float32), _FLOAT),
        _tensor(p + "axes", np.asarray([1], dtype=np.int64), _INT64),
        _node("Mul", [logit, p + "scale"], [p + "scaled"], p),
        _node("MatMul", [head_input, p + "weight"], [p + "matmul"], p),
        _node("Add", [p + "matmul", p + "bias"], [p + "delta2d"], p),
        _node("Squeeze", [p + "delta2d", p + "axes"], [p + "delta"], p),
        _node("Add", [p + "scaled", p + "delta"], [p + "logit"], p),
        _node("Sigmoid", [p + "logit"], ["score"], p),
    ]
    return _join(top, kept)


def kernel_head(
    model: bytes, anchors: npt.ArrayLike, weights: npt.ArrayLike, beta: float, shrink: float
) -> bytes:
    """The model with a kernel offset (`router.replay.kernel`) added to the logit of `score`.

    `offset = (K @ weights) / (shrink + K @ 1)`, `K = exp(beta * (embedding @ anchors.T - 1))`:
    the embedding output is already unit length, so its product with the unit
    anchors is the cosine. Stacks like `warm_head`.
    """
    a = np.asarray(anchors, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32).reshape(-1, 1)
    if a.ndim != 2 or a.shape[0] != w.shape[0]:
        raise HeadSwapError(f"anchors {a.shape} and weights {w.shape} do not match")
    top, graph = _split(model)
    kept, logit, seen = _split_score(graph)
    p = f"{_KERNEL}{_fresh_index(seen, _KERNEL)}/"
    kept += [
        _tensor(p + "anchors_t", np.ascontiguousarray(a.T), _FLOAT),
        _tensor(p + "weights", w, _FLOAT),
        _tensor(p + "ones", np.ones_like(w), _FLOAT),
        _tensor(p + "beta", np.asarray([beta], dtype=np.float32), _FLOAT),
        _tensor(p + "shrink", np.asarray([shrink], dtype=np.float32), _FLOAT),
        _tensor(p + "axes", np.asarray([1], dtype=np.int64), _INT64),
        _node("MatMul", ["embedding", p + "anchors_t"], [p + "cos"], p),
        _node("Mul", [p + "cos", p + "beta"], [p + "beta_cos"], p),
        # exp(beta * cos - beta) = exp(beta * (cos - 1)) <= 1: no overflow.
        _node("Sub", [p + "beta_cos", p + "beta"], [p + "exponent"], p),
        _node("Exp", [p + "exponent"], [p + "k"], p),
        _node("MatMul", [p + "k", p + "weights"], [p + "num"], p),
        _node("MatMul", [p + "k", p + "ones"], [p + "mass"], p),
        _node("Add", [p + "mass", p + "shrink"], [p + "den"], p),
        _node("Div", [p + "num", p + "den"], [p + "offset2d"], p),
        _node("Squeeze", [p + "offset2d", p + "axes"], [p + "offset"], p),
        _node("Add", [logit, p + "offset"], [p + "logit"], p),
        _node("Sigmoid", [p + "logit"], ["score"], p),
    ]
    return _join(top, kept)
