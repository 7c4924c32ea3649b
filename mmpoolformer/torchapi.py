"""What differs between the torch releases the package supports (2.0 to the
newest): each function here is the newer torch's API, falling back to what
an older torch has, decided once at import. Features an older torch lacks
altogether raise :class:`TorchTooOld` through :func:`require`, naming the
release they need.
"""
import torch

#: the installed torch's version (a TorchVersion compares as a version)
VERSION = torch.__version__


class TorchTooOld(RuntimeError):
    """A feature the installed torch does not have."""


def require(version: str, feature: str) -> None:
    """Raise :class:`TorchTooOld` unless torch is at least ``version``."""
    if VERSION < version:
        raise TorchTooOld(f'{feature} needs torch >= {version}; this is '
                          f'torch {VERSION}')


def _takes_device() -> bool:
    try:
        torch.is_autocast_enabled('cpu')  # 2.4 on
    except TypeError:
        return False
    return True


if _takes_device():
    autocast_enabled = torch.is_autocast_enabled
    autocast_dtype = torch.get_autocast_dtype
else:
    def autocast_enabled(device_type: str) -> bool:
        """Whether autocast is on for ``device_type`` ('cpu', 'cuda')."""
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return device_type == 'cuda' and torch.is_autocast_enabled()

    def autocast_dtype(device_type: str) -> torch.dtype:
        """The autocast dtype of ``device_type`` ('cpu', 'cuda')."""
        if device_type == 'cpu':
            return torch.get_autocast_cpu_dtype()
        return torch.get_autocast_gpu_dtype()


if hasattr(torch, 'compiler') and hasattr(torch.compiler, 'is_compiling'):
    is_compiling = torch.compiler.is_compiling
else:
    def is_compiling() -> bool:
        """Whether dynamo is tracing the caller (torch < 2.3)."""
        import torch._dynamo  # imported by torch.compile already
        return torch._dynamo.is_compiling()


# torch.fx's own test (torch.export counts as compiling)
_fx_tracing = getattr(torch.fx._symbolic_trace, 'is_fx_symbolic_tracing',
                      torch.fx._symbolic_trace.is_fx_tracing)


def is_tracing() -> bool:
    """Whether the caller is being traced rather than run: TorchScript
    (``torch.jit.trace``/``script``, the TorchScript ONNX exporter, and
    mmengine's FLOP counter, which traces with ``torch.jit``), dynamo
    (``torch.compile``, ``torch.export`` and the dynamo ONNX exporter) or
    ``torch.fx``."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export()
            or is_compiling() or _fx_tracing())


def compile_module(module: torch.nn.Module, **options) -> None:
    """``module.compile(**options)`` (torch >= 2.2), or, before, its
    ``forward`` replaced by the compiled one. torch 2.0 compiles nothing
    under Python 3.11 and says so (``RuntimeError``)."""
    if hasattr(module, 'compile'):
        module.compile(**options)
    else:
        module.forward = torch.compile(module.forward, **options)


def compiles() -> bool:
    """Whether ``torch.compile`` works here (not torch 2.0 on Python
    3.11)."""
    try:
        torch.compile(lambda x: x)
    except RuntimeError:
        return False
    return True


def cuda_bf16_native() -> bool:
    """Whether the current GPU computes bf16 natively (Ampere on: A100, A10,
    RTX 30xx/40xx, H100). From torch 2.3 ``is_bf16_supported`` also says
    yes for GPUs that only emulate it (V100, T4), unless told not to;
    before, it said yes for native support only."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        return torch.cuda.is_bf16_supported()


def onnx_export(model, x, path, dynamo: bool = False, **kwargs) -> None:
    """``torch.onnx.export(model, (x,), path, **kwargs)`` with the
    TorchScript exporter, or with ``dynamo`` torch.export's (torch >= 2.5,
    which added the ``dynamo`` argument; 2.9 made it the default, hence
    ``dynamo=False`` is passed explicitly where torch takes it)."""
    if dynamo:
        require('2.5', "torch.onnx.export's dynamo exporter (--dynamo)")
    if VERSION >= '2.5':
        kwargs['dynamo'] = dynamo
    torch.onnx.export(model, (x, ), path, **kwargs)
