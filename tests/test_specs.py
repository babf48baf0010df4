"""Specs: loading, the bad-spec errors (one message naming the dotted field), `--set`, expansion
into jobs with stable run_ids, YAML round trips, and the presets in experiments/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.specs import (
    DIFFUSION_NEUTRAL,
    ExperimentSpec,
    JobSpec,
    backbone_kwargs,
    benchmark_key,
    dry_run_rows,
    dry_run_table,
    expand,
    grid_fields,
    load_experiment,
    parameter_count,
    parse_overrides,
    parse_yaml,
)

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"

BASE = """\
name: unit
out_root: {out_root}
dataset:
  name: digits
network:
  arch: small
training:
  duration_mimg: 0.01
  batch: 32
  lr: 1.0e-3
  lr_rampup_mimg: 0.001
variants:
  edm:
    kind: edm
  edm-fdm:
    kind: fdm-edm
    multiplier: 2.0
    warmup_kimg: 1.0
seeds: [0, 1]
evaluation:
  num_samples: 64
  samplers:
    - {name: heun, nfe: [9]}
"""


def write_spec(tmp_path: Path, text: str = BASE, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("{out_root}", str(tmp_path / "runs")))
    return path


def spec_error(path, overrides=(), **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_experiment(path, overrides, **kwargs)
    return info.value


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ------------------------------------------------------------------------- the bad-spec acceptance

# (name, replace (old, new) in BASE or None, --set overrides, expected field, expected message parts)
BAD_SPECS = [
    ("unknown field", ("  lr_rampup_mimg: 0.001", "  lr_rampup_kimg: 1"), (),
     "training.lr_rampup_kimg", ["unknown field 'training.lr_rampup_kimg'",
                                 "did you mean 'training.lr_rampup_mimg'?"]),
    ("wrong type", ("  batch: 32", "  batch: lots"), (),
     "training.batch", ["'lots' is not an integer"]),
    ("negative duration", ("  duration_mimg: 0.01", "  duration_mimg: -5"), (),
     "training.duration_mimg", ["-5 must be > 0"]),
    ("unknown variant kind", ("    kind: edm\n", "    kind: edm2\n"), (),
     "variants.edm.kind", ["'edm2' is not one of", "did you mean 'edm'?"]),
    ("missing dataset file", ("  name: digits", "  name: mnist\n  path: nowhere/mnist.npz"), (),
     "dataset.path", ["nowhere/mnist.npz"]),
    ("yaml syntax error", ("  lr: 1.0e-3", "  lr: [1.0e-3"), (),
     "training.lr", ["YAML syntax error", "spec.yaml, line 11", "started at line 10"]),
    ("empty seeds", ("seeds: [0, 1]", "seeds: []"), (),
     "seeds", ["[] must have at least 1 entry"]),
    ("duplicate variant names", ("  edm-fdm:\n", "  edm:\n"), (),
     "variants.edm", ["duplicate key 'edm'", "lines 13 and 15"]),
    ("grid over a field that does not exist", ("seeds: [0, 1]", "seeds: [0, 1]\ngrid:\n  training.lr_rampup_kimg: [1, 2]"), (),
     "grid.training.lr_rampup_kimg", ["unknown job field 'training.lr_rampup_kimg'",
                                      "did you mean 'training.lr_rampup_mimg'?"]),
    ("conflicting --set (twice)", None, ("training.lr=1e-3", "training.lr=2e-3"),
     "training.lr", ["set twice with different values (0.001 and 0.002)"]),
    ("conflicting --set (grid axis)", ("seeds: [0, 1]", "seeds: [0, 1]\ngrid:\n  training.lr: [1.0e-3, 2.0e-3]"),
     ("training.lr=5e-4",), "training.lr", ["conflicts with grid axis 'grid.training.lr'"]),
    ("unknown --set field", None, ("training.lr_rampup_kimg=3",),
     "training.lr_rampup_kimg", ["unknown field 'training.lr_rampup_kimg'",
                                 "did you mean 'training.lr_rampup_mimg'?"]),
    ("duplicate seeds", ("seeds: [0, 1]", "seeds: [0, 1, 0]"), (),
     "seeds", ["repeats seed 0"]),
    ("fdm parameter on a baseline", ("    kind: edm\n", "    kind: edm\n    damping: 2.0\n"), (),
     "variants.edm.damping", ["no effect on kind 'edm'"]),
    ("fdm variant without multiplier", ("    multiplier: 2.0\n", ""), (),
     "variants.edm-fdm.multiplier", ["required for FDM kind 'fdm-edm'"]),
    ("unknown variant in --set", None, ("variants.edm-fmd.damping=2",),
     "variants.edm-fmd.damping", ["no entry 'variants.edm-fmd'", "did you mean 'variants.edm-fdm'?"]),
    ("invalid grid value", ("seeds: [0, 1]", "seeds: [0, 1]\ngrid:\n  training.lr: [1.0e-3, -1]"), (),
     "grid.training.lr", ["-1 must be > 0"]),
    ("unreachable nfe", ("nfe: [9]", "nfe: [10]"), (),
     "evaluation.samplers[0].nfe", ["no step count gives NFE 10"]),
    ("boolean where an integer belongs", ("  batch: 32", "  batch: true"), (),
     "training.batch", ["True is not an integer"]),
    ("misspelt section is unknown, not missing", ("training:", "trainig:"), (),
     "trainig", ["unknown field 'trainig'; did you mean 'training'?"]),
    ("grid axis without its section", ("seeds: [0, 1]", "seeds: [0, 1]\ngrid:\n  lr: [1.0e-3]"), (),
     "grid.lr", ["did you mean 'training.lr'?"]),
    ("yaml boolean for a word", None, ("tracking.wandb.mode=on",),
     "tracking.wandb.mode", ["True is not one of offline, online, disabled", "quote the word"]),
]


@pytest.mark.parametrize("case", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_raises_one_spec_error_naming_the_dotted_field(tmp_path, monkeypatch, case):
    _, replace, overrides, field, parts = case
    text = BASE
    if replace is not None:
        assert replace[0] in text, replace
        text = text.replace(replace[0], replace[1], 1)
    path = write_spec(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    error = spec_error(path, overrides)
    assert error.field == field
    message = str(error)
    assert message.startswith(f"{field}: ")
    assert "\n" not in message
    for part in parts:
        assert part in message
    assert tree(tmp_path) == before  # nothing created, nothing launched


def test_base_spec_of_the_bad_cases_is_valid(tmp_path):
    spec = load_experiment(write_spec(tmp_path))
    assert list(spec.variants) == ["edm", "edm-fdm"]
    assert spec.experiment_dir == tmp_path / "runs" / "unit"


def test_yaml_reads_exponent_only_floats_and_rejects_nested_duplicates():
    assert parse_yaml("a: 1e-3\nb: -2E+2\nc: 1_000\nd: '1e-3'") == {"a": 1e-3, "b": -200.0, "c": 1000, "d": "1e-3"}
    with pytest.raises(SpecError) as info:
        parse_yaml("evaluation:\n  samplers:\n    - {name: heun, name: euler}\n", "x.yaml")
    assert info.value.field == "evaluation.samplers[0].name"


def test_spec_file_that_is_not_a_mapping_is_a_spec_error(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    assert "mapping" in str(spec_error(path))


# ---------------------------------------------------------------------------------------- --set


def test_set_overrides_parse_yaml_values_and_apply_to_nested_fields(tmp_path):
    assert parse_overrides(["a.b=1e-3", "c=[1, 2]", "d=true", "e=", "f=x=y"]) == [
        ("a.b", 1e-3), ("c", [1, 2]), ("d", True), ("e", None), ("f", "x=y")]
    spec = load_experiment(write_spec(tmp_path), [
        "training.lr=2e-4", "variants.edm-fdm.damping=1.5", "seeds=[3]",
        "variants.edm.network.dropout=0.2", "grid.training.batch=[16, 32]",
        "launch.additional_parameters.constraint=a100"])
    assert spec.training.lr == 2e-4
    assert spec.variants["edm-fdm"].damping == 1.5
    assert spec.seeds == (3,)
    assert spec.variants["edm"].network == {"dropout": 0.2}
    assert spec.grid == {"training.batch": (16, 32)}
    assert spec.launch.additional_parameters == {"constraint": "a100"}


def test_set_of_the_same_value_twice_is_accepted_and_overlapping_keys_are_not():
    assert parse_overrides(["training.lr=1e-3", "training.lr=0.001"]) == [("training.lr", 1e-3)]
    with pytest.raises(SpecError) as info:
        parse_overrides(["training={lr: 1}", "training.lr=2"])
    assert info.value.field == "training.lr"


def test_set_into_a_scalar_or_without_equals_names_the_key(tmp_path):
    path = write_spec(tmp_path)
    assert spec_error(path, ["training.lr.value=1"]).field == "training.lr.value"
    assert spec_error(path, ["training.lr"]).field == "training.lr"


# -------------------------------------------------------------------------------------- expansion


def test_expansion_is_variants_by_grid_by_seeds_in_file_order(tmp_path):
    text = BASE + "grid:\n  training.lr: [1.0e-3, 2.0e-3]\n"
    jobs = expand(load_experiment(write_spec(tmp_path, text)))
    assert [(j.variant, j.overrides["training.lr"], j.seed) for j in jobs] == [
        (v, lr, s) for v in ("edm", "edm-fdm") for lr in (1e-3, 2e-3) for s in (0, 1)]
    assert len({j.run_id for j in jobs}) == 8
    assert all(len(j.run_id) == 12 and int(j.run_id, 16) >= 0 for j in jobs)


def test_grid_over_damping_multiplies_fdm_variants_only(tmp_path):
    text = BASE + "grid:\n  diffusion.damping: [0.8, 1.0, 1.5]\n"
    jobs = expand(load_experiment(write_spec(tmp_path, text)))
    baseline = [j for j in jobs if j.variant == "edm"]
    fdm = [j for j in jobs if j.variant == "edm-fdm"]
    assert len(baseline) == 2 and len(fdm) == 6
    assert all(j.overrides == {} and j.diffusion.damping == 1.0 for j in baseline)
    assert sorted({j.diffusion.damping for j in fdm}) == [0.8, 1.0, 1.5]
    # The baseline's run_id does not depend on an axis that cannot change it.
    plain = expand(load_experiment(write_spec(tmp_path, BASE, "plain.yaml")))
    assert [j.run_id for j in baseline] == [j.run_id for j in plain if j.variant == "edm"]


def test_grid_over_damping_without_an_fdm_variant_is_an_error(tmp_path):
    text = BASE.replace("""  edm-fdm:
    kind: fdm-edm
    multiplier: 2.0
    warmup_kimg: 1.0
