"""Fast tests for the typed config system (configs/) and the main.py CLI."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from configs.loader import RESOLVED_CONFIG_NAME, ConfigError, load_config, save_config
from configs.schema import Config

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_main(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *argv], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


# --------------------------------------------------------------------------- loading


def test_defaults_load_and_base_yaml_matches_schema():
    cfg = load_config()
    assert cfg.data.resolution == 64 and cfg.data.fps == 25
    # base.yaml documents every default: it must equal the schema, key for key.
    assert plain(cfg) == dataclasses.asdict(Config())
    base = yaml.safe_load((REPO_ROOT / "configs/base.yaml").read_text())
    assert set(base) == set(plain(cfg))
    for section, values in plain(cfg).items():
        assert set(base[section]) == set(values), section


@pytest.mark.parametrize("name", ["demo", "smoke"])
def test_shipped_experiments_load(name):
    cfg = load_config(name)
    assert cfg.run.name == name


def test_merge_order_later_wins():
    assert load_config("smoke").data.num_train == 8  # experiment beats base
    cfg = load_config("smoke", ["data.num_train=3", "eval.probe.steps=7", "data.num_train=4"])
    assert cfg.data.num_train == 4  # command line beats experiment; last override wins
    assert cfg.eval.probe.steps == 7
    assert cfg.data.num_val == 2  # untouched experiment values survive
    assert cfg.data.fps == 25  # untouched base values survive


def test_experiment_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data:\n  resolution: 128\n")
    assert load_config(str(path)).data.resolution == 128


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.resolutoin=128"])
    message = str(info.value)
    assert message.startswith("command line:")
    assert "'data.resolutoin'" in message and "did you mean 'data.resolution'" in message


def test_unknown_nested_key_in_experiment_yaml(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("eval:\n  probe:\n    stesp: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert str(path) in message
    assert "'eval.probe.stesp'" in message and "did you mean 'eval.probe.steps'" in message


def test_unknown_section_names_full_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("dta:\n  resolution: 128\n")
    with pytest.raises(ConfigError, match=r"unknown key 'dta.resolution' \(did you mean 'data.resolution'\?\)"):
        load_config(str(path))


def test_type_error_names_key_and_source():
    with pytest.raises(ConfigError, match=r"^command line: invalid value for 'data.fps'"):
        load_config(None, ["data.fps=abc"])


def test_bad_value_fails():
    with pytest.raises(ConfigError, match=r"command line: invalid value for 'data.resolution'.*32"):
        load_config(None, ["data.resolution=50"])
    with pytest.raises(ConfigError, match=r"'data.min_phases'"):
        load_config(None, ["data.min_phases=5", "data.max_phases=2"])
    with pytest.raises(ConfigError, match=r"'data.num_val'"):
        load_config(None, ["data.num_val=-1"])


def test_bad_value_from_yaml_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  fps: 0\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: invalid value for 'data.fps'")):
        load_config(str(path))


def test_missing_experiment_lists_available():
    with pytest.raises(ConfigError) as info:
        load_config("demoo")
    message = str(info.value)
    assert "did you mean 'demo'" in message and "demo" in message and "smoke" in message


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["data.fps"])


# --------------------------------------------------------------------------- saving


def test_save_config_is_atomic_and_reloads_equal(tmp_path):
    cfg = load_config("smoke", ["data.resolution=128", "run.name=saved"])
    run_dir = tmp_path / "runs" / "saved" / "data"
    path = save_config(cfg, run_dir)
    assert path == run_dir / RESOLVED_CONFIG_NAME
    save_config(cfg, run_dir)  # overwriting is fine too
    assert sorted(os.listdir(run_dir)) == [RESOLVED_CONFIG_NAME]  # no temp files left over
    assert plain(load_config(str(path))) == plain(cfg)


# --------------------------------------------------------------------------- CLI


def test_main_help():
    result = run_main("--help")
    assert result.returncode == 0
    for command in ("config", "data", "evaluate"):
        assert command in result.stdout


def test_main_config_applies_override():
    result = run_main("config", "data.fps=30")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["data"]["fps"] == 30


def test_main_config_typo_exits_2_with_suggestion():
    result = run_main("config", "data.fsp=30")
    assert result.returncode == 2
    assert "did you mean 'data.fps'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_main_saves_resolved_config_before_running_command(tmp_path, monkeypatch):
    import types

    import main

    seen = {}

    def fake_cmd_data(cfg, args):
        seen["run_dir"] = args.run_dir
        seen["saved"] = (args.run_dir / RESOLVED_CONFIG_NAME).is_file()  # written before the call
        seen["split"], seen["preview"] = args.split, args.preview
        return 0

    monkeypatch.setitem(sys.modules, "synthavatar.commands",
                        types.SimpleNamespace(cmd_data=fake_cmd_data))
    status = main.main(["data", "-e", "smoke", "--preview", f"run.output_dir={tmp_path}",
                        "--split", "val", "data.fps=30"])
    assert status == 0
    assert seen == {"run_dir": tmp_path / "smoke" / "data", "saved": True,
                    "split": "val", "preview": True}
    assert load_config(str(seen["run_dir"] / RESOLVED_CONFIG_NAME)).data.fps == 30


def test_extends_merges_parent_first_and_child_wins(tmp_path):
    parent = tmp_path / "parent.yaml"
    parent.write_text("run:\n  name: parent\ndata:\n  fps: 30\n  num_train: 5\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {parent}\nrun:\n  name: child\n")
    cfg = load_config(str(child), ["data.num_train=7"])
    assert (cfg.run.name, cfg.data.fps, cfg.data.num_train) == ("child", 30, 7)


def test_extends_errors_name_the_file(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\n")
    with pytest.raises(ConfigError, match="loop.yaml: 'extends' loops back"):
        load_config(str(loop))
    missing = tmp_path / "missing.yaml"
    missing.write_text("extends: no_such_experiment\n")
    with pytest.raises(ConfigError, match="missing.yaml: extends: unknown experiment 'no_such_experiment'"):
        load_config(str(missing))


def test_stage_configs_chain_and_ablation_rows_stay_small():
    stage1, stage2 = load_config("actavatar_stage1"), load_config("actavatar_stage2")
    assert stage1.train.trainable != [".*"] and stage2.train.trainable == [".*"]
    assert stage2.train.init_from.endswith("actavatar_stage1/fit")
    assert stage2.model.text.prompt_mode == "structured" and stage2.model.dit.phase_embedding
    assert load_config("actavatar_global").model.text.prompt_mode == "global"
    assert load_config("syncdreamer_no_loc").model.visual.loc_weight == 0
    for path in (Path(__file__).parents[1] / "configs" / "experiment").glob("*.yaml"):
        assert len(path.read_text().splitlines()) < 30, path


# --------------------------------------------------------------------------- composition (issue 14)


def test_audio_rates_follow_the_data_section_and_a_mismatch_names_both_keys(tmp_path):
    cfg = load_config([], ["data.fps=30", "data.sample_rate=24000"])
    assert (cfg.model.audio.fps, cfg.model.audio.sample_rate) == (30, 24000)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  audio: {fps: 24}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: 'model.audio.fps' \(24\) is taken from 'data.fps' \(25\)"):
        load_config(str(bad))
    same = tmp_path / "same.yaml"  # a saved resolved config repeats the data's value: accepted
    same.write_text("model:\n  audio: {fps: 25}\n")
    assert load_config(str(same)).model.audio.fps == 25


def test_unknown_data_kind_fails_at_start_up_in_one_line():
    with pytest.raises(ConfigError, match=r"data.kind.*unknown data source 'nope'.*synthavatar"):
        load_config([], ["data.kind=nope"])
    result = run_main("config", "data.kind=nope")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "'nope'" in result.stderr


def _dotted(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        keys |= _dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return keys


def test_paper_rows_are_short_and_state_no_scale():
    scale = re.compile(r"model\.preset|model\.dit\.(dim|num_layers|num_heads|ffn_dim|patch_size)|"
                       r"data\.(resolution|duration|num_\w+|batch_size)|train\.(max_steps|strategy\..*)")
    for path in sorted((REPO_ROOT / "configs" / "method").glob("*.yaml")):
        assert len(path.read_text().splitlines()) < 15, path
        keys = _dotted(yaml.safe_load(path.read_text()) or {})
        assert not [k for k in keys if scale.fullmatch(k)], (path, keys)


def test_groups_compose_a_paper_row_at_5b_with_zero3():
    cfg = load_config(["method/actavatar_stage2", "scale/5b", "hardware/zero3"])
    assert cfg.model.preset == "wan2.2-ti2v-5b" and cfg.train.strategy.name == "deepspeed_zero3"
    assert list(cfg.train.trainable) == [".*"] and cfg.model.text.prompt_mode == "structured"
    assert cfg.run.name == "actavatar_stage2"
    # every key the row states has its value at both scales (the scale files never override the method)
    demo = load_config(["method/actavatar_stage2", "scale/demo"])
    row = _dotted(yaml.safe_load((REPO_ROOT / "configs" / "method" / "actavatar_stage2.yaml").read_text()))
    for key in row - {"extends"}:
        assert OmegaConf.select(cfg, key) == OmegaConf.select(demo, key), key
    result = run_main("config", "-e", "method/actavatar_stage2", "-e", "scale/5b", "-e", "hardware/zero3")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["model"]["preset"] == "wan2.2-ti2v-5b"


def test_prediction_is_checked_and_wan_weights_must_keep_velocity():
    assert load_config(["demo"]).train.flow.prediction == "motion"  # the demo fine-tunes our own base
    assert load_config(["method/actavatar_stage2", "scale/5b"]).train.flow.prediction == "velocity"
    with pytest.raises(ConfigError, match=r"train.flow.prediction.*Wan2.2 weights, which predict velocity"):
        load_config(["method/actavatar_stage2", "scale/5b"], ["train.flow.prediction=motion"])
    with pytest.raises(ConfigError, match=r"train.flow.prediction.*must be one of velocity, x0, motion"):
        load_config(["demo"], ["train.flow.prediction=eps"])
