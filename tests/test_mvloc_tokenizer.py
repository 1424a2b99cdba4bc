"""MV-Loc tokenizer + prompts: exact token ids of the official code (4.31 slow LLaMA, legacy=True)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from interactvlm_ros.models.base import LocalizerError
from interactvlm_ros.models.mvloc import prompts as P
from interactvlm_ros.models.mvloc.tokenizer import IMAGE_TOKEN_INDEX, LegacyLlamaTokenizer, TokenizerError

FIXTURES = [("interactvlm-hcontact-tiny", "interactvlm-3d-hcontact-damon-tiny", "hcontact", "Bottle"),
            ("interactvlm-oafford-tiny", "interactvlm-3d-oafford-lemon-piad-tiny", "oafford", "MUG")]


@pytest.mark.parametrize("fx,ckpt,task,label", FIXTURES)
def test_ids_exact_both_prompts(conformance_dir, fx, ckpt, task, label):
    root = conformance_dir / fx
    tok = LegacyLlamaTokenizer(root / ckpt)
    pj = json.loads((root / "inputs" / "prompts.json").read_text())
    inp = np.load(root / "inputs" / "inputs.npz")
    # the demo prompt is rebuilt from our templates (incl. the object prompt's quotes + trailing comma)
    gen_prompt = P.build_prompt(P.demo_question(task, label))
    assert gen_prompt == pj["gen_prompt"]
    assert tok.tokenize_with_image(gen_prompt) == inp["gen_input_ids"][0].tolist()
    assert tok.tokenize_with_image(pj["tf_conversation"]) == inp["tf_input_ids"][0].tolist()
    ids = tok.tokenize_with_image(pj["tf_conversation"])
    assert ids.count(IMAGE_TOKEN_INDEX) == 1 and ids[0] == 1 and ids.count(1) == 1  # BOS only on the first chunk
    # pieces around added tokens: whitespace stripped, dummy prefix per chunk ("[SEG]." -> "[SEG] ▁ .")
    pieces = [t for t in pj["tf_tokens_without_image"]]
    as_ids = [tok.token_id(p) for p in pieces]
    assert as_ids == [i for i in ids if i != IMAGE_TOKEN_INDEX]
    out = np.load(root / "expected" / "generate.npz")["output_ids"][0]
    assert tok.decode(out) == pj["gen_output_text"]


def test_teacher_forced_prompt_from_templates(conformance_dir):
    pj = json.loads((conformance_dir / "interactvlm-hcontact-tiny" / "inputs" / "prompts.json").read_text())
    q = P.fill_template(P.HCONTACT_PARTS_QUESTION_LIST[0], class_name="bottle")
    a = P.fill_template(P.HCONTACT_PARTS_ANSWER_LIST[0], body_parts="right hand, left hand", seg_token="[SEG]")
    assert P.build_prompt(q, a) == pj["tf_conversation"]
    assert P.seg_token_text("Gen-Hu-Obj", "hcontact") == "[HSEG]" and P.seg_token_text("Gen-Hu-Obj", "ocontact") == "[OSEG]"
    assert P.OAFFORD_AFFORD_OBJ_ANSWER_LIST[0] == ("The affordance type is {affordance} with {class_name}, and the "
                                                   "contact region is [OTOKEN].")


@pytest.mark.parametrize("bad", ["", "   ", "bot\x00tle", "cup\nof tea", "mug\u200b", 3, "cup\u2028of tea",
                                 "cup\u2029", "mug " * 60])
def test_bad_labels_rejected(bad):
    with pytest.raises(LocalizerError, match="object_label"):
        P.normalize_label(bad)


@pytest.mark.parametrize("bad", ["<image>", "cup</s>", "MUG</S>", "<IM_END>", "mug<unk>", "<s>box"])
def test_labels_with_prompt_tokens_rejected(bad):
    """Would become -200 (two image tokens: a crash) or special ids (EOS mid-prompt) instead of text."""
    with pytest.raises(LocalizerError, match="object_label.*prompt token"):
        P.normalize_label(bad)
    with pytest.raises(LocalizerError, match="object_label"):
        P.demo_question("hcontact", bad)


def test_empty_prompt_rejected():
    with pytest.raises(LocalizerError, match="question"):
        P.build_prompt("  ")
    with pytest.raises(LocalizerError, match="answer"):
        P.build_prompt("Where?", answer="")


def test_tokenizer_missing_files(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.model"):
        LegacyLlamaTokenizer(tmp_path)