""", "") + "grid:\n  diffusion.damping: [0.8, 1.0]\n"
    error = spec_error(write_spec(tmp_path, text))
    assert error.field == "grid.diffusion.damping"
    assert "no variant" in str(error)


def test_grid_values_that_repeat_or_resolve_to_the_same_job_are_an_error(tmp_path):
    from harness.nets import ARCH_DEFAULTS

    error = spec_error(write_spec(tmp_path, BASE + "grid:\n  diffusion.damping: [1, 1.0]\n"))
    assert error.field == "grid.diffusion.damping"
    assert "repeats the value 1" in str(error)
    default = ARCH_DEFAULTS["small"]["model_channels"]  # null = the architecture's default
    error = spec_error(write_spec(tmp_path, BASE + f"grid:\n  network.model_channels: [null, {default}]\n"))
    assert error.field == "grid.network.model_channels"
    assert "give the same job" in str(error)


def test_variant_field_that_is_also_a_grid_axis_is_an_error(tmp_path):
    text = BASE.replace("    warmup_kimg: 1.0\n", "    warmup_kimg: 1.0\n    damping: 2.0\n")
    text += "grid:\n  diffusion.damping: [1.0, 1.5]\n"
    assert spec_error(write_spec(tmp_path, text)).field == "variants.edm-fdm.damping"


def test_run_id_is_stable_and_ignores_launch_and_tracking(tmp_path):
    path = write_spec(tmp_path)
    first = [j.run_id for j in expand(load_experiment(path))]
    again = [j.run_id for j in expand(load_experiment(path))]
    moved = [j.run_id for j in expand(load_experiment(path, [
        "launch.executor=debug", "launch.timeout_min=5", "tracking.wandb.mode=disabled", "out_root=elsewhere"]))]
    changed = [j.run_id for j in expand(load_experiment(path, ["training.lr=2e-3"]))]
    assert first == again == moved
    assert not set(first) & set(changed)


def test_run_id_is_sha256_of_the_canonical_json_without_launch_and_tracking(tmp_path):
    import hashlib

    job = expand(load_experiment(write_spec(tmp_path)))[0]
    data = job.model_dump(mode="json")
    del data["launch"], data["tracking"]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert job.run_id == hashlib.sha256(canonical.encode()).hexdigest()[:12]


def test_job_spec_yaml_round_trip_is_exact(tmp_path):
    text = BASE + "grid:\n  diffusion.damping: [0.7, 1.5]\n"
    for job in expand(load_experiment(write_spec(tmp_path, text))):
        again = JobSpec.from_yaml(job.to_yaml())
        assert again == job
        assert again.run_id == job.run_id
        assert again.to_yaml() == job.to_yaml()
        file = tmp_path / f"{job.run_id}.yaml"
        file.write_text(job.to_yaml())
        assert JobSpec.from_yaml(file) == job


def test_experiment_spec_yaml_round_trip_keeps_its_jobs(tmp_path):
    spec = load_experiment(write_spec(tmp_path))
    again = ExperimentSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert [j.run_id for j in expand(again)] == [j.run_id for j in expand(spec)]


def test_job_spec_is_fully_resolved(tmp_path):
    from harness.nets import ARCH_DEFAULTS

    spec = load_experiment(write_spec(tmp_path), ["training.augment_p=0.1"])
    job = expand(spec)[1 * 2]  # edm-fdm, seed 0
    assert job.variant == "edm-fdm" and job.seed == 0
    assert job.dataset.resolution == 8 and job.dataset.channels == 1 and job.dataset.num_classes == 10
    assert job.dataset.use_labels is False and job.label_dim == 0
    assert job.network.augment_dim == 9  # augmentation on → EDM's 9 augmentation labels
    for name, value in ARCH_DEFAULTS["small"].items():
        resolved = getattr(job.network, name)
        assert (list(resolved) if isinstance(resolved, tuple) else resolved) == \
               (list(value) if isinstance(value, tuple) else value)
    assert job.diffusion.model_dump() == {"kind": "fdm-edm", **DIFFUSION_NEUTRAL, "multiplier": 2.0,
                                          "warmup_kimg": 1.0}
    assert job.evaluation.metric == "fd-digits"


def test_baseline_diffusion_holds_neutral_values(tmp_path):
    job = expand(load_experiment(write_spec(tmp_path)))[0]
    assert job.diffusion.model_dump() == {"kind": "edm", **DIFFUSION_NEUTRAL}
    with pytest.raises(SpecError) as info:
        JobSpec.from_yaml(job.to_yaml().replace("damping: 1.0", "damping: 2.0"))
    assert info.value.field == "diffusion.damping"


def test_variant_blocks_change_only_their_variant(tmp_path):
    text = BASE.replace("    kind: edm\n", "    kind: edm\n    network: {dropout: 0.3}\n    training: {lr: 5.0e-4}\n")
    jobs = {j.variant: j for j in expand(load_experiment(write_spec(tmp_path, text)))}
    assert jobs["edm"].network.dropout == 0.3 and jobs["edm"].training.lr == 5e-4
    assert jobs["edm-fdm"].training.lr == 1e-3
    assert jobs["edm-fdm"].network.dropout != 0.3


def test_error_in_a_variant_block_is_reported_at_the_variant(tmp_path):
    text = BASE.replace("    kind: edm\n", "    kind: edm\n    training: {lr: -1}\n")
    assert spec_error(write_spec(tmp_path, text)).field == "variants.edm.training.lr"
    text = BASE.replace("    kind: edm\n", "    kind: edm\n    network: {dropuot: 0.1}\n")
    error = spec_error(write_spec(tmp_path, text))
    assert error.field == "variants.edm.network.dropuot"
    assert "did you mean 'network.dropout'" in str(error)


def test_grid_fields_list_every_section_field_but_the_kind():
    fields = grid_fields()
    assert "training.lr" in fields and "diffusion.damping" in fields and "network.channel_mult" in fields
    assert "diffusion.kind" not in fields and not any(f.startswith(("launch.", "tracking.")) for f in fields)


def test_cross_field_rules_name_the_field_to_change(tmp_path):
    path = write_spec(tmp_path)
    assert spec_error(path, ["training.augment_p=0.1", "network.augment_dim=0"]).field == "network.augment_dim"
    assert spec_error(path, ["evaluation.metric=fd-mnist"]).field == "evaluation.metric"
    assert spec_error(path, ["training.batch_per_process=5"]).field == "training.batch_per_process"
    assert spec_error(path, ["network.conditional=true", "dataset.use_labels=false"]).field == "dataset.use_labels"
    assert spec_error(path, ["launch.nodes=2"]).field == "launch.nodes"


# -------------------------------------------------------------------------------- dry-run table


def test_dry_run_table_has_one_row_per_job_with_counts_and_images(tmp_path):
    spec = load_experiment(write_spec(tmp_path))
    jobs = expand(spec)
    table = dry_run_table(spec, jobs, benchmarks_path=tmp_path / "none.json")
    lines = table.splitlines()
    assert lines[0].split() == ["run_id", "variant", "kind", "seed", "overrides", "params", "images", "device-h"]
    assert len(lines) == 2 + len(jobs) + 1
    for job, line in zip(jobs, lines[2:]):
        cells = line.split()
        assert cells[:4] == [job.run_id, job.variant, job.diffusion.kind, str(job.seed)]
        assert cells[5] == f"{parameter_count(job):,}" and cells[6] == "10k" and cells[7] == "-"


def test_dry_run_estimates_device_hours_from_a_benchmark(tmp_path):
    spec = load_experiment(write_spec(tmp_path))
    jobs = expand(spec)
    key = benchmark_key(jobs[0], parameter_count(jobs[0]))
    bench = tmp_path / "benchmarks.json"
    bench.write_text(json.dumps({key: 2.5, "_device": "test"}))
    rows = dry_run_rows(jobs, {key: 2.5})
    assert rows[0]["device_hours"] == pytest.approx(10_000 / 2.5 / 3600)
    assert f"{10_000 / 2.5 / 3600:.1f}" in dry_run_table(spec, jobs, benchmarks_path=bench).splitlines()[2]


def test_parameter_count_matches_a_real_backbone(tmp_path):
    from harness.nets import build_backbone, count_parameters

    job = expand(load_experiment(write_spec(tmp_path), ["network.conditional=true"]))[0]
    assert job.label_dim == 10
    assert parameter_count(job) == count_parameters(build_backbone(**backbone_kwargs(job)))


# --------------------------------------------------------------------------------------- presets

PAPER_COUNTS = {"edm": 55_735_299, "edm-fdm": 55_735_299, "vp": 61_806_979, "vp-fdm": 61_806_979,
                "ve": 62_763_907, "ve-fdm": 62_763_907}
# FDM.md §1.4: (multiplier in effect, warmup_ite × official batch) per dataset and FDM variant.
PAPER_FDM = {
    "cifar10": {"edm-fdm": (2.0, 200 * 512), "vp-fdm": (2.0, 400 * 512), "ve-fdm": (1.0, 400 * 512)},
    "ffhq64": {"edm-fdm": (1.0, 800 * 256), "vp-fdm": (1.0, 400 * 256), "ve-fdm": (1.0, 400 * 256)},
    "afhqv2-64": {"edm-fdm": (2.0, 400 * 256), "vp-fdm": (2.0, 400 * 256), "ve-fdm": (1.0, 400 * 256)},
}
PAPER_TRAINING = {  # batch, lr, dropout, augment
    "cifar10": (512, 1e-3, 0.13, 0.12), "ffhq64": (256, 2e-4, 0.05, 0.15), "afhqv2-64": (256, 2e-4, 0.25, 0.15)}


def test_paper_cifar10_lists_six_variants_with_the_paper_parameter_counts():
    spec = load_experiment(EXPERIMENTS / "paper" / "cifar10.yaml")
    jobs = expand(spec)
    assert [j.variant for j in jobs] == list(PAPER_COUNTS)
    assert {j.variant: parameter_count(j) for j in jobs} == PAPER_COUNTS
    table = dry_run_table(spec, jobs)
    for job in jobs:
        row = next(line for line in table.splitlines() if line.startswith(job.run_id))
        assert f"{PAPER_COUNTS[job.variant]:,}" in row and "200M" in row


@pytest.mark.parametrize("preset", list(PAPER_FDM))
def test_paper_presets_carry_the_official_settings(preset):
    spec = load_experiment(EXPERIMENTS / "paper" / f"{preset}.yaml", check_data="none")
    jobs = {j.variant: j for j in expand(spec)}
    assert sorted(j.diffusion.kind for j in jobs.values()) == sorted(["edm", "fdm-edm", "vp", "fdm-vp", "ve", "fdm-ve"])
    batch, lr, dropout, augment = PAPER_TRAINING[preset]
    for name, job in jobs.items():
        t = job.training
        assert (t.duration_mimg, t.batch, t.lr, t.augment_p) == (200, batch, lr, augment)
        assert (t.lr_rampup_mimg, t.adam_betas, t.adam_eps) == (10, (0.9, 0.999), 1e-8)
        assert (t.ema_halflife_mimg, t.ema_rampup_ratio, t.precision) == (0.5, 0.05, "fp32")
        assert job.network.dropout == dropout and job.network.augment_dim == 9
        assert job.network.arch == ("ncsnpp" if name.startswith("ve") else "ddpmpp")
        assert job.diffusion.cap_after_warmup == "none" and job.diffusion.damping == 1.0
        if name in PAPER_FDM[preset]:
            multiplier, warmup_nimg = PAPER_FDM[preset][name]
            assert job.diffusion.multiplier == multiplier
            assert job.diffusion.warmup_kimg * 1000 == pytest.approx(warmup_nimg)
    if preset != "cifar10":
        counts = {name: parameter_count(job) for name, job in jobs.items()}
        assert counts == {n: 62_761_091 if n.startswith("ve") else 61_805_571 for n in jobs}


SMALL_PRESETS = ["quickstart", "digits", "mnist", "fashion-mnist", "ablations/damping"]


@pytest.mark.parametrize("preset", SMALL_PRESETS)
def test_small_presets_load_on_cpu_with_fd_metric_and_pairs(preset):
    spec = load_experiment(EXPERIMENTS / f"{preset}.yaml", check_data="none")
    jobs = expand(spec)
    kinds = {j.diffusion.kind for j in jobs}
    assert {"edm", "fdm-edm"} <= kinds
    for job in jobs:
        assert job.network.arch == "small" and job.training.device == "cpu"
        assert job.evaluation.metric == f"fd-{job.dataset.name}"
        assert job.launch.executor == "local"


def test_quickstart_is_digits_edm_pair_two_seeds_two_at_a_time():
    spec = load_experiment(EXPERIMENTS / "quickstart.yaml")
    jobs = expand(spec)
    assert spec.dataset.name == "digits" and spec.seeds == (0, 1)
    assert sorted((j.diffusion.kind, j.seed) for j in jobs) == [("edm", 0), ("edm", 1), ("fdm-edm", 0), ("fdm-edm", 1)]
    assert spec.launch.max_concurrent == 2
    evals_per_run = int(spec.training.duration_mimg * 1000 / spec.training.snapshot_kimg)
    assert evals_per_run >= 2 and spec.evaluation.at == "snapshots"  # evaluations along the way


def test_damping_ablation_grids_damping_over_edm_fdm_only():
    spec = load_experiment(EXPERIMENTS / "ablations" / "damping.yaml", check_data="none")
    jobs = expand(spec)
    values = spec.grid["diffusion.damping"]
    assert len(values) >= 4 and 1.0 in values
    fdm = [j for j in jobs if j.diffusion.kind == "fdm-edm"]
    assert len(fdm) == len(values) * len(spec.seeds)
    assert len([j for j in jobs if j.diffusion.kind == "edm"]) == len(spec.seeds)


def test_messages_read_as_in_the_style_guide(tmp_path):
    path = write_spec(tmp_path, BASE.replace("  duration_mimg: 0.01", "  duration_mimg: -5"))
    assert str(spec_error(path)) == "training.duration_mimg: -5 must be > 0"
    path = write_spec(tmp_path, BASE)
    assert str(spec_error(path, ["training.lr_rampup_kimg=1"])) == (
        "training.lr_rampup_kimg: unknown field 'training.lr_rampup_kimg'; did you mean 'training.lr_rampup_mimg'?")


def test_small_network_takes_the_defaults_sized_for_the_resolution(tmp_path):
    from harness.nets import small_defaults

    path = write_spec(tmp_path, BASE.replace("  name: digits", "  name: mnist"))
    job = expand(load_experiment(path, check_data="none"))[0]
    assert job.dataset.resolution == 28
    tuned = small_defaults(28)
    assert (job.network.model_channels, list(job.network.channel_mult)) == (tuned["model_channels"], tuned["channel_mult"])
    assert job.network.encoder_type is None  # the small net has no encoder type


def test_network_harness_nets_cannot_build_fails_at_load(tmp_path):
    path = write_spec(tmp_path)
    error = spec_error(path, ["network.attn_resolutions=[16]"])
    assert error.field == "network.attn_resolutions"
    assert "16 is not a resolution of this network" in str(error)
    error = spec_error(path, ["variants.edm.network.encoder_type=residual"])
    assert error.field == "variants.edm.network.encoder_type"
    assert "arch 'small' has no 'encoder_type'" in str(error)
