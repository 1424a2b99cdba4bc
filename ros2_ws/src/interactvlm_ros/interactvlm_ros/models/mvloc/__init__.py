"""Official-compatible InteractVLM MV-Loc localizer (LLaVA/LISA + SAM), built on transformers' classes.

Modules (small, shapes in docstrings):

* ``config``     — ``MVLocConfig`` from official ``config.json`` + tensor shapes; official view/camera tables.
* ``tokenizer``  — 4.31-slow-LLaMA-compatible tokenizer (sentencepiece) + LLaVA ``<image>`` -> -200.
* ``prompts``    — official question/answer templates, demo prompts, ``llava_v1`` conversation.
* ``modules``    — InteractVLM heads: ``text_hidden_fcs``, camera-pose encoders, attention splitter.
* ``model``      — the three exportable parts (``MVLocLanguagePart``, ``SamImageEncoderPart``,
  ``MVLocDecoderPart``), ``MVLocModel`` (teacher-forced forward, KV-cached greedy generation),
  ``postprocess_masks``.
* ``checkpoint`` — official HF folder loading (single/sharded, mixed dtypes, key mapping), writing.
* ``preprocess`` — CLIP and SAM input preprocessing.
* ``predictor``  — ``MVLocPredictor`` (the ``Localizer``), SAM-embedding cache.

Official-format asset folders and 2D->3D lifting are the core's: ``interactvlm_ros.assets``
(``load_official_human_assets``, ``load_lift2d_dict``) and ``interactvlm_ros.lift.Lifter``.
"""
from .checkpoint import CheckpointError, load_mvloc  # noqa: F401
from .config import MVLocConfig  # noqa: F401
from .model import MVLocDecoderPart, MVLocLanguagePart, MVLocModel, SamImageEncoderPart, postprocess_masks  # noqa: F401


def __getattr__(name):  # lazy: the predictor pulls in PIL/transformers image processing
    if name == "MVLocPredictor":
        from .predictor import MVLocPredictor

        return MVLocPredictor
    raise AttributeError(name)
