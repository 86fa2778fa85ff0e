"""Which channels of a model must be pruned together, traced from an example input.

Structured pruning removes an output channel of a conv/linear layer *and* that
channel everywhere it flows: the BatchNorm after it, a depthwise conv that
filters it, the input columns of every layer that consumes it, the other
operand of a residual add (whose channel ``i`` is the same channel), its slot
in a concatenation, the block of features it becomes after a flatten.

The model is turned into a graph (:func:`torch.fx.symbolic_trace`, or, where
that fails, a recording of one real forward pass) and every tensor gets a
*channel map*: for each index along its channel axis, a symbol naming which
channel it is. Convs and linears create fresh symbols; ops that keep channels
(BN, activations, pooling, depthwise conv, reshapes) pass them on; an add
unifies its operands' symbols (union-find), a concat appends them. Anything the
analysis does not understand *pins* the symbols of its inputs: a pinned channel
is never removed, so an op we cannot follow always sees exactly the tensor it
saw before pruning. Channels of the model input and output, of parameters used
in functional code, and of shared modules are pinned the same way.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# modules that act on each element (or each channel independently) and keep the shape
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
    nn.LeakyReLU, nn.ELU, nn.SELU, nn.Mish, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
# modules that mix positions but never channels (channel axis 1)
_SPATIAL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample,
)

# canonical names (see _op_name) of functions / tensor methods, by what they do to channels
_UNARY_OPS = {
    "relu", "relu6", "hardtanh", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "leaky_relu",
    "elu", "selu", "mish", "softplus", "dropout", "dropout1d", "dropout2d", "dropout3d", "clamp", "clip",
    "neg", "abs", "contiguous", "clone", "detach", "float", "double", "half", "bfloat16", "to",
}
_BINARY_OPS = {"add", "sub", "mul", "div", "truediv", "true_divide", "maximum", "minimum"}
_SPATIAL_OPS = {
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate",
}
_RESHAPE_OPS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_REDUCE_OPS = {"mean", "sum", "amax", "amin"}
_CAT_OPS = {"cat", "concat", "concatenate"}
# tensor attributes / methods whose result does not depend on the number of channels
_SHAPE_FREE_ATTRS = {"dtype", "device", "dim", "ndimension", "is_contiguous"}
_OPERATOR_NAMES = {
    getattr(operator, n): n
    for n in ("add", "sub", "mul", "truediv", "iadd", "isub", "imul", "itruediv", "neg", "getitem")
}


@dataclass(frozen=True)
class TensorInfo:
    """What the analysis keeps of a traced tensor: its shape."""

    shape: torch.Size


@dataclass
class ChannelMap:
    """Symbols of the channels of one tensor along its channel ``axis`` (non-negative)."""

    axis: int
    syms: list[int]


@dataclass
class ChannelDeps:
    """The result of :func:`trace_channels`.

    ``sources`` maps each conv (``groups == 1``) / linear layer to the symbols of its
    output channels, ``consumers`` each such layer to the symbols of its input
    channels (absent: its input is left as it is), ``sliced`` each BatchNorm and
    depthwise conv to the symbols of the channels it carries. Symbols are
    compared through :meth:`find`; :attr:`pinned` maps a pinned root to why.
    """

    tracer: str
    output: object = None  # the model's output on the example input, tensors as TensorInfo
    sources: dict[str, list[int]] = field(default_factory=dict)
    consumers: dict[str, list[int]] = field(default_factory=dict)
    sliced: dict[str, list[int]] = field(default_factory=dict)
    pinned: dict[int, str] = field(default_factory=dict)
    # layers whose own channels cannot be pruned for a reason of their own (grouped conv, shared module)
    blocked: dict[str, str] = field(default_factory=dict)
    parent: list[int] = field(default_factory=list)

    def new_syms(self, count: int, pinned: str | None = None) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        if pinned is not None:
            for s in range(start, start + count):
                self.pinned[s] = pinned
        return list(range(start, start + count))

    def find(self, s: int) -> int:
        root = s
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[s] != root:  # path compression
            self.parent[s], s = root, self.parent[s]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        if rb in self.pinned:
            self.pinned.setdefault(ra, self.pinned.pop(rb))

    def pin(self, syms: Sequence[int], reason: str) -> None:
        for s in syms:
            self.pinned.setdefault(self.find(s), reason)

    def pinned_reason(self, s: int) -> str | None:
        return self.pinned.get(self.find(s))


def _describe(value):
    return tree_map(lambda v: TensorInfo(v.shape) if isinstance(v, torch.Tensor) else v, value)


# ---------------------------------------------------------------------------------------------
# tracers: both produce an fx.Graph whose call_module targets are module names of ``model``,
# plus what every node evaluated to on the example input (tensors as TensorInfo)
# ---------------------------------------------------------------------------------------------


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, object] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        self.values[n] = _describe(out)
        return out


def _trace_fx(model: nn.Module, inputs: tuple) -> tuple[fx.Graph, dict]:
    gm = fx.symbolic_trace(model)
    recorder = _Recorder(gm)
    recorder.run(*inputs)
    return gm.graph, recorder.values


def _trace_dynamic(model: nn.Module, inputs: tuple) -> tuple[fx.Graph, dict]:
    """Record one forward pass: leaf-module calls through hooks, everything else through a
    ``TorchFunctionMode``. Follows data-dependent Python control flow that fx cannot, but sees
    only the path this input takes and cannot see channel counts read as Python ints."""
    graph = fx.Graph()
    values: dict[fx.Node, object] = {}
    env: dict[int, tuple[torch.Tensor, fx.Node]] = {}  # id(tensor) -> (tensor kept alive, node)
    state_names = {id(t): n for n, t in (*model.named_parameters(), *model.named_buffers())}
    depth = [0]  # > 0 while inside a leaf module: its internals are the module's business

    def node_of(t: torch.Tensor) -> fx.Node:
        hit = env.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        # not produced by a recorded op: a parameter, a buffer or a constant built in forward
        node = graph.get_attr(state_names.get(id(t), f"constant_{len(env)}"))
        values[node] = TensorInfo(t.shape)
        env[id(t)] = (t, node)
        return node

    def to_nodes(obj):
        return tree_map(lambda v: node_of(v) if isinstance(v, torch.Tensor) else v, obj)

    def bind(out, node: fx.Node) -> None:
        values[node] = _describe(out)
        if isinstance(out, torch.Tensor):
            env[id(out)] = (out, node)
        elif isinstance(out, (tuple, list)):
            for i, item in enumerate(out):
                if isinstance(item, torch.Tensor):
                    item_node = graph.call_function(operator.getitem, (node, i))
                    values[item_node] = TensorInfo(item.shape)
                    env[id(item)] = (item, item_node)

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if depth[0] > 0:
                return func(*args, **kwargs)
            node_args, node_kwargs = to_nodes(args), to_nodes(kwargs)  # before an in-place op rebinds
            out = func(*args, **kwargs)
            if not any(isinstance(v, torch.Tensor) for v in tree_flatten(out)[0]):
                return out
            name = getattr(func, "__name__", None)
            if name is not None and getattr(torch.Tensor, name, None) is func:
                node = graph.call_method(name, node_args, node_kwargs)
            else:
                node = graph.call_function(func, node_args, node_kwargs)
            bind(out, node)
            return out

    pending: dict[int, list] = {}

    def pre_hook(name):
        def hook(mod, args, kwargs):
            if depth[0] == 0:
                pending.setdefault(id(mod), []).append((to_nodes(args), to_nodes(kwargs)))
            depth[0] += 1
        return hook

    def post_hook(name):
        def hook(mod, args, kwargs, out):
            depth[0] -= 1
            if depth[0] == 0:
                node_args, node_kwargs = pending[id(mod)].pop()
                bind(out, graph.call_module(name, node_args, node_kwargs))
        return hook

    handles = []
    for name, mod in model.named_modules():
        if name and next(mod.children(), None) is None:
            handles.append(mod.register_forward_pre_hook(pre_hook(name), with_kwargs=True))
            handles.append(mod.register_forward_hook(post_hook(name), with_kwargs=True))
    try:
        placeholders = []
        for i, x in enumerate(inputs):
            node = graph.placeholder(f"input_{i}")
            values[node] = _describe(x)
            if isinstance(x, torch.Tensor):
                env[id(x)] = (x, node)
            placeholders.append(node)
        with Mode():
            out = model(*inputs)
        graph.output(to_nodes(out))
        values["output"] = _describe(out)
    finally:
        for h in handles:
            h.remove()
    return graph, values


# ---------------------------------------------------------------------------------------------
# channel analysis over the graph
# ---------------------------------------------------------------------------------------------


def _op_name(node: fx.Node) -> str | None:
    """A canonical name for a function / method node: ``x + y``, ``torch.add``, ``x.add_``,
    ``x.__iadd__`` are all ``add``. None for functions that are not torch's or operator's."""
    target = node.target
    if node.op == "call_method":
        name = target
    elif target in _OPERATOR_NAMES:
        name = _OPERATOR_NAMES[target]
    else:
        name = getattr(target, "__name__", None)
        if name is None or not any(getattr(ns, name, None) is target for ns in (torch, F, torch.Tensor)):
            return "getattr" if target is getattr else None
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in ("i", "r") and name[1:] in _BINARY_OPS:
            name = name[1:]
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def _is_tensor_node(arg, values) -> bool:
    return isinstance(arg, fx.Node) and isinstance(values.get(arg), TensorInfo)


def _resolve(arg, values):
    """The concrete value of a (possibly node) non-tensor argument."""
    return tree_map(lambda a: values.get(a) if isinstance(a, fx.Node) else a, arg)


def _reshaped(m: ChannelMap, in_shape: torch.Size, out_shape: torch.Size) -> ChannelMap | None:
    """The channel map after a contiguous reshape, or None if the channels get mixed up."""
    a, in_shape, out_shape = m.axis, tuple(in_shape), tuple(out_shape)
    if in_shape[: a + 1] == out_shape[: a + 1]:  # the channel dim and what precedes it are untouched
        return ChannelMap(a, m.syms)
    if out_shape[:a] == in_shape[:a] and len(out_shape) == a + 1:
        # flatten of the channel dim with the trailing dims: channel c becomes a block of features
        inner = math.prod(in_shape[a + 1:])
        return ChannelMap(a, [s for s in m.syms for _ in range(inner)])
    if in_shape[a] != 1:  # only size-1 dims inserted or removed
        keep_in = [d for d, n in enumerate(in_shape) if n != 1]
        keep_out = [d for d, n in enumerate(out_shape) if n != 1]
        if [in_shape[d] for d in keep_in] == [out_shape[d] for d in keep_out]:
            return ChannelMap(keep_out[keep_in.index(a)], m.syms)
    return None


class _Analysis:
    def __init__(self, model: nn.Module, graph: fx.Graph, values: dict, tracer: str) -> None:
        self.model, self.graph, self.values = model, graph, values
        self.deps = ChannelDeps(tracer=tracer)
        self.maps: dict[fx.Node, ChannelMap] = {}
        self.shape_of: dict[fx.Node, fx.Node] = {}  # node holding x.shape / x.size() -> x
        self.calls = Counter(n.target for n in graph.nodes if n.op == "call_module")

    # helpers ---------------------------------------------------------------------------
    def tensor_nodes(self, obj) -> list[fx.Node]:
        return [a for a in tree_flatten(obj)[0] if _is_tensor_node(a, self.values)]

    def pin_inputs(self, node: fx.Node, reason: str) -> None:
        for a in tree_flatten((node.args, node.kwargs))[0]:
            if a in self.maps:
                self.deps.pin(self.maps[a].syms, reason)
            if a in self.shape_of:
                self.deps.pin(self.maps[self.shape_of[a]].syms, reason)

    def fresh(self, node: fx.Node, reason: str | None) -> None:
        """Give a tensor output new symbols (pinned with ``reason`` unless it is None)."""
        info = self.values.get(node)
        if isinstance(info, TensorInfo) and len(info.shape) > 0:
            axis = 1 if len(info.shape) >= 2 else 0
            self.maps[node] = ChannelMap(axis, self.deps.new_syms(info.shape[axis], pinned=reason))

    def unknown(self, node: fx.Node, what: str) -> None:
        reason = f"its channels reach {what}, which channel pruning cannot follow"
        self.pin_inputs(node, reason)
        self.fresh(node, reason)

    def input_map(self, node: fx.Node, axis: int, size: int) -> ChannelMap | None:
        """The map of the single tensor input of ``node`` if its channels are along ``axis``."""
        tensors = self.tensor_nodes((node.args, node.kwargs))
        if len(tensors) != 1 or tensors[0] not in self.maps:
            return None
        m, ndim = self.maps[tensors[0]], len(self.values[tensors[0]].shape)
        return m if m.axis == axis % ndim and len(m.syms) == size else None

    def pass_through(self, node: fx.Node, m: ChannelMap, spatial: bool = False) -> bool:
        x = self.tensor_nodes(node.args[:1])
        out = self.values.get(node)
        if not x or not isinstance(out, TensorInfo):
            return False
        in_shape = self.values[x[0]].shape
        # spatial ops (pooling, depthwise conv): batched input only, batch and channel dims kept
        same = out.shape == in_shape if not spatial else (
            m.axis == 1 and len(out.shape) == len(in_shape) >= 3 and out.shape[:2] == in_shape[:2])
        if same:
            self.maps[node] = ChannelMap(m.axis, m.syms)
        return same

    # nodes -----------------------------------------------------------------------------
    def run(self) -> ChannelDeps:
        for node in self.graph.nodes:
            if node.op == "placeholder":
                self.fresh(node, "its channels are tied to the model input")
            elif node.op == "get_attr":
                self.fresh(node, f"its channels are tied to the tensor attribute `{node.target}`")
            elif node.op == "output":
                self.pin_inputs(node, "its channels are outputs of the model")
            elif node.op == "call_module":
                self.module(node)
            else:
                self.function(node)
        return self.deps

    def module(self, node: fx.Node) -> None:
        name = node.target
        mod = self.model.get_submodule(name)
        is_layer = isinstance(mod, (*_CONVS, nn.Linear))
        # a parameter-free module (a ReLU reused in a block) may be called any number of times
        if self.calls[name] > 1 and next(iter((*mod.parameters(), *mod.buffers())), None) is not None:
            reason = f"module `{name}` is called {self.calls[name]} times (shared weights)"
            if is_layer or isinstance(mod, _BATCHNORMS):
                self.deps.blocked[name] = reason
            self.pin_inputs(node, reason)
            self.fresh(node, reason)
            return
        if (isinstance(mod, _CONVS) and mod.groups == 1) or isinstance(mod, nn.Linear):
            conv = isinstance(mod, _CONVS)
            # a conv's channels precede its 1-3 spatial dims (dim 1 batched, dim 0 unbatched)
            axis, n_in, n_out = (1 - mod.weight.dim(), mod.in_channels, mod.out_channels) if conv else (
                -1, mod.in_features, mod.out_features)
            m = self.input_map(node, axis, n_in)
            if m is not None:
                self.deps.consumers[name] = m.syms
            else:  # the layer reads some other dim: leave its input exactly as it is
                self.pin_inputs(node, f"`{name}` reads them along a dimension the analysis does not track")
            out = self.values.get(node)
            self.deps.sources[name] = self.deps.new_syms(n_out)
            self.maps[node] = ChannelMap(axis % len(out.shape), self.deps.sources[name])
            return
        if isinstance(mod, _CONVS) and mod.groups == mod.in_channels == mod.out_channels:
            m = self.input_map(node, 1, mod.in_channels)  # depthwise: channel i in, channel i out
            if m is not None and self.pass_through(node, m, spatial=True):
                self.deps.sliced[name] = m.syms
                return
        elif isinstance(mod, _CONVS):
            self.deps.blocked[name] = f"grouped convolution (groups={mod.groups}) is not pruned"
            self.unknown(node, f"the grouped convolution `{name}`")
            return
        elif isinstance(mod, _BATCHNORMS):
            m = self.input_map(node, 1, mod.num_features)
            if m is not None and self.pass_through(node, m):
                self.deps.sliced[name] = m.syms
                return
        elif isinstance(mod, (*_ELEMENTWISE_MODULES, *_SPATIAL_MODULES)):
            x = self.tensor_nodes((node.args, node.kwargs))
            if len(x) == 1 and x[0] in self.maps and self.pass_through(
                    node, self.maps[x[0]], spatial=isinstance(mod, _SPATIAL_MODULES)):
                return
        elif isinstance(mod, nn.Flatten):
            if self.reshape(node):
                return
        self.unknown(node, f"module `{name}` ({type(mod).__name__})")

    def function(self, node: fx.Node) -> None:
        name = _op_name(node)
        what = f"`{name or getattr(node.target, '__name__', node.target)}`"
        if name == "getattr" and node.args[1] in _SHAPE_FREE_ATTRS:
            return
        whole_shape = name == "size" and len(node.args) + len(node.kwargs) == 1
        if whole_shape or (name == "getattr" and node.args[1] == "shape"):
            if node.args[0] in self.maps:
                self.shape_of[node] = node.args[0]
            return
        if name == "size":
            x = node.args[0]
            dim = _resolve(node.args[1] if len(node.args) > 1 else node.kwargs["dim"], self.values)
            if x in self.maps and isinstance(dim, int) and dim % len(self.values[x].shape) == self.maps[x].axis:
                self.deps.pin(self.maps[x].syms, "its channel count is read with `size`")
            return
        if name in _SHAPE_FREE_ATTRS:
            return
        if name == "getitem" and node.args[0] in self.shape_of:
            x = self.shape_of[node.args[0]]
            index = _resolve(node.args[1], self.values)
            if not (isinstance(index, int) and index % len(self.values[x].shape) != self.maps[x].axis):
                self.deps.pin(self.maps[x].syms, "its channel count is read from its shape")
            return
        if self.known_function(node, name):
            return
        self.unknown(node, what)

    def known_function(self, node: fx.Node, name: str | None) -> bool:
        """Propagate channel maps through ``node``; False if the op is not understood."""
        if any(a in self.shape_of for a in tree_flatten((node.args, node.kwargs))[0]):
            return False  # a shape used as a whole (e.g. to build a tensor) may contain the channel count
        tensors = self.tensor_nodes((node.args, node.kwargs))
        out = self.values.get(node)
        if not isinstance(out, TensorInfo) or not tensors or any(t not in self.maps for t in tensors):
            return False
        if name in _UNARY_OPS or name in _SPATIAL_OPS:
            return len(tensors) == 1 and node.args[:1] == (tensors[0],) and self.pass_through(
                node, self.maps[tensors[0]], spatial=name in _SPATIAL_OPS)
        if name in _RESHAPE_OPS:
            return len(tensors) == 1 and self.reshape(node)
        if name in _REDUCE_OPS:
            return len(tensors) == 1 and self.reduce(node)
        if name in _BINARY_OPS:
            return self.elementwise(node, tensors, out)
        if name in _CAT_OPS:
            return self.cat(node, out)
        return False

    def reshape(self, node: fx.Node) -> bool:
        x = node.args[0]
        if x not in self.maps:
            return False
        m = _reshaped(self.maps[x], self.values[x].shape, self.values[node].shape)
        if m is None:
            return False
        if node.op != "call_module" and _op_name(node) in ("view", "reshape"):
            # ``x.view(n, 16, -1)``: a size written as a number at the channel position would
            # still say 16 after pruning; only -1 or a size computed in the graph follow the channels
            sizes = list(node.args[1:]) or [node.kwargs.get("size", node.kwargs.get("shape"))]
            if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
                sizes = list(sizes[0])
            if len(sizes) != len(self.values[node].shape):
                return False
            size = sizes[m.axis]
            if not (size == -1 or isinstance(size, fx.Node)):
                return False
        self.maps[node] = m
        return True

    def reduce(self, node: fx.Node) -> bool:
        x, m = node.args[0], self.maps[node.args[0]]
        ndim = len(self.values[x].shape)
        dims = _resolve(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim"), self.values)
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        keepdim = _resolve(keepdim, self.values)
        if dims is None:
            return False
        dims = {d % ndim for d in ((dims,) if isinstance(dims, int) else dims)}
        if m.axis in dims:
            return False
        axis = m.axis if keepdim else m.axis - sum(d < m.axis for d in dims)
        if self.values[node].shape[axis] != len(m.syms):
            return False
        self.maps[node] = ChannelMap(axis, m.syms)
        return True

    def elementwise(self, node: fx.Node, tensors: list[fx.Node], out: TensorInfo) -> bool:
        """Binary op with broadcasting: operands that carry the channel axis share its channels."""
        full = [t for t in tensors if self.values[t].shape == out.shape]
        if not full:
            return False
        axis, channels = self.maps[full[0]].axis, out.shape[self.maps[full[0]].axis]
        tied = []
        for t in tensors:
            shape, m = self.values[t].shape, self.maps[t]
            d = axis - (len(out.shape) - len(shape))
            if d < 0 or (shape[d] == 1 and channels != 1):
                # broadcast along the channel axis: that operand is used as a whole
                self.deps.pin(m.syms, "broadcast against other channels")
            elif m.axis == d and len(m.syms) == channels:
                tied.append(m.syms)
            else:
                return False
        for syms in tied[1:]:
            for a, b in zip(tied[0], syms, strict=True):
                self.deps.union(a, b)
        self.maps[node] = ChannelMap(axis, tied[0])
        return True

    def cat(self, node: fx.Node, out: TensorInfo) -> bool:
        parts = node.args[0]
        dim = _resolve(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0), self.values)
        if not isinstance(parts, (list, tuple)) or not isinstance(dim, int):
            return False
        maps = [self.maps.get(p) for p in parts]
        if any(m is None for m in maps) or len({m.axis for m in maps}) != 1:
            return False
        axis = maps[0].axis
        if dim % len(out.shape) == axis:  # concatenated channels: offsets
            self.maps[node] = ChannelMap(axis, [s for m in maps for s in m.syms])
            return True
        if len({len(m.syms) for m in maps}) != 1:
            return False
        for m in maps[1:]:  # concatenated along another dim: channel i is one channel in every part
            for a, b in zip(maps[0].syms, m.syms, strict=True):
                self.deps.union(a, b)
        self.maps[node] = ChannelMap(axis, maps[0].syms)
        return True


def trace_channels(
    model: nn.Module, example_input: torch.Tensor | Sequence[torch.Tensor], tracer: str = "auto"
) -> ChannelDeps:
    """Trace ``model`` on ``example_input`` and return its channel dependencies.

    Args:
        example_input: a tensor or a tuple of positional inputs (batch included).
        tracer: ``"fx"`` (:func:`torch.fx.symbolic_trace`), ``"dynamic"`` (record one real
            forward pass), or ``"auto"``: fx, and the dynamic recording where fx cannot trace.
    The model runs once (twice for ``"auto"`` falling back) as it is: call it in eval mode
    under ``torch.no_grad``.
    """
    if tracer not in ("auto", "fx", "dynamic"):
        raise ValueError(f"tracer must be 'auto', 'fx' or 'dynamic', got {tracer!r}")
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    used = tracer
    if tracer in ("auto", "fx"):
        try:
            graph, values = _trace_fx(model, inputs)
            used = "fx"
        except Exception:
            if tracer == "fx":
                raise
            used = "dynamic"
    if used == "dynamic":
        graph, values = _trace_dynamic(model, inputs)
    deps = _Analysis(model, graph, values, used).run()
    if used == "fx":
        deps.output = next(values[n] for n in graph.nodes if n.op == "output")
    else:
        deps.output = values["output"]
    return deps
