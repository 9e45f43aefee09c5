"""Tiny real training runs on FER+ crops from ../shared: every label mode, resume, the schedule, calibrate,
evaluate, export."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from sklearn.metrics import confusion_matrix
from torch.utils.data import DataLoader

from fer_core.classifier import load_classifier
from fer_core.errors import InvalidArgumentError, ModelLoadError
from fer_core.model import load_model
from fer_train import export as export_module
from fer_train import train as train_module
from fer_train.__main__ import build_parser
from fer_train.__main__ import main as train_main
from fer_train.augment import eval_transform
from fer_train.calibrate import calibrate
from fer_train.calibrate import main as calibrate_main
from fer_train.data import LabelledFaces, load_split
from fer_train.engine import TrainConfig, build_scheduler, predict_logits, with_precise_bn
from fer_train.evaluate import evaluate
from fer_train.export import export
from fer_train.export import main as export_main
from tests.conftest import TINY_RUN

TINY = TINY_RUN
pytestmark = pytest.mark.usefixtures("torch_home")


@pytest.mark.parametrize("mode", ["majority", "probability", "crossentropy", "multi_target"])
def test_each_label_mode_updates_weights(tmp_path, ferplus, mode, capsys):
    out = tmp_path / mode
    assert train_main(["--data", str(ferplus), "--out", str(out), "--label-mode", mode, "--epochs", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "train 192 images -> " in printed and "valid 128 -> " in printed
    args = json.loads((out / "args.json").read_text())
    assert f"train 192 images -> {args['n_train']} kept ({mode})" in printed
    assert "img/s" in printed
    trained = load_file(str(out / "best" / "model.safetensors"))
    import torchvision

    imagenet = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1").state_dict()
    key = "features.0.0.weight"
    assert not torch.equal(trained[f"net.{key}"], imagenet[key])  # it learned
    assert torch.allclose(trained[f"net.{key}"], imagenet[key], atol=0.5)  # from ImageNet, not random
    row = json.loads((out / "metrics.json").read_text())[0]
    assert 0 <= row["valid_acc"] <= 1 and row["train_loss"] > 0


def test_resume_continues_from_the_saved_epoch(tmp_path, ferplus, capsys):
    out = tmp_path / "run"
    base = ["--data", str(ferplus), "--out", str(out), *TINY]
    assert train_main([*base, "--epochs", "2", "--stop-after-epoch", "1"]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert "stopped after epoch 1 of 2" in capsys.readouterr().out
    ckpt = torch.load(out / "last.pt", weights_only=True)  # as saved before TrainConfig.extra existed ...
    del ckpt["config"]["extra"]
    ckpt["config"] |= {"teacher": [], "distill_weight": 0.5, "final_fit": 0.0}  # ... with options since retired
    del ckpt["config"]["augment"]["zoom_out"], ckpt["config"]["augment"]["zoom_out_p"]  # nor the zoom-out
    torch.save(ckpt, out / "last.pt")
    assert train_main([*base, "--epochs", "3", "--resume"]) == 1  # a changed schedule is refused, not bent
    assert "other options (epochs: 2 -> 3)" in capsys.readouterr().err
    lambda_lr = {**ckpt, "scheduler": {"last_epoch": 6, "base_lrs": [1e-3, 1e-3], "lr_lambdas": [None, None]}}
    torch.save(lambda_lr, out / "last.pt")  # the warm-up + cosine state as an older fer_train saved it
    assert train_main([*base, "--epochs", "2", "--resume"]) == 1
    assert "another kind of learning-rate schedule state" in capsys.readouterr().err
    torch.save(ckpt, out / "last.pt")
    assert train_main([*base, "--epochs", "2", "--resume", "--threads", "1"]) == 0  # runtime options may change
    printed = capsys.readouterr().out
    assert "resumed from" in printed and "epoch 2/2" in printed and "epoch 1/2:" not in printed
    history = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and history[0] == first[0]
    assert json.loads((out / "last" / "config.json").read_text())["recipe"]["last_epoch"] == 2  # last/ follows
    assert "scaler" in torch.load(out / "last.pt", weights_only=True)  # the AMP scaler state is saved too


def test_ema_weights_are_validated_exported_and_resumed(tmp_path, ferplus, capsys):
    out = tmp_path / "ema"
    base = ["--data", str(ferplus), "--out", str(out), "--ema-decay", "0.9", *TINY]
    assert train_main([*base, "--epochs", "2", "--stop-after-epoch", "1"]) == 0
    assert "(raw weights acc " in capsys.readouterr().out
    ckpt = torch.load(out / "last.pt", weights_only=True)
    best = load_file(str(out / "best" / "model.safetensors"))
    key = "net.features.0.0.weight"
    assert torch.equal(best[key], ckpt["ema"][f"module.{key}"])  # the average is what gets exported
    assert not torch.equal(best[key], ckpt["model"][key])  # and it is not the raw weights
    row = json.loads((out / "metrics.json").read_text())[0]
    assert 0 <= row["valid_acc_raw"] <= 1
    assert json.loads((out / "best" / "config.json").read_text())["recipe"]["ema_decay"] == 0.9
    assert train_main([*base, "--epochs", "2", "--resume"]) == 0
    resumed = torch.load(out / "last.pt", weights_only=True)
    assert int(resumed["ema"]["n_averaged"]) == 2 * int(ckpt["ema"]["n_averaged"])  # carried on, not restarted
    export(out, tmp_path / "ema_export", crop_margin=0.0, limit=100)
    assert "exponential moving average of the training weights (decay\n  0.9 per step" in \
        (tmp_path / "ema_export" / "README.md").read_text()
    plain = tmp_path / "plain"
    assert train_main(["--data", str(ferplus), "--out", str(plain), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    code = train_main(["--data", str(ferplus), "--out", str(plain), "--epochs", "1", "--ema-decay", "0.9",
                       "--resume", *TINY])
    assert code == 1 and "ema_decay: 0.0 -> 0.9" in capsys.readouterr().err
    assert train_main([*base, "--epochs", "1", "--ema-decay", "1.0"]) == 1
    assert "ema_decay must be in [0, 1)" in capsys.readouterr().err


def test_precise_bn_run_exports_recomputed_statistics(tmp_path, ferplus, monkeypatch, capsys):
    seen = []  # an init hook (the extension point research code uses) sees the new model and the train faces
    monkeypatch.setattr(train_module, "INIT_HOOKS", [lambda model, faces, cfg: seen.append(len(faces)) or "hooked"])
    out = tmp_path / "pbn"
    assert train_main(["--data", str(ferplus), "--out", str(out), "--epochs", "1", "--ema-decay", "0.9",
                       "--precise-bn", "64", *TINY]) == 0
    assert seen == [json.loads((out / "args.json").read_text())["n_train"]] and "hooked" in capsys.readouterr().out
    ckpt = torch.load(out / "last.pt", weights_only=True)
    best = load_file(str(out / "best" / "model.safetensors"))
    weight, stat = "net.features.0.0.weight", "net.features.0.1.running_mean"
    assert torch.equal(best[weight], ckpt["ema"][f"module.{weight}"])  # the EMA weights ...
    assert not torch.allclose(best[stat], ckpt["ema"][f"module.{stat}"])  # ... with statistics recomputed
    recipe = json.loads((out / "best" / "config.json").read_text())["recipe"]
    assert recipe["precise_bn"] == 64 and recipe["mixed_precision"] is False  # CPU: float32


def test_an_extension_adds_options_and_soft_targets_and_resume_checks_them(tmp_path, ferplus, monkeypatch, capsys):
    # an option added to build_parser() lands in TrainConfig.extra (args.json, the recipe, the --resume
    # check); a split hook picks the faces; a data hook runs before every start, --resume too, and may
    # mix soft targets into the faces
    targets = []
    monkeypatch.setattr(train_module, "SPLIT_HOOKS", [lambda train, valid, cfg: (train.subset(range(100)), valid)])

    def uniform_share(faces, cfg):
        faces.mix = (np.full(faces.dists.shape, 1 / 8, np.float32), cfg.extra["share"])
        targets.append(faces[0][1])
        return f"mixed {cfg.extra['share']}"

    monkeypatch.setattr(train_module, "DATA_HOOKS", [uniform_share])
    parser = build_parser()
    parser.add_argument("--share", type=float, default=0.0)
    out = tmp_path / "ext"
    base = ["--data", str(ferplus), "--out", str(out), "--epochs", "2", *TINY]
    assert train_main([*base, "--share", "0.5", "--stop-after-epoch", "1"], parser) == 0
    assert "mixed 0.5" in capsys.readouterr().out and float(targets[0].min()) >= 0.5 / 8 - 1e-7
    assert abs(float(targets[0].sum()) - 1) < 1e-6
    args = json.loads((out / "args.json").read_text())
    assert args["extra"] == {"share": 0.5}  # ... and the split hook kept the first 100 train faces
    assert args["n_train"] == len(LabelledFaces(load_split(ferplus, "train", limit=100), "crossentropy", None))
    assert json.loads((out / "best" / "config.json").read_text())["recipe"]["share"] == 0.5
    assert train_main([*base, "--share", "0.25", "--resume"], parser) == 1
    assert "extra" in capsys.readouterr().err
    assert train_main([*base, "--share", "0.5", "--resume"], parser) == 0 and len(targets) == 3
    # calibrate fits the temperature on Valid and writes it, with nothing else; evaluate only reads the model
    model = out / "best"
    before = json.loads((model / "config.json").read_text())
    assert calibrate_main([str(model), "--data", str(ferplus), "--limit", "128"]) == 0
    assert "temperature " in capsys.readouterr().out
    config = json.loads((model / "config.json").read_text())
    assert config["recipe"]["temperature_fitted_on"].startswith("valid: ")
    before["recipe"]["temperature_fitted_on"] = config["recipe"]["temperature_fitted_on"]
    assert config == {**before, "temperature": config["temperature"]}
    stored = {p.name: p.read_bytes() for p in model.iterdir()}
    report = evaluate(model, ferplus, "valid", out_dir=tmp_path / "eval", limit=128)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == stored
    assert report["split"] == "valid" and report["temperature"] == config["temperature"]
    assert calibrate(model, ferplus, limit=128) == pytest.approx(config["temperature"])


def test_warmup_cosine_schedule_is_the_closed_form():
    for warmup, epochs, steps in [(0.5, 3, 10), (1.0, 2, 7), (0.0, 2, 5), (0.1, 2, 10)]:
        cfg = TrainConfig(data="d", out="o", epochs=epochs, warmup_epochs=warmup)
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=cfg.lr)
        scheduler = build_scheduler(optimizer, cfg, steps)
        total, warm = epochs * steps, int(warmup * steps)
        for step in range(total):  # linear warm-up to the peak at step `warm`, then cosine to 0 at `total`
            want = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
            assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.lr * want, abs=1e-6), (warmup, step)
            optimizer.step()
            scheduler.step()


def test_mixed_precision_is_chosen_for_cuda_unless_no_amp_and_never_on_cpu():
    from fer_train.__main__ import build_parser
    from fer_train.engine import mixed_precision

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    default = vars(build_parser().parse_args(["--data", "d", "--out", "o"]))
    off = vars(build_parser().parse_args(["--data", "d", "--out", "o", "--no-amp"]))
    assert default["amp"] is True and off["amp"] is False
    assert mixed_precision(TrainConfig(data="d", out="o", amp=default["amp"]), cuda)
    assert not mixed_precision(TrainConfig(data="d", out="o", amp=off["amp"]), cuda)
    assert not mixed_precision(TrainConfig(data="d", out="o"), cpu)


def test_missing_pretrained_weights_name_the_fix(tmp_path, ferplus, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    code = train_main(["--data", str(ferplus), "--out", str(tmp_path / "x"), "--backbone", "resnet18",
                       "--epochs", "1", *TINY])
    assert code == 1
    assert "--pretrained none" in capsys.readouterr().err


def test_export_evaluate_and_hub_round_trip(tmp_path, ferplus, monkeypatch):
    from fer_train.push import files_to_upload
    from tests.support.hub_server import hub_env, make_git_repo, olah_server, pull_in_subprocess

    run = tmp_path / "run"
    assert train_main(["--data", str(ferplus), "--out", str(run), "--epochs", "1", *TINY]) == 0
    out = tmp_path / "export"
    report = export(run, out, crop_margin=0.0, limit=300, repo_id="fer-tests/tiny")
    for name in ("config.json", "model.safetensors", "model.onnx", "README.md", "confusion_matrix.png",
                 "reliability.png", "curves.png", "report.json"):
        assert (out / name).is_file(), name
    # model.onnx, checked at export on Valid faces, gives the torch model's probabilities
    assert 0 <= report["onnx_max_abs_diff"] <= 1e-5
    crops = [Image.fromarray(face) for face in load_split(ferplus, "valid", limit=40).images]
    onnx_probs = load_classifier(out).probabilities(crops, balanced=True)
    assert np.abs(onnx_probs - load_classifier(out, backend="torch").probabilities(crops, balanced=True)).max() <= 1e-5
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["uar"] <= 1 and report["temperature"] > 0
    assert report["ece_after"] <= report["ece_before"] + 1e-6  # fitted T never hurts NLL-wise much
    # evaluation runs the BatchNorm-folded network, as fer_core does: same predictions as the plain one
    plain = load_model(out)
    faces = LabelledFaces(load_split(ferplus, "valid", limit=300), "majority", eval_transform(plain.config))
    plain_logits, labels = predict_logits(plain, DataLoader(faces, batch_size=64), torch.device("cpu"), tta_flip=False)
    assert report["confusion_matrix"] == confusion_matrix(labels, plain_logits.argmax(1), labels=range(8)).tolist()
    config = json.loads((out / "config.json").read_text())
    assert config["temperature"] == report["temperature"] and config["crop_margin"] == 0.0
    # the training prior travels in config.json; the report has both operating points
    assert len(config["prior"]) == 8 and abs(sum(config["prior"]) - 1) < 1e-6 and min(config["prior"]) > 0
    assert [r["tau"] for r in report["tau_sweep"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert report["tau_sweep"][0]["accuracy"] == report["accuracy"] and report["tau_sweep"][0]["uar"] == report["uar"]
    assert report["balanced"]["tau"] == config["tau"] == 1.0 and not config["balanced"]
    assert sum(map(sum, report["balanced"]["confusion_matrix"])) == report["n_images"]
    exported = load_file(str(out / "model.safetensors"))
    best = load_file(str(run / "best" / "model.safetensors"))
    assert all(torch.equal(exported[k], best[k]) for k in best)
    # the card's model-index carries the evaluation's numbers
    card = ModelCard.load(out / "README.md")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == round(report["accuracy"], 4)
    assert results["f1"] == round(report["macro_f1"], 4)
    assert card.data.pipeline_tag == "image-classification" and card.data.license == "mit"
    assert "not a medical device" in card.text.lower()
    assert "Two operating points" in card.text and "Default in this model: plain" in card.text
    assert "(0.5 warm-up epochs)" in card.text and "dropout\n  0.2, label smoothing 0.0" in card.text
    assert "crop_margin = 0.0, rotated so the eyes are level" in card.text  # the inference crop
    assert "`model.onnx` is the same network for ONNX Runtime" in card.text
    assert 'load_classifier("fer-tests/tiny")' in card.text
    assert [p.name for p in files_to_upload(out)] == sorted(
        ["README.md", "config.json", "confusion_matrix.png", "curves.png", "metrics.json", "model.onnx",
         "model.safetensors", "reliability.png", "report.json"])
    no_onnx = tmp_path / "no_onnx"  # an export from before model.onnx: push says how to write it
    shutil.copytree(out, no_onnx)
    (no_onnx / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="python -m fer_core.export_onnx"):
        files_to_upload(no_onnx)
    assert json.loads((out / "metrics.json").read_text()) == [
        {**row, "stage_epoch": row["epoch"], "stage": "run"} for row in json.loads((run / "metrics.json").read_text())]

    # a run continued from another one records that earlier stage in config.json and the card; an
    # export hook (the extension point research code uses) adds to the recipe and the training time
    def hook(run_dir, recipe, minutes_of):
        recipe["hooked"] = run_dir.name
        minutes_of[tmp_path.resolve()] = 6.0
        minutes_of[run_dir.resolve()] = 1000.0  # a path already counted keeps one value

    monkeypatch.setattr(export_module, "EXPORT_HOOKS", [hook])
    export(run, tmp_path / "export2", crop_margin=0.0, limit=100, previous_run=run)
    monkeypatch.setattr(export_module, "EXPORT_HOOKS", [])
    recipe = json.loads((tmp_path / "export2" / "config.json").read_text())["recipe"]
    assert "1 epochs from torchvision" in recipe["previous_stage"] and "IMAGENET1K_V1" in recipe["base_init"]
    assert recipe["hooked"] == "run" and recipe["train_minutes"] == 1006.0
    assert "Initialised from an earlier stage" in (tmp_path / "export2" / "README.md").read_text()
    staged = json.loads((tmp_path / "export2" / "metrics.json").read_text())  # both stages' curves
    assert [(r["epoch"], r["stage_epoch"]) for r in staged] == [(1, 1), (2, 1)]
    # ... also from an exported model folder (a fine-tune of a shipped model), keeping its stages
    export(run, tmp_path / "export3", crop_margin=0.0, limit=100, previous_run=tmp_path / "export2")
    recipe = json.loads((tmp_path / "export3" / "config.json").read_text())["recipe"]
    assert "IMAGENET1K_V1" in recipe["base_init"]
    staged = json.loads((tmp_path / "export3" / "metrics.json").read_text())
    assert [(r["epoch"], r["stage_epoch"], r["stage"]) for r in staged] == [
        (1, 1, "run"), (2, 1, "run"), (3, 1, "run")]
    with pytest.raises(InvalidArgumentError, match="config.json not found"):
        export(run, tmp_path / "export4", limit=100, previous_run=tmp_path / "mirrors")

    # --epoch last: the schedule's latest epoch, exported without selection
    report_last = export(run, tmp_path / "export_last", crop_margin=0.0, limit=100, epoch="last")
    last_recipe = json.loads((tmp_path / "export_last" / "config.json").read_text())["recipe"]
    assert last_recipe["last_epoch"] == 1 and "best_epoch" not in last_recipe and 0 <= report_last["accuracy"] <= 1
    assert "not used to select it" in last_recipe["data"]
    assert "1 epochs (the last exported, no selection)" in (tmp_path / "export_last" / "README.md").read_text()
    with pytest.raises(InvalidArgumentError, match="epoch must be best or last"):
        export(run, tmp_path / "export5", limit=100, epoch="first")
    for broken in ("config.json", "model.safetensors"):  # a run whose model is incomplete, or no run at all
        shutil.copytree(run, tmp_path / "broken", dirs_exist_ok=True)
        (tmp_path / "broken" / "best" / broken).unlink()
        with pytest.raises(InvalidArgumentError, match=f"best/{broken} not found"):
            export(tmp_path / "broken", tmp_path / "export6", limit=100)
    with pytest.raises(InvalidArgumentError, match="not found"):
        export(tmp_path / "no_such_run", tmp_path / "export6", data=ferplus)
    assert export_main(["--run", str(tmp_path / "no_such_run"), "--out", str(tmp_path / "export6"),
                        "--data", str(ferplus)]) == 1

    # pull it back through a real Hub-API server (olah serving a git repo of the export)
    mirrors = tmp_path / "mirrors"
    commit = make_git_repo(mirrors, "fer-tests/tiny", [out / "config.json", out / "model.safetensors",
                                                         out / "README.md"])
    with olah_server(tmp_path, mirrors) as url:
        env = hub_env(url, tmp_path)
        proc, got = pull_in_subprocess("fer-tests/tiny", tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == commit
    assert got.keys() == exported.keys() and all(torch.equal(got[k], exported[k]) for k in got)
    # ... and offline, from the cache alone
    proc, got = pull_in_subprocess("fer-tests/tiny", tmp_path, {**env, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert got.keys() == exported.keys()
    assert load_model(out).config.temperature == report["temperature"]


def test_evaluate_cli_on_test_split_needs_data(tmp_path, random_model_dir):
    from fer_train.evaluate import main as eval_main

    assert eval_main(["--model", str(random_model_dir), "--data", str(tmp_path), "--split", "test"]) == 1


def test_precise_bn_recomputes_statistics_on_a_copy():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    batches = [(torch.randn(8, 3, 10, 10) * 2 + 1, None) for _ in range(3)]
    fresh = with_precise_bn(net, batches, torch.device("cpu"))
    with torch.no_grad():
        feats = [net[0](x) for x, _ in batches]
    assert not fresh.training and fresh is not net
    assert torch.allclose(fresh[1].running_mean, torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0), atol=1e-5)
    assert torch.allclose(fresh[1].running_var, torch.stack([f.var((0, 2, 3)) for f in feats]).mean(0), rtol=1e-4)
    assert torch.equal(net[1].running_mean, torch.zeros(4)) and torch.equal(net[1].running_var, torch.ones(4))
    assert with_precise_bn(net, None, torch.device("cpu")) is net
