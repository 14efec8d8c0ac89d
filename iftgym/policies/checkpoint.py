"""Save and load policies as safetensors files (no pickle).

A checkpoint holds the policy's tensors (its ``state_dict``: parameters and buffers) and, in the safetensors
header, string metadata: the policy's class name, its constructor arguments (:meth:`Policy.spec`, as JSON) and
any metadata of the caller (as JSON). Loading rebuilds the policy from the class registry
:data:`iftgym.policies.POLICIES` (so a user's policy registered with :func:`iftgym.register_policy` round-trips
too) and fills in the tensors, checking that every name and shape matches.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from iftgym.io import atomic_path
from iftgym.policies.base import Policy, resolve_device
from iftgym.policies.registry import POLICIES

FORMAT = "iftgym.policy/1"


def save_policy(policy: Policy, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``policy`` to ``path`` atomically (see :mod:`iftgym.io`).

    ``metadata`` is any JSON-serialisable dict (the training config, the map...), read back by
    :func:`load_metadata`. Returns the path written.
    """
    path = Path(path)
    names = [name for name in POLICIES.names() if POLICIES.get(name) is type(policy)]
    if not names:
        raise ValueError(
            f"cannot save a {type(policy).__name__} to {str(path)!r}: it is not a registered policy "
            f"(registered: {', '.join(POLICIES.names())}; see iftgym.register_policy), so it could not be "
            "loaded back"
        )
    name = names[0]
    try:
        header = {
            "format": FORMAT,
            "class": name,
            "spec": json.dumps(policy.spec()),
            "metadata": json.dumps(metadata or {}),
        }
    except TypeError as err:
        raise ValueError(f"cannot save to {str(path)!r}: spec or metadata is not JSON-serialisable ({err})") from None
    tensors = {key: value.detach().cpu().contiguous() for key, value in policy.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)
    return path


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The header and tensors of a checkpoint file, with any failure as a ``ValueError`` naming the file."""
    if not path.is_file():
        raise ValueError(f"cannot load policy checkpoint {str(path)!r}: no such file")
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            header = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"policy checkpoint {str(path)!r} is corrupt or not a safetensors file: {err}") from None
    if header.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not an iftgym policy checkpoint: format {header.get('format')!r}, expected {FORMAT!r}"
        )
    return header, tensors


def _json_field(header: dict[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(header[key])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"policy checkpoint {str(path)!r} has a missing or invalid {key!r} entry ({err})") from None


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata dict saved with a checkpoint."""
    path = Path(path)
    return _json_field(_read(path)[0], "metadata", path)


def load_policy(path: str | os.PathLike, device: torch.device | str = "cpu") -> Policy:
    """Rebuild the policy saved at ``path`` (same class, constructor arguments and tensors) on ``device``.

    Everything is checked before the policy is used: the device, the class, the constructor arguments (a policy's
    constructor refuses sizes that would not fit in memory before allocating), every tensor's name and shape, and
    that no weight is NaN or infinite."""
    device = resolve_device(device)
    path = Path(path)
    header, tensors = _read(path)
    broken = sorted(key for key, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all())
    if broken:
        raise ValueError(f"policy checkpoint {str(path)!r} holds NaN or infinite values in {', '.join(broken)}: "
                         "it is damaged, or was saved from a run that diverged")  # fmt: skip
    name = header.get("class")
    if name not in POLICIES:
        raise ValueError(
            f"policy checkpoint {str(path)!r} holds an unknown policy class {name!r}: "
            f"expected one of {', '.join(POLICIES.names())}"
        )
    spec = _json_field(header, "spec", path)
    if not isinstance(spec, dict):
        raise ValueError(f"policy checkpoint {str(path)!r} has an invalid 'spec' entry: expected a JSON object")
    try:
        policy = POLICIES.get(name)(**spec)
    except (TypeError, ValueError) as err:
        raise ValueError(f"policy checkpoint {str(path)!r}: cannot rebuild {name} from {spec}: {err}") from None
    expected = {key: tuple(value.shape) for key, value in policy.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    if found != expected:
        problems = [f"missing {key}" for key in sorted(expected.keys() - found.keys())]
        problems += [f"unexpected {key}" for key in sorted(found.keys() - expected.keys())]
        problems += [
            f"{key} has shape {found[key]}, expected {expected[key]}"
            for key in sorted(expected.keys() & found.keys())
            if found[key] != expected[key]
        ]
        raise ValueError(f"policy checkpoint {str(path)!r} does not match {name}({spec}): {'; '.join(problems)}")
    policy.load_state_dict(tensors)
    return policy.to(device)
