//! Conditional generation through the binary: every family trains on labelled data and
//! samples by label; labels survive every output format; bad `--label` requests and
//! conditional runs without labels fail with their messages; conditional runs resume exactly;
//! and where the truth is known, samples carry their condition's signature, a decoder trained
//! on them reads real data as well as one trained on real data, and the model itself
//! classifies real windows by likelihood.

mod common;

use std::path::Path;

use common::{metrics_without_timing, neurogen, ok, read_json, read_npy, root, tiny_train_args};
use neurogen_data::{DataConfig, SplitName};

/// The `--set`s that give a shipped config two conditions and a conditional model.
fn conditional(config: &str) -> Vec<&'static str> {
    let mut sets = vec!["data.n_conditions=2", "model.conditional=true"];
    if config.ends_with("kuramoto") {
        sets.push("data.n_recordings=2");
    }
    sets
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Trains shipped `config` shrunk to `steps` steps, two conditions, conditional, into `out`.
fn train_conditional(cwd: &Path, config: &str, out: &Path, steps: u64) {
    let a = tiny_train_args(config, out, steps, &conditional(config));
    ok(cwd, &args(&a));
}

#[test]
fn every_family_trains_conditionally_and_samples_by_label() {
    let tmp = tempfile::tempdir().unwrap();
    for config in [
        "vae-lorenz",
        "gan-kuramoto",
        "realnvp-kuramoto",
        "latent-ode-lorenz",
        "diffusion-kuramoto",
        "wavenet-kuramoto",
    ] {
        let run = tmp.path().join(config);
        train_conditional(tmp.path(), config, &run, 10);
        let out = tmp.path().join(format!("{config}.npy"));
        ok(
            tmp.path(),
            &[
                "sample",
                run.to_str().unwrap(),
                "-n",
                "6",
                "--label",
                "c2",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        let x = read_npy(&out);
        assert_eq!(x.shape[0], 6, "{config}");
        assert!(x.values.iter().all(|v| v.is_finite()), "{config}");
        let side = read_json(&out.with_extension("json"));
        assert_eq!(
            side["label_names"],
            serde_json::json!(["c1", "c2"]),
            "{config}"
        );
        assert_eq!(
            side["labels"],
            serde_json::json!([1, 1, 1, 1, 1, 1]),
            "{config}"
        );
        // Without --label: the training split's proportions (two balanced conditions).
        ok(
            tmp.path(),
            &[
                "sample",
                run.to_str().unwrap(),
                "-n",
                "4",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        let side = read_json(&out.with_extension("json"));
        assert_eq!(side["labels"].as_array().unwrap().len(), 4, "{config}");
    }
}

/// A `[data]` table read back from `path`, every window in the training split.
fn read_back(path: &Path, extra: &str) -> neurogen_data::Signals {
    let ext = path.extension().unwrap().to_str().unwrap();
    let text = format!(
        "source = \"{ext}\"\npath = {path:?}\n{extra}split = {{ train = 1.0, valid = 0.0, test = 0.0 }}"
    );
    let table: toml::Table = text.parse().unwrap();
    let cfg: DataConfig = neurogen_data::from_table(table).unwrap();
    let w = cfg.build(0).unwrap();
    // Trials go to the split in a shuffled order; put them back in file order.
    let mut order = w.indices(SplitName::Train);
    order.sort_unstable();
    w.signals.select(&order)
}

#[test]
fn labels_survive_every_output_format() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train_conditional(tmp.path(), "vae-kuramoto", &run, 5);
    let want = [0u32, 0, 0, 1, 1, 1];
    for ext in ["npy", "npz", "edf", "bdf", "csv"] {
        let out = tmp.path().join(format!("s.{ext}"));
        ok(
            tmp.path(),
            &[
                "sample",
                run.to_str().unwrap(),
                "-n",
                "6",
                "--label",
                "all",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        let side = read_json(&tmp.path().join("s.json"));
        assert_eq!(side["labels"], serde_json::json!(want), "{ext} sidecar");
        let back = match ext {
            "npy" => neurogen_data::samples::read_windows(&out, None, Default::default()).unwrap(),
            "npz" => read_back(&out, ""),
            // EDF+/BDF+: one annotation per window at its start, cut back out as epochs.
            "edf" | "bdf" => read_back(
                &out,
                "epochs = { events = [\"c1\", \"c2\"], tmin = 0.0, tmax = 0.25 }\n",
            ),
            _ => read_back(&out, "layout = \"trials\"\nsfreq = 128.0\n"),
        };
        let names: Vec<&str> = back.meta.label_names.iter().map(String::as_str).collect();
        let got: Vec<&str> = back
            .labels
            .as_ref()
            .unwrap_or_else(|| panic!("{ext}: no labels read back"))
            .iter()
            .map(|&l| names[l as usize])
            .collect();
        assert_eq!(got, ["c1", "c1", "c1", "c2", "c2", "c2"], "{ext}");
    }
}

#[test]
fn bad_label_requests_and_unlabelled_conditional_runs_fail_with_their_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train_conditional(tmp.path(), "vae-lorenz", &run, 3);
    let r = run.to_str().unwrap();
    for (extra, needle) in [
        (vec!["--label", "c3"], "--label c3: not a label of"),
        (
            vec!["--label", "c1", "--label", "c2", "-n", "5"],
            "-n 5: cannot be split equally over the 2 labels",
        ),
        (
            vec!["--label", "all", "-n", "3"],
            "-n 3: cannot be split equally",
        ),
    ] {
        let mut a = vec!["sample", r];
        a.extend(extra.iter());
        let out = neurogen(tmp.path(), &a);
        assert_eq!(out.code, 2, "{a:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{a:?}: {}", out.stderr);
        assert!(!out.stderr.contains("internal error"));
    }
    // Windows without labels: scoring them under a conditional run needs --classify, which
    // scores the marginal log p(x).
    let windows = tmp.path().join("w.npy");
    ok(
        tmp.path(),
        &[
            "sample",
            r,
            "-n",
            "4",
            "-o",
            windows.to_str().unwrap(),
            "-q",
        ],
    );
    let side = tmp.path().join("w.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&side).unwrap()).unwrap();
    let obj = meta.as_object_mut().unwrap();
    assert!(obj.remove("labels").is_some(), "{side:?} had no labels");
    obj.remove("label_names");
    std::fs::write(&side, meta.to_string()).unwrap();
    let w = windows.to_str().unwrap();
    let out = neurogen(tmp.path(), &["score", r, w, "-k", "2"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("carry no labels") && out.stderr.contains("--classify"),
        "{}",
        out.stderr
    );
    let scored = tmp.path().join("s.csv");
    let s = scored.to_str().unwrap();
    ok(
        tmp.path(),
        &["score", r, w, "-k", "2", "--classify", "-o", s, "-q"],
    );
    let text = std::fs::read_to_string(&scored).unwrap();
    let first = text.lines().nth(1).unwrap();
    assert!(first.contains("marginal_"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    // An unconditional run on the same labelled data refuses --label.
    let plain = tmp.path().join("plain");
    let a = tiny_train_args("vae-lorenz", &plain, 3, &["data.n_conditions=2"]);
    ok(tmp.path(), &args(&a));
    let out = neurogen(
        tmp.path(),
        &["sample", plain.to_str().unwrap(), "--label", "c1"],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("is unconditional"), "{}", out.stderr);
    // A conditional model on data without labels is refused before training, naming the key
    // and the data source.
    let bad = tmp.path().join("bad");
    let a = tiny_train_args("vae-lorenz", &bad, 3, &["model.conditional=true"]);
    let out = neurogen(tmp.path(), &args(&a));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("model.conditional")
            && out.stderr.contains("\"lorenz_spikes\" gives no labels"),
        "{}",
        out.stderr
    );
    assert!(!bad.join("metrics.jsonl").exists());
}

#[test]
fn conditional_runs_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    for config in ["vae-lorenz", "gan-kuramoto"] {
        let whole = tmp.path().join(format!("{config}-whole"));
        train_conditional(tmp.path(), config, &whole, 20);
        let split = tmp.path().join(format!("{config}-split"));
        train_conditional(tmp.path(), config, &split, 10);
        let mut a = tiny_train_args(config, &split, 20, &conditional(config));
        a.push("--resume".into());
        ok(tmp.path(), &args(&a));
        assert_eq!(
            metrics_without_timing(&split),
            metrics_without_timing(&whole),
            "{config}"
        );
    }
}

/// Mean count per neuron of the windows labelled `label` in an `.npy` and its sidecar.
fn rates(path: &Path, label: u64) -> Vec<f64> {
    let x = read_npy(path);
    let side = read_json(&path.with_extension("json"));
    let labels: Vec<u64> = side["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let (c, t) = (x.shape[1], x.shape[2]);
    let mut sum = vec![0.0; c];
    let mut n = 0.0;
    for (i, l) in labels.iter().enumerate() {
        if *l == label {
            n += 1.0;
            for (ch, s) in sum.iter_mut().enumerate() {
                let row = &x.values[(i * c + ch) * t..(i * c + ch + 1) * t];
                *s += row.iter().map(|v| *v as f64).sum::<f64>() / t as f64;
            }
        }
    }
    sum.iter().map(|s| s / n).collect()
}

/// ln(rate in c1 / rate in c2), averaged over the neurons condition c1 drives (even indices)
/// and over the others.
fn signature(path: &Path) -> (f64, f64) {
    let (r1, r2) = (rates(path, 0), rates(path, 1));
    let ratio: Vec<f64> = r1.iter().zip(&r2).map(|(a, b)| (a / b).ln()).collect();
    let mean = |odd: usize| {
        let v: Vec<f64> = (0..ratio.len())
            .filter(|i| i % 2 == odd)
            .map(|i| ratio[i])
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    (mean(0), mean(1))
}

#[test]
fn conditional_samples_carry_the_truth_and_decode_real_data() {
    // Lorenz spikes where condition c1 doubles the rates of the even neurons and c2 those of
    // the odd ones (the simulator's truth: ln 2 = 0.69 either way).
    let tmp = tempfile::tempdir().unwrap();
    let cfg = root().join("configs/vae-lorenz.toml");
    let run = tmp.path().join("run");
    let sets = [
        "data.n_trials=400",
        "data.n_neurons=12",
        "data.n_bins=25",
        "data.n_conditions=2",
        "model.conditional=true",
        "model.hidden=[64]",
        "train.steps=400",
        "train.kl_warmup_steps=100",
        "train.valid_every=200",
    ];
    let mut a = vec![
        "train".to_string(),
        cfg.display().to_string(),
        "--out".into(),
        run.display().to_string(),
        "--backend".into(),
        "flex".into(),
        "-q".into(),
    ];
    for s in sets {
        a.extend(["--set".to_string(), s.to_string()]);
    }
    ok(tmp.path(), &args(&a));

    // The data's signature, and the samples': within 40 % of it, with the right sign.
    let data = tmp.path().join("data.npy");
    let mut d = vec!["data".to_string(), cfg.display().to_string(), "-o".into()];
    d.push(data.display().to_string());
    for s in sets {
        d.extend(["--set".to_string(), s.to_string()]);
    }
    ok(tmp.path(), &args(&d));
    let samples = tmp.path().join("s.npy");
    ok(
        tmp.path(),
        &[
            "sample",
            run.to_str().unwrap(),
            "-n",
            "400",
            "--label",
            "all",
            "-o",
            samples.to_str().unwrap(),
        ],
    );
    let (de, dodd) = signature(&data);
    let (se, sodd) = signature(&samples);
    assert!(de > 0.5 && dodd < -0.5, "data: {de} / {dodd}");
    assert!(
        (se - de).abs() < 0.4 * de.abs() && (sodd - dodd).abs() < 0.4 * dodd.abs(),
        "samples {se:.3} / {sodd:.3} vs data {de:.3} / {dodd:.3}"
    );

    // Train on synthetic, test on real: at least 0.9 of train on real.
    ok(tmp.path(), &["eval", run.to_str().unwrap(), "-q"]);
    let rep = read_json(&run.join("eval/report.json"));
    let ratio = rep["tstr_trtr_ratio"].as_f64().unwrap();
    assert!(ratio >= 0.9, "TSTR / TRTR = {ratio}: {rep}");
    for key in [
        "rate_correlation@c1",
        "rate_correlation@mean",
        "evoked_correlation@c2",
        "augment_real_k10",
        "augment_real+synthetic_k10",
        "augment_real+ft_surrogate_k10",
        "augmentation_gain_k10_vs_real",
    ] {
        assert!(rep[key].is_number(), "{key} missing: {rep}");
    }
    assert!(run.join("eval/figures/augmentation.png").exists());

    // The model as a likelihood decoder of real windows: well above chance (0.5).
    let scores = tmp.path().join("scores.csv");
    let mut sc = vec![
        "score".to_string(),
        run.display().to_string(),
        data.display().to_string(),
        "--classify".into(),
        "-k".into(),
        "8".into(),
        "-o".into(),
        scores.display().to_string(),
    ];
    sc.push("-q".into());
    ok(tmp.path(), &args(&sc));
    let text = std::fs::read_to_string(&scores).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (li, pi) = (
        header.iter().position(|h| *h == "label").unwrap(),
        header.iter().position(|h| *h == "predicted").unwrap(),
    );
    assert!(header.contains(&"posterior@c1") && header.contains(&"log_likelihood@c2"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let right = rows.iter().filter(|r| r[li] == r[pi]).count();
    let acc = right as f64 / rows.len() as f64;
    assert!(
        acc > 0.8,
        "likelihood decoder accuracy {acc} over {} windows",
        rows.len()
    );
}
