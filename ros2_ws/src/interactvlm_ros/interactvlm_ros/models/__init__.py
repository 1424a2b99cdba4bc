"""Localizers: image + object label + view renders -> one contact-mask logit map per view.

* :mod:`interactvlm_ros.models.base` — the ``Localizer`` protocol and ``LocalizerOutput``.
* :mod:`interactvlm_ros.models.mvloc` — official-compatible InteractVLM MV-Loc (LLaVA + SAM).
* :mod:`interactvlm_ros.models.default` — the embedded default model.
* :mod:`interactvlm_ros.models.registry` — ``load_localizer(model, backend, device)``.
"""
