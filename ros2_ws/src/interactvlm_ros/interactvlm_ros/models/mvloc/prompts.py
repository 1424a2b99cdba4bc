"""Official InteractVLM prompt templates and the ``llava_v1`` conversation (spec section 5, 2.2).

The strings are interface constants: a checkpoint was trained on exactly these, so they are kept
byte-exact, including the demo object prompt's stray double quotes and trailing comma.

    build_prompt(question)                     -> "<system> USER: <im_start><image><im_end>\\n<question> ASSISTANT:"
    build_prompt(question, answer="It is [SEG].") -> "... ASSISTANT: It is [SEG].</s>"
    demo_question("hcontact", "Bottle")        -> "Which body parts are in contact with the bottle? ..."
"""
from __future__ import annotations

import unicodedata

from ..base import LocalizerError

SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the human's questions.")
ROLES = ("USER", "ASSISTANT")
SEP, SEP2 = " ", "</s>"
IM_START, IM_END = "<im_start>", "<im_end>"
IMAGE = "<image>"
# strings the tokenizer does not treat as text (LLaVA image placeholder, added/special LLaMA tokens; labels are
# lower-cased, and the segmentation tokens are upper case, so they cannot occur in a label)
RESERVED_TOKENS = (IMAGE, IM_START, IM_END, "<s>", "</s>", "<unk>")
#: longest object label taken (the node's limit too): a 5000-character label made a 5115-token prompt, past the
#: checkpoint's max_position_embeddings (1024) and the TensorRT profile, and ran silently without a [SEG]
MAX_LABEL_CHARS = 200

HCONTACT_QUESTION_LIST = [
    "Segment the area on the human's body that is in direct contact with the {class_name} in this image.",
    "Identify and mask the part of the human that is touching or interacting with the {class_name} in this scene.",
    "Show the contact points on the human where they are physically connected to or interacting with {class_name}.",
    "Please provide a segmentation mask of the human's body parts that are in contact with {class_name}.",
    "Highlight the areas on the human where there is physical interaction or contact with {class_name}.",
]
HCONTACT_ANSWER_LIST = [
    "It is [HTOKEN].", "Sure, the human contact region is [HTOKEN].", "Sure, the contact points on human is [HTOKEN].",
    "Sure, the contact mask is [HTOKEN].", "[HTOKEN].",
]
HCONTACT_PARTS_QUESTION_LIST = [
    "Which body parts are in contact with the {class_name}? Segment these contact areas.",
    "Name and segment the specific body parts making contact with the {class_name}.",
    "Looking at the {class_name}, what parts of the human body are touching it? Show these contact regions.",
    "For the {class_name}, list and mask the human body parts that are in contact.",
    "Regarding the {class_name}, identify which body parts are touching it and highlight these contact areas.",
]
HCONTACT_PARTS_ANSWER_LIST = [
    "The contacting body parts are {body_parts}, and the contact region is [HTOKEN].",
    "The involved body parts are {body_parts}, with the contact mask at [HTOKEN].",
    "Contact occurs at {body_parts}, with the contact points shown at [HTOKEN].",
    "The body parts in contact are {body_parts}, with contact mask at [HTOKEN].",
    "Body parts: {body_parts}, contact mask: [HTOKEN].",
]
OAFFORD_QUESTION_LIST = [
    "Segment the area on the {class_name} where the human is making direct contact in this image.",
    "Identify and mask the part of the {class_name} that the human is touching or interacting with in this scene.",
    "Show the contact points on the {class_name} where the human is physically connected to or interacting with it.",
    "Please provide a segmentation mask of the parts of the {class_name} that are in contact with the human.",
    "Highlight the areas on the {class_name} where there is physical interaction or contact with the human.",
]
OCONTACT_QUESTION_LIST = OAFFORD_QUESTION_LIST
OAFFORD_ANSWER_LIST = [
    "It is [OTOKEN].", "Sure, the object contact region is [OTOKEN].", "Sure, the contact points on object is [OTOKEN].",
    "Sure, the contact mask is [OTOKEN].", "[OTOKEN].",
]
OAFFORD_AFFORD_QUESTION_LIST = [
    "What type of affordance does the human-object interaction suggest? Then, segment the area on the {class_name} "
    "where the human is making contact.",
    "Describe the affordance provided by the interaction, and identify the part of the {class_name} that the human is "
    "touching or interacting with in this scene.",
    "Explain the affordance type shown by the contact points on the {class_name} where the human is physically "
    "connected. Then show the segmentation mask.",
    "Specify the affordance implied by the human's contact with the {class_name}, then provide a segmentation mask of "
    "the contact area.",
    "Describe the affordance associated with the physical interaction on the {class_name}, and highlight the contact "
    "areas with a segmentation mask.",
]
OAFFORD_AFFORD_ANSWER_LIST = [
    "The affordance type is {affordance}, and the contact region is [OTOKEN].",
    "This interaction suggests an affordance of {affordance}, and the object contact region is [OTOKEN].",
    "The contact points indicate an affordance of {affordance}, with the mask at [OTOKEN].",
    "This shows an affordance type of {affordance}, with contact at [OTOKEN].",
    "Affordance: {affordance}, contact mask: [OTOKEN].",
]
OAFFORD_AFFORD_OBJ_ANSWER_LIST = [a.replace("{affordance}", "{affordance} with {class_name}")
                                  for a in OAFFORD_AFFORD_ANSWER_LIST]

