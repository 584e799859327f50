"""Steering requests: predicates over item metadata, paraphrase templates, steering files.

Public API (used by the steerability task, simulated users and systems):

- ``REQUEST_KINDS``: the request kinds and the template slots each uses;
- predicates (``HasValue``, ``LacksValue``, ``InRange``, ``Relative``,
  ``SimilarTo``, ``DifferentFrom``, ``AllOf``) checked against parsed item
  values (``ItemValues``);
- ``Vocabulary``: builds ``Steer`` requests (kind + predicate + slot words)
  from a dataset card; ``Steer.say(template)`` renders an utterance;
- ``train_templates()`` / ``train_phrasings(card)``: what a system may learn
  from (the evaluation phrasings are never exposed);
- ``load_steering_file(path)``: a user's own phrasings, strictly validated.

See docs/steering.md.
"""

from talkwalk_bench.steering.phrasings import (
    REQUEST_KINDS,
    KindSlots,
    Phrasing,
    TemplateSet,
    load_steering_file,
    template_slots,
    train_phrasings,
    train_templates,
)
from talkwalk_bench.steering.predicates import (
    AllOf,
    DifferentFrom,
    HasValue,
    InRange,
    ItemValues,
    LacksValue,
    Predicate,
    Relative,
    SimilarTo,
    holds_for,
    predicate_from_dict,
)
from talkwalk_bench.steering.render import Steer, Vocabulary

__all__ = [
    "REQUEST_KINDS",
    "AllOf",
    "DifferentFrom",
    "HasValue",
    "InRange",
    "ItemValues",
    "KindSlots",
    "LacksValue",
    "Phrasing",
    "Predicate",
    "Relative",
    "SimilarTo",
    "Steer",
    "TemplateSet",
    "Vocabulary",
    "holds_for",
    "load_steering_file",
    "predicate_from_dict",
    "template_slots",
    "train_phrasings",
    "train_templates",
]
