"""Galaxy properties from halos: the stellar-to-halo relation and the Gaussian MLPs
(:mod:`surrogates.halos.models`), the four models as catalog artefacts with their training, evaluation
and the ranking of the scalars (:mod:`surrogates.halos.runs`; the model classes ``halo-*``), and
predictions for every halo of a catalog (:mod:`surrogates.halos.predict`, ``eqs predict-galaxies``)."""

from surrogates.halos.models import (
    GaussianMLP,
    StellarToHaloRelation,
    forward_selection,
)
from surrogates.halos.predict import (
    NoHaloModelError,
    best_predictions,
    load_halo_models,
    predict_galaxies,
    require_models,
    write_predictions,
)
from surrogates.halos.runs import (
    HALO_GROUP,
    MODELS,
    evaluate_halo_model,
    feature_importance,
    load_halo_model,
    model_io,
    predict_loaded,
    store_halo_ensemble,
    store_halo_model,
    train_halo_model,
)

__all__ = [
    "HALO_GROUP",
    "MODELS",
    "GaussianMLP",
    "NoHaloModelError",
    "StellarToHaloRelation",
    "best_predictions",
    "evaluate_halo_model",
    "feature_importance",
    "forward_selection",
    "load_halo_model",
    "load_halo_models",
    "model_io",
    "predict_galaxies",
    "require_models",
    "predict_loaded",
    "store_halo_ensemble",
    "store_halo_model",
    "train_halo_model",
    "write_predictions",
]