# run_demo.py's fixed prompts (the object one keeps its literal quotes and trailing comma [BUG]).
DEMO_PROMPTS = {
    "hcontact": "Which body parts are in contact with the {object}? Segment these contact areas.",
    "h2dcontact": "Segment the area on the human's body that is in direct contact with the {object} in this image.",
    "ocontact": '"What type of affordance does the human-object interaction suggest? Then, segment the area on the '
                '{object} where the human is making contact.",',
}
DEMO_PROMPTS["oafford"] = DEMO_PROMPTS["ocontact"]

TEMPLATES = {
    ("hcontact", "simple"): (HCONTACT_QUESTION_LIST, HCONTACT_ANSWER_LIST),
    ("hcontact", "parts"): (HCONTACT_PARTS_QUESTION_LIST, HCONTACT_PARTS_ANSWER_LIST),
    ("ocontact", "simple"): (OCONTACT_QUESTION_LIST, OAFFORD_ANSWER_LIST),
    ("oafford", "simple"): (OAFFORD_QUESTION_LIST, OAFFORD_ANSWER_LIST),
    ("oafford", "afford"): (OAFFORD_AFFORD_QUESTION_LIST, OAFFORD_AFFORD_ANSWER_LIST),
    ("oafford", "afford_obj"): (OAFFORD_AFFORD_QUESTION_LIST, OAFFORD_AFFORD_OBJ_ANSWER_LIST),
    ("h2dcontact", "parts"): (HCONTACT_PARTS_QUESTION_LIST, HCONTACT_PARTS_ANSWER_LIST),
    ("h2dcontact", "simple"): (HCONTACT_QUESTION_LIST, HCONTACT_ANSWER_LIST),
}


def normalize_label(label: object, field: str = "object_label") -> str:
    """Lower-cased object name as the official datasets use it (``{class_name}``).

    Raises :class:`LocalizerError` for non-strings, empty/blank labels and labels containing
    control characters (they would silently change the token ids the model sees)."""
    if not isinstance(label, str):
        raise LocalizerError(f"{field}: expected a string such as 'bottle', got {type(label).__name__}")
    bad = [c for c in label if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")]
    if bad:
        raise LocalizerError(f"{field}: {label!r} contains control/invisible characters {bad!r}; "
                             f"pass a plain object name such as 'tennis_racket'")
    label = label.strip()
    if not label:
        raise LocalizerError(f"{field}: empty object label; pass the object's name, e.g. 'bottle'")
    if len(label) > MAX_LABEL_CHARS:
        raise LocalizerError(f"{field}: the label is {len(label)} characters long (at most {MAX_LABEL_CHARS}); pass the "
                             f"object's name, e.g. 'bottle'")
    label = label.lower()
    reserved = [t for t in RESERVED_TOKENS if t in label]
    if reserved:
        raise LocalizerError(f"{field}: {label!r} contains the prompt token(s) {reserved}, which the tokenizer would turn "
                             f"into the image placeholder / special ids; pass a plain object name such as 'bottle'")
    return label


def seg_token_text(token_type: str, task: str) -> str:
    """Answer placeholder replacement: ``[SEG]`` (Gen), ``[HSEG]``/``[OSEG]`` (Gen-Hu-Obj), ``[ISEG]`` (Gen-Int)."""
    base = token_type.replace("-DifDe", "")
    if base == "Gen-Hu-Obj":
        return "[HSEG]" if task.startswith("h") else "[OSEG]"
    if base == "Gen-Int":
        return "[ISEG]"
    return "[SEG]"


def fill_template(template: str, class_name: str = "", body_parts: str = "", affordance: str = "",
                  seg_token: str = "[SEG]") -> str:
    """Fill ``{class_name}``/``{body_parts}``/``{affordance}`` and ``[HTOKEN]``/``[OTOKEN]``."""
    return (template.replace("{class_name}", class_name).replace("{body_parts}", body_parts)
            .replace("{affordance}", affordance).replace("[HTOKEN]", seg_token).replace("[OTOKEN]", seg_token))


def demo_question(task: str, object_label: str) -> str:
    """run_demo.py's question for ``task`` (hcontact, h2dcontact, oafford/ocontact) and the label."""
    key = "hcontact" if task.startswith("hcontact") else task
    if key not in DEMO_PROMPTS:
        raise LocalizerError(f"task: unknown task {task!r}; expected one of {sorted(DEMO_PROMPTS)}")
    return DEMO_PROMPTS[key].replace("{object}", normalize_label(object_label))


def build_prompt(question: str, answer: str | None = None, use_im_start_end: bool = True) -> str:
    """``llava_v1`` conversation text: ``<system> USER: <image>\\n<question> ASSISTANT:[ <answer></s>]``.

    ``<image>`` becomes ``<im_start><image><im_end>`` when ``use_im_start_end`` (all released models)."""
    if not isinstance(question, str) or not question.strip():
        raise LocalizerError("question: empty prompt; pass the question text (or leave it unset for the demo prompt)")
    if answer is not None and (not isinstance(answer, str) or not answer.strip()):
        raise LocalizerError("answer: empty answer; teacher-forced mode needs the answer text containing [SEG]")
    image = f"{IM_START}{IMAGE}{IM_END}" if use_im_start_end else IMAGE
    text = SYSTEM + SEP + ROLES[0] + ": " + image + "\n" + question + SEP
    if answer is None:
        return text + ROLES[1] + ":"
    return text + ROLES[1] + ": " + answer + SEP2
