//! The bad-input corpus: every case must end with exit code 2 and one message naming the file
//! and the problem, with no panic, the input untouched and no output left behind.
//!
//! Recordings live in `tests/fixtures/bad/files/` (written by `make_bad.py` there); bad
//! experiment files in `tests/fixtures/bad/*.toml` (their table is in `configs.rs`); damaged run
//! directories are made here from a freshly trained tiny run, one edit per case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use common::{neurogen, ok, root, tiny_train_args};

/// How a case reaches the binary.
enum Via {
    /// `train` on an experiment whose `[data]` reads the fixture with these lines.
    Source(&'static str),
    /// Arguments; `{file}` is the fixture, `{run}` a trained tiny spike run, `{flow}` a
    /// trained tiny EEG run, `{good}` a valid `.npy` of the EEG run's windows and `{out}` an
    /// output path that must not appear.
    Args(&'static [&'static str]),
    /// A copy of the tiny run, damaged by the edit, then these arguments (`{run}` the copy).
    Run(Edit, &'static [&'static str]),
}

/// Damage done to a copy of a trained run (`ckpt` = its newest checkpoint, step 20).
#[derive(Clone, Copy)]
enum Edit {
    RemoveCkptFile(&'static str),
    TruncateCkptFile(&'static str),
    FlipByteInCkptFile(&'static str),
    WriteCkptFile(&'static str, &'static str),
    RemoveAllCheckpoints,
    RemoveRunFile(&'static str),
    WriteRunFile(&'static str, &'static str),
    /// `experiment.toml` taken from a RealNVP run (another model kind).
    ExperimentOfAnotherKind,
    /// `experiment.toml` from a future neurogen: a key this one does not know.
    ExperimentFromNewerVersion,
}

const SAMPLE: &[&str] = &["sample", "{run}", "-n", "4", "-o", "{out}"];
const RESUME: &[&str] = &["train", "{config}", "--out", "{run}", "--resume"];

/// (case, fixture file or "", how, fragments the one error line must contain besides the file)
const CASES: &[(&str, &str, Via, &[&str])] = &[
    // EDF / BDF recordings.
    (
        "edf truncated inside the header",
        "edf_truncated_header.edf",
        Via::Source("source = \"edf\""),
        &["header: 100 bytes", "at least 256"],
    ),
    (
        "edf zero bytes",
        "edf_empty.edf",
        Via::Source("source = \"edf\""),
        &["header: 0 bytes"],
    ),
    (
        "edf wrong version field",
        "edf_wrong_version.edf",
        Via::Source("source = \"edf\""),
        &["version", "not an EDF/BDF file"],
    ),
    (
        "edf absurd number of records",
        "edf_absurd_record_count.edf",
        Via::Source("source = \"edf\""),
        &["declares 99999999 records", "truncated"],
    ),
    (
        "edf absurd samples per record",
        "edf_absurd_samples_per_record.edf",
        Via::Source("source = \"edf\""),
        &["samples per record", "larger than the file"],
    ),
    (
        "edf header size field wrong",
        "edf_header_size_wrong.edf",
        Via::Source("source = \"edf\""),
        &["header bytes: 4096", "1024-byte header"],
    ),
    (
        "edf no signals",
        "edf_zero_signals.edf",
        Via::Source("source = \"edf\""),
        &["number of signals: 0"],
    ),
    (
        "edf zero data records",
        "edf_zero_records.edf",
        Via::Source("source = \"edf\""),
        &["declares 0 records"],
    ),
    (
        "edf data cut short",
        "edf_truncated_data.edf",
        Via::Source("source = \"edf\""),
        &["declares 3 records", "2 whole records", "truncated"],
    ),
    (
        "edf physical minimum not a number",
        "edf_bad_physical_min.edf",
        Via::Source("source = \"edf\""),
        &[
            "signal 2 (\"Cz\") physical minimum",
            "\"abc\" is not a number",
        ],
    ),
    (
        "edf empty digital range",
        "edf_digital_range_empty.edf",
        Via::Source("source = \"edf\""),
        &[
            "signal 3 (\"O2\") digital minimum/maximum",
            "[-32768, -32768]",
        ],
    ),
    (
        "edf zero record duration",
        "edf_zero_record_duration.edf",
        Via::Source("source = \"edf\""),
        &["duration of a data record: 0 s"],
    ),
    (
        "bdf truncated",
        "bdf_truncated.bdf",
        Via::Source("source = \"bdf\""),
        &["declares 2 records", "truncated"],
    ),
    (
        "bdf wrong magic",
        "bdf_wrong_magic.bdf",
        Via::Source("source = \"bdf\""),
        &["BIOSEMI", "not an EDF/BDF file"],
    ),
    (
        "edf fed to the npy source",
        "edf_wrong_version.edf",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["not an NPY file"],
    ),
    // NPY / NPZ recordings.
    (
        "npy truncated header",
        "npy_truncated_header.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["not an NPY file"],
    ),
    (
        "npy wrong magic",
        "npy_wrong_magic.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["magic \\x93NUMPY missing"],
    ),
    (
        "npy shape declaring petabytes",
        "npy_absurd_shape.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &[
            "[1000000, 1000000, 1000]",
            "4000000000000000 bytes",
            "the file has 1536",
        ],
    ),
    (
        "npy data cut short",
        "npy_truncated_data.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["needs 1536 bytes of data, the file has 1496"],
    ),
    (
        "npy NaN in the data",
        "npy_nan.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["value 100", "is NaN", "must be finite"],
    ),
    (
        "npy Inf in the data",
        "npy_inf.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["value 7", "is inf"],
    ),
    (
        "npy complex dtype",
        "npy_complex_dtype.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["dtype '<c8' is not supported"],
    ),
    (
        "npy object dtype",
        "npy_object_dtype.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["dtype '|O' is not supported"],
    ),
    (
        "npy zero windows",
        "npy_zero_windows.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["[0, 3, 32]", "the data are empty"],
    ),
    (
        "npy one-dimensional",
        "npy_one_dimensional.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &[
            "shape [384]",
            "expected [channels, samples] or [n, channels, time]",
        ],
    ),
    (
        "npy header not a dict",
        "npy_header_not_a_dict.npy",
        Via::Source("source = \"npy\"\nsfreq = 128.0"),
        &["header", "'descr'"],
    ),
    (
        "npz not a zip",
        "npz_not_a_zip.npz",
        Via::Source("source = \"npz\"\nsfreq = 128.0"),
        &["not an NPZ (zip) archive"],
    ),
    (
        "npz truncated",
        "npz_truncated.npz",
        Via::Source("source = \"npz\"\nsfreq = 128.0"),
        &["not an NPZ (zip) archive"],
    ),
    (
        "npz without a data array",
        "npz_no_array.npz",
        Via::Source("source = \"npz\"\nsfreq = 128.0"),
        &["no \"data\" member", "name one"],
    ),
    (
        "npz labels disagree with trials",
        "npz_labels_count_wrong.npz",
        Via::Source("source = \"npz\"\nsfreq = 128.0"),
        &["3 labels for 4 trials"],
    ),
    // CSV recordings.
    (
        "csv rows disagree on channel count",
        "csv_ragged.csv",
        Via::Source("source = \"csv\"\nsfreq = 128.0"),
        &["row 42: 2 fields, the header has 3"],
    ),
    (
        "csv cell not a number",
        "csv_not_a_number.csv",
        Via::Source("source = \"csv\"\nsfreq = 128.0"),
        &["row 19, column \"Cz\"", "\"abc\" is not a number"],
    ),
    (
        "csv zero bytes",
        "csv_empty.csv",
        Via::Source("source = \"csv\"\nsfreq = 128.0"),
        &["header row"],
    ),
    (
        "csv header only",
        "csv_header_only.csv",
        Via::Source("source = \"csv\"\nsfreq = 128.0"),
        &["no data rows"],
    ),
    (
        "csv NaN cell",
        "csv_nan.csv",
        Via::Source("source = \"csv\"\nsfreq = 128.0"),
        &["is NaN", "must be finite"],
    ),
    (
        "csv trials rows disagree",
        "csv_trials_ragged.csv",
        Via::Source("source = \"csv\"\nsfreq = 128.0\nlayout = \"trials\""),
        &["row 3: 6 fields, the header has 7"],
    ),
    (
        "window longer than the recording",
        "csv_short.csv",
        Via::Source("source = \"csv\"\nsfreq = 128.0"),
        &["data.window", "32 samples is longer", "16 samples"],
    ),
    // Files handed to commands directly.
    (
        "score: channel count differs from the run",
        "npy_two_channels.npy",
        Via::Args(&["score", "{flow}", "{file}", "-o", "{out}"]),
        &["2 channels", "3"],
    ),
    (
        "score: NaN windows",
        "npy_nan.npy",
        Via::Args(&["score", "{flow}", "{file}", "-o", "{out}"]),
        &["NaN"],
    ),
    (
        "score: absurd shape",
        "npy_absurd_shape.npy",
        Via::Args(&["score", "{flow}", "{file}", "-o", "{out}"]),
        &["4000000000000000 bytes"],
    ),
    (
        "eval: samples with Inf",
        "npy_inf.npy",
        Via::Args(&[
            "eval",
            "--samples",
            "{file}",
            "--against",
            "{good}",
            "--sfreq",
            "128",
            "-o",
            "{out}",
        ]),
        &["inf"],
    ),
    (
        "eval: one-dimensional samples",
        "npy_one_dimensional.npy",
        Via::Args(&[
            "eval",
            "--samples",
            "{file}",
            "--against",
            "{good}",
            "--sfreq",
            "128",
            "-o",
            "{out}",
        ]),
        &["[384]"],
    ),
    (
        "plot: not an NPY file",
        "npy_wrong_magic.npy",
        Via::Args(&["plot", "{file}", "--sfreq", "128", "-o", "{out}"]),
        &["not an NPY file"],
    ),
    // Damaged run directories.
    (
        "checkpoint weights missing",
        "model.bpk",
        Via::Run(Edit::RemoveCkptFile("model.bpk"), SAMPLE),
        &["missing from the checkpoint"],
    ),
    (
        "checkpoint weights truncated",
        "model.bpk",
        Via::Run(Edit::TruncateCkptFile("model.bpk"), SAMPLE),
        &["bytes, but the checkpoint manifest says", "truncated"],
    ),
    (
        "checkpoint weights corrupt",
        "model.bpk",
        Via::Run(Edit::FlipByteInCkptFile("model.bpk"), SAMPLE),
        &["differ from the checkpoint manifest's hash", "corrupt"],
    ),
    (
        "optimiser state corrupt, on resume",
        "optim.bpk",
        Via::Run(Edit::FlipByteInCkptFile("optim.bpk"), RESUME),
        &["corrupt"],
    ),
    (
        "checkpoint state corrupt, on resume",
        "state.toml",
        Via::Run(Edit::FlipByteInCkptFile("state.toml"), RESUME),
        &["corrupt"],
    ),
    (
        "checkpoint without manifest (older neurogen)",
        "manifest.json",
        Via::Run(Edit::RemoveCkptFile("manifest.json"), SAMPLE),
        &["checkpoint format 1", "retrain"],
    ),
    (
        "checkpoint from a newer format",
        "manifest.json",
        Via::Run(
            Edit::WriteCkptFile(
                "manifest.json",
                r#"{"format": 9, "neurogen_version": "9.0.0", "model": "vae", "step": 20, "files": {}}"#,
            ),
            SAMPLE,
        ),
        &["checkpoint format 9 (written by neurogen 9.0.0)"],
    ),
    (
        "checkpoint manifest not JSON",
        "manifest.json",
        Via::Run(
            Edit::WriteCkptFile("manifest.json", "{\"format\": "),
            SAMPLE,
        ),
        &["malformed checkpoint manifest"],
    ),
    (
        "run directory of another model kind",
        "manifest.json",
        Via::Run(Edit::ExperimentOfAnotherKind, SAMPLE),
        &["holds a `vae` model", "describes a `realnvp` model"],
    ),
    (
        "run directory from a newer neurogen",
        "experiment.toml",
        Via::Run(Edit::ExperimentFromNewerVersion, SAMPLE),
        &["written by neurogen 9.9.9", "cannot read"],
    ),
    (
        "run directory without checkpoints",
        "",
        Via::Run(Edit::RemoveAllCheckpoints, SAMPLE),
        &["holds no complete checkpoint yet"],
    ),
    (
        "run directory without experiment.toml",
        "experiment.toml",
        Via::Run(Edit::RemoveRunFile("experiment.toml"), SAMPLE),
        &["is this a neurogen run directory?"],
    ),
    (
        "experiment.toml not TOML",
        "experiment.toml",
        Via::Run(
            Edit::WriteRunFile("experiment.toml", "name = [unclosed"),
            SAMPLE,
        ),
        &["not valid TOML"],
    ),
    (
        "data.json missing",
        "data.json",
        Via::Run(Edit::RemoveRunFile("data.json"), SAMPLE),
        &["cannot read the run's data statistics"],
    ),
    (
        "data.json malformed",
        "data.json",
        Via::Run(
            Edit::WriteRunFile("data.json", "{\"sfreq\": \"fast\"}"),
            SAMPLE,
        ),
        &["malformed data statistics"],
    ),
];

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for (p, bytes) in snapshot(from) {
        let dest = to.join(p.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
}

fn apply(edit: Edit, run: &Path, other_kind: &Path) {
    let ckpt = run.join("checkpoints/20");
    match edit {
        Edit::RemoveCkptFile(f) => std::fs::remove_file(ckpt.join(f)).unwrap(),
        Edit::TruncateCkptFile(f) => {
            let b = std::fs::read(ckpt.join(f)).unwrap();
            std::fs::write(ckpt.join(f), &b[..b.len() / 2]).unwrap();
        }
        Edit::FlipByteInCkptFile(f) => {
            let mut b = std::fs::read(ckpt.join(f)).unwrap();
            let at = b.len() / 2;
            b[at] ^= 0x20;
            std::fs::write(ckpt.join(f), b).unwrap();
        }
        Edit::WriteCkptFile(f, text) => std::fs::write(ckpt.join(f), text).unwrap(),
        Edit::RemoveAllCheckpoints => {
            for e in std::fs::read_dir(run.join("checkpoints")).unwrap() {
                std::fs::remove_dir_all(e.unwrap().path()).unwrap();
            }
        }
        Edit::RemoveRunFile(f) => std::fs::remove_file(run.join(f)).unwrap(),
        Edit::WriteRunFile(f, text) => std::fs::write(run.join(f), text).unwrap(),
        Edit::ExperimentOfAnotherKind => {
            std::fs::copy(
                other_kind.join("experiment.toml"),
                run.join("experiment.toml"),
            )
            .unwrap();
        }
        Edit::ExperimentFromNewerVersion => {
            let text = std::fs::read_to_string(run.join("experiment.toml")).unwrap();
            let text = text
                .replace(
                    "neurogen_version = \"0.1.0\"",
                    "neurogen_version = \"9.9.9\"",
                )
                .replace("[train]\n", "[train]\nwarp_drive = true\n");
            assert!(text.contains("9.9.9") && text.contains("warp_drive"));
            std::fs::write(run.join("experiment.toml"), text).unwrap();
        }
    }
}

#[test]
fn every_bad_input_exits_2_with_one_message_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = root().join("tests/fixtures/bad/files");
    // A tiny trained run (checkpoints at 10 and 20), one of another kind, and valid windows.
    let run = tmp.path().join("run");
    let args = tiny_train_args("vae-lorenz", &run, 20, &[]);
    ok(
        tmp.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let other = tmp.path().join("flow");
    let args = tiny_train_args("realnvp-kuramoto", &other, 2, &[]);
    ok(
        tmp.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let good = tmp.path().join("good.npy");
    let cfg = root().join("configs/realnvp-kuramoto.toml");
    let mut args = vec!["data", cfg.to_str().unwrap(), "-o", good.to_str().unwrap()];
    for s in common::TINY_KURAMOTO_DATA {
        args.extend(["--set", s]);
    }
    ok(tmp.path(), &args);
    // The command that resumes the tiny run.
    let resume_args = tiny_train_args("vae-lorenz", &run, 20, &[]);

    assert!(CASES.len() >= 50, "the corpus must hold at least 50 cases");
    let mut failures = Vec::new();
    for (i, (name, file, via, fragments)) in CASES.iter().enumerate() {
        let case_dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let out = case_dir.join("out.npy");
        let fixture = fixtures.join(file);
        let broken = case_dir.join("run");
        let subst = |a: &str| {
            a.replace("{file}", fixture.to_str().unwrap())
                .replace("{run}", broken.to_str().unwrap())
                .replace("{flow}", other.to_str().unwrap())
                .replace("{good}", good.to_str().unwrap())
                .replace("{out}", out.to_str().unwrap())
        };
        let (args, watched): (Vec<String>, PathBuf) = match via {
            Via::Source(lines) => {
                let config = case_dir.join("bad.toml");
                std::fs::write(
                    &config,
                    format!(
                        "[data]\n{lines}\npath = {:?}\nwindow = 32\n\n[model]\nkind = \"vae\"\n\
                         latent_dim = 2\nhidden = [8]\n\n[train]\nsteps = 3\nbatch_size = 2\n",
                        fixture.to_str().unwrap()
                    ),
                )
                .unwrap();
                let args = [
                    "train",
                    config.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                ];
                (args.map(String::from).to_vec(), fixtures.clone())
            }
            Via::Args(a) => {
                copy_dir(&run, &broken);
                (a.iter().map(|s| subst(s)).collect(), fixtures.clone())
            }
            Via::Run(edit, a) => {
                copy_dir(&run, &broken);
                apply(*edit, &broken, &other);
                let args = if a == &RESUME {
                    let mut r = resume_args.clone();
                    r[3] = broken.to_str().unwrap().to_string();
                    r.push("--resume".into());
                    r
                } else {
                    a.iter().map(|s| subst(s)).collect()
                };
                (args, broken.clone())
            }
        };
        let before = snapshot(&watched);
        let r = neurogen(
            &case_dir,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let err = r.stderr.trim();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut problems = Vec::new();
        if r.code != 2 {
            problems.push(format!("exit code {}", r.code));
        }
        // A panic prints the CLI hook's one line, never a backtrace.
        if err.contains("neurogen: internal error") || err.contains("RUST_BACKTRACE") {
            problems.push("panicked".into());
        }
        // One message: nothing before it, no second error (a TOML error's own excerpt of the
        // offending line may follow it).
        if !err.starts_with("neurogen: error: ") || err.matches("error: ").count() != 1 {
            problems.push(format!("{} lines of stderr", lines.len()));
        }
        let named = Path::new(file)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned());
        let mut wanted: Vec<String> = fragments.iter().map(|f| f.to_string()).collect();
        wanted.extend(named.filter(|n| !n.is_empty()));
        for f in &wanted {
            if !err.contains(f.as_str()) {
                problems.push(format!("missing {f:?}"));
            }
        }
        if snapshot(&watched) != before {
            problems.push("the input changed".into());
        }
        if out.join("metrics.jsonl").exists() || out.join("checkpoints").exists() {
            problems.push("a run was started".into());
        }
        if out.is_file() {
            problems.push("an output file was written".into());
        }
        let leftovers: Vec<_> = std::fs::read_dir(&case_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".partial"))
            .collect();
        if !leftovers.is_empty() {
            problems.push(format!("left {leftovers:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}\n    {err}", problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
