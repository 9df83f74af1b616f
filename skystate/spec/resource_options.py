"""How SkyPilot 0.14 turns one ``resources`` block into several options.

- ``gpus:`` is another name for ``accelerators:`` (in options too); both at once is an error.
- Several accelerators: a mapping or set (``{A100: 1, V100: 1}``, ``{'A100:1', 'V100:1'}``;
  a flow key may carry the count, ``{L4:1}``) means any of them; a list means this order
  of preference. Each becomes one option.
- With ``any_of:``, every option of a several-accelerator mapping/set is crossed with every
  ``any_of`` entry that does not name its own accelerators (SkyPilot's cross product); a
  list with ``any_of``, or several accelerators with ``ordered``, is refused.
- An ``any_of``/``ordered`` entry is merged over the base block, so it names at most one
  accelerator, has no options of its own, and does not mix ``infra`` with
  ``cloud``/``region``/``zone`` across the two.

``expand`` rewrites a raw block into single-accelerator ``any_of``/``ordered`` entries and
returns one located error per problem (all of them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOCATION_FIELDS", "expand"]

LOCATION_FIELDS = ("cloud", "region", "zone")
_OPTIONS = ("any_of", "ordered")
Errors = list[tuple[tuple[Any, ...], str]]


def _alias(block: dict[str, Any], where: tuple[Any, ...], errors: Errors) -> dict[str, Any]:
    if "gpus" not in block:
        return block
    if "accelerators" in block:
        errors.append(((*where, "gpus"), "set either gpus or accelerators (the same field "
                                         "under two names), not both"))
        return block
    return {("accelerators" if k == "gpus" else k): v for k, v in block.items()}


def _choices(accels: Any, errors: Errors) -> tuple[list[Any], str] | None:
    """(accelerator specs, "one" | "set" | "list"), or None when there is nothing to split."""
    if isinstance(accels, dict) and len(accels) > 1:
        specs: list[Any] = []
        for name, count in accels.items():
            if count is None:
                specs.append(str(name))
            elif isinstance(count, bool) or not isinstance(count, (int, float)):
                errors.append((("accelerators", name),
                               f"count of {name} must be a number, got {count!r}"))
            else:
                specs.append(f"{name}:{count:g}" if isinstance(count, float) else f"{name}:{count}")
        return list(dict.fromkeys(specs)), "set"
    if isinstance(accels, list) and accels:
        bad = [i for i, item in enumerate(accels) if not isinstance(item, str)]
        for i in bad:
            errors.append((("accelerators", i),
                           f"must be a string like 'A100:8', got {accels[i]!r}"))
        return list(dict.fromkeys(a for a in accels if isinstance(a, str))), "list"
    return None


def _check_entry(entry: dict[str, Any], where: tuple[Any, ...], base: dict[str, Any],
                 errors: Errors) -> None:
    for nested in _OPTIONS:
        if nested in entry:
            errors.append(((*where, nested), f"an option of {where[0]} cannot have options "
                                             f"of its own ({nested})"))
    accels = entry.get("accelerators")
    several = isinstance(accels, list) or (isinstance(accels, dict) and len(accels) > 1)
    if several or (isinstance(accels, dict) and None in accels.values()):
        errors.append(((*where, "accelerators"),
                       "an option names one accelerator, like 'A100:8' or {A100: 8}; list "
                       f"several as separate {where[0]} entries"))
    if entry.get("infra") is not None and any(base.get(k) is not None for k in LOCATION_FIELDS):
        errors.append(((*where, "infra"), "cannot set infra in an option when the block sets "
                                          "cloud/region/zone (each option is merged over the "
                                          "block); use one form in both"))
    elif base.get("infra") is not None:
        for key in LOCATION_FIELDS:
            if entry.get(key) is not None:
                errors.append(((*where, key), f"cannot set {key} in an option when the block "
                                              "sets infra (each option is merged over the "
                                              "block); use infra here"))


def expand(block: dict[str, Any]) -> tuple[dict[str, Any], Errors]:
    """The block with gpus renamed and several accelerators turned into options, and the
    located problems found (the block is then returned as it came)."""
    errors: Errors = []
    original = block
    block = _alias(block, (), errors)
    for key in _OPTIONS:
        entries = block.get(key)
        if isinstance(entries, list):
            fixed = []
            for i, entry in enumerate(entries):
                if isinstance(entry, dict):
                    entry = _alias(entry, (key, i), errors)
                    _check_entry(entry, (key, i), block, errors)
                fixed.append(entry)
            block = {**block, key: fixed}
    found = _choices(block.get("accelerators"), errors)
    any_of, ordered = block.get("any_of") or None, block.get("ordered") or None
    if found is not None and len(found[0]) > 1:
        if ordered:
            errors.append((("accelerators",), "several accelerators cannot be combined with "
                                              "ordered; list each as an ordered entry"))
        elif any_of and found[1] == "list":
            errors.append((("accelerators",), "a list of accelerators (an order of preference) "
                                              "cannot be combined with any_of; use a set "
                                              "like {A100: 1, V100: 1} or any_of entries"))
    if errors:
        return original, errors
    if found is None:
        return block, errors
    specs, kind = found
    rest = {k: v for k, v in block.items() if k != "accelerators"}
    if any_of or ordered:
        key, entries = ("any_of", any_of) if any_of else ("ordered", ordered)
        if len(specs) == 1:
            return {**rest, "accelerators": specs[0]}, errors
        crossed = []
        for entry in entries:
            own = not isinstance(entry, dict) or "accelerators" in entry
            crossed += [entry] if own else [{**entry, "accelerators": s} for s in specs]
        return {**rest, key: crossed}, errors
    if kind == "set" and len(specs) == 1:
        return {**rest, "accelerators": specs[0]}, errors
    return {**rest, ("any_of" if kind == "set" else "ordered"):
            [{"accelerators": spec} for spec in specs]}, errors
