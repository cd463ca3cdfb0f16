//! Every shipped config loads, and every bad config fails through the binary with its own message.

mod common;

use common::{neurogen, root};
use neurogen_train::Experiment;

#[test]
fn every_shipped_config_loads_and_round_trips() {
    let mut seen = 0;
    let configs = std::fs::read_dir(root().join("configs")).unwrap();
    let bench = std::fs::read_dir(root().join("configs/bench")).unwrap();
    for entry in configs.chain(bench) {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let exp = Experiment::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
        // The reference workloads' experiments are named bench-<file>.
        let prefix = if path.parent().unwrap().ends_with("bench") {
            "bench-"
        } else {
            ""
        };
        assert_eq!(
            exp.name,
            format!("{prefix}{}", path.file_stem().unwrap().to_string_lossy()),
            "name matches file"
        );
        // The resolved form a run directory stores parses back to the same experiment.
        let table: toml::Table = exp.to_toml().unwrap().parse().unwrap();
        assert_eq!(Experiment::from_table(table, &path).unwrap(), exp);
        // A config that reads a recording ships it, and it reads.
        if exp.data.source.clone().path_mut().is_some() {
            let w = exp.data.build(exp.seed).unwrap_or_else(|e| panic!("{e}"));
            assert!(w.signals.n > 0);
        }
        seen += 1;
    }
    assert!(seen >= 15, "expected the shipped configs, found {seen}");
}

