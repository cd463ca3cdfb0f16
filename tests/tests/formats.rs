//! Recordings in and out: EDF/BDF against golden files made by pyedflib and edfio, NPY/NPZ and
//! CSV layouts, round trips through our writers, malformed files, and the real binary writing
//! samples that pyedflib and NumPy open.

mod common;

use std::path::{Path, PathBuf};

use common::{neurogen, ok, root};
use neurogen_data::edf::{self, EdfFormat};
use neurogen_data::npy::{self, NpyArray, NpyValues};
use neurogen_data::write::write_signals;
use neurogen_data::{DataConfig, SignalKind, SplitName};

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/edf").join(name)
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn data_config(toml_text: &str) -> DataConfig {
    let table: toml::Table = toml_text.parse().unwrap();
    neurogen_data::from_table(table).unwrap()
}

#[test]
fn golden_edf_and_bdf_files_read_as_pyedflib_and_edfio_read_them() {
    let golden = expected();
    for (name, want) in golden.as_object().unwrap() {
        let f = edf::read(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let labels: Vec<&str> = f.signals.iter().map(|s| s.label.as_str()).collect();
        let want_labels: Vec<&str> = want["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(labels, want_labels, "{name}");
        for (i, s) in f.signals.iter().enumerate() {
            assert_eq!(s.sfreq, want["sfreq"][i].as_f64().unwrap(), "{name} rate");
            assert_eq!(s.unit, want["units"][i].as_str().unwrap(), "{name} unit");
            let values = want["values"][i].as_array().unwrap();
            assert_eq!(s.values.len(), values.len(), "{name} samples");
            for (k, (a, b)) in s.values.iter().zip(values).enumerate() {
                let b = b.as_f64().unwrap();
                assert!(
                    (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
                    "{name} signal {i} sample {k}: {a} vs {b}"
                );
            }
        }
        let anns: Vec<(f64, Option<f64>, &str)> = f
            .annotations
            .iter()
            .map(|a| (a.onset, a.duration, a.text.as_str()))
            .collect();
        let want_anns: Vec<(f64, Option<f64>, &str)> = want["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a[0].as_f64().unwrap(),
                    a[1].as_f64(),
                    a[2].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(anns.len(), want_anns.len(), "{name}: {anns:?}");
        for (a, b) in anns.iter().zip(&want_anns) {
            assert!(
                (a.0 - b.0).abs() < 1e-9 && a.1 == b.1 && a.2 == b.2,
                "{name}: {a:?} vs {b:?}"
            );
        }
    }
    // Details the table above does not show.
    let f = edf::read(&fixture("annotated.edf")).unwrap();
    assert!(f.plus && !f.discontinuous);
    assert_eq!(
        f.record_onsets[0], 0.25,
        "sub-second start from the first TAL"
    );
    let f = edf::read(&fixture("negative_gain.edf")).unwrap();
    assert!(f.signals[1].physical.0 > f.signals[1].physical.1);
    let f = edf::read(&fixture("bdf24.bdf")).unwrap();
    assert_eq!(f.format, EdfFormat::Bdf);
    let f = edf::read(&fixture("plain.edf")).unwrap();
    assert!(!f.plus && f.record_onsets == [0.0, 1.0, 2.0]);
    let f = edf::read(&fixture("discontinuous.edf")).unwrap();
    assert!(f.discontinuous);
    assert_eq!(f.record_onsets, [0.0, 1.0, 3.0, 4.0]);
    assert_eq!(f.breaks(64), [128]);
}

#[test]
fn edf_source_windows_never_cross_a_gap_and_picks_one_rate() {
    let cfg = data_config(&format!(
        "source = \"edf\"\npath = {:?}\nwindow = 48\nstride = 16\nsplit = {{ train = 1.0, valid = 0.0, test = 0.0 }}",
        fixture("discontinuous.edf")
    ));
    let w = cfg.build(0).unwrap();
    assert!(!w.info.is_empty());
    for i in &w.info {
        assert!(
            i.start + 48 <= 128 || i.start >= 128,
            "window at {} crosses the gap at 128",
            i.start
        );
    }
    assert!(w.info.iter().any(|i| i.start == 128), "restarts at the gap");

    // Default: the signals of the common rate; the 64 Hz one is left out.
    let base = format!(
        "source = \"edf\"\npath = {:?}\nwindow = 16\n",
        fixture("mixed_rates.edf")
    );
    let w = data_config(&base).build(0).unwrap();
    assert_eq!(w.signals.meta.channel_names, ["EEG1", "EEG2"]);
    assert_eq!(w.signals.meta.sfreq, 128.0);
    // Naming it picks it, and its mV become µV.
    let w =
        data_config(&format!("{base}channels = [\"Resp\"]\n").replace("window = 16", "window = 8"))
            .build(0)
            .unwrap();
    assert_eq!(w.signals.meta.sfreq, 64.0);
    assert_eq!(w.signals.meta.unit, "uV");
    let golden = expected();
    let resp0 = golden["mixed_rates.edf"]["values"][2][0].as_f64().unwrap();
    assert!((w.signals.values[0] as f64 - resp0 * 1000.0).abs() < 1e-2);
    let e = data_config(&format!("{base}channels = [\"EEG1\", \"Resp\"]"))
        .build(0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("channels") && e.contains("one rate"), "{e}");
    let e = data_config(&format!("{base}channels = [\"Oz\"]"))
        .build(0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no channel \"Oz\"") && e.contains("EEG1"), "{e}");
}

#[test]
fn epochs_are_cut_around_annotations_and_labelled_by_event() {
    let cfg = data_config(&format!(
        "source = \"edf\"\npath = {:?}\nepochs = {{ events = [\"769\", \"770\"], tmin = 0.0, tmax = 0.5 }}\nsplit = {{ train = 1.0, valid = 0.0, test = 0.0 }}",
        fixture("annotated.edf")
    ));
    let w = cfg.build(0).unwrap();
    assert_eq!(w.signals.n, 2);
    assert_eq!(w.signals.meta.time, 64, "window defaults to the epoch");
    assert_eq!(w.signals.labels.as_deref(), Some(&[0, 1][..]));
    assert_eq!(w.signals.meta.label_names, ["769", "770"]);
    // "769" is at 1.5 s after the header time; the data start 0.25 s after it: sample 160.
    let golden = expected();
    let c3 = golden["annotated.edf"]["values"][0].as_array().unwrap();
    let first = w.signals.window(w.indices(SplitName::Train)[0]);
    for k in 0..64 {
        assert!((first[k] as f64 - c3[160 + k].as_f64().unwrap()).abs() < 1e-4);
    }
    let e = data_config(&format!(
        "source = \"edf\"\npath = {:?}\nepochs = {{ events = [\"999\"], tmin = 0.0, tmax = 0.5 }}",
        fixture("annotated.edf")
    ))
    .build(0)
    .unwrap_err()
    .to_string();
    assert!(e.contains("epochs.events") && e.contains("769"), "{e}");
}

fn windows(n: usize, channels: usize, time: usize, counts: bool) -> neurogen_data::Signals {
    let values: Vec<f32> = (0..n * channels * time)
        .map(|i| {
            let x = (i as f32 * 0.37).sin() * 40.0 + (i % 7) as f32;
            if counts {
                (x.abs() / 4.0).floor()
            } else {
                x
            }
        })
        .collect();
    neurogen_data::Signals {
        inputs: None,
        values,
        n,
        meta: neurogen_data::SignalMeta {
            input_names: Vec::new(),
            channels,
            time,
            sfreq: 128.0,
            channel_names: (0..channels).map(|c| format!("E{c}")).collect(),
            kind: if counts {
                SignalKind::Counts
            } else {
                SignalKind::Continuous
            },
            unit: if counts { "count" } else { "uV" }.into(),
            label_names: vec!["left".into(), "right µ".into()],
        },
        latents: None,
        labels: Some((0..n).map(|i| (i % 2) as u32).collect()),
    }
}

#[test]
fn what_we_write_reads_back_within_a_quantisation_step() {
    let dir = tempfile::tempdir().unwrap();
    for (ext, format) in [("edf", EdfFormat::Edf), ("bdf", EdfFormat::Bdf)] {
        let s = windows(5, 3, 64, false);
        let path = dir.path().join(format!("w.{ext}"));
        write_signals(&path, &s).unwrap();
        let f = edf::read(&path).unwrap();
        assert_eq!(f.format, format);
        assert!(f.plus);
        assert_eq!(f.record_duration, 0.5);
        for (c, sig) in f.signals.iter().enumerate() {
            assert_eq!(sig.label, format!("E{c}"));
            assert_eq!((sig.unit.as_str(), sig.sfreq), ("uV", 128.0));
            let (pmin, pmax) = sig.physical;
            let step = (pmax - pmin) / (sig.digital.1 - sig.digital.0) as f64;
            for i in 0..5 {
                for t in 0..64 {
                    let want = s.values[(i * 3 + c) * 64 + t] as f64;
                    let got = sig.values[i * 64 + t];
                    assert!(
                        (got - want).abs() <= step / 2.0 + 1e-6 * want.abs(),
                        "{ext}: {got} vs {want}"
                    );
                }
            }
        }
        let texts: Vec<&str> = f.annotations.iter().map(|a| a.text.as_str()).collect();
        assert_eq!(texts, ["left", "right µ", "left", "right µ", "left"]);
        assert_eq!(f.annotations[3].onset, 1.5);
    }
    // Counts come back exactly.
    let s = windows(4, 2, 32, true);
    let path = dir.path().join("c.edf");
    write_signals(&path, &s).unwrap();
    let f = edf::read(&path).unwrap();
    for (c, sig) in f.signals.iter().enumerate() {
        for i in 0..4 {
            for t in 0..32 {
                assert_eq!(
                    sig.values[i * 32 + t],
                    s.values[(i * 2 + c) * 32 + t] as f64
                );
            }
        }
    }
    // NPZ and CSV come back through the data sources, labels included.
    let s = windows(6, 2, 16, false);
    for (ext, extra) in [("npz", ""), ("csv", "layout = \"trials\"\nsfreq = 128.0\n")] {
        let path = dir.path().join(format!("w.{ext}"));
        write_signals(&path, &s).unwrap();
        let w = data_config(&format!(
            "source = \"{ext}\"\npath = {path:?}\n{extra}split = {{ train = 1.0, valid = 0.0, test = 0.0 }}"
        ))
        .build(0)
        .unwrap();
        assert_eq!(w.signals.meta.channel_names, ["E0", "E1"], "{ext}");
        assert_eq!(w.signals.meta.sfreq, 128.0, "{ext}");
        assert_eq!(w.signals.meta.label_names, ["left", "right µ"], "{ext}");
        let order = w.indices(SplitName::Train);
        let got = w.signals.select(&order);
        // Trials are assigned in a shuffled order; match each by its first sample.
        for i in 0..6 {
            let k = (0..6)
                .find(|&k| got.window(k)[0] == s.window(i)[0])
                .unwrap();
            assert_eq!(got.window(k), s.window(i), "{ext}");
            assert_eq!(
                got.labels.as_ref().unwrap()[k],
                s.labels.as_ref().unwrap()[i]
            );
        }
    }
    assert!(write_signals(&dir.path().join("x.mat"), &s)
        .unwrap_err()
        .to_string()
        .contains("unsupported output format"));
}

/// Writes an `.npy` of `values` with the dtype and order given, as NumPy would.
fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({dims}), }}",
        if fortran { "True" } else { "False" }
    );
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    h.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h.extend_from_slice(data);
    h
}

