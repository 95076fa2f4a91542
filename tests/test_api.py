"""The public API: a handful of names, loaded lazily, each doing real work."""

import subprocess
import sys

import splitpipe


def test_import_names_the_api_without_loading_torch() -> None:
    code = "import sys, splitpipe; splitpipe.TECHNIQUES; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert set(splitpipe.__all__) >= {"RunConfig", "run", "predict", "choose_plan", "launch"}


def test_run_predict_and_plan_from_one_config() -> None:
    config = splitpipe.RunConfig(technique="sfl", devices=2, epochs=1, progress=False, timing="profile")
    result = splitpipe.run(config)
    assert result.report["epochs"][0]["test_accuracy"] > 0.5 and result.model is not None
    predicted = splitpipe.predict(config).time_s
    assert predicted > 0
    chosen = splitpipe.choose_plan(config)
    assert "split" in chosen.settings and chosen.prediction.time_s <= chosen.baseline_s + 1e-12


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        splitpipe.emulate_everything  # noqa: B018
    except AttributeError as exc:
        assert "emulate_everything" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
