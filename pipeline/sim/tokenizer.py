"""A BPE-shaped tokenizer: cl100k's pre-tokenizer regex, then long pieces cut into chunks.

No vocabulary ships here, so this is not any real model's tokenizer; it only has to cut
text the way one does, so that the pipeline's logprob reader meets the tokens it meets on
a real provider: `{"`, `findings`, `":`, ` [{"`, `rule`, `_id`, ` true`, a leading space
glued to the word after it, digits in runs of three, long words in several pieces.
Concatenating the tokens always gives the text back exactly.
"""

from __future__ import annotations

import re
from functools import lru_cache

# cl100k_base's pattern with the Unicode classes spelled for `re`, which lacks \p{..}:
#   \p{L} ~ [^\W\d_]    \p{N} ~ \d
#   [^\r\n\p{L}\p{N}] ~ (?:[^\r\n\w]|_)    [^\s\p{L}\p{N}] ~ (?:[^\s\w]|_)
# Every character falls in some alternative, so the matches tile the whole string.
_PRETOKENIZE = re.compile(
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)"""
    r"""|(?:[^\r\n\w]|_)?[^\W\d_]+"""
    r"""|\d{1,3}"""
    r"""| ?(?:[^\s\w]|_)+[\r\n]*"""
    r"""|\s*[\r\n]+"""
    r"""|\s+(?!\S)"""
    r"""|\s+"""
)

#: Pieces up to this many characters stay whole ("findings", " verdict", " violation").
MAX_WHOLE = 10
#: Longer pieces are cut into chunks of this many characters, as a vocabulary would.
CHUNK = 6


def _chunks(piece: str) -> list[str]:
    if len(piece) <= MAX_WHOLE:
        return [piece]
    return [piece[i : i + CHUNK] for i in range(0, len(piece), CHUNK)]


@lru_cache(maxsize=4096)
def _tokenize_cached(text: str) -> tuple[str, ...]:
    # The system message is re-tokenised on every request to count prompt tokens; caching
    # keeps that off the hot path.
    return tuple(chunk for m in _PRETOKENIZE.finditer(text) for chunk in _chunks(m.group()))


def tokenize(text: str) -> list[str]:
    """The tokens of `text`; `"".join(tokenize(text)) == text` always."""
    return list(_tokenize_cached(text))


def count_tokens(text: str) -> int:
    return len(_tokenize_cached(text))


def token_bytes(token: str) -> list[int]:
    """The UTF-8 bytes of a token, as the `bytes` field of the wire format carries them."""
    return list(token.encode("utf-8", "surrogatepass"))
