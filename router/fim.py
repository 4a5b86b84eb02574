"""Fill-in-the-middle conventions, recognised in one place.

Editors and code models spell "here is the code before the cursor, here is the code
after it" in several ways; the router (is this infill?), the diffusion backend (what are
the prefix and suffix?) and ``/v1/completions`` (``prompt`` + ``suffix``) all read them here.

- StarCoder / Qwen / CodeGemma / SantaCoder: ``<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>``
  (also ``<fim_prefix>``, ``<fim-prefix>``; suffix-first order too)
- Code Llama: ``<PRE> P <SUF>S <MID>``
- DeepSeek Coder: ``<｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>``
- plain text: a ``PREFIX:`` line, the prefix, a ``SUFFIX:`` line, the suffix
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: any sentinel of the conventions above (enough to call a request infill)
MARKERS = re.compile(
    r"<\|?fim[_▁\-](?:prefix|suffix|middle|begin|hole|end)\|?>"
    r"|<｜fim▁(?:begin|hole|end)｜>|<(?:PRE|SUF|MID)>"
    r"|(?m:^[ \t]*(?:PREFIX|SUFFIX)[ \t]*:[ \t]*$)",
    re.IGNORECASE,
)

_SENTINEL = r"<\|?fim[_\-]{}\|?>"
_PSM = re.compile(_SENTINEL.format("prefix") + r"(?P<prefix>.*?)" + _SENTINEL.format("suffix")
                  + r"(?P<suffix>.*?)(?:" + _SENTINEL.format("middle") + r"|\Z)", re.S | re.I)
_SPM = re.compile(_SENTINEL.format("suffix") + r"(?P<suffix>.*?)" + _SENTINEL.format("prefix")
                  + r"(?P<prefix>.*?)(?:" + _SENTINEL.format("middle") + r"|\Z)", re.S | re.I)
_CODE_LLAMA = re.compile(r"<PRE>\s?(?P<prefix>.*?)\s?<SUF>(?P<suffix>.*?)(?:\s?<MID>|\Z)", re.S)
_DEEPSEEK = re.compile(r"<｜fim▁begin｜>(?P<prefix>.*?)<｜fim▁hole｜>(?P<suffix>.*?)(?:<｜fim▁end｜>|\Z)", re.S)
#: exactly one newline around each label: the code's own blank lines stay the code's
_PLAIN = re.compile(r"^PREFIX:\n(?P<prefix>.*?)\nSUFFIX:\n(?P<suffix>.*)\Z", re.S | re.M)
#: (name, where a hole in this spelling can start, the whole spelling matched from there)
_CONVENTIONS = ((("fim-psm", re.compile(_SENTINEL.format("prefix"), re.I), _PSM),
                 ("fim-spm", re.compile(_SENTINEL.format("suffix"), re.I), _SPM),
                 ("code-llama", re.compile("<PRE>"), _CODE_LLAMA),
                 ("deepseek", re.compile("<｜fim▁begin｜>"), _DEEPSEEK),
                 ("plain", re.compile(r"^PREFIX:\n", re.M), _PLAIN)))


@dataclass(frozen=True)
class Infill:
    """Code before and after the hole; ``convention`` names the spelling that was used."""

    prefix: str
    suffix: str
    convention: str

    def prompt(self) -> str:
        """The canonical spelling (what ``/v1/completions`` with ``suffix`` becomes)."""
        return f"<|fim_prefix|>{self.prefix}<|fim_suffix|>{self.suffix}<|fim_middle|>"


def has_markers(text: str) -> bool:
    return bool(MARKERS.search(text))


def split_infill(text: str) -> Infill | None:
    """The prefix and suffix of a fill-in-the-middle prompt, or None if ``text`` is none.
    Text before the first sentinel (an editor's file-name header, say) is not code."""
    if not has_markers(text):
        return None
    for name, opening, pattern in _CONVENTIONS:
        # matched once, from the first opening sentinel: a search from every position would
        # take time quadratic in the text (a prompt of many sentinels could stall the server)
        start = opening.search(text)
        match = pattern.match(text, start.start()) if start else None
        if match:
            return Infill(match.group("prefix"), match.group("suffix"), name)
    return None
