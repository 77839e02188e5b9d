"""Surrogates of the springy double pendulum: the models and their inputs (:mod:`surrogates.pendulum.models`,
which registers the model classes ``pendulum.*``) and their training and evaluation on the catalog's
protocol datasets (:mod:`surrogates.pendulum.runs`).

``python -m surrogates.pendulum.benchmark`` (:mod:`surrogates.pendulum.benchmark`, not imported here) times
the simulator against scipy and the training."""

from surrogates.pendulum.models import DEFAULT_ACTIVATION, MODELS, build_model, feature_plan, pendulum_io
from surrogates.pendulum.runs import MODELS_BY_PROTOCOL, evaluate_model, predict, train_model, training_config

__all__ = [
    "DEFAULT_ACTIVATION",
    "MODELS",
    "MODELS_BY_PROTOCOL",
    "build_model",
    "evaluate_model",
    "feature_plan",
    "pendulum_io",
    "predict",
    "train_model",
    "training_config",
]