#[test]
fn npy_reads_every_dtype_in_c_and_fortran_order() {
    // A [2, 3] array 0..6 in C order is 0 1 2 / 3 4 5; in Fortran order the bytes run by column.
    let c_order = [0i64, 1, 2, 3, 4, 5];
    let f_order = [0i64, 3, 1, 4, 2, 5];
    let enc = |descr: &str, v: &[i64]| -> Vec<u8> {
        v.iter()
            .flat_map(|&x| match descr {
                "<f4" => (x as f32).to_le_bytes().to_vec(),
                "<f8" => (x as f64).to_le_bytes().to_vec(),
                "<i2" => (x as i16).to_le_bytes().to_vec(),
                "<i4" => (x as i32).to_le_bytes().to_vec(),
                _ => unreachable!(),
            })
            .collect()
    };
    for descr in ["<f4", "<f8", "<i2", "<i4"] {
        for (fortran, order) in [(false, &c_order), (true, &f_order)] {
            let a = npy::parse(&npy_bytes(descr, fortran, &[2, 3], &enc(descr, order))).unwrap();
            assert_eq!(a.shape, [2, 3]);
            assert_eq!(
                a.values,
                NpyValues::Numbers(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
                "{descr} fortran={fortran}"
            );
        }
    }
    let e = npy::parse(&npy_bytes(">f4", false, &[1], &[0; 4])).unwrap_err();
    assert!(e.contains("big-endian"), "{e}");
    let e = npy::parse(&npy_bytes("<c8", false, &[1], &[0; 8])).unwrap_err();
    assert!(e.contains("descr") && e.contains("not supported"), "{e}");
}

#[test]
fn npy_and_npz_sources_take_layouts_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    // Continuous [channels, samples] needs sfreq from the config.
    let p = dir.path().join("rec.npy");
    let v: Vec<f32> = (0..2 * 600).map(|i| (i as f32 * 0.1).sin()).collect();
    npy::write_f32(&p, &[2, 600], &v).unwrap();
    let e = data_config(&format!("source = \"npy\"\npath = {p:?}"))
        .build(0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sfreq") && e.contains("required"), "{e}");
    let w = data_config(&format!(
        "source = \"npy\"\npath = {p:?}\nsfreq = 100.0\nchannel_names = [\"a\", \"b\"]\nwindow = 50"
    ))
    .build(0)
    .unwrap();
    assert_eq!(w.signals.meta.channel_names, ["a", "b"]);
    assert_eq!(w.config.split_by, Some(neurogen_data::SplitBy::Time));
    // Trials with numeric labels in an NPZ written by hand: int64 labels, float64 data.
    let trials: Vec<u8> = (0..4 * 2 * 10)
        .flat_map(|i| (i as f64).to_le_bytes())
        .collect();
    let labels: Vec<u8> = [3i64, 1, 3, 1]
        .iter()
        .flat_map(|l| l.to_le_bytes())
        .collect();
    let p = dir.path().join("t.npz");
    npy::write_npz(
        &p,
        &[
            (
                "x",
                npy::parse(&npy_bytes("<f8", false, &[4, 2, 10], &trials)).unwrap(),
            ),
            (
                "labels",
                npy::parse(&npy_bytes("<i8", false, &[4], &labels)).unwrap(),
            ),
        ],
    )
    .unwrap();
    let w = data_config(&format!(
        "source = \"npz\"\npath = {p:?}\nsfreq = 10.0\nsplit = {{ train = 0.5, valid = 0.25, test = 0.25 }}"
    ))
    .build(0)
    .unwrap();
    assert_eq!(w.signals.meta.time, 10);
    assert_eq!(w.signals.meta.label_names, ["1", "3"]);
    assert_eq!(w.config.split_by, Some(neurogen_data::SplitBy::Trial));
    for i in 0..4 {
        let first = w.signals.window(i)[0] as usize / 20;
        let want = if first.is_multiple_of(2) { 1 } else { 0 };
        assert_eq!(w.signals.labels.as_ref().unwrap()[i], want);
    }
    let e = data_config(&format!(
        "source = \"npz\"\npath = {p:?}\nsfreq = 10.0\narray = \"y\""
    ))
    .build(0)
    .unwrap_err()
    .to_string();
    assert!(e.contains("array") && e.contains("no member \"y\""), "{e}");
}

#[test]
fn csv_layouts_read_with_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chan.csv");
    let mut text = String::from("time,Fz,Cz\n");
    for i in 0..300 {
        text.push_str(&format!("{},{},{}\n", i as f64 / 50.0, i, -(i as i64)));
    }
    std::fs::write(&p, text).unwrap();
    let w = data_config(&format!("source = \"csv\"\npath = {p:?}\nwindow = 30"))
        .build(0)
        .unwrap();
    assert_eq!(w.signals.meta.channel_names, ["Fz", "Cz"]);
    assert!(
        (w.signals.meta.sfreq - 50.0).abs() < 1e-9,
        "rate from the time column: {}",
        w.signals.meta.sfreq
    );
    assert_eq!(&w.signals.window(0)[..3], &[0.0, 1.0, 2.0]);
    assert_eq!(w.signals.window(0)[30], 0.0);
    assert_eq!(w.signals.window(0)[31], -1.0);

    // EEG-GAN's layout: participant, condition, trial, electrode, then time points.
    let p = dir.path().join("trials.csv");
    let mut text = String::from("ParticipantID,Condition,Trial,Electrode,Time1,Time2,Time3\n");
    for trial in 0..4 {
        for e in ["Fz", "Cz"] {
            let cond = if trial % 2 == 0 { "win" } else { "lose" };
            text.push_str(&format!("1,{cond},{trial},{e},{trial},1.5,2\n"));
        }
    }
    std::fs::write(&p, &text).unwrap();
    let w = data_config(&format!(
        "source = \"csv\"\npath = {p:?}\nlayout = \"trials\"\nsfreq = 100.0\nsplit = {{ train = 0.5, valid = 0.25, test = 0.25 }}"
    ))
    .build(0)
    .unwrap();
    assert_eq!(
        (w.signals.n, w.signals.meta.channels, w.signals.meta.time),
        (4, 2, 3)
    );
    assert_eq!(w.signals.meta.label_names, ["lose", "win"]);
    for i in 0..4 {
        let trial = w.signals.window(i)[0] as usize;
        assert_eq!(
            w.signals.labels.as_ref().unwrap()[i],
            trial.is_multiple_of(2) as u32
        );
    }
    // A trial missing an electrode, and a non-number, are named.
    let bad = text.replace("1,lose,3,Cz,3,1.5,2\n", "");
    std::fs::write(&p, bad).unwrap();
    let e = data_config(&format!(
        "source = \"csv\"\npath = {p:?}\nlayout = \"trials\"\nsfreq = 100.0"
    ))
    .build(0)
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("trial 3") && e.contains("1 electrode rows"),
        "{e}"
    );
    std::fs::write(&p, text.replace(",1.5,", ",abc,")).unwrap();
    let e = data_config(&format!(
        "source = \"csv\"\npath = {p:?}\nlayout = \"trials\"\nsfreq = 100.0"
    ))
    .build(0)
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("row 2") && e.contains("Time2") && e.contains("\"abc\""),
        "{e}"
    );
}

