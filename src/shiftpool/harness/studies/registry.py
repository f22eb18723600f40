"""The study presets by name."""

from __future__ import annotations

from shiftpool.core.errors import InputError
from shiftpool.harness.studies import mouton, s3pool, tips, zhang
from shiftpool.harness.studies.plan import Preset

PRESETS: dict[str, Preset] = {p.name: p for p in (mouton.PRESET, s3pool.PRESET, tips.PRESET,
                                                  zhang.PRESET)}


def list_studies() -> list[str]:
    """Names of the study presets.

    Example:
        >>> list_studies()
        ['mouton', 's3pool', 'tips', 'zhang']
    """
    return sorted(PRESETS)


def get_study(name: str) -> Preset:
    """The preset called ``name``; a one-line :class:`InputError` lists them otherwise.

    Example:
        >>> get_study("zhang").paper.split(".")[0]
        'Zhang, R'
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise InputError(f"shiftpool.study: unknown study {name!r}; available: "
                         f"{', '.join(list_studies())}")
    return PRESETS[name]
