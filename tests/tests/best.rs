//! `train.keep_best` and `train.patience` through the real binary: the best validated
//! checkpoint is kept beside the newest and `--best` loads it; early stopping stops where the
//! validation loss stopped falling and stays stopped on resume; both resume exactly.

use std::path::Path;

mod common;

use common::{fails, metrics_without_timing, neurogen, ok, read_json, tiny_train_args};

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A tiny RealNVP on spikes with a learning rate high enough that its validation loss goes
/// up and down: the newest checkpoint is not the best.
const BOUNCY: &[&str] = &["train.lr=0.02", "train.valid_every=5"];

/// `(step, valid loss)` of every validation line.
fn validations(run: &Path) -> Vec<(u64, f64)> {
    metrics_without_timing(run)
        .into_iter()
        .filter(|l| l["split"] == "valid")
        .map(|l| (l["step"].as_u64().unwrap(), l["loss"].as_f64().unwrap()))
        .collect()
}

/// The step of the lowest validation loss (the first, on ties).
fn argmin(v: &[(u64, f64)]) -> u64 {
    v.iter()
        .fold(None::<(u64, f64)>, |best, &(s, l)| match best {
            Some((_, b)) if b <= l => best,
            _ => Some((s, l)),
        })
        .unwrap()
        .0
}

fn best_dirs(run: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("best-"))
        .collect();
    v.sort();
    v
}

#[test]
fn keep_best_keeps_the_lowest_validation_and_best_loads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let extra = [BOUNCY, &["train.keep_best=\"valid_loss\""]].concat();
    let r = ok(
        tmp.path(),
        &args(&tiny_train_args("realnvp-lorenz", &run, 60, &extra)),
    );
    let v = validations(&run);
    let best = argmin(&v);
    assert_ne!(
        best, 60,
        "the test needs a run whose last validation is not its best: {v:?}"
    );
    assert_eq!(best_dirs(&run), vec![format!("best-{best}")], "{v:?}");
    assert!(
        r.stdout
            .contains(&format!("at step {best}, kept in checkpoints/best-{best}")),
        "{}",
        r.stdout
    );
    let inspect = ok(tmp.path(), &["inspect", run.to_str().unwrap()]);
    assert!(
        inspect
            .stdout
            .contains(&format!("best checkpoint: step {best}")),
        "{}",
        inspect.stdout
    );
    // --best loads that checkpoint; without it, the newest.
    for (flag, step) in [(true, best), (false, 60)] {
        let out = tmp.path().join(format!("s-{flag}.npy"));
        let mut a = vec![
            "sample",
            run.to_str().unwrap(),
            "-n",
            "4",
            "-o",
            out.to_str().unwrap(),
        ];
        if flag {
            a.push("--best");
        }
        ok(tmp.path(), &a);
        assert_eq!(
            read_json(&out.with_extension("json"))["checkpoint_step"],
            step
        );
    }
    // A run trained without keep_best has no best checkpoint to load.
    let plain = tmp.path().join("plain");
    ok(
        tmp.path(),
        &args(&tiny_train_args("realnvp-lorenz", &plain, 20, &[])),
    );
    fails(
        tmp.path(),
        &["sample", plain.to_str().unwrap(), "--best"],
        2,
        "trained without train.keep_best = \"valid_loss\"",
    );
}

#[test]
fn patience_stops_where_validation_stopped_improving_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = [
        BOUNCY,
        &["train.keep_best=\"valid_loss\"", "train.patience=2"],
    ]
    .concat();
    let run = tmp.path().join("run");
    let r = ok(
        tmp.path(),
        &args(&tiny_train_args("realnvp-lorenz", &run, 200, &extra)),
    );
    let v = validations(&run);
    let best = argmin(&v);
    let (last, _) = *v.last().unwrap();
    assert!(last < 200, "the run should stop early: {v:?}");
    // Exactly `patience` validations after the best, none lower.
    assert_eq!(last, best + 2 * 5, "{v:?}");
    assert!(
        r.stdout.contains(&format!("stopped early at step {last}")),
        "{}",
        r.stdout
    );
    assert_eq!(best_dirs(&run), vec![format!("best-{best}")]);
    // Resuming a stopped run trains no further.
    let mut again = tiny_train_args("realnvp-lorenz", &run, 200, &extra);
    again.push("--resume".into());
    let r = ok(tmp.path(), &args(&again));
    assert!(r.stdout.contains("trained 0 steps"), "{}", r.stdout);
    assert_eq!(validations(&run), v);

    // Interrupted before the best and resumed: the same metrics, the same best.
    let split = tmp.path().join("split");
    let mid = ((best / 2) / 10 * 10).max(10);
    assert!(mid < last, "{v:?}");
    ok(
        tmp.path(),
        &args(&tiny_train_args("realnvp-lorenz", &split, mid, &extra)),
    );
    let mut resume = tiny_train_args("realnvp-lorenz", &split, 200, &extra);
    resume.push("--resume".into());
    ok(tmp.path(), &args(&resume));
    assert_eq!(metrics_without_timing(&split), metrics_without_timing(&run));
    assert_eq!(best_dirs(&split), best_dirs(&run));
}

#[test]
fn early_stopping_without_a_validation_split_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let extra = [
        "train.patience=3",
        "data.split={ train = 0.9, valid = 0.0, test = 0.1 }",
    ];
    let r = neurogen(
        tmp.path(),
        &args(&tiny_train_args("realnvp-lorenz", &run, 20, &extra)),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("train.patience") && r.stderr.contains("needs a validation split"),
        "{}",
        r.stderr
    );
    let r = neurogen(
        tmp.path(),
        &args(&tiny_train_args(
            "realnvp-lorenz",
            &run,
            20,
            &["train.keep_best=\"best\""],
        )),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("train.keep_best"), "{}", r.stderr);
    // A GAN's validation loss is its critic's: refused, by key.
    let r = neurogen(
        tmp.path(),
        &args(&tiny_train_args(
            "gan-kuramoto",
            &tmp.path().join("gan"),
            10,
            &["train.keep_best=\"valid_loss\""],
        )),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("train.keep_best") && r.stderr.contains("critic's loss"),
        "{}",
        r.stderr
    );
}

#[test]
fn resume_names_the_keys_that_differ_and_lets_early_stopping_change() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    ok(
        tmp.path(),
        &args(&tiny_train_args("realnvp-lorenz", &run, 10, &[])),
    );
    // keep_best and patience may be switched on when resuming.
    let mut a = tiny_train_args(
        "realnvp-lorenz",
        &run,
        20,
        &["train.keep_best=\"valid_loss\"", "train.patience=5"],
    );
    a.push("--resume".into());
    ok(tmp.path(), &args(&a));
    // Anything else is refused, naming what differs.
    let mut b = tiny_train_args("realnvp-lorenz", &run, 30, &["train.lr=0.5"]);
    b.push("--resume".into());
    let r = neurogen(tmp.path(), &args(&b));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("differs") && r.stderr.contains("in train.lr"),
        "{}",
        r.stderr
    );
}