/// Applies `edit` to a copy of a golden file and returns our reader's error.
fn broken(name: &str, edit: impl Fn(&mut Vec<u8>)) -> String {
    let mut b = std::fs::read(fixture(name)).unwrap();
    edit(&mut b);
    edf::parse(&b).expect_err("must fail")
}

fn put(b: &mut [u8], at: usize, text: &str, len: usize) {
    let mut t = text.as_bytes().to_vec();
    t.resize(len, b' ');
    b[at..at + len].copy_from_slice(&t);
}

#[test]
fn malformed_edf_files_fail_with_their_own_message() {
    // negative_gain.edf: 3 signals (C3, C4, EDF Annotations), 2 records.
    let ns = 3;
    let sig = |field_offset: usize, width: usize, i: usize| 256 + field_offset * ns + i * width;
    type Edit<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("too short", Box::new(|b| b.truncate(100)), "at least 256"),
        ("magic", Box::new(|b| b[0] = b'X'), "version"),
        (
            "truncated",
            Box::new(|b| {
                let n = b.len() - 10;
                b.truncate(n)
            }),
            "truncated",
        ),
        (
            "header bytes",
            Box::new(|b| put(b, 184, "512", 8)),
            "header bytes",
        ),
        (
            "absurd signal count",
            Box::new(|b| put(b, 252, "9999", 4)),
            "number of signals",
        ),
        (
            "zero signals",
            Box::new(|b| put(b, 252, "0", 4)),
            "no signal",
        ),
        (
            "records not a number",
            Box::new(|b| put(b, 236, "many", 8)),
            "number of data records",
        ),
        (
            "zero records",
            Box::new(|b| put(b, 236, "0", 8)),
            "number of data records",
        ),
        (
            "zero duration",
            Box::new(|b| put(b, 244, "0", 8)),
            "duration",
        ),
        (
            "non-ASCII",
            Box::new(|b| b[236] = 0xe9),
            "not printable ASCII",
        ),
        (
            "absurd samples per record",
            Box::new(move |b| put(b, sig(216, 8, 0), "99999999", 8)),
            "larger than the file",
        ),
        (
            "zero samples per record",
            Box::new(move |b| put(b, sig(216, 8, 1), "0", 8)),
            "samples per record",
        ),
        (
            "digital min ≥ max",
            Box::new(move |b| put(b, sig(120, 8, 0), "40000", 8)),
            "digital",
        ),
        (
            "physical min = max",
            Box::new(move |b| put(b, sig(104, 8, 0), "100", 8)),
            "physical range",
        ),
        (
            "physical not a number",
            Box::new(move |b| put(b, sig(104, 8, 0), "1e", 8)),
            "physical minimum",
        ),
        (
            "EDF+ without annotations",
            Box::new(move |b| put(b, 256 + 32, "Status", 16)),
            "EDF Annotations",
        ),
        (
            "bad TAL",
            Box::new(|b| {
                let at = b.windows(4).position(|w| w == b"+0\x14\x14").unwrap();
                b[at] = b'x';
            }),
            "'+'",
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (what, edit, want) in cases {
        let e = broken("negative_gain.edf", edit);
        assert!(e.contains(want), "{what}: {e}");
        assert!(seen.insert(e.clone()), "{what}: message not distinct: {e}");
    }
    // Through the file API the message names the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.edf");
    std::fs::write(&p, b"0       not an edf").unwrap();
    let e = edf::read(&p).unwrap_err().to_string();
    assert!(e.contains("bad.edf"), "{e}");
}

#[test]
fn sample_and_data_write_every_format_and_python_opens_them() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("edf.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"edf-e2e\"\nseed = 1\n[data]\nsource = \"edf\"\npath = {:?}\nwindow = 32\nsplit = {{ train = 0.5, valid = 0.25, test = 0.25 }}\n[model]\nkind = \"vae\"\nlatent_dim = 2\nhidden = [16]\n[train]\nsteps = 5\nbatch_size = 4\nlog_every = 5\nvalid_every = 5\ncheckpoint_every = 5\n",
            fixture("plain.edf")
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    ok(
        tmp.path(),
        &[
            "train",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
    );
    // The run keeps the absolute path and the window the data settled.
    let stored = std::fs::read_to_string(run.join("experiment.toml")).unwrap();
    assert!(
        stored.contains("plain.edf") && stored.contains("window = 32"),
        "{stored}"
    );
    for ext in ["npy", "edf", "bdf", "csv", "npz"] {
        let out = tmp.path().join(format!("s.{ext}"));
        ok(
            tmp.path(),
            &[
                "sample",
                run.to_str().unwrap(),
                "-n",
                "4",
                "--seed",
                "2",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(out.exists() && tmp.path().join("s.json").exists());
    }
    let npy = common::read_npy(&tmp.path().join("s.npy"));
    let back = edf::read(&tmp.path().join("s.edf")).unwrap();
    assert_eq!(back.signals.len(), 3);
    for (c, s) in back.signals.iter().enumerate() {
        let step = (s.physical.1 - s.physical.0) / 65535.0;
        for i in 0..4 {
            for t in 0..32 {
                let want = npy.values[(i * 3 + c) * 32 + t] as f64;
                assert!((s.values[i * 32 + t] - want).abs() <= step);
            }
        }
    }
    // A recording in the run's own format is scored window by window, cut as the run's data.
    let scores = tmp.path().join("scores.csv");
    ok(
        tmp.path(),
        &[
            "score",
            run.to_str().unwrap(),
            tmp.path().join("s.edf").to_str().unwrap(),
            "-k",
            "4",
            "-o",
            scores.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&scores).unwrap();
    assert_eq!(text.lines().count(), 1 + 4, "{text}");
    assert!(
        text.lines().skip(1).all(|l| l.contains(",iwae_k=4,")),
        "{text}"
    );
    let r = neurogen(
        tmp.path(),
        &[
            "score",
            run.to_str().unwrap(),
            tmp.path().join("s.csv").to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("run's own format (edf)"), "{}", r.stderr);
    // --label on an unlabelled run, and an unknown extension, fail with exit 2 and a reason.
    let r = neurogen(
        tmp.path(),
        &["sample", run.to_str().unwrap(), "--label", "769"],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unlabelled"), "{}", r.stderr);
    let r = neurogen(
        tmp.path(),
        &["sample", run.to_str().unwrap(), "-o", "s.mat"],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unsupported output format"),
        "{}",
        r.stderr
    );

    python_opens(tmp.path(), &npy.values);
}

/// pyedflib reads our EDF and BDF with the same names, rate, µV and values; NumPy reads our
/// NPZ. CI installs both (NEUROGEN_TEST_NUMPY=1 makes their absence an error).
fn python_opens(dir: &Path, values: &[f32]) {
    let required = std::env::var("NEUROGEN_TEST_NUMPY").is_ok();
    let script = r#"
import json, sys, numpy as np, pyedflib
out = {}
for ext in ("edf", "bdf"):
    r = pyedflib.EdfReader(sys.argv[1] + "/s." + ext)
    out[ext] = {
        "labels": r.getSignalLabels(),
        "sfreq": [float(f) for f in r.getSampleFrequencies()],
        "units": [r.getPhysicalDimension(i) for i in range(r.signals_in_file)],
        "values": [r.readSignal(i).tolist() for i in range(r.signals_in_file)],
    }
z = np.load(sys.argv[1] + "/s.npz")
out["npz"] = {"shape": list(z["data"].shape), "names": [str(n) for n in z["channel_names"]], "sfreq": float(z["sfreq"])}
print(json.dumps(out))
"#;
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output();
    let o = match o {
        Ok(o) if o.status.success() => o,
        Ok(o) if !required && String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("skipping the pyedflib/NumPy check: module missing");
            return;
        }
        Ok(o) => panic!("python failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if required => panic!("python3: {e}"),
        Err(_) => return,
    };
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for ext in ["edf", "bdf"] {
        let g = &got[ext];
        assert_eq!(g["labels"], serde_json::json!(["Fp1", "Cz", "O2"]), "{ext}");
        assert_eq!(
            g["sfreq"],
            serde_json::json!([128.0, 128.0, 128.0]),
            "{ext}"
        );
        assert_eq!(g["units"], serde_json::json!(["uV", "uV", "uV"]), "{ext}");
        for c in 0..3 {
            let v = g["values"][c].as_array().unwrap();
            assert_eq!(v.len(), 4 * 32);
            for i in 0..4 {
                for t in 0..32 {
                    let want = values[(i * 3 + c) * 32 + t] as f64;
                    let have = v[i * 32 + t].as_f64().unwrap();
                    assert!(
                        (have - want).abs() < 0.05,
                        "{ext} {c} {i} {t}: {have} vs {want}"
                    );
                }
            }
        }
    }
    assert_eq!(got["npz"]["shape"], serde_json::json!([4, 3, 32]));
    assert_eq!(got["npz"]["names"], serde_json::json!(["Fp1", "Cz", "O2"]));
    assert_eq!(got["npz"]["sfreq"], serde_json::json!(128.0));
}

#[test]
fn npz_member_larger_than_declared_is_refused() {
    let a = NpyArray {
        shape: vec![3],
        values: NpyValues::Numbers(vec![1.0, 2.0, 3.0]),
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npz");
    npy::write_npz(&p, &[("data", a.clone())]).unwrap();
    let got = npy::read_npz(&p).unwrap();
    assert_eq!(got, vec![("data".to_string(), a)]);
    let e = npy::parse_npz(b"PK\x03\x04garbage").unwrap_err();
    assert!(e.contains("zip"), "{e}");
}

/// Inputs the fuzzers found that once crashed a reader: each must now end in an error.
#[test]
fn fuzz_findings_stay_fixed() {
    let dir = root().join("tests/fixtures/fuzz");
    let mut n = 0;
    for (sub, parse) in [
        (
            "edf",
            (|b: &[u8]| edf::parse(b).err()) as fn(&[u8]) -> Option<String>,
        ),
        ("npy", |b: &[u8]| {
            npy::parse(b).err().or(npy::parse_npz(b).err())
        }),
    ] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let err = parse(&bytes);
            assert!(err.is_some(), "{}: must be refused", path.display());
            n += 1;
        }
    }
    assert!(n >= 1, "the regression inputs are missing");
}

#[test]
fn labelled_runs_keep_their_label_names_and_check_sample_label() {
    let tmp = tempfile::tempdir().unwrap();
    let npz = tmp.path().join("trials.npz");
    write_signals(&npz, &windows(40, 2, 16, false)).unwrap();
    let cfg = tmp.path().join("npz.toml");
    std::fs::write(
        &cfg,
        "name = \"npz-e2e\"\n[data]\nsource = \"npz\"\npath = \"trials.npz\"\n[model]\nkind = \"vae\"\nlatent_dim = 2\nhidden = [8]\n[train]\nsteps = 3\nbatch_size = 4\nlog_every = 3\nvalid_every = 3\ncheckpoint_every = 3\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    ok(
        tmp.path(),
        &[
            "train",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
    );
    let info = std::fs::read_to_string(run.join("data.json")).unwrap();
    assert!(
        info.contains("\"left\"") && info.contains("right µ"),
        "{info}"
    );
    let r = neurogen(
        tmp.path(),
        &["sample", run.to_str().unwrap(), "--label", "up"],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("not a label") && r.stderr.contains("left, right µ"),
        "{}",
        r.stderr
    );
    let r = neurogen(
        tmp.path(),
        &["sample", run.to_str().unwrap(), "--label", "left"],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unconditional"), "{}", r.stderr);
    // `data` writes the labels back out: as EDF+ annotations here.
    let edf_out = tmp.path().join("d.edf");
    ok(
        tmp.path(),
        &[
            "data",
            cfg.to_str().unwrap(),
            "-o",
            edf_out.to_str().unwrap(),
        ],
    );
    let f = edf::read(&edf_out).unwrap();
    assert_eq!(f.annotations.len(), 40);
    assert_eq!(f.annotations[1].text, "right µ");
}
