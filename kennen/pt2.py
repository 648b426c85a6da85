"""Loading a ``torch.export`` archive (``.pt2``) without running its author's code.

``torch.export.load`` is not a weights-only load. Read in torch 2.14's sources, an archive makes
the loader run code of its author's choosing through:

1. pickled objects: ``_load_constants`` (``torch/export/pt2_archive/_package.py``) reads a
   constant whose ``path_name`` starts with ``opaque_obj_`` with a plain ``pickle.loads``, and one
   starting with ``custom_obj_`` with the TorchScript unpickler (``torch._C._pickle_load_obj``);
2. ``use_pickle``: ``_load_state_dict`` and ``_load_constants`` read a payload config entry with
   ``"use_pickle": true`` with ``torch.load(..., weights_only=False)``;
3. native libraries: ``load_pt2`` hands members under ``data/aotinductor/`` (AOTInductor's
   compiled ``.so``/``.cpp``/``.wrapper``) to a loader that runs them as machine code;
4. legacy formats: ``data/weights/<m>.pt`` and ``data/constants/<m>.pt`` are pickles, and when
   ``load_pt2`` fails ``torch.export.load`` (``torch/export/__init__.py``) reopens the file as a
   2.7 archive (a top-level ``version`` member, read with Python's ``zipfile``);
5. sample inputs: ``deserialize_torch_artifact`` (``torch/_export/serde/serialize.py``) retries
   ``data/sample_inputs/<m>.pt`` with ``weights_only=False`` when the weights-only load fails;
6. symbolic shapes: ``_parse_sym_expr`` passes every ``expr_str`` of the program to
   ``sympy.sympify``, which evaluates the string as Python;
7. tree specs: ``treespec_loads`` (``torch/utils/_pytree.py``) imports the
   ``default_factory_module`` of a ``defaultdict`` node of ``in_spec``/``out_spec``;
8. operators: ``deserialize_operator`` resolves node targets by name in ``torch``, ``operator`` and
   ``math``, so a graph can call any torch function (``torch.ops.load_library``, ``torch.load``),
   an operator registered by a library the user happens to have imported, or
   ``aten.from_file``, which maps a file of the caller's disk into a tensor.

:func:`load_program` reads the file once and checks the bytes before torch sees them:

- the zip directory as torch's reader and Python's ``zipfile`` both see it: the same members, all
  under one root folder, no duplicates (so that the legacy fallback of 4. finds nothing);
- an allowlist of members: ``archive_format``, ``archive_version``, ``byteorder``,
  ``.data/version``, ``.data/serialization_id``, ``models/<m>.json``,
  ``data/weights/<m>_weights_config.json``, ``data/weights/weight_<n>``,
  ``data/constants/<m>_constants_config.json``, ``data/constants/tensor_<n>``,
  ``data/sample_inputs/<m>.pt`` and ``extra/...`` (read as text), and ``models/model.json``
  present; anything else is refused, native libraries (3.), pickled objects (1.) and legacy
  files (4.) by name;
- every payload config entry has ``"use_pickle": false`` and a raw ``weight_<n>``/``tensor_<n>``
  payload (1., 2.);
- every sample-inputs file loads with ``torch.load(..., weights_only=True)`` (5.);
- in every program: each ``expr_str`` is made only of integers, size symbols (``s0``, ``u3``,
  ``zf1``, quoted or not), ``name=True|False`` assumptions, the function names torch's
  deserialiser puts in sympy's locals and a few of sympy's own (power and shift functions left
  out: an MNIST classifier has none, and ``2**2**99`` never finishes), ``+ - * / % ( ) ,`` and
  spaces (6.); tree specs hold only tuples, lists, dicts and leaves (7.); each node target and
  operator argument is a tensor operator of ``aten``/``prims`` in :data:`TENSOR_OPS` (what MNIST
  CNNs and MLPs export to: layers, activations, arithmetic, shapes, size asserts) or an
  integer operation on sizes in :data:`SIZE_OPS` (8.).

Before any of that, the archive is bounded (``kennen.limits``): the file's size, then, from the
zip's central directory and before any member is unpacked, the number of members, the sum of their
declared sizes and each member's compression ratio, and each JSON member's declared size; a JSON
member's nesting depth is counted before it is parsed. Only the members the checks read (JSON and
sample inputs) are unpacked here, and torch's reader stops at the declared size, so a zip bomb costs
a look at its directory.

Only then it calls ``torch.export.load`` on the bytes it checked (no second read of the file),
with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` as a second line of defence (it covers ``torch.load``
only, not 1.) and torch's ``torch.export`` logger held back (it prints a traceback of every bad
file). Every refusal and failure is a :class:`KennenError` of one line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from kennen.errors import KennenError
from kennen.limits import ARCHIVE_MB, JSON_MB, check_archive, loads_bounded, megabytes, read_bounded

# What the members of an honest ``torch.export.save`` archive are (``torch/export/pt2_archive/constants.py``).
_MEMBER = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|extra/.+"
    r"|models/(?P<model>\w+)\.json|data/weights/\w+_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/\w+_constants_config\.json|data/constants/tensor_\d+|data/sample_inputs/\w+\.pt",
    re.ASCII,
)
_NATIVE = (".so", ".dll", ".dylib", ".pyd", ".o", ".cpp", ".wrapper", ".cubin", ".ptx")

TENSOR_OPS = frozenset(
    """
    conv1d conv2d conv3d convolution _convolution linear addmm mm bmm matmul t
    batch_norm native_batch_norm _native_batch_norm_legit_no_training layer_norm native_layer_norm group_norm
    dropout native_dropout feature_dropout alpha_dropout
    max_pool1d max_pool2d max_pool2d_with_indices avg_pool1d avg_pool2d adaptive_avg_pool2d _adaptive_avg_pool2d
    adaptive_max_pool2d relu relu_ relu6 hardtanh tanh sigmoid elu selu celu gelu silu mish leaky_relu prelu
    _prelu_kernel softplus hardswish hardsigmoid log_sigmoid threshold clamp clamp_min clamp_max
    log_softmax softmax _log_softmax _softmax exp log add sub rsub mul div neg sqrt rsqrt abs square
    maximum minimum where eq ne lt le gt ge logical_not sum mean amax amin max min argmax logsumexp
    view reshape flatten unflatten unsqueeze squeeze permute transpose expand contiguous clone alias detach
    slice select cat stack split split_with_sizes chunk constant_pad_nd pad _to_copy to lift_fresh_copy
    zeros ones full zeros_like ones_like full_like arange scalar_tensor
    sym_size sym_numel sym_stride sym_storage_offset _assert_async _assert_scalar _assert_tensor_metadata
    sym_constrain_range sym_constrain_range_for_size
    """.split()
)
SIZE_OPS = frozenset(
    f"_operator.{op}" for op in "add sub mul floordiv mod truediv neg pos eq ne lt le gt ge and_ or_".split()
) | {"math.trunc", "torch.sym_not", "torch.sym_int", "torch.sym_float", "torch.sym_ite", "torch.sym_max",
     "torch.sym_min", "torch.sym_sqrt"}  # fmt: skip
_TENSOR_OP = re.compile(r"torch\.ops\.(?:aten|prims)\.(?P<name>(?!__)\w+)\.[A-Za-z]\w*", re.ASCII)

# ``expr_str`` grammar (``sympy.printing.repr.srepr`` of torch's size expressions, or plain text).
_EXPR_NAMES = frozenset(
    # torch's locals in ExportedProgramDeserializer.deserialize, less PowByNatural, FloatPow, LShift, RShift
    "FloorDiv ModularIndexing Where PythonMod Mod CleanDiv CeilToInt FloorToInt CeilDiv FloatTrueDiv IntTrueDiv "
    "IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity "
    # sympy's own
    "Symbol Integer Rational Add Mul Max Min Eq Ne Ge Gt Le Lt Equality Unequality GreaterThan StrictGreaterThan "
    "LessThan StrictLessThan And Or Not true false oo".split()
)
_EXPR_TOKEN = re.compile(
    r"\s+|\d{1,20}(?!\w)|'(?:s|u|zf|zuf)\d+'|(?:s|u|zf|zuf)\d+(?!\w)|[a-z]+=(?:True|False)(?!\w)"
    r"|(?P<name>[A-Za-z]+)(?!\w)|[-+*/%(),]",
    re.ASCII,
)
_TREESPEC_TYPES = (None, "builtins.tuple", "builtins.list", "builtins.dict")


class Refused(KennenError):
    """An archive that could run code (or that the checks cannot read through)."""


def load_program(path: Path) -> torch.export.ExportedProgram:
    """The program of the ``.pt2`` file at ``path``, once its bytes passed the checks of the module docstring."""
    data = read_bounded(path, ARCHIVE_MB)
    try:
        check(data)
    except Refused as e:
        raise KennenError(f"{path}: refused: {e}") from None
    except KennenError as e:
        raise KennenError(f"{path}: {e}") from None
    except RecursionError:
        raise KennenError(f"{path}: refused: nested too deeply to inspect") from None
    with _weights_only_loads(), _captured_torch_export_log() as logged:
        try:
            return torch.export.load(io.BytesIO(data))
        except Exception as e:  # noqa: BLE001 - whatever torch raises on the file, in one line
            cause = next((r.exc_info[1] for r in logged if r.exc_info and r.exc_info[1]), e)
            while cause.__cause__ or cause.__context__:  # the first failure, not torch's summary of it
                cause = cause.__cause__ or cause.__context__
            raise KennenError(f"{path}: cannot load the program ({_one_line(cause)})") from None


def check(data: bytes) -> None:
    """Raise :class:`Refused` naming the first member or entry of the archive ``data`` that could run code."""
    names, records = _members(data)
    for name in names:
        _check_member(name)
    if "models/model.json" not in names:
        raise Refused("no models/model.json: not an archive of torch.export.save")
    for name in names:
        if name.endswith(("_weights_config.json", "_constants_config.json")):
            _check_payload_config(name, _json(name, records.get_record(name)))
        elif name.startswith("data/sample_inputs/"):
            _check_sample_inputs(name, records.get_record(name))
        elif name.startswith("models/"):
            _walk(_json(name, records.get_record(name)), name)


def _members(data: bytes) -> tuple[list[str], Any]:
    """The archive's member names (root folder stripped) and torch's own reader of their bytes.

    The zip's central directory is bounded (``kennen.limits.check_archive``) before torch opens it.
    """
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except Exception as e:  # noqa: BLE001 - garbage, truncated, not a zip
        raise KennenError(f"not a torch.export archive (zip): {_one_line(e)}") from None
    check_archive(infos)
    for info in infos:
        if info.filename.endswith(".json") and info.file_size > JSON_MB.bytes():
            raise JSON_MB.refuse(f"member {info.filename}", f"unpacks to {megabytes(info.file_size)} of JSON")
    names = [info.filename for info in infos]
    root = names[0].split("/")[0] + "/" if names else ""
    for name in names:
        if not name.startswith(root) or name == root:
            raise Refused(f"member {name}: outside the archive's folder {root} (a legacy archive, read with pickle)")
    if len(set(names)) != len(names):
        raise Refused("duplicate members: torch and Python might read different ones")
    try:
        records = torch._C.PyTorchFileReader(io.BytesIO(data))
        listed = records.get_all_records()
    except Exception as e:  # noqa: BLE001 - a zip torch cannot read
        raise KennenError(f"not a torch.export archive (zip): {_one_line(e)}") from None
    if sorted(n[len(root) :] for n in names) != sorted(listed):
        raise Refused("the zip directory reads differently in torch and in Python (hidden members)")
    return sorted(listed), records


def _check_member(name: str) -> None:
    if name.startswith("data/aotinductor/") or name.endswith(_NATIVE):
        raise Refused(f"member {name}: native code (AOTInductor or a shared library), which loading would run")
    if name.startswith("data/constants/") and name.rsplit("/", 1)[1].startswith(("opaque_obj_", "custom_obj_")):
        raise Refused(f"member {name}: a pickled object, which loading would unpickle (and so run code)")
    if not _MEMBER.fullmatch(name):
        legacy = name.startswith(("data/weights/", "data/constants/")) and name.endswith(".pt")
        what = "a legacy pickled payload" if legacy else "not a member of a torch.export.save archive"
        raise Refused(f"member {name}: {what}")


def _check_payload_config(name: str, config: Any) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise Refused(f"{name}: not a payload config")
    kind = "weight" if name.startswith("data/weights/") else "tensor"
    for key, entry in entries.items():
        path_name = str(entry.get("path_name"))
        if path_name.startswith(("opaque_obj_", "custom_obj_")):
            raise Refused(f"{name}: {key} is a pickled object ({path_name}), which loading would unpickle")
        if entry.get("use_pickle") is not False:
            raise Refused(f"{name}: {key} has use_pickle set: torch would read it with a full unpickler")
        if not re.fullmatch(rf"{kind}_[0-9]+", path_name):
            raise Refused(f"{name}: {key} has path_name {path_name!r}, not a {kind}_<n> payload")


def _check_sample_inputs(name: str, content: bytes) -> None:
    if not content:
        return
    try:
        inputs = torch.load(io.BytesIO(content), weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch would retry with weights_only=False
        raise Refused(f"{name}: not loadable weights-only ({_one_line(e)}); torch would retry unpickling it") from None
    if not isinstance(inputs, (tuple, dict)):
        raise Refused(f"{name}: holds a {type(inputs).__name__}, not sample inputs")


def _walk(node: Any, member: str) -> None:
    """Check every operator, size expression and tree spec of a program's JSON."""
    if isinstance(node, list):
        for item in node:
            _walk(item, member)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("target", "as_operator"):
                _check_operator(value, member)
            elif key == "expr_str":
                _check_expr(value, member)
            elif key in ("in_spec", "out_spec"):
                _check_treespec(value, member)
            else:
                _walk(value, member)


