"""Tokenizer reproducing transformers-4.31 slow ``LlamaTokenizer(legacy=True)`` + LLaVA's image splitting.

Hand-written on top of ``sentencepiece`` because no maintained library reproduces that exact
behaviour any more (transformers >= 4.34 changed added-token whitespace handling and the
``legacy`` prefix rules, so its ``LlamaTokenizer`` gives different ids for the same text):

1. the text is split at the added tokens (``[SEG]``, ``<im_start>``, ... from ``added_tokens.json``)
   and at the special tokens ``<s>``, ``</s>``, ``<unk>``;
2. whitespace next to an *added* token is stripped on both neighbours (4.31 strips both sides
   of added tokens that carry no ``AddedToken`` flags); special tokens strip nothing;
3. every remaining non-empty chunk is encoded with sentencepiece on its own, so each chunk gets
   the dummy prefix ``"▁"`` again (``[SEG].`` -> ``[SEG] ▁ .``);
4. ``tokenizer_image_token``: the prompt is split at ``<image>``; every piece is tokenized with a
   BOS, only the first piece keeps it, and the integer ``-200`` is inserted between pieces.
"""
from __future__ import annotations

import json
from pathlib import Path

IMAGE_TOKEN_INDEX = -200
IMAGE_PLACEHOLDER = "<image>"


class TokenizerError(ValueError):
    """Tokenizer files missing or inconsistent; the message names the file and the fix."""