#[test]
fn set_overrides_any_key_before_checks() {
    let path = root().join("configs/vae-lorenz.toml");
    let exp = Experiment::load(
        &path,
        &[
            "train.steps=17".into(),
            "model.hidden=[8, 4]".into(),
            "backend=flex".into(),
        ],
    )
    .unwrap();
    assert_eq!(exp.train.steps, 17);
    assert_eq!(exp.backend.name(), "flex");
    let e = Experiment::load(&path, &["train.batch_size=0".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train.batch_size") && e.contains("positive"),
        "{e}"
    );
    let e = Experiment::load(&path, &["train.steps".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--set train.steps") && e.contains("key.path=value"),
        "{e}"
    );
}

/// (fixture, fragments the one error line must contain)
const BAD: &[(&str, &[&str])] = &[
    (
        "misspelt_key",
        &["data", "unknown field `n_trails`", "n_trials"],
    ),
    (
        "wrong_type",
        &["train.batch_size", "invalid type: string \"big\""],
    ),
    (
        "wrong_type_in_data",
        &["data.n_neurons", "invalid type: string \"four\""],
    ),
    (
        "unknown_model_kind",
        &["model.kind", "unknown kind \"transformer\"", "\"vae\""],
    ),
    (
        "batch_too_large",
        &[
            "train.batch_size",
            "64 is larger than the training set (16 windows)",
        ],
    ),
    ("syntax_error", &["not valid TOML", "line 5"]),
    ("bad_split", &["data.split", "must be 1"]),
    (
        "unknown_backend",
        &["backend", "unknown variant `cuda`", "ndarray"],
    ),
    ("poisson_on_continuous", &["model.likelihood", "count data"]),
    ("negative_lr", &["train.lr", "must be positive"]),
    (
        "negative_weight_decay",
        &["train.weight_decay", "non-negative decay"],
    ),
    ("unknown_keep_best", &["train.keep_best", "valid_nll"]),
    (
        "ar1_on_counts",
        &["likelihood", "\"gaussian_ar1\" needs continuous data"],
    ),
    (
        "unknown_source",
        &["data.source", "unknown source \"mat\"", "lorenz_spikes"],
    ),
    ("window_too_long", &["data.window", "50 samples is longer"]),
    ("missing_model", &["missing field `model`"]),
    ("unknown_top_key", &["unknown field `epochs`"]),
    ("zero_neurons", &["data.n_neurons", "must be positive"]),
    (
        "wgan_gp",
        &[
            "model.loss",
            "double backward",
            "zero gradient",
            "wgan_clip",
        ],
    ),
    ("zero_flow_layers", &["model.n_layers", "at least 1"]),
    ("flow_dropout_one", &["model.dropout", "[0, 1), got 1"]),
    (
        "adversarial_on_counts",
        &["model.adversarial", "Gaussian likelihood", "Poisson counts"],
    ),
    (
        "adversarial_unknown_key",
        &["model", "unknown field `n_critic`", "weight"],
    ),
    (
        "adversarial_negative_weight",
        &["model.adversarial.weight", "≥ 0, got -1"],
    ),
    ("extrapolate_everything", &["model.extrapolate", "[0, 1)"]),
    (
        "unknown_solver",
        &["model.solver", "unknown variant `rk45`", "dopri5"],
    ),
    (
        "gan_unknown_arch",
        &["model.arch", "unknown variant `transformer`", "conv"],
    ),
    (
        "edf_missing_file",
        &["data.path", "no-such-recording.edf", "No such file"],
    ),
    (
        "edf_unknown_channel",
        &["data.channels", "no channel \"Oz\"", "Fp1, Cz, O2"],
    ),
    (
        "npy_not_npy",
        &["data.path", "plain.edf", "not an NPY file"],
    ),
    (
        "epochs_unknown_event",
        &["data.epochs.events", "[\"999\"]", "769"],
    ),
    (
        "csv_unknown_layout",
        &["data.layout", "unknown variant `rows`", "trials"],
    ),
    (
        "diffusion_sample_steps",
        &["model.sample_steps", "must lie in 1..=1000, got 2000"],
    ),
    (
        "diffusion_ou_length",
        &["model.ou_length", "positive number of samples, got 0"],
    ),
    (
        "diffusion_unknown_noise",
        &["model.noise", "unknown variant `pink`", "white", "ou"],
    ),
    (
        "diffusion_guidance_without_dropout",
        &["model.guidance", "label_dropout = 0 never trains"],
    ),
    (
        "diffusion_eps_cosine_ddim",
        &["model.prediction", "blows up at the first step", "\"v\""],
    ),
    ("diffusion_ema_one", &["model.ema", "[0, 1), got 1"]),
    (
        "diffusion_odd_time_embed",
        &["model.time_embed", "even", "got 7"],
    ),
    (
        "wavenet_poisson_on_continuous",
        &["model.likelihood", "needs count data", "continuous"],
    ),
    (
        "wavenet_mixture_of_counts",
        &[
            "model.mixture",
            "mixture of 3 Gaussians cannot be used",
            "mixture = 1",
        ],
    ),
    (
        "wavenet_zero_dilation",
        &["model.dilations", "each dilation ≥ 1", "[1, 0, 4]"],
    ),
    (
        "izhikevich_zero_bin_width",
        &["data.bin_ms", "must be positive"],
    ),
];

#[test]
fn every_bad_config_fails_with_its_own_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut messages = Vec::new();
    for (name, fragments) in BAD {
        let file = root().join(format!("tests/fixtures/bad/{name}.toml"));
        let out = tmp.path().join(name);
        let r = neurogen(
            tmp.path(),
            &[
                "train",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 2, "{name}: exit code {}\n{}", r.code, r.stderr);
        let err = r.stderr.trim();
        assert!(
            !err.contains("internal error") && !err.contains("RUST_BACKTRACE"),
            "{name}: {err}"
        );
        assert!(
            err.contains(&format!("{name}.toml")),
            "{name}: message must name the file: {err}"
        );
        for f in *fragments {
            assert!(err.contains(f), "{name}: expected {f:?} in: {err}");
        }
        assert!(
            !out.join("metrics.jsonl").exists(),
            "{name}: no run may start"
        );
        messages.push(err.to_string());
    }
    let mut unique = messages.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        messages.len(),
        "each bad config has its own message"
    );

    let r = neurogen(tmp.path(), &["train", "does-not-exist.toml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("does-not-exist.toml") && r.stderr.contains("cannot read"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_usage_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["frobnicate"],
        vec!["train"],
        vec!["train", "x.toml", "--backend", "tpu"],
        vec!["sample", "no-such-run"],
        vec!["inspect", "no-such-run"],
    ] {
        let r = neurogen(tmp.path(), &args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            !r.stderr.contains("internal error"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = neurogen(tmp.path(), &["sample", "no-such-run"]);
    assert!(
        r.stderr.contains("no-such-run") && r.stderr.contains("no such run directory"),
        "{}",
        r.stderr
    );
}