def _check_operator(target: Any, member: str) -> None:
    if not isinstance(target, str):
        raise Refused(f"{member}: an operator that is not a name ({type(target).__name__})")
    if target in SIZE_OPS:
        return
    op = _TENSOR_OP.fullmatch(target)
    if op is None:
        raise Refused(f"{member}: custom operator {target} needs its author's library (or is no operator)")
    if op["name"] not in TENSOR_OPS:
        raise Refused(f"{member}: operator {target} is not among the tensor operators of a classifier (TENSOR_OPS)")


def _check_expr(expr: Any, member: str) -> None:
    if not isinstance(expr, str):
        raise Refused(f"{member}: a size expression that is not a string")
    pos = 0
    while pos < len(expr):
        token = _EXPR_TOKEN.match(expr, pos)
        if token is None or (token["name"] and token["name"] not in _EXPR_NAMES) or expr.startswith("**", pos):
            raise Refused(f"{member}: size expression {expr[:80]!r} is outside the grammar at {expr[pos : pos + 20]!r}")
        pos = token.end()


def _check_treespec(spec: Any, member: str) -> None:
    if not isinstance(spec, str):
        raise Refused(f"{member}: a tree spec that is not JSON [protocol, node]")
    try:
        _, root = loads_bounded(spec, f"{member}: tree spec")
    except (TypeError, ValueError):
        raise Refused(f"{member}: a tree spec that is not JSON [protocol, node]") from None
    nodes = [root]
    while nodes:
        node = nodes.pop()
        if not isinstance(node, dict) or node.get("type") not in _TREESPEC_TYPES:
            what = node.get("type") if isinstance(node, dict) else type(node).__name__
            raise Refused(
                f"{member}: tree spec node {what!r}: only tuples, lists and dicts (a defaultdict imports a module)"
            )
        children = node.get("children_spec", [])
        nodes.extend(children if isinstance(children, list) else [None])


def _json(name: str, content: bytes) -> Any:
    try:
        return loads_bounded(content, f"member {name}")
    except ValueError as e:
        raise Refused(f"{name}: not JSON ({e})") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """``torch.load`` weights-only whatever the call site asks (and whatever the environment said)."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _captured_torch_export_log() -> Iterator[list[logging.LogRecord]]:
    """Hold back what the ``torch.export`` logger says (a traceback per bad file) and hand it to the caller."""
    logger, handler = logging.getLogger("torch.export"), _Records()
    saved = logger.handlers[:], logger.propagate
    logger.handlers[:] = [handler]  # torch gives this logger a stderr handler of its own
    logger.propagate = False
    try:
        yield handler.records
    finally:
        logger.handlers[:], logger.propagate = saved