class LegacyLlamaTokenizer:
    """Slow-LLaMA-4.31-compatible tokenizer. Ids: sentencepiece pieces + ``added_tokens.json``.

    Args:
        model_dir: folder with ``tokenizer.model`` and (optionally) ``added_tokens.json``.
    """

    SPECIAL = ("<s>", "</s>", "<unk>")

    def __init__(self, model_dir: str | Path):
        import sentencepiece as spm

        model_dir = Path(model_dir)
        self.model_dir = model_dir
        sp_path = model_dir / "tokenizer.model"
        if not sp_path.is_file():
            raise TokenizerError(f"{sp_path}: missing; an official InteractVLM folder ships the LLaMA sentencepiece "
                                 f"model 'tokenizer.model' next to config.json — copy it from the release")
        self.sp = spm.SentencePieceProcessor()
        if not self.sp.Load(str(sp_path)):  # pragma: no cover - Load raises on bad files
            raise TokenizerError(f"{sp_path}: not a sentencepiece model")
        self.added: dict[str, int] = {}
        at_path = model_dir / "added_tokens.json"
        if at_path.is_file():
            try:
                self.added = {str(k): int(v) for k, v in json.loads(at_path.read_text()).items()}
            except (ValueError, AttributeError) as exc:
                raise TokenizerError(f"{at_path}: not a JSON object of token -> id ({exc})") from exc
        n = self.sp.GetPieceSize()
        for tok, idx in self.added.items():
            if idx < n:
                raise TokenizerError(f"{at_path}: added token {tok!r} has id {idx} < sentencepiece size {n}")
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.sp.eos_id()
        self.unk_id = self.sp.unk_id()
        self.special = {"<s>": self.bos_id, "</s>": self.eos_id, "<unk>": self.unk_id}
        self.id_to_added = {v: k for k, v in self.added.items()}
        self.vocab_size = max([n - 1, *self.added.values()]) + 1
        # longest first so that e.g. "<im_start>" wins over a shorter overlapping token
        self._split_tokens = sorted(set(self.added) | set(self.SPECIAL), key=len, reverse=True)

    def require(self, tokens: dict[str, int | None]) -> None:
        """Check that every ``token`` is an added token (with id ``tokens[token]`` unless None). Without them the
        prompt is tokenized wrongly *silently* (``<im_start>`` as text pieces), so a missing/foreign
        ``added_tokens.json`` is an error naming the file."""
        at_path = self.model_dir / "added_tokens.json"
        for tok, idx in tokens.items():
            if tok not in self.added:
                raise TokenizerError(f"{at_path}: added token {tok!r} missing (have {self.added}); the official folder's "
                                     f"added_tokens.json lists [SEG], <im_start>, <im_end> — copy it from the release")
            if idx is not None and self.added[tok] != idx:
                raise TokenizerError(f"{at_path}: {tok}={self.added[tok]} but config.json says {idx}; tokenizer files "
                                     f"and checkpoint do not belong together — re-download the folder")

    # -- text -> ids -------------------------------------------------------------------------
    def _split(self, text: str) -> list[str]:
        """Split ``text`` at added/special tokens, keeping the tokens as separate items."""
        out: list[str] = []
        i = start = 0
        while i < len(text):
            for tok in self._split_tokens:
                if text.startswith(tok, i):
                    out.append(text[start:i])
                    out.append(tok)
                    i += len(tok)
                    start = i
                    break
            else:
                i += 1
        out.append(text[start:])
        # out alternates chunk, token, chunk, token, ..., chunk
        for k in range(1, len(out), 2):
            if out[k] in self.added:  # 4.31: strip whitespace on both sides of plain added tokens
                out[k - 1] = out[k - 1].rstrip()
                out[k + 1] = out[k + 1].lstrip()
        return out

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        """``tokenizer(text).input_ids`` of the 4.31 slow tokenizer (legacy=True)."""
        ids: list[int] = [self.bos_id] if add_bos else []
        for k, part in enumerate(self._split(text)):
            if k % 2 == 1:
                ids.append(self.added[part] if part in self.added else self.special[part])
            elif part:
                ids.extend(self.sp.encode(part))
        return ids

    def tokenize_with_image(self, prompt: str) -> list[int]:
        """LLaVA ``tokenizer_image_token``: ``<image>`` -> ``-200``, BOS only on the first chunk."""
        chunks = [self.encode(c, add_bos=True) for c in prompt.split(IMAGE_PLACEHOLDER)]
        ids: list[int] = []
        offset = 0
        if chunks and chunks[0] and chunks[0][0] == self.bos_id:
            offset = 1
            ids.append(chunks[0][0])
        for k, chunk in enumerate(chunks):
            if k > 0:
                ids.append(IMAGE_TOKEN_INDEX)
            ids.extend(chunk[offset:])
        return ids

    # -- ids -> text -------------------------------------------------------------------------
    def token_id(self, token: str) -> int:
        if token in self.added:
            return self.added[token]
        if token in self.special:
            return self.special[token]
        pid = self.sp.piece_to_id(token)
        if pid == self.unk_id and token != "<unk>":
            raise TokenizerError(f"token {token!r} is not in the vocabulary (added tokens: {sorted(self.added)})")
        return pid

    def decode(self, ids, skip_special: bool = False) -> str:
        """Decode ids: sentencepiece runs between added tokens, pieces joined with single spaces
        (4.31 ``spaces_between_special_tokens``); ``-200`` image placeholders are dropped."""
        parts: list[str] = []
        run: list[int] = []
        for i in (int(x) for x in ids):
            if i == IMAGE_TOKEN_INDEX:
                continue
            if i in self.id_to_added or i in (self.bos_id, self.eos_id):
                if run:
                    parts.append(self.sp.decode(run))
                    run = []
                if not skip_special or i in self.id_to_added:
                    parts.append(self.id_to_added.get(i) or self.sp.id_to_piece(i))
            elif 0 <= i < self.sp.GetPieceSize():
                run.append(i)
            else:
                raise TokenizerError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        if run:
            parts.append(self.sp.decode(run))
        text = " ".join(p for p in parts if p)
        # 4.31 decodes "<s>" through sentencepiece's special-token path: no space after it
        bos = self.sp.id_to_piece(self.bos_id) + " "
        return text.replace(bos, bos[:-1]) if not skip_special else text
